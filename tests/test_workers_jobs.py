"""The standalone jobs through a real worker: status, history, backups (with DigitalOcean), verify, bad input,
a DigitalOcean snapshot before the rollback, and a step that runs past its time limit."""

from __future__ import annotations

import psycopg
import redis

from core.requests import RequestStore
from sandbox.digitalocean import DEFAULT_DATABASE_ID, DEFAULT_DROPLET_ID
from tests.fixtures.fakes import WAIT_SECONDS
from tests.fixtures.stack import (
    REQUESTER,
    apply_example,
    approved_request,
    dry_run_plan,
    enqueue,
    open_slow_gate,
    post_root,
    rolled_back_request,
    slow_stack,
    thread_text,
    wait_job,
    write_config,
)

DO_TARGET = f'do_droplet_id = {DEFAULT_DROPLET_ID}\ndo_database_id = "{DEFAULT_DATABASE_ID}"\n'


def _job(env, slack_api, path, **kwargs):
    ts = post_root(slack_api, path)
    return ts, wait_job(enqueue(env, path, channel="C_INCIDENT", thread_ts=ts, **kwargs))


def test_read_only_jobs_answer_in_the_thread(stack_env, database_url, slack_api, digitalocean, start_worker):
    write_config(stack_env["ROLLBACK_CONFIG"], target_extra=DO_TARGET)
    apply_example(database_url)
    start_worker(stack_env)

    ts, status = _job(stack_env, slack_api, "workers.jobs.status", target="prod")
    assert status["ok"] and status["status"]["current_version"] == "2025_10_20_150000"
    text = thread_text(slack_api, ts)
    assert "2025_10_20_150000" in text and "127.0.0.1" in text

    ts, backup = _job(stack_env, slack_api, "workers.jobs.backup", target="prod", requester=REQUESTER, reason="test")
    assert backup["ok"] and backup["backup"]["verified"]

    ts, listed = _job(stack_env, slack_api, "workers.jobs.backups", target="prod")
    assert [b["path"] for b in listed["local"]] == [backup["backup"]["path"]]
    assert listed["managed"]  # the managed database's backups, through pydo
    assert "1 local" in thread_text(slack_api, ts)

    ts, history = _job(stack_env, slack_api, "workers.jobs.history", target="prod")
    assert any(r["operation"] == "backup" and r["executed_by"] == REQUESTER for r in history["history"])
    assert "backup" in thread_text(slack_api, ts)

    ts, verify = _job(stack_env, slack_api, "workers.jobs.verify", target="prod", requester=REQUESTER)
    assert verify["passed"] and "connections" in thread_text(slack_api, ts)
    # no rollback recorded: nothing to compare the counts with, and that is said, as a skip
    text = thread_text(slack_api, ts)
    assert "no earlier count to compare" in text and "— 2 passed, 4 skipped, 0 failed" in text
    assert "migration status: 4 migration(s), none failed, running or drifted" in text


def test_standalone_verify_compares_with_the_counts_before_the_last_rollback(
    stack_env, database_url, slack_api, worker
):
    _, request = rolled_back_request(stack_env, slack_api, database_url, "2025_10_20_120001")
    with psycopg.connect(database_url, autocommit=True) as conn:
        users = conn.execute("SELECT count(*) FROM users").fetchone()[0]
        conn.execute("DELETE FROM projects WHERE id = (SELECT min(id) FROM projects)")
        projects = conn.execute("SELECT count(*) FROM projects").fetchone()[0]

    ts, verify = _job(stack_env, slack_api, "workers.jobs.verify", target="prod", requester=REQUESTER)
    text = thread_text(slack_api, ts)
    assert f"compared with those taken before rollback {request.id} (" in text
    assert verify["verify"]["baseline"]["request_id"] == request.id
    assert f"users: {users} rows ({users} before)" in text
    assert f"projects: {projects} rows ({projects + 1} before, -1)" in text
    assert not verify["passed"] and "checks failed: row count projects" in text

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE schema_migrations SET status = 'failed' WHERE version = '2025_10_01_090500'")
    ts, verify = _job(stack_env, slack_api, "workers.jobs.verify", target="prod", requester=REQUESTER)
    failed = [c for c in verify["verify"]["checks"] if not c["passed"] and not c["skipped"]]
    assert [c["name"] for c in failed] == ["migration status", "row count projects"]
    assert "2025_10_01_090500 failed" in thread_text(slack_api, ts)


def test_unknown_target_is_one_clear_line(stack_env, slack_api, worker):
    ts, result = _job(stack_env, slack_api, "workers.jobs.status", target="nope")
    assert result == {"ok": False, "error": "unknown target 'nope'; known: prod"}
    text = thread_text(slack_api, ts)
    assert "unknown target 'nope'" in text and "Traceback" not in text


