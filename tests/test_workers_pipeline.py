"""The execute pipeline end to end: a real forking worker, real PostgreSQL and Redis, local Slack and PagerDuty."""

from __future__ import annotations

import json

import psycopg
from psycopg import sql

from tests.fixtures.stack import (
    APPROVER,
    REQUESTER,
    apply_example,
    approved_request,
    decide,
    dry_run_plan,
    enqueue,
    maintenance_hooks,
    pending_request,
    post_root,
    request_ended,
    request_store,
    run_request,
    take_backup,
    thread_text,
    wait_job,
    write_config,
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

    assert run_request(stack_env, slack_api, request.id) == "succeeded", thread_text(slack_api, ts)
    text = thread_text(slack_api, ts)

    # the thread holds the record: backup figures, statements, every check, the outcome
    assert "Backup* finished" in text and "sha256" in text and stack_env["BACKUP_DIR"] in text
    assert "DROP TABLE IF EXISTS new_feature_table" in text
    assert "users" in text and "Verification* finished" in text
    # figures read as sentences, skips are not passes, short steps are timed in ms (walkthrough findings)
    assert f"users: {users_before} rows ({users_before} before)" in text
    assert "migration status: 1 of 1 as expected" in text
    assert "Verification* finished" in text and "— 5 passed, 2 skipped, 0 failed" in text
    assert "as approved: the result is what the approval promised" in text
    assert "{'" not in text and "None" not in text and " 0.0s" not in text and "checks passed" not in text
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


def _history(url: str, request_id: str) -> list[tuple[str, str]]:
    with psycopg.connect(url) as conn:
        return [(r[0], r[1]) for r in conn.execute(
            "SELECT operation, status FROM migration_history WHERE request_id = %s", (request_id,)).fetchall()]


def test_backup_failure_stops_the_pipeline_before_any_change(
    stack_env, database_url, slack_api, pagerduty, start_worker, tmp_path
):
    apply_example(database_url)
    broken = tmp_path / "pg_dump"
    broken.write_text("#!/bin/sh\necho 'pg_dump: error: disk full' >&2\nexit 1\n")
    broken.chmod(0o755)
    start_worker({**stack_env, "PG_DUMP": str(broken)})
    ts, dry = dry_run_plan(stack_env, slack_api, GOOD)
    request = approved_request(stack_env, thread_ts=ts, plan=dry)

    assert run_request(stack_env, slack_api, request.id) == "failed"
    pagerduty.wait_for(lambda: pagerduty.events)
    text = thread_text(slack_api, ts)
    assert "Backup* failed" in text and "Rollback* started" not in text
    assert "new_field" in _columns(database_url, "users")  # nothing was rolled back
    assert _scalar(database_url, "SELECT status FROM schema_migrations WHERE version = %s", BAD) == "completed"
    assert _history(database_url, request.id) == [("backup", "failed")]
    event = pagerduty.events[0]
    assert "Backup failed on prod" in event["payload"]["summary"] and event["dedup_key"].endswith(request.id)


def test_verification_failure_pages_and_leaves_maintenance_on(
    stack_env, database_url, slack_api, pagerduty, start_worker, tmp_path
):
    import http.server
    import threading

    class Down(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b"database error")

        def log_message(self, *args: object) -> None:
            pass

    health = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Down)
    threading.Thread(target=health.serve_forever, daemon=True).start()
    marks = tmp_path / "maintenance.log"
    write_config(stack_env["ROLLBACK_CONFIG"], target_extra=(
        f'health_url = "http://127.0.0.1:{health.server_address[1]}/api/health"\n' + maintenance_hooks(marks)
    ))
    try:
        apply_example(database_url)
        start_worker(stack_env)
        ts, dry = dry_run_plan(stack_env, slack_api, GOOD)
        request = approved_request(stack_env, thread_ts=ts, plan=dry)
        assert run_request(stack_env, slack_api, request.id) == "failed"
        pagerduty.wait_for(lambda: pagerduty.events)
    finally:
        health.shutdown()
    text = thread_text(slack_api, ts)
    assert "health check" in text and "Verification* failed" in text
    assert "Maintenance mode was left ON" in text
    assert marks.read_text().split() == ["on"]  # maintenance off never ran
    assert _history(database_url, request.id).count(("verify", "failed")) == 1
    assert "Verification failed on prod" in pagerduty.events[0]["payload"]["summary"]
    assert [i.status for i in pagerduty.incidents().values()] == ["triggered"]


def test_restored_backup_matches_the_original_row_counts(stack_env, database_url, slack_api, worker):
    apply_example(database_url)
    counts = {t: _scalar(database_url, f"SELECT count(*) FROM {t}") for t in ("users", "projects")}  # noqa: S608
    ts, backup = take_backup(stack_env, slack_api)
    path = backup["path"]
    with psycopg.connect(database_url, autocommit=True) as conn:  # the damage the restore must undo
        conn.execute("DELETE FROM projects")
        conn.execute("DELETE FROM users WHERE id > 5")
    request = approved_request(stack_env, thread_ts=ts, plan={}, kind="restore", backup=path)
    enqueue(stack_env, "workers.jobs.run_request", request_id=request.id)
    assert request_ended(stack_env, slack_api, request.id) == "succeeded", thread_text(slack_api, ts)
    assert {t: _scalar(database_url, f"SELECT count(*) FROM {t}") for t in counts} == counts  # noqa: S608
    text = thread_text(slack_api, ts)
    assert "Restore* finished" in text and "pre-restore" in text
    assert ("restore", "completed") in _history(database_url, request.id)


