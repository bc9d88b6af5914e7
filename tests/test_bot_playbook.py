"""The playbook end to end, driven only through signed Slack requests into the running bot, with a real
forking worker, real PostgreSQL and Redis, and the Slack and PagerDuty stand-ins."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest
import redis
from psycopg.conninfo import make_conninfo

from core.requests import Request, RequestStatus, RequestStore
from sandbox.signing import SlackRequestSender
from sandbox.slack_api import SlackApiServer, message_text
from tests.fixtures.bot import command_root, thread_text
from tests.fixtures.fakes import WAIT_SECONDS
from tests.fixtures.stack import EXAMPLE_MIGRATIONS, apply_example

CHANNEL = "C_INCIDENT"
ALICE, BOB = "U_ALICE", "U_BOB"
GOOD, BAD = "2025_10_20_120001", "2025_10_20_150000"
PIPELINE_TIMEOUT = 90.0



def replied(slack_api: SlackApiServer, ts: str, needle: str, timeout: float = WAIT_SECONDS) -> str:
    return slack_api.wait_for(lambda: needle in thread_text(slack_api, ts) and thread_text(slack_api, ts), timeout=timeout)


def ask(sender: SlackRequestSender, slack_api: SlackApiServer, store: RequestStore) -> Request:
    """dry-run, then execute: the pending request."""
    dry_ts = command_root(sender, slack_api, f"dry-run {GOOD}")
    slack_api.wait_for(lambda: store.current_plan(CHANNEL, "prod"), timeout=WAIT_SECONDS)
    # the worker saves the plan, then posts it: wait for the post
    assert BAD in replied(slack_api, dry_ts, BAD, timeout=WAIT_SECONDS)
    command_root(sender, slack_api, "execute")
    return slack_api.wait_for(lambda: [r for r in store.for_channel(CHANNEL) if r.thread_ts])[0]


def outcome_broadcast(slack_api: SlackApiServer, request: Request) -> list[dict]:  # type: ignore[type-arg]
    return [m for m in slack_api.messages(CHANNEL) if m.get("reply_broadcast") and m.get("thread_ts") == request.thread_ts]


def approve(sender: SlackRequestSender, request: Request) -> None:
    status, _ = sender.action("rollback_approve", request.id, user_id=BOB, channel_id=CHANNEL,
                              message_ts=request.thread_ts)
    assert status == 200


def schema_status(database_url: str, version: str) -> str:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT status FROM schema_migrations WHERE version = %s", (version,)).fetchone()
    assert row is not None
    return str(row[0])


SECRET_PASSWORD = "s3cret-Pa55-do-not-show"


def test_full_playbook_from_status_to_verified_rollback(
    stack_sender: SlackRequestSender, slack_api: SlackApiServer, stack_env: dict[str, str], database_url: str,
    start_worker: Callable[[dict[str, str]], object], pagerduty: object,
) -> None:
    apply_example(database_url)
    # The worker's DSN carries a password (the local server trusts, so it is accepted and ignored):
    # it must never reach the channel, the thread, an ephemeral or the report.
    start_worker({**stack_env, "PROD_DATABASE_URL": make_conninfo(database_url, password=SECRET_PASSWORD)})
    store = RequestStore(redis.Redis.from_url(stack_env["REDIS_URL"]))

    status_ts = command_root(stack_sender, slack_api, "status")
    assert BAD in replied(slack_api, status_ts, BAD)

    request = ask(stack_sender, slack_api, store)
    approve(stack_sender, request)
    done = slack_api.wait_for(
        lambda: (r := store.get(request.id)) is not None and r.is_final and r, timeout=PIPELINE_TIMEOUT
    )
    # The worker records the outcome first and then announces it: wait for the announcement (broadcast).
    slack_api.wait_for(lambda: outcome_broadcast(slack_api, request), timeout=PIPELINE_TIMEOUT)
    record = thread_text(slack_api, request.thread_ts)
    assert done.status is RequestStatus.SUCCEEDED, record
    assert done.approver == BOB and done.requester == ALICE
    lowered = record.lower()
    for step in ("approved by <@u_bob>", "backup", "rollback", "verif"):
        assert step in lowered, f"{step!r} missing from the thread:\n{record}"
    assert schema_status(database_url, BAD) == "rolled_back"
    # the decided request message still shows the plan's data-loss warnings, with the decision
    root = message_text(slack_api.thread(CHANNEL, request.thread_ts)[0])
    assert "*Approved* by <@U_BOB>" in root and ":warning: DROP TABLE new_feature_table:" in root
    assert "rows would be lost" in root
    broadcasts = [m for m in slack_api.messages(CHANNEL) if m.get("reply_broadcast")]
    assert broadcasts and broadcasts[-1]["thread_ts"] == request.thread_ts  # the outcome reaches the channel

    # the thread becomes the incident record, posted as a file into it
    stack_sender.command("report", user_id=ALICE, channel_id=CHANNEL)
    # (the card's thread also holds the SQL file attached with the card: the report is the incident-*.md)
    report = slack_api.wait_for(lambda: [f for f in slack_api.files() if f.thread_ts == request.thread_ts
                                         and f.filename.startswith("incident-")],
                                timeout=WAIT_SECONDS)[0]
    assert request.id in report.text()

    everything = "\n".join([*(message_text(m) for m in slack_api.messages(CHANNEL)),
                            *(message_text(e) for e in slack_api.ephemerals()),
                            *(f.text() for f in slack_api.files())])
    for secret in (SECRET_PASSWORD, stack_env["PAGERDUTY_ROUTING_KEY"], stack_env["SLACK_BOT_TOKEN"]):
        assert secret not in everything


@pytest.mark.usefixtures("worker")
def test_failed_rollback_pages(
    stack_sender: SlackRequestSender, slack_api: SlackApiServer, stack_env: dict[str, str], database_url: str,
    pagerduty: object,
) -> None:
    apply_example(database_url)
    store = RequestStore(redis.Redis.from_url(stack_env["REDIS_URL"]))
    request = ask(stack_sender, slack_api, store)
    # The application holds a lock on users: the rollback's ALTER TABLE cannot get its lock in time.
    with psycopg.connect(database_url) as blocker:
        blocker.execute("SELECT count(*) FROM users").fetchone()  # AccessShareLock until the transaction ends
        approve(stack_sender, request)
        done = slack_api.wait_for(
            lambda: (r := store.get(request.id)) is not None and r.is_final and r, timeout=PIPELINE_TIMEOUT
        )
        blocker.rollback()
    # The failure is recorded, then paged, then the escalation contacts are called into the thread (last).
    replied(slack_api, request.thread_ts, "needs a human", timeout=PIPELINE_TIMEOUT)
    record = thread_text(slack_api, request.thread_ts)
    assert done.status is RequestStatus.FAILED, record
    incidents = pagerduty.wait_for(lambda: list(pagerduty.incidents().values()))  # type: ignore[attr-defined]
    assert len(incidents) == 1 and "prod" in incidents[0].summary
    assert schema_status(database_url, BAD) == "completed"  # nothing half-done
    assert "<@U_DBA>" in record  # the escalation contacts are called into the thread


@pytest.mark.usefixtures("worker")
def test_approval_of_a_changed_plan_is_refused(
    stack_sender: SlackRequestSender, slack_api: SlackApiServer, stack_env: dict[str, str], database_url: str,
) -> None:
    from workers.engine import Engine

    apply_example(database_url)
    store = RequestStore(redis.Redis.from_url(stack_env["REDIS_URL"]))
    request = ask(stack_sender, slack_api, store)
    # Someone else rolls back by hand between the dry run and the approval: the plan no longer holds.
    Engine(database_url, str(EXAMPLE_MIGRATIONS), actor="someone-else").rollback(to=GOOD)
    approve(stack_sender, request)
    done = slack_api.wait_for(
        lambda: (r := store.get(request.id)) is not None and r.is_final and r, timeout=PIPELINE_TIMEOUT
    )
    record = thread_text(slack_api, request.thread_ts)
    assert done.status is not RequestStatus.SUCCEEDED, record
    assert "dry run" in record.lower() or "dry-run" in record.lower(), record
    assert "Backup* started" not in record  # refused before anything ran
