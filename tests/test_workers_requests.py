"""Issue 8 on the workers' side: restore as strong as rollback, plans that do not outlive a change, and
what a failure leaves behind. Real forking workers, PostgreSQL, Redis, local Slack and PagerDuty."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import psycopg

from tests.fixtures.stack import (
    APPROVER,
    CHANNEL,
    REQUESTER,
    apply_example,
    approved_request,
    decide,
    dry_run_plan,
    enqueue,
    maintenance_hooks,
    pending_request,
    post_root,
    request_store,
    run_request,
    take_backup,
    thread_text,
    wait_job,
    write_config,
)

GOOD = "2025_10_20_120001"
UNANSWERED_HEALTH = 'health_url = "http://127.0.0.1:1/health"\n'  # nothing listens there: verification fails


def _worker_with_hooks(env: dict[str, str], database_url: str, start_worker: Callable[[dict[str, str]], object],
                       tmp_path: Path, extra: str = "") -> Path:
    """Maintenance hooks that append on/off to the returned file (and `extra` lines for the target), the
    example migrations applied, and a worker started on that config."""
    marks = tmp_path / "maintenance.log"
    write_config(env["ROLLBACK_CONFIG"], target_extra=extra + maintenance_hooks(marks))
    apply_example(database_url)
    start_worker(env)
    return marks


def _history_rows(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT id, operation, status, executed_by, approved_by, request_id, details FROM migration_history"
            " ORDER BY id").fetchall()


# --- restore: only a backup that exists and verifies --------------------------------------------


def test_check_backup_refuses_a_missing_or_corrupted_backup_and_lists_the_newest(
    stack_env, database_url, slack_api, worker
):
    apply_example(database_url)
    _, first = take_backup(stack_env, slack_api, "first")
    _, second = take_backup(stack_env, slack_api, "second")

    good = wait_job(enqueue(stack_env, "workers.jobs.check_backup", target="prod", backup=first["name"]))
    assert good["ok"] and good["error"] is None and good["backup"]["sha256"] == first["sha256"]
    assert good["newest"] == [second["name"], first["name"]]

    missing = wait_job(enqueue(stack_env, "workers.jobs.check_backup", target="prod", backup="no-such-backup"))
    assert not missing["ok"] and "does not exist" in missing["error"] and missing["backup"] is None
    assert missing["newest"] == [second["name"], first["name"]]

    toc = Path(first["path"]) / "toc.dat"  # a parallel (directory) dump: corrupt one of its files
    toc.write_bytes(b"not an archive")
    corrupted = wait_job(enqueue(stack_env, "workers.jobs.check_backup", target="prod", backup=first["name"]))
    assert not corrupted["ok"] and "corrupted" in corrupted["error"]

    outside = wait_job(enqueue(stack_env, "workers.jobs.check_backup", target="prod", backup="../../etc/passwd"))
    assert not outside["ok"] and "\n" not in outside["error"]


def test_a_restore_of_a_missing_backup_is_refused_at_the_start_without_a_page(
    stack_env, database_url, slack_api, pagerduty, worker
):
    apply_example(database_url)
    ts = post_root(slack_api, "restore")
    request = approved_request(stack_env, thread_ts=ts, plan={}, kind="restore", backup="no-such-backup")
    result = wait_job(enqueue(stack_env, "workers.jobs.run_request", request_id=request.id))
    assert result["refused"], result
    text = thread_text(slack_api, ts)
    assert "does not exist" in text and "Backup* started" not in text  # no fresh backup, nothing changed
    assert request_store(stack_env).get(request.id).status.value == "failed"
    assert not pagerduty.events


def test_a_restore_job_for_a_rejected_request_leaves_it_rejected_and_pages_nobody(
    stack_env, database_url, slack_api, pagerduty, worker
):
    apply_example(database_url)
    _, backup = take_backup(stack_env, slack_api)
    ts = post_root(slack_api, "restore")
    pending = pending_request(stack_env, thread_ts=ts, plan={}, kind="restore", backup=backup["path"])
    decide(stack_env, pending.id, "rejected")
    result = wait_job(enqueue(stack_env, "workers.jobs.run_request", request_id=pending.id))
    assert result and result["refused"]
    assert request_store(stack_env).get(pending.id).status.value == "rejected"
    assert "cannot run: it is rejected" in thread_text(slack_api, ts)
    assert not pagerduty.events


# --- restore: a pipeline like execute ------------------------------------------------------------


def test_restore_runs_backup_maintenance_restore_verify_maintenance_off_and_keeps_history(
    stack_env, database_url, slack_api, pagerduty, start_worker, tmp_path
):
    marks = _worker_with_hooks(stack_env, database_url, start_worker, tmp_path)
    _, backup = take_backup(stack_env, slack_api)
    ts, _dry = dry_run_plan(stack_env, slack_api, GOOD)  # a later record in history, and a current plan
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM projects")
    before = _history_rows(database_url)
    assert before, "the backup is recorded"

    request = approved_request(stack_env, thread_ts=ts, plan={}, kind="restore", backup=backup["name"])
    result = wait_job(enqueue(stack_env, "workers.jobs.run_request", request_id=request.id))
    text = thread_text(slack_api, ts)
    assert result and result["ok"], text
    assert request_store(stack_env).get(request.id).status.value == "succeeded", text

    # the thread names exactly the steps that run, and each of them ran (verification too)
    assert "Backup → Maintenance on → Restore → Verification → Maintenance off" in text
    for step in ("Backup", "Maintenance on", "Restore", "Verification", "Maintenance off"):
        assert f"{step}* finished" in text, (step, text)
    assert "users: 20 rows (20 before)" in text
    assert marks.read_text().split() == ["on", "off"]
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM projects").fetchone() == (10,)

    # the history written before the restore survives it, and the restore itself is recorded
    after = _history_rows(database_url)
    assert [row[:6] for row in after[:len(before)]] == [row[:6] for row in before]
    restore = [row for row in after if row[1] == "restore"]
    assert len(restore) == 1
    _id, _op, status, executed_by, approved_by, request_id, details = restore[0]
    assert (status, executed_by, approved_by, request_id) == ("completed", REQUESTER, APPROVER, request.id)
    assert details["backup"] == backup["name"] and "pre-restore" in details["pre_restore_backup"]
    assert ("verify", "completed") in {(row[1], row[2]) for row in after if row[5] == request.id}

    # a restore changes the target: no earlier plan holds
    assert request_store(stack_env).current_plan(CHANNEL, "prod") is None
    assert not pagerduty.events

    # in maintenance, the restore ran in parallel and switched the new database in (workers/postgres/swap.py)
    assert details["method"] == "swap" and "pg_restore -j" in text, text
    replaced = details["replaced_database"]
    assert f"kept as `{replaced}`" in text
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("DROP DATABASE {} WITH (FORCE)").format(psycopg.sql.Identifier(replaced)))


def test_a_scratch_restore_runs_pg_restore_with_parallel_jobs(
    stack_env, database_url, postgres_admin_url, slack_api, start_worker, tmp_path
):
    argv_log = tmp_path / "pg_restore.argv"
    wrapper = tmp_path / "pg_restore"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {argv_log}\nexec pg_restore "$@"\n')
    wrapper.chmod(0o755)
    apply_example(database_url)
    start_worker({**stack_env, "PG_RESTORE": str(wrapper), "ROLLBACK_RESTORE_JOBS": "2"})
    _, backup = take_backup(stack_env, slack_api)
    ts = post_root(slack_api, "restore")
    request = approved_request(stack_env, thread_ts=ts, plan={}, kind="restore", backup=backup["name"])
    result = wait_job(enqueue(stack_env, "workers.jobs.run_request", request_id=request.id, into="scratch"))
    assert result and result["ok"], thread_text(slack_api, ts)
    scratch = result["restore"]["database"]
    try:
        loads = [line for line in argv_log.read_text().splitlines() if "--dbname=" in line]
        assert loads and all("--jobs=2" in line for line in loads)
    finally:
        with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                psycopg.sql.Identifier(scratch)))


# --- plans do not outlive a change ----------------------------------------------------------------


def test_a_rollback_and_a_failed_dry_run_clear_the_targets_plans(stack_env, database_url, slack_api, worker):
    apply_example(database_url)
    ts, dry = dry_run_plan(stack_env, slack_api, GOOD)
    store = request_store(stack_env)
    assert store.current_plan(CHANNEL, "prod") is not None
    request = approved_request(stack_env, thread_ts=ts, plan=dry)
    assert run_request(stack_env, slack_api, request.id) == "succeeded"
    assert store.current_plan(CHANNEL, "prod") is None

    store.save_plan(CHANNEL, "prod", dry)  # a plan from before; then a dry run that fails
    failed = wait_job(enqueue(stack_env, "workers.jobs.dry_run", target="prod", version="2099_01_01_000000",
                              channel=CHANNEL, thread_ts=ts, requester=REQUESTER))
    assert failed and not failed["ok"]
    assert store.current_plan(CHANNEL, "prod") is None


# --- after a failure -----------------------------------------------------------------------------


def test_a_failure_that_leaves_maintenance_on_says_how_to_turn_it_off_and_the_job_does(
    stack_env, database_url, slack_api, pagerduty, start_worker, tmp_path
):
    marks = _worker_with_hooks(stack_env, database_url, start_worker, tmp_path, extra=UNANSWERED_HEALTH)
    ts, dry = dry_run_plan(stack_env, slack_api, GOOD)
    request = approved_request(stack_env, thread_ts=ts, plan=dry)
    assert run_request(stack_env, slack_api, request.id) == "failed"  # the health check cannot answer
    slack_api.wait_for(lambda: "left ON" in thread_text(slack_api, ts), timeout=30)
    text = thread_text(slack_api, ts)
    assert "Maintenance mode was left ON" in text and "`/rollback maintenance off prod`" in text
    assert marks.read_text().split() == ["on"]

    store = request_store(stack_env)
    store.save_plan(CHANNEL, "prod", dry)
    result = wait_job(enqueue(stack_env, "workers.jobs.maintenance", target="prod", state="off", channel=CHANNEL,
                              thread_ts=ts, requester=APPROVER))
    assert result and result["ok"], thread_text(slack_api, ts)
    assert marks.read_text().split() == ["on", "off"]
    assert "Maintenance off* finished" in thread_text(slack_api, ts)
    rows = [row for row in _history_rows(database_url) if row[1] == "maintenance_off" and row[5] is None]
    assert len(rows) == 1 and rows[0][2:4] == ("completed", APPROVER)
    assert store.current_plan(CHANNEL, "prod") is None


def test_slack_never_gets_command_line_only_advice(stack_env, database_url, slack_api, worker):
    apply_example(database_url)
    ts = post_root(slack_api, "dry-run")
    result = wait_job(enqueue(stack_env, "workers.jobs.dry_run", target="prod", version="2020_01_01_000000",
                              channel=CHANNEL, thread_ts=ts, requester=REQUESTER))
    assert result and not result["ok"]
    posted = json.dumps(slack_api.calls("chat.postMessage"))
    assert "never been applied" in posted and "/rollback status" in posted
    for flag in ("--status", "--to", "--lock-timeout"):
        assert flag not in posted and flag not in result["error"]


def test_a_restore_that_fails_verification_names_the_step_leaves_maintenance_on_and_pages(
    stack_env, database_url, slack_api, pagerduty, start_worker, tmp_path
):
    marks = _worker_with_hooks(stack_env, database_url, start_worker, tmp_path, extra=UNANSWERED_HEALTH)
    _, backup = take_backup(stack_env, slack_api)
    ts = post_root(slack_api, "restore")
    request = approved_request(stack_env, thread_ts=ts, plan={}, kind="restore", backup=backup["name"])
    assert wait_job(enqueue(stack_env, "workers.jobs.run_request", request_id=request.id)) is None  # the job failed
    slack_api.wait_for(lambda: "left ON" in thread_text(slack_api, ts), timeout=30)
    text = thread_text(slack_api, ts)
    assert "Restore* finished" in text and "Verification* failed" in text and "Maintenance off* started" not in text
    assert "`/rollback maintenance off prod`" in text
    assert marks.read_text().split() == ["on"]
    assert request_store(stack_env).get(request.id).outcome.startswith("Verification failed")
    pagerduty.wait_for(lambda: pagerduty.events)
    assert "Verification failed on prod" in pagerduty.events[0]["payload"]["summary"]
