"""The incident record: a finished request's thread rendered to markdown, kept with the backups, attached."""

from __future__ import annotations

from pathlib import Path

import redis

from core.requests import RequestStore
from tests.fixtures.stack import (
    APPROVER,
    REQUESTER,
    apply_example,
    approved_request,
    dry_run_plan,
    enqueue,
    wait_job,
)
from workers.report import render


def test_report_of_a_rolled_back_request(stack_env, database_url, slack_api, worker):
    apply_example(database_url)
    ts, dry = dry_run_plan(stack_env, slack_api, "2025_10_20_120001")
    request = approved_request(stack_env, thread_ts=ts, plan=dry)
    enqueue(stack_env, "workers.jobs.execute", request_id=request.id)
    store = RequestStore(redis.Redis.from_url(stack_env["REDIS_URL"]))
    slack_api.wait_for(lambda: store.get(request.id).status.value == "succeeded", timeout=60)

    result = wait_job(enqueue(stack_env, "workers.jobs.report", channel="C_INCIDENT", thread_ts=ts,
                              requester=REQUESTER))
    assert result and result["ok"], result
    text = Path(result["path"]).read_text()
    assert Path(result["path"]).parent.parent == Path(stack_env["BACKUP_DIR"])
    for expected in (request.id, REQUESTER, APPROVER, "2025_10_20_150000", "2025_10_20_120001", "sha256",
                     "DROP TABLE IF EXISTS new_feature_table", "row count users", "rolled back and verified",
                     "## Timeline", "+"):
        assert expected in text, expected
    uploaded = slack_api.wait_for(lambda: [f for f in slack_api.files() if f.thread_ts == ts])
    assert uploaded[0].text() == text


def test_render_is_pure_and_survives_an_unknown_thread():
    text = render([{"ts": "1700000000.000100", "user": "U_ALICE", "text": ":x: *Backup* failed | disk"}], None, {},
                  "U_ALICE")
    assert "Backup* failed \\| disk" in text and "2023-11-14 22:13:20 UTC" in text
