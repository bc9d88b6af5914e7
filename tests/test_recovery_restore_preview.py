"""The restore preview on a whole-backup restore's card (issue 10): versions now and in the backup, the
critical tables' rows live and in the backup, what is lost since the backup; bound by hash with the
database's identity and recomputed at start. Real bot, worker, PostgreSQL and Redis."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
import redis

from core.requests import Request, RequestKind, RequestStatus, RequestStore
from sandbox.pagerduty import PagerDutyServer
from sandbox.signing import SlackRequestSender
from sandbox.slack_api import SlackApiServer, message_text
from tests.fixtures.stack import EXAMPLE_MIGRATIONS, apply_example, enqueue, wait_job
from tests.test_restore import cut, dump_by_hand
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


def test_the_playbooks_pg_dump_gzip_file_is_restored_through_an_approved_restore(
    stack_sender: SlackRequestSender, slack_api: SlackApiServer, stack_env: dict[str, str], database_url: str,
    pagerduty: PagerDutyServer,
) -> None:
    apply_example(database_url)
    store = RequestStore(redis.Redis.from_url(stack_env["REDIS_URL"]))
    name = "emergency-pre-rollback-20251020T150000Z.sql.gz"  # the playbook's Step 2, by hand
    dump_by_hand(database_url, Path(stack_env["BACKUP_DIR"]) / name, "plain-gzip")
    with psycopg.connect(database_url) as conn:
        versions = conn.execute("SELECT version, status FROM schema_migrations ORDER BY 1").fetchall()
    Engine(database_url, str(EXAMPLE_MIGRATIONS), actor="setup").rollback(to=GOOD)  # the bad hour
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM projects WHERE id IN (SELECT id FROM projects ORDER BY id LIMIT 3)")
        history_before = conn.execute("SELECT id, operation FROM migration_history ORDER BY id").fetchall()

    stack_sender.command(f"restore {name} prod", user_id=ALICE, channel_id=CHANNEL)
    request = slack_api.wait_for(lambda: [r for r in store.for_channel(CHANNEL) if r.thread_ts], timeout=120)[0]
    card = message_text(slack_api.thread(CHANNEL, request.thread_ts)[0])
    assert f"• File `{name}`: plain SQL, gzipped, made by hand, not ours (read whole: gzip stream intact" in card, card
    assert "`public.projects` 10" in card and f"last migration `{BAD}`" in card
    assert "• `projects`: rows live 7, in the backup 10" in card and f"after `{BAD}` (4 applied)" in card

    done = _approve(stack_sender, slack_api, store, request)
    thread = "\n".join(message_text(m) for m in slack_api.thread(CHANNEL, request.thread_ts))
    assert done.status is RequestStatus.SUCCEEDED, thread
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM projects").fetchone() == (10,)
        assert conn.execute("SELECT version, status FROM schema_migrations ORDER BY 1").fetchall() == versions
        history = conn.execute("SELECT id, operation, details->>'backup', details->>'ours' FROM migration_history"
                               " ORDER BY id").fetchall()
    assert [(i, op) for i, op, _, _ in history[:len(history_before)]] == history_before  # the live history kept
    assert (history_before[-1][0] < history[-1][0]) and ("restore", name, "false") in [h[1:] for h in history]
    assert pagerduty.events == []


@pytest.mark.parametrize("kind", ["plain-gzip", "plain", "custom"])
def test_a_damaged_dump_is_refused_in_one_line_and_nothing_is_requested(
    stack_sender: SlackRequestSender, slack_api: SlackApiServer, stack_env: dict[str, str], database_url: str,
    kind: str,
) -> None:
    apply_example(database_url)
    store = RequestStore(redis.Redis.from_url(stack_env["REDIS_URL"]))
    dump = dump_by_hand(database_url, Path(stack_env["BACKUP_DIR"]) / f"prod-pre-migration-cut.{kind}", kind)
    cut(dump, "end" if kind == "plain" else "tail")
    stack_sender.command(f"restore {dump.name} prod", user_id=ALICE, channel_id=CHANNEL)
    refusal = slack_api.wait_for(lambda: [message_text(e) for e in slack_api.ephemerals(user=ALICE)], timeout=120)[0]
    assert refusal.startswith(f"Refused: backup `{dump.name}` of `prod` cannot be restored: backup "
                              f"{dump.name} is damaged: "), refusal
    assert "\n" not in refusal and store.for_channel(CHANNEL) == [] and slack_api.messages(CHANNEL) == []


def _approve(sender: SlackRequestSender, slack_api: SlackApiServer, store: RequestStore, request: Request) -> Request:
    sender.action("rollback_approve", request.id, user_id=BOB, channel_id=CHANNEL, message_ts=request.thread_ts)
    slack_api.wait_for(lambda: store.get(request.id).status in (RequestStatus.SUCCEEDED, RequestStatus.FAILED),
                       timeout=180)
    done = store.get(request.id)
    assert done is not None
    return done