def test_execute_refuses_when_the_database_changed_since_the_dry_run(stack_env, database_url, slack_api, worker):
    apply_example(database_url)
    ts, dry = dry_run_plan(stack_env, slack_api, GOOD)
    request = approved_request(stack_env, thread_ts=ts, plan=dry)
    from workers.engine import Engine

    Engine(database_url, "migrations", actor="someone-else").rollback(to=GOOD)  # by hand, meanwhile

    assert run_request(stack_env, slack_api, request.id) == "failed"
    text = thread_text(slack_api, ts)
    assert "database changed since the dry run" in text and "Backup* started" not in text
    broadcast = [m["text"] for m in slack_api.thread("C_INCIDENT", ts) if m.get("reply_broadcast")]
    assert len(broadcast) == 1 and "database changed since the dry run" in broadcast[0]
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM migration_history WHERE request_id = %s",
                            (request.id,)).fetchone() == (0,)


def test_execute_refuses_an_approval_older_than_the_start_bound(stack_env, database_url, slack_api, worker):
    import time

    apply_example(database_url)
    ts, dry = dry_run_plan(stack_env, slack_api, GOOD)
    pending = pending_request(stack_env, thread_ts=ts, plan=dry, ttl_seconds=3600, now=time.time() - 600)
    decide(stack_env, pending.id, now=time.time() - 500)  # start_within_seconds is 120
    assert run_request(stack_env, slack_api, pending.id) == "failed"
    assert "longer than the 2m00s allowed" in thread_text(slack_api, ts)
    assert _scalar(database_url, "SELECT status FROM schema_migrations WHERE version = %s", BAD) == "completed"


def test_execute_of_a_rejected_request_changes_nothing(stack_env, database_url, slack_api, worker):
    apply_example(database_url)
    ts, dry = dry_run_plan(stack_env, slack_api, GOOD)
    pending = pending_request(stack_env, thread_ts=ts, plan=dry)
    decide(stack_env, pending.id, "rejected")
    result = wait_job(enqueue(stack_env, "workers.jobs.run_request", request_id=pending.id))
    assert result["refused"] and request_store(stack_env).get(pending.id).status.value == "rejected"
    assert "cannot run: it is rejected" in thread_text(slack_api, ts)
    assert _scalar(database_url, "SELECT status FROM schema_migrations WHERE version = %s", BAD) == "completed"


def test_restore_into_a_scratch_database_leaves_the_target_alone(
    stack_env, database_url, postgres_admin_url, slack_api, worker
):
    apply_example(database_url)
    ts, backup = take_backup(stack_env, slack_api, "scratch-test")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM projects")
    request = approved_request(stack_env, thread_ts=ts, plan={}, kind="restore", backup=backup["path"])
    result = wait_job(enqueue(stack_env, "workers.jobs.run_request", request_id=request.id, into="scratch"))
    assert result and result["ok"], thread_text(slack_api, ts)
    scratch = result["restore"]["database"]
    try:
        scratch_url = psycopg.conninfo.make_conninfo(database_url, dbname=scratch)
        assert _scalar(scratch_url, "SELECT count(*) FROM projects") == 10  # the backup's rows
        assert _scalar(database_url, "SELECT count(*) FROM projects") == 0  # the target untouched
        assert "backup" not in result  # no pre-restore backup: the target is left alone
    finally:
        with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch)))


def test_no_secret_reaches_slack_the_report_or_the_log(stack_env, database_url, slack_api, pagerduty, start_worker):
    password, health_token = "pw-Sup3rSecret-77", "tok-H3alth-Secret"
    write_config(stack_env["ROLLBACK_CONFIG"], target_extra=(
        f'health_url = "http://127.0.0.1:1/health?token={health_token}"\n'
        "\n[targets.staging]\n"
    ))
    env = {**stack_env, "PROD_DATABASE_URL": psycopg.conninfo.make_conninfo(database_url, password=password),
           # a malformed URL (no ':' after the scheme): libpq's error quotes it whole
           "STAGING_DATABASE_URL": f"postgresql//postgres:{password}@127.0.0.1:1/nowhere"}
    worker = start_worker(env)
    apply_example(database_url)
    ts, dry = dry_run_plan(env, slack_api, GOOD)
    request = approved_request(env, thread_ts=ts, plan=dry)
    assert run_request(env, slack_api, request.id) == "failed"  # the health check cannot answer: paged
    pagerduty.wait_for(lambda: pagerduty.events)
    assert wait_job(enqueue(env, "workers.jobs.report", channel="C_INCIDENT", thread_ts=ts, requester=REQUESTER))
    unreachable = wait_job(enqueue(env, "workers.jobs.status", target="staging", channel="C_INCIDENT",
                                   thread_ts=post_root(slack_api, "status staging")))
    assert unreachable and not unreachable["ok"] and "\n" not in unreachable["error"]

    posted = json.dumps([slack_api.calls(m) for m in ("chat.postMessage", "chat.update", "chat.postEphemeral")])
    files = " ".join(f.text() for f in slack_api.files())
    assert "Verification* failed" in posted and "Incident record" in files
    secrets = (password, health_token, env["SLACK_BOT_TOKEN"], env["PAGERDUTY_ROUTING_KEY"], env["DIGITALOCEAN_TOKEN"])
    for where, text in (("slack", posted), ("report", files), ("log", worker.output()),
                        ("page", json.dumps([e["payload"] for e in pagerduty.events]))):
        for secret in secrets:
            assert secret not in text, (where, secret)
