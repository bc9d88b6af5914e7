"""Scenario 1 in Slack: the half-applied `CREATE INDEX CONCURRENTLY` migration (sandbox/scenarios.py) is
flagged by `status`, a rollback past it is refused with a pointer to repair, and `/rollback repair`
shows its dry run on the card and, once approved, backs up, repairs and records. Signed requests into the
running bot, a real forking worker, real PostgreSQL and Redis."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
import redis

from core.requests import RequestKind, RequestStatus, RequestStore
from sandbox.scenarios import HALF_DONE_INVALID_INDEX, HALF_DONE_VERSION, add_half_done_index
from sandbox.signing import SlackRequestSender
from sandbox.slack_api import SlackApiServer, message_text
from tests.fixtures.bot import command_root, thread_text
from tests.fixtures.stack import EXAMPLE_MIGRATIONS, apply_all, apply_example, write_config
from workers.engine import EngineError

CHANNEL = "C_INCIDENT"
ALICE, BOB = "U_ALICE", "U_BOB"
GOOD = "2025_10_20_120001"


@pytest.fixture
def half_done(stack_env: dict[str, str], tmp_path: Path, database_url: str) -> Path:
    """prod with the example migrations applied and scenario 1's migration failed halfway."""
    migrations = tmp_path / "migrations-scenario1"
    shutil.copytree(EXAMPLE_MIGRATIONS, migrations)
    add_half_done_index(migrations)
    write_config(stack_env["ROLLBACK_CONFIG"], migrations_dir=str(migrations))
    apply_example(database_url)
    with pytest.raises(EngineError):
        apply_all(database_url, str(migrations))
    return migrations


def test_a_half_applied_concurrent_index_migration_is_flagged_refused_and_repaired(
    half_done: Path, stack_sender: SlackRequestSender, slack_api: SlackApiServer, stack_env: dict[str, str],
    database_url: str, start_worker: Callable[[dict[str, str]], object],
) -> None:
    start_worker(stack_env)
    store = RequestStore(redis.Redis.from_url(stack_env["REDIS_URL"]))

    status_ts = command_root(stack_sender, slack_api, "status")
    text = slack_api.wait_for(lambda: "INVALID index" in thread_text(slack_api, status_ts) and thread_text(slack_api, status_ts),
                              timeout=30)
    assert f"INVALID index public.{HALF_DONE_INVALID_INDEX}" in text
    assert f"migration {HALF_DONE_VERSION} failed: `/rollback repair {HALF_DONE_VERSION}`" in text

    dry_ts = command_root(stack_sender, slack_api, f"dry-run {GOOD}")
    refused = slack_api.wait_for(lambda: "repair" in thread_text(slack_api, dry_ts) and thread_text(slack_api, dry_ts),
                                 timeout=30)
    assert "rolling back past it is refused" in refused and f"`/rollback repair {HALF_DONE_VERSION}`" in refused
    assert store.current_plan(CHANNEL, "prod") is None

    stack_sender.command(f"repair {HALF_DONE_VERSION}", user_id=ALICE, channel_id=CHANNEL)
    request = slack_api.wait_for(lambda: [r for r in store.for_channel(CHANNEL) if r.thread_ts], timeout=30)[0]
    assert request.kind is RequestKind.REPAIR and request.subject == HALF_DONE_VERSION
    card = message_text(slack_api.thread(CHANNEL, request.thread_ts)[0])
    assert "skip  ALTER TABLE users DROP COLUMN status_rank" in card
    assert "run   DROP INDEX CONCURRENTLY idx_users_full_name" in card
    assert f"INVALID index {HALF_DONE_INVALID_INDEX} is dropped" in card

    status, _ = stack_sender.action("rollback_approve", request.id, user_id=BOB, channel_id=CHANNEL,
                                    message_ts=request.thread_ts)
    assert status == 200
    done = slack_api.wait_for(lambda: (r := store.get(request.id)) is not None and r.is_final and r, timeout=60)
    assert done.status is RequestStatus.SUCCEEDED, thread_text(slack_api, request.thread_ts)
    # the outcome line is posted after the record is final: wait for it, not for a moment
    record = slack_api.wait_for(lambda: "repaired (rolled_back)" in (t := thread_text(slack_api, request.thread_ts)) and t,
                                timeout=60)
    assert "repaired (rolled_back)" in record
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT status FROM schema_migrations WHERE version = %s",
                            (HALF_DONE_VERSION,)).fetchone() == ("rolled_back",)
        assert conn.execute("SELECT count(*) FROM pg_index WHERE NOT indisvalid").fetchone() == (0,)
        ops = [r[0] for r in conn.execute("SELECT operation FROM migration_history WHERE request_id = %s"
                                          " AND status = 'completed' ORDER BY id", (request.id,))]
    assert ops == ["backup", "repair"]
