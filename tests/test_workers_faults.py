"""Faults with real forking workers: a SIGKILLed work-horse or worker, a database that goes away,
duplicate delivery. The database must stay as before, the record truthful, and a human paged."""

from __future__ import annotations

import os
import signal
import time

import psycopg
import redis

from core.requests import RequestStore
from tests.fixtures.fakes import WAIT_SECONDS
from tests.fixtures.stack import (
    SLOW_VERSION,
    apply_example,
    approved_request,
    dry_run_plan,
    enqueue,
    open_slow_gate,
    slow_stack,
    thread_text,
    wait_job,
)

BAD = "2025_10_20_150000"


def _store(env):
    return RequestStore(redis.Redis.from_url(env["REDIS_URL"]))


def _sleeping_backend(url: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE %s AND state = 'active'"
            " AND datname = current_database() AND pid <> pg_backend_pid()",
            ("%pg_sleep%",),
        ).fetchone()
    return bool(row and row[0])


def _regclass(url: str, name: str) -> object:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()
    return row[0] if row else None


def _migration_status(url: str, version: str) -> str | None:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT status FROM schema_migrations WHERE version = %s", (version,)).fetchone()
    return row[0] if row else None


def _start_slow_rollback(tmp_path, stack_env, database_url, slack_api, start_worker):
    slow_stack(tmp_path, stack_env, database_url)
    worker = start_worker(stack_env)
    ts, dry = dry_run_plan(stack_env, slack_api, BAD)
    request = approved_request(stack_env, thread_ts=ts, plan=dry)
    open_slow_gate(database_url)
    enqueue(stack_env, "workers.jobs.run_request", request_id=request.id)
    slack_api.wait_for(lambda: _sleeping_backend(database_url), timeout=WAIT_SECONDS)  # the rollback is mid-flight
    return worker, ts, request


def _wait_gone(url: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while _sleeping_backend(url):
        if time.monotonic() > deadline:
            with psycopg.connect(url, autocommit=True) as conn:
                rows = conn.execute("SELECT pid, state, application_name, backend_start, query FROM pg_stat_activity"
                                    " WHERE datname = current_database()").fetchall()
            raise AssertionError(f"the killed rollback's backend is still running: {rows}")
        time.sleep(0.1)


def test_sigkilled_work_horse_leaves_database_unchanged_reports_and_pages(
    tmp_path, stack_env, database_url, slack_api, pagerduty, start_worker
):
    worker, ts, request = _start_slow_rollback(tmp_path, stack_env, database_url, slack_api, start_worker)
    os.kill(worker.horse_pid(), signal.SIGKILL)

    store = _store(stack_env)
    slack_api.wait_for(lambda: store.get(request.id).status.value == "failed", timeout=WAIT_SECONDS)
    pagerduty.wait_for(lambda: pagerduty.events, timeout=WAIT_SECONDS)
    _wait_gone(database_url)

    # the transaction never committed: the table the down script dropped is still there
    assert _regclass(database_url, "slow_marker") == "slow_marker"
    assert _migration_status(database_url, SLOW_VERSION) == "completed"
    text = thread_text(slack_api, ts)
    assert "Rollback* failed" in text and "signal 9" in text and "<@U_DBA>" in text
    event = pagerduty.events[0]
    assert event["event_action"] == "trigger" and event["dedup_key"].endswith(request.id)
    assert "prod" in event["payload"]["summary"] and "Rollback" in event["payload"]["summary"]
    assert event["links"] and event["links"][0]["href"]
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT operation, status FROM migration_history WHERE request_id = %s", (request.id,)
        ).fetchall()
    assert ("rollback", "failed") in rows and ("rollback", "completed") not in rows
    # maintenance_off and the outcome never ran after the failed rollback
    assert "Maintenance off" not in text.split("Rollback* failed")[-1]


def test_sigkilled_whole_worker_is_reported_by_another_worker(
    tmp_path, stack_env, database_url, slack_api, pagerduty, start_worker
):
    worker, ts, request = _start_slow_rollback(tmp_path, stack_env, database_url, slack_api, start_worker)
    horse = worker.horse_pid()
    os.kill(worker.pid, signal.SIGKILL)  # the worker first, so nobody is left to notice the horse
    os.kill(horse, signal.SIGKILL)
    start_worker(stack_env)  # a live worker: its watchdog finds the lapsed lease

    store = _store(stack_env)
    slack_api.wait_for(lambda: store.get(request.id).status.value == "failed", timeout=WAIT_SECONDS)
    pagerduty.wait_for(lambda: pagerduty.events, timeout=WAIT_SECONDS)
    _wait_gone(database_url)
    assert _regclass(database_url, "slow_marker") == "slow_marker"
    assert "stopped responding" in thread_text(slack_api, ts)
    assert len([e for e in pagerduty.events if e["event_action"] == "trigger"]) == 1


