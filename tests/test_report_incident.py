"""One incident, one record: `report` gathers every thread of the incident (the assessment, the dry run,
the request with its pipeline) into one markdown record with post-mortem sections, posted to the request's
thread and kept with the backups. A real forking worker, real PostgreSQL and Redis, the Slack stand-in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.fixtures.stack import (
    CHANNEL,
    REQUESTER,
    enqueue,
    post_root,
    rolled_back_request,
    wait_job,
)

GOOD = "2025_10_20_120001"


def test_the_report_holds_every_thread_of_the_incident(
    stack_env: dict[str, str], worker: Any, slack_api: Any, database_url: str,
) -> None:
    status_ts = post_root(slack_api, ":mag: *status* of `prod` requested by <@U_ALICE>")
    assert wait_job(enqueue(stack_env, "workers.jobs.status", target="prod", channel=CHANNEL, thread_ts=status_ts))
    slack_api.post_as_user(CHANNEL, "U_CAROL", "is anyone looking at the billing dashboard?")  # not the bot's
    ts, request = rolled_back_request(stack_env, slack_api, database_url, GOOD)

    result = wait_job(enqueue(stack_env, "workers.jobs.report", channel=CHANNEL, thread_ts=ts, requester=REQUESTER))
    assert result and result["ok"], result
    # the assessment's thread and the request's (the helper runs the dry run in the request's thread)
    assert result["threads"] == 2
    text = Path(result["path"]).read_text()
    assert Path(result["path"]).parent.parent == Path(stack_env["BACKUP_DIR"])  # kept with the backups
    uploaded = slack_api.wait_for(lambda: [f for f in slack_api.files() if f.thread_ts == ts])
    assert uploaded[0].text() == text  # and posted to the request's thread
    assert "## Threads of this incident" in text
    assert "[*status* of `prod` requested by @alice]" in text  # the assessment's thread, labelled
    assert "health: no health_url configured" in text
    assert "*Dry run* on *prod*" in text or "Dry run on prod" in text  # the dry run's thread
    assert f"rolled back to {GOOD} and verified" in text  # the request's thread
    assert "billing dashboard" not in text
    for heading in ("## Timeline", "## Impact", "## What was run", "## Root cause", "## Action items"):
        assert heading in text, heading
    assert "- Rows affected: 16 row(s) changed" in text
    assert "- Downtime: no maintenance window (no maintenance hooks configured)" in text
    assert "_To be filled in by the people who handled the incident._" in text
