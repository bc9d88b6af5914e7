"""The execute pipeline end to end: a real forking worker, real PostgreSQL and Redis, local Slack and PagerDuty."""

from __future__ import annotations

import psycopg
import redis

from core.requests import RequestStore
from tests.fixtures.stack import (
    APPROVER,
    REQUESTER,
    apply_example,
    approved_request,
    dry_run_plan,
    enqueue,
    thread_text,
)

GOOD = "2025_10_20_120001"
BAD = "2025_10_20_150000"


def _columns(url: str, table: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s", (table,)
        ).fetchall()
    return {r[0] for r in rows}


def _scalar(url: str, query: str, *params: object) -> object:
    with psycopg.connect(url) as conn:
        row = conn.execute(query, params or None).fetchone()  # type: ignore[arg-type]
    return row[0] if row else None


def test_whole_pipeline_rolls_back_verifies_and_records(stack_env, database_url, slack_api, pagerduty, worker):
    apply_example(database_url)
    users_before = _scalar(database_url, "SELECT count(*) FROM users")
    ts, dry = dry_run_plan(stack_env, slack_api, GOOD)
    assert dry["plan"]["versions"] == [BAD]
    request = approved_request(stack_env, thread_ts=ts, plan=dry)

    enqueue(stack_env, "workers.jobs.execute", request_id=request.id)
    store = RequestStore(redis.Redis.from_url(stack_env["REDIS_URL"]))
    slack_api.wait_for(lambda: store.get(request.id).status.value in ("succeeded", "failed"), timeout=60)
    text = thread_text(slack_api, ts)
    assert store.get(request.id).status.value == "succeeded", text

    # the thread holds the record: backup figures, statements, every check, the outcome
    assert "Backup* finished" in text and "sha256" in text and stack_env["BACKUP_DIR"] in text
    assert "DROP TABLE IF EXISTS new_feature_table" in text
    assert "users" in text and "Verification* finished" in text
    broadcast = [m for m in slack_api.thread("C_INCIDENT", ts) if m.get("reply_broadcast")]
    assert broadcast and "rolled back" in broadcast[-1]["text"]

    # the database is rolled back, data kept
    assert "new_field" not in _columns(database_url, "users")
    assert _scalar(database_url, "SELECT to_regclass('new_feature_table')") is None
    assert _scalar(database_url, "SELECT count(*) FROM users WHERE status = 'migrated'") == 0
    assert _scalar(database_url, "SELECT count(*) FROM users") == users_before
    assert _scalar(database_url, "SELECT status FROM schema_migrations WHERE version = %s", BAD) == "rolled_back"

    # history names who asked and who approved, for the rollback and the backup
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT operation, status, executed_by, approved_by FROM migration_history WHERE request_id = %s",
            (request.id,),
        ).fetchall()
    operations = {(r[0], r[1]) for r in rows}
    assert {("backup", "completed"), ("rollback", "completed"), ("verify", "completed")} <= operations
    assert all(r[2] == REQUESTER and r[3] == APPROVER for r in rows)
    assert not pagerduty.events  # nothing failed, nobody paged