def test_database_going_away_mid_rollback_fails_clearly(
    tmp_path, stack_env, database_url, slack_api, pagerduty, start_worker
):
    worker, ts, request = _start_slow_rollback(tmp_path, stack_env, database_url, slack_api, start_worker)
    with psycopg.connect(database_url, autocommit=True) as conn:  # the server drops the session
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE %s"
                     " AND state = 'active' AND datname = current_database() AND pid <> pg_backend_pid()",
                     ("%pg_sleep%",))
    store = _store(stack_env)
    slack_api.wait_for(lambda: store.get(request.id).status.value == "failed", timeout=WAIT_SECONDS)
    pagerduty.wait_for(lambda: pagerduty.events, timeout=WAIT_SECONDS)
    assert _regclass(database_url, "slow_marker") == "slow_marker"
    text = thread_text(slack_api, ts)
    assert "Rollback* failed" in text
    assert "Traceback" not in text and "password" not in text.lower()
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT status FROM migration_history WHERE request_id = %s AND operation = 'rollback'",
                            (request.id,)).fetchall()
    assert rows == [("failed",)]


def test_duplicate_delivery_runs_the_rollback_once(stack_env, database_url, slack_api, pagerduty, worker):
    apply_example(database_url)
    ts, dry = dry_run_plan(stack_env, slack_api, "2025_10_20_120001")
    request = approved_request(stack_env, thread_ts=ts, plan=dry)
    first = enqueue(stack_env, "workers.jobs.run_request", request_id=request.id)
    second = enqueue(stack_env, "workers.jobs.run_request", request_id=request.id)
    store = _store(stack_env)
    slack_api.wait_for(lambda: store.get(request.id).status.value in ("succeeded", "failed"), timeout=60)
    assert store.get(request.id).status.value == "succeeded"
    results = [wait_job(first), wait_job(second)]
    assert sorted(bool(r.get("duplicate")) for r in results) == [False, True]

    # a redelivered rollback step (as after a lost acknowledgement) does nothing either
    again = wait_job(enqueue(stack_env, "workers.jobs.pipeline_step", request_id=request.id, step="rollback"))
    assert again["duplicate"] is True
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT count(*) FROM migration_history WHERE request_id = %s AND operation = 'rollback'",
            (request.id,),
        ).fetchone()
    assert rows == (1,)
    assert thread_text(slack_api, ts).count("Rollback* finished") == 1


def test_redis_going_away_mid_step_is_reported_not_hung(
    tmp_path, stack_env, database_url, slack_api, pagerduty, start_worker
):
    from urllib.parse import urlsplit

    from tests.fixtures.stack import TcpProxy

    slow_stack(tmp_path, stack_env, database_url)
    real = urlsplit(stack_env["REDIS_URL"])
    proxy = TcpProxy(real.hostname or "127.0.0.1", real.port or 6379)
    # the worker reaches Redis only through the proxy; the test (and the request store) directly
    env = {**stack_env, "REDIS_URL": f"redis://127.0.0.1:{proxy.port}{real.path}"}
    try:
        start_worker(env)
        ts, dry = dry_run_plan(env, slack_api, BAD)
        request = approved_request(stack_env, thread_ts=ts, plan=dry)
        open_slow_gate(database_url, seconds=3)
        enqueue(env, "workers.jobs.run_request", request_id=request.id)
        slack_api.wait_for(lambda: _sleeping_backend(database_url), timeout=WAIT_SECONDS)
    finally:
        proxy.close()  # Redis goes away while the rollback runs

    text = slack_api.wait_for(lambda: (t := thread_text(slack_api, ts)) and "Rollback* failed" in t and t, timeout=60)
    pagerduty.wait_for(lambda: pagerduty.events, timeout=WAIT_SECONDS)
    assert "Redis is unreachable" in text and "Traceback" not in text
    assert pagerduty.events[0]["dedup_key"].endswith(request.id)


def test_an_idle_worker_stops_on_one_sigterm_within_a_process_managers_grace(tmp_path, stack_env):
    """Heroku and Kubernetes send SIGTERM, then SIGKILL 30 s later. RQ's pub/sub thread polled every 60 s and its
    unsubscribe could wait that poll out, so a warm shutdown of an idle worker could take a minute."""
    from tests.fixtures.stack import WorkerProcess

    for round_ in range(3):  # the hang was a race: a few rounds make it show
        process = WorkerProcess(stack_env, tmp_path / f"worker-{round_}.log").wait_ready()
        try:
            # RQ installs its signal handlers after it registers: wait until it idles in its loop (a SIGTERM
            # before that is the default handler's, not the shutdown under test)
            deadline = time.monotonic() + WAIT_SECONDS
            while (worker := process.rq_worker()) is None or worker.get_state() != "idle":
                assert time.monotonic() < deadline, process.output()
                time.sleep(0.05)
            process.process.terminate()
            assert process.process.wait(timeout=25) == 0, process.log_path.read_text()[-2000:]
        finally:
            process.stop()
