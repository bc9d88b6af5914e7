"""The restore preview on a whole-backup restore's card (issue 10): versions now and in the backup, the
critical tables' rows live and in the backup, what is lost since the backup; bound by hash with the
database's identity and recomputed at start. Real bot, worker, PostgreSQL and Redis."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
import redis

from core.requests import RequestKind, RequestStatus, RequestStore
from sandbox.pagerduty import PagerDutyServer
from sandbox.signing import SlackRequestSender
from sandbox.slack_api import SlackApiServer, message_text
from tests.fixtures.stack import EXAMPLE_MIGRATIONS, apply_example, enqueue, wait_job
from workers.engine import Engine

pytestmark = pytest.mark.usefixtures("worker")

CHANNEL = "C_INCIDENT"
ALICE, BOB = "U_ALICE", "U_BOB"
OLDER, GOOD, BAD = "2025_10_01_090500", "2025_10_20_120001", "2025_10_20_150000"


def test_the_restore_card_shows_its_preview_and_a_stale_one_is_refused_at_start(
    stack_sender: SlackRequestSender, slack_api: SlackApiServer, stack_env: dict[str, str], database_url: str,
    pagerduty: PagerDutyServer,
) -> None:
    apply_example(database_url)
    store = RequestStore(redis.Redis.from_url(stack_env["REDIS_URL"]))
    taken = wait_job(enqueue(stack_env, "workers.jobs.backup", target="prod", requester=ALICE, reason="nightly"),
                     timeout=120)
    assert taken and taken["ok"], taken
    name = Path(taken["backup"]["path"]).name
    Engine(database_url, str(EXAMPLE_MIGRATIONS), actor="setup").rollback(to=GOOD)  # live moved on since
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM projects WHERE id IN (SELECT id FROM projects ORDER BY id LIMIT 3)")

    stack_sender.command(f"restore {name} prod", user_id=ALICE, channel_id=CHANNEL)
    request = slack_api.wait_for(lambda: [r for r in store.for_channel(CHANNEL) if r.thread_ts], timeout=120)[0]
    assert request.kind is RequestKind.RESTORE and request.plan_hash
    card = message_text(slack_api.thread(CHANNEL, request.thread_ts)[0])
    assert f"now `{GOOD}` (3 applied) → after `{BAD}` (4 applied); applied again: `{BAD}`" in card, card
    assert "• `users`: rows live 20, in the backup 20" in card and "• `projects`: rows live 7, in the backup 10" in card
    assert "*Everything written after" in card and request.plan_hash[:12] in card

    Engine(database_url, str(EXAMPLE_MIGRATIONS), actor="setup").rollback(to=OLDER)  # and again, after the card
    stack_sender.action("rollback_approve", request.id, user_id=BOB, channel_id=CHANNEL, message_ts=request.thread_ts)
    slack_api.wait_for(lambda: store.get(request.id).status is RequestStatus.FAILED, timeout=120)
    done = store.get(request.id)
    thread = "\n".join(message_text(m) for m in slack_api.thread(CHANNEL, request.thread_ts))
    assert done is not None and done.outcome == "preview changed", thread
    assert "the database changed since the preview that was approved" in thread
    with psycopg.connect(database_url) as conn:  # nothing was restored
        assert conn.execute("SELECT count(*) FROM projects").fetchone() == (7,)
    assert pagerduty.events == []
