"""Step 1 end to end: `/rollback status` names the session in a rollback's way, `terminate` refuses a pid
the assessment did not name and ends a listed one after a second person's approval. Signed requests
into the running bot, a real forking worker, real PostgreSQL and Redis, the Slack stand-in."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import psycopg
import pytest
import redis

from core.requests import Request, RequestKind, RequestStatus, RequestStore
from sandbox.signing import SlackRequestSender
from sandbox.slack_api import SlackApiServer, message_text
from tests.fixtures.bot import command_root, thread_text
from tests.fixtures.stack import apply_example

CHANNEL = "C_INCIDENT"
ALICE, BOB, CAROL = "U_ALICE", "U_BOB", "U_CAROL"


@pytest.fixture
def idle_holder(database_url: str) -> Iterator[psycopg.Connection]:  # type: ignore[type-arg]
    """An application session idle inside a transaction that holds a lock on users (Step 1's classic)."""
    apply_example(database_url)
    conn = psycopg.connect(database_url, application_name="billing-cron")
    conn.execute("SELECT count(*) FROM users WHERE email = 'someone-secret@example.com'")
    yield conn
    conn.close()


def test_status_names_the_blocker_and_terminate_ends_only_a_listed_one(
    stack_sender: SlackRequestSender, slack_api: SlackApiServer, stack_env: dict[str, str], database_url: str,
    start_worker: Callable[[dict[str, str]], object], idle_holder: psycopg.Connection,  # type: ignore[type-arg]
) -> None:
    start_worker(stack_env)
    store = RequestStore(redis.Redis.from_url(stack_env["REDIS_URL"]))
    pid = idle_holder.info.backend_pid

    status_ts = command_root(stack_sender, slack_api, "status")
    text = slack_api.wait_for(lambda: "in a rollback's way" in thread_text(slack_api, status_ts)
                              and thread_text(slack_api, status_ts), timeout=30)
    assert f"pid {pid} billing-cron" in text and "idle in transaction" in text
    assert "someone-secret" not in text  # literals are masked
    assert "health: no health_url configured" in text

    # a pid the assessment did not name: one line, no request
    stack_sender.command("terminate 999999", user_id=ALICE, channel_id=CHANNEL)
    refusal = slack_api.wait_for(lambda: [message_text(e) for e in slack_api.ephemerals(user=ALICE)
                                          if "999999" in message_text(e)], timeout=15)[0]
    assert "not among the sessions" in refusal and "\n" not in refusal
    assert store.for_channel(CHANNEL) == []

    # a listed pid: a request; the second person's approval ends the session, recorded
    stack_sender.command(f"terminate {pid}", user_id=ALICE, channel_id=CHANNEL)
    request = slack_api.wait_for(lambda: [r for r in store.for_channel(CHANNEL) if r.thread_ts], timeout=15)[0]
    assert request.kind is RequestKind.TERMINATE and request.subject == str(pid)
    card = message_text(slack_api.thread(CHANNEL, request.thread_ts)[0])
    assert f"termination of session pid `{pid}`" in card and "billing-cron" in card
    status, _ = stack_sender.action("rollback_approve", request.id, user_id=BOB, channel_id=CHANNEL,
                                    message_ts=request.thread_ts)
    assert status == 200
    done = slack_api.wait_for(lambda: (r := store.get(request.id)) is not None and r.is_final and r, timeout=30)
    assert done.status is RequestStatus.SUCCEEDED, thread_text(slack_api, request.thread_ts)
    assert f"session pid {pid} (billing-cron" in thread_text(slack_api, request.thread_ts)
    with pytest.raises(psycopg.OperationalError):
        idle_holder.execute("SELECT 1")
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT status, executed_by, approved_by, details->>'pid' FROM migration_history"
                           " WHERE operation = 'terminate'").fetchone()
    assert row == ("completed", ALICE, BOB, str(pid))


GOOD = "2025_10_20_120001"


