"""The wrong-database guard (playbook scenario 3), through real workers and the confirm-identity command."""

from __future__ import annotations

import subprocess
import sys

import psycopg
import redis

from core.requests import RequestStore
from tests.fixtures.fakes import WAIT_SECONDS
from tests.fixtures.stack import (
    REPO_ROOT,
    REQUESTER,
    apply_example,
    approved_request,
    dry_run_plan,
    enqueue,
    post_root,
    process_env,
    thread_text,
    wait_job,
)


def _backup(env, slack_api):
    ts = post_root(slack_api, "backup")
    job = enqueue(env, "workers.jobs.backup", target="prod", channel="C_INCIDENT", thread_ts=ts,
                  requester=REQUESTER, reason="identity-test")
    return ts, wait_job(job)


def test_a_different_database_behind_the_target_is_refused_until_confirmed(
    stack_env, database_url, make_database, slack_api, pagerduty, start_worker
):
    apply_example(database_url)
    first = start_worker(stack_env)
    ts, result = _backup(stack_env, slack_api)
    assert result and result["ok"]  # first use: identity recorded
    first.stop()

    other = make_database()  # PROD_DATABASE_URL now points somewhere else
    apply_example(other)
    moved = {**stack_env, "PROD_DATABASE_URL": other}
    start_worker(moved)

    ts, result = _backup(moved, slack_api)
    assert result is None  # refused: the job failed
    text = thread_text(slack_api, ts)
    assert "wrong database?" in text and "confirm-identity prod" in text

    ts, dry = dry_run_plan(moved, slack_api, "2025_10_20_120001")
    request = approved_request(moved, thread_ts=ts, plan=dry)
    enqueue(moved, "workers.jobs.run_request", request_id=request.id)
    store = RequestStore(redis.Redis.from_url(moved["REDIS_URL"]))
    slack_api.wait_for(lambda: store.get(request.id).status.value == "failed", timeout=WAIT_SECONDS)
    assert "wrong database?" in thread_text(slack_api, ts)
    with psycopg.connect(other) as conn:  # nothing was rolled back on the other database
        row = conn.execute("SELECT status FROM schema_migrations WHERE version = '2025_10_20_150000'").fetchone()
    assert row == ("completed",)

    # status says which database it reached, without the password, and flags the mismatch
    ts = post_root(slack_api, "status")
    status = wait_job(enqueue(moved, "workers.jobs.status", target="prod", channel="C_INCIDENT", thread_ts=ts))
    assert status["identity"]["state"] == "mismatch"
    assert other.split("dbname=")[1].split()[0] in thread_text(slack_api, ts)

    confirm = subprocess.run([sys.executable, "-m", "workers", "confirm-identity", "prod", "--by", "carol"],
                             cwd=REPO_ROOT, env=process_env(moved), capture_output=True, text=True, timeout=60)
    assert confirm.returncode == 0, confirm.stderr
    assert "confirmed by carol" in confirm.stdout
    ts, result = _backup(moved, slack_api)
    assert result and result["ok"]
    with psycopg.connect(other) as conn:
        rows = conn.execute("SELECT executed_by FROM migration_history WHERE operation = 'identity_confirm'").fetchall()
    assert rows == [("carol",)]


def test_a_database_registered_as_another_target_is_refused(
    stack_env, database_url, slack_api, pagerduty, start_worker
):
    apply_example(database_url)
    first = start_worker(stack_env)
    _, result = _backup(stack_env, slack_api)
    assert result and result["ok"]
    first.stop()
    redis.Redis.from_url(stack_env["REDIS_URL"]).delete("rollback:identity:prod")  # Redis lost its record

    # the same database reached as "staging": the database itself says it is prod
    env = {**stack_env, "STAGING_DATABASE_URL": database_url}
    start_worker(env)
    ts = post_root(slack_api, "backup staging")
    assert wait_job(enqueue(env, "workers.jobs.backup", target="staging", channel="C_INCIDENT", thread_ts=ts,
                            requester=REQUESTER, reason="x")) is None
    assert "registered as target prod" in thread_text(slack_api, ts)