def test_digitalocean_snapshot_is_taken_before_the_rollback(
    stack_env, database_url, slack_api, digitalocean, start_worker
):
    write_config(stack_env["ROLLBACK_CONFIG"], target_extra=DO_TARGET)
    apply_example(database_url)
    start_worker(stack_env)
    ts, dry = dry_run_plan(stack_env, slack_api, "2025_10_20_120001")
    request = approved_request(stack_env, thread_ts=ts, plan=dry)
    enqueue(stack_env, "workers.jobs.run_request", request_id=request.id)
    store = RequestStore(redis.Redis.from_url(stack_env["REDIS_URL"]))
    slack_api.wait_for(lambda: store.get(request.id).status.value in ("succeeded", "failed"), timeout=60)
    assert store.get(request.id).status.value == "succeeded", thread_text(slack_api, ts)
    assert [s["name"] for s in digitalocean.snapshots] == [f"prod-pre-rollback-{request.id}"]
    text = thread_text(slack_api, ts)
    assert f"snapshot prod-pre-rollback-{request.id}" in text
    # the snapshot is its own step: one "Backup finished" (pg_dump's), then the Snapshot's lines
    assert text.count("*Backup* finished") == 1 and text.count("*Backup* started") == 1
    assert "*Snapshot* started: DigitalOcean snapshot of droplet" in text and "*Snapshot* finished" in text
    assert text.index("*Backup* finished") < text.index("*Snapshot* started")


def test_a_step_past_its_time_limit_is_stopped_and_paged(
    tmp_path, stack_env, database_url, slack_api, pagerduty, start_worker
):
    slow_stack(tmp_path, stack_env, database_url)
    # Long enough for the backup on a busy machine (two suites at once), far shorter than the rollback's wait.
    start_worker({**stack_env, "ROLLBACK_JOB_TIMEOUT": "10"})
    ts, dry = dry_run_plan(stack_env, slack_api, "2025_10_20_150000")
    request = approved_request(stack_env, thread_ts=ts, plan=dry)
    open_slow_gate(database_url, seconds=60)
    enqueue(stack_env, "workers.jobs.run_request", request_id=request.id)
    store = RequestStore(redis.Redis.from_url(stack_env["REDIS_URL"]))
    slack_api.wait_for(lambda: store.get(request.id).status.value == "failed", timeout=WAIT_SECONDS)
    pagerduty.wait_for(lambda: pagerduty.events)
    text = thread_text(slack_api, ts)
    assert "Rollback* failed" in text and "timeout" in text.lower()
    import psycopg

    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT to_regclass('slow_marker')").fetchone() == ("slow_marker",)
        assert conn.execute("SELECT status FROM migration_history WHERE request_id = %s AND operation = 'rollback'",
                            (request.id,)).fetchall() == [("failed",)]


def test_worker_entry_point_bad_input_is_one_line(stack_env, tmp_path):
    import subprocess
    import sys

    from tests.fixtures.stack import REPO_ROOT, process_env

    def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "workers", *args], cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=60, env=process_env({**stack_env, **env}))

    missing = run(ROLLBACK_CONFIG=str(tmp_path / "nope.toml"))
    assert missing.returncode == 2 and missing.stderr.strip().count("\n") == 0
    assert "nope.toml does not exist" in missing.stderr
    unknown = run("bogus")
    assert unknown.returncode == 2 and "usage: python -m workers confirm-identity" in unknown.stderr
    no_target = run("confirm-identity", "staging")
    assert no_target.returncode == 1 and "unknown target 'staging'" in no_target.stderr
    assert "Traceback" not in missing.stderr + unknown.stderr + no_target.stderr


def test_the_worker_heartbeats_often_enough_for_the_bot_to_notice_its_death(stack_env, worker):
    """`python -m workers` promises its next heartbeat within WORKER_TTL_SECONDS (RQ's default is 420 s),
    which is what lets the bot tell a SIGKILLed worker from a live one within a minute."""
    from rq import Queue, Worker

    from bot.liveness import RQ_HEARTBEAT_MARGIN_SECONDS, listening_workers
    from core import defaults

    conn = redis.Redis.from_url(stack_env["REDIS_URL"])
    queue = Queue(stack_env["ROLLBACK_QUEUE"], connection=conn)
    (registered,) = Worker.all(queue=queue)
    promised_seconds = conn.pttl(registered.key) / 1000 - RQ_HEARTBEAT_MARGIN_SECONDS
    assert 0 < promised_seconds <= defaults.WORKER_TTL_SECONDS
    assert [w.name for w in listening_workers(queue, grace_seconds=0)] == [registered.name]