def test_terminate_runs_beside_a_pending_execute_which_then_runs(
    stack_sender: SlackRequestSender, slack_api: SlackApiServer, stack_env: dict[str, str], database_url: str,
    start_worker: Callable[[dict[str, str]], object],
) -> None:
    """The rollback is asked for and waits for its approval when a session starts blocking it: ending that
    session must not be refused as "target busy" (it changes no schema); still two people, still only a
    session the assessment named, one terminate per session at a time."""
    apply_example(database_url)
    start_worker(stack_env)
    store = RequestStore(redis.Redis.from_url(stack_env["REDIS_URL"]))
    command_root(stack_sender, slack_api, f"dry-run {GOOD}")
    slack_api.wait_for(lambda: store.saved_plan(CHANNEL, "prod") is not None, timeout=60)
    stack_sender.command("execute", user_id=ALICE, channel_id=CHANNEL)
    execute = slack_api.wait_for(lambda: [r for r in store.for_channel(CHANNEL)
                                          if r.kind is RequestKind.ROLLBACK and r.thread_ts], timeout=30)[0]
    assert execute.status is RequestStatus.PENDING

    with psycopg.connect(database_url, application_name="billing-cron") as idle_holder:
        idle_holder.execute("SELECT count(*) FROM users")  # idle in a transaction that holds a lock on users
        pid = idle_holder.info.backend_pid
        status_ts = command_root(stack_sender, slack_api, "status")
        slack_api.wait_for(lambda: f"pid {pid} billing-cron" in thread_text(slack_api, status_ts), timeout=30)
        _terminate_beside(stack_sender, slack_api, store, database_url, idle_holder, execute)

    stack_sender.action("rollback_approve", execute.id, user_id=BOB, channel_id=CHANNEL, message_ts=execute.thread_ts)
    rolled = slack_api.wait_for(lambda: (r := store.get(execute.id)) is not None and r.is_final and r, timeout=120)
    assert rolled.status is RequestStatus.SUCCEEDED, thread_text(slack_api, execute.thread_ts)
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT status FROM schema_migrations WHERE version = '2025_10_20_150000'").fetchone()
    assert row == ("rolled_back",)


def _terminate_beside(stack_sender: SlackRequestSender, slack_api: SlackApiServer, store: RequestStore,
                      database_url: str, idle_holder: psycopg.Connection, execute: Request) -> None:  # type: ignore[type-arg]
    """`terminate <pid>` while `execute` waits for its approval: accepted, approved by a second person, done."""
    pid = idle_holder.info.backend_pid
    stack_sender.command(f"terminate {pid}", user_id=ALICE, channel_id=CHANNEL)
    ended = slack_api.wait_for(lambda: [r for r in store.for_channel(CHANNEL)
                                        if r.kind is RequestKind.TERMINATE and r.thread_ts], timeout=30)[0]
    assert ended.subject == str(pid)
    # a second terminate of the same session while the first is open: one line, nothing created
    stack_sender.command(f"terminate {pid}", user_id=CAROL, channel_id=CHANNEL)
    refusal = slack_api.wait_for(lambda: [message_text(e) for e in slack_api.ephemerals(user=CAROL)], timeout=30)[0]
    assert ended.id in refusal and f"Session pid `{pid}`" in refusal and "\n" not in refusal, refusal
    assert len([r for r in store.for_channel(CHANNEL) if r.kind is RequestKind.TERMINATE]) == 1

    # the requester cannot approve their own terminate; the second person can
    stack_sender.action("rollback_approve", ended.id, user_id=ALICE, channel_id=CHANNEL, message_ts=ended.thread_ts)
    stack_sender.action("rollback_approve", ended.id, user_id=BOB, channel_id=CHANNEL, message_ts=ended.thread_ts)
    done = slack_api.wait_for(lambda: (r := store.get(ended.id)) is not None and r.is_final and r, timeout=60)
    assert done.status is RequestStatus.SUCCEEDED and done.approver == BOB, thread_text(slack_api, ended.thread_ts)
    with pytest.raises(psycopg.OperationalError):
        idle_holder.execute("SELECT 1")
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT status, executed_by, approved_by FROM migration_history"
                           " WHERE operation = 'terminate' AND request_id = %s", (ended.id,)).fetchone()
    assert row == ("completed", ALICE, BOB)

    assert store.get(execute.id).status is RequestStatus.PENDING  # type: ignore[union-attr]  # untouched
