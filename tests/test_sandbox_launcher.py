"""The launcher's pieces that need no browser: its config, its Slack switch, its example database."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from rq import Queue
from rq.job import Job

from core.config import load_settings
from core.requests import RequestStore
from sandbox import messages
from sandbox.__main__ import _real_slack_configured
from sandbox.launcher import (
    KNOWN_GOOD_VERSION,
    MIGRATIONS_DIR,
    SANDBOX_DATABASE,
    SANDBOX_TARGET,
    People,
    SandboxError,
    _claim_database,
    _database_url,
    create_example_database,
    start_sandbox,
    write_config,
)
from sandbox.own_keys import delete_queue, forget_sandbox_requests
from sandbox.people import INCIDENT_CHANNEL
from tests.fixtures.stack import BurstWorker


def test_sandbox_config_is_valid_settings(tmp_path: Path) -> None:
    path = tmp_path / "rollback.toml"
    write_config(path, backup_dir=tmp_path / "backups", people=People(), health_url="http://127.0.0.1:1/h",
                 maintenance_url="http://127.0.0.1:1/m")
    settings = load_settings(env={"PROD_DATABASE_URL": "postgresql://x@127.0.0.1/db"}, path=path)
    prod = settings.target("prod")
    assert prod.critical_tables == ("users", "projects")
    assert Path(prod.migrations_dir) == MIGRATIONS_DIR
    assert prod.maintenance_on is not None and prod.maintenance_on.url == "http://127.0.0.1:1/m/on"
    assert settings.policy.approvers == ("U_BOB",) and settings.policy.channels == ("C_INCIDENT",)
    assert settings.backup_dir == str(tmp_path / "backups")


def test_real_slack_people_come_from_the_environment(tmp_path: Path) -> None:
    people = People.from_env({"SANDBOX_APPROVERS": "U1, U2", "SANDBOX_CHANNELS": "C9"})
    path = tmp_path / "rollback.toml"
    write_config(path, backup_dir=tmp_path, people=people, health_url=None, maintenance_url=None)
    settings = load_settings(env={}, path=path)
    assert settings.policy.approvers == ("U1", "U2") and settings.policy.channels == ("C9",)
    assert settings.policy.approver_group is None and settings.target("prod").health_url is None


def test_slack_credentials_without_an_api_override_mean_real_slack() -> None:
    assert _real_slack_configured({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s"})
    assert _real_slack_configured({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1"})
    assert not _real_slack_configured({"SLACK_BOT_TOKEN": "xoxb-1"})
    assert not _real_slack_configured({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s",
                                       "SLACK_API_URL": "http://127.0.0.1:1/api/"})
    assert not _real_slack_configured({})


def test_example_database_holds_seed_data_and_both_migrations(postgres_admin_url: str, make_database: Any) -> None:
    name = psycopg.conninfo.conninfo_to_dict(make_database())["dbname"]
    url = create_example_database(postgres_admin_url, str(name))  # replaces the empty one, dropped at the end
    with psycopg.connect(url) as conn:
        statuses: dict[str, int] = dict(conn.execute("SELECT status, count(*) FROM users GROUP BY status").fetchall())
        assert set(statuses) == {"migrated", "suspended"} and statuses["migrated"] >= 200
        assert conn.execute("SELECT count(*) FROM new_feature_table").fetchone() == (statuses["migrated"],)
        assert conn.execute("SELECT count(*) FROM projects").fetchone()[0] > 100  # type: ignore[index]
        versions = conn.execute("SELECT version, status FROM schema_migrations ORDER BY version").fetchall()
    assert [v for v, s in versions if s == "completed"][-2:] == [KNOWN_GOOD_VERSION, "2025_10_20_150000"]


def test_own_keys_are_forgotten_and_nothing_else(redis_conn: redis.Redis) -> None:
    """A previous run's request on a shared Redis must not hold the target; others' keys stay."""
    store = RequestStore(redis_conn)
    common: dict[str, Any] = {"requester": "U_ALICE", "plan_hash": "h", "to_version": KNOWN_GOOD_VERSION,
                              "versions": ["2025_10_20_150000"], "summary": "s", "ttl_seconds": 900}
    stale = store.create(kind="rollback", target=SANDBOX_TARGET, channel=INCIDENT_CHANNEL, thread_ts="1.0", **common)
    assert store.claim(stale.id, "backup")
    store.save_plan(INCIDENT_CHANNEL, SANDBOX_TARGET, {"hash": "h"})
    redis_conn.set(f"rollback:identity:{SANDBOX_TARGET}", json.dumps({"dbname": SANDBOX_DATABASE}))
    other = store.create(kind="rollback", target="staging", channel="C0REAL", thread_ts="2.0", **common)
    store.save_plan("C0REAL", "staging", {"hash": "h"})
    redis_conn.set("rollback:identity:staging", json.dumps({"dbname": "app"}))
    redis_conn.set("unrelated", "1")

    assert forget_sandbox_requests(redis_conn, channel=INCIDENT_CHANNEL, target=SANDBOX_TARGET,
                                   database_name=SANDBOX_DATABASE) == 1

    assert store.get(stale.id) is None and store.active_for_target(SANDBOX_TARGET) is None
    assert store.claim(stale.id, "backup")  # its claim went with it
    assert store.current_plan(INCIDENT_CHANNEL, SANDBOX_TARGET) is None
    assert redis_conn.get(f"rollback:identity:{SANDBOX_TARGET}") is None
    assert store.active_for_target("staging") == store.get(other.id) is not None
    assert store.current_plan("C0REAL", "staging") == {"hash": "h"}
    assert redis_conn.get("rollback:identity:staging") is not None and redis_conn.get("unrelated") == b"1"


def test_identity_of_another_database_under_the_target_name_is_kept(redis_conn: redis.Redis) -> None:
    redis_conn.set(f"rollback:identity:{SANDBOX_TARGET}", json.dumps({"dbname": "the_real_prod"}))
    forget_sandbox_requests(redis_conn, channel=INCIDENT_CHANNEL, target=SANDBOX_TARGET, database_name=SANDBOX_DATABASE)
    assert redis_conn.get(f"rollback:identity:{SANDBOX_TARGET}") is not None


def test_a_busy_port_or_a_running_sandbox_stops_a_start_before_it_touches_anything(
        postgres_admin_url: str, redis_url: str, redis_conn: redis.Redis, make_database: Any) -> None:
    name = str(psycopg.conninfo.conninfo_to_dict(make_database())["dbname"])  # stands for a running sandbox's
    redis_conn.set("someone:else", "1")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(SandboxError, match=rf"port {port} .*--port"):
            start_sandbox(database_url=postgres_admin_url, redis_url=redis_url, page_port=port, database_name=name)
        with pytest.raises(SandboxError, match=rf"port {port} is in use; choose another with --bot-port"):
            start_sandbox(database_url=postgres_admin_url, redis_url=redis_url, bot_port=port, database_name=name)
    running = _claim_database(postgres_admin_url, name)
    try:
        with pytest.raises(SandboxError, match=rf"another sandbox is running with the database {name}"):
            start_sandbox(database_url=postgres_admin_url, redis_url=redis_url, database_name=name)
    finally:
        running.close()
    with psycopg.connect(_database_url(postgres_admin_url, name)) as conn:  # still there, untouched
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert redis_conn.get("someone:else") == b"1"


def test_the_runs_queue_goes_with_its_jobs_and_registries(redis_conn: redis.Redis) -> None:
    ours, theirs = Queue("sandbox-test-run", connection=redis_conn), Queue("their-queue", connection=redis_conn)
    done = ours.enqueue(len, "abc")
    waiting = ours.enqueue(len, "abcd")
    BurstWorker([ours], connection=redis_conn).work(burst=True, max_jobs=1)
    assert done.get_status(refresh=True) == "finished" and done.id in ours.finished_job_registry.get_job_ids()
    other = theirs.enqueue(len, "x")

    delete_queue(redis_conn, "sandbox-test-run")

    left = [k.decode() for k in redis_conn.scan_iter()]
    assert not [k for k in left if "sandbox-test-run" in k or done.id in k or waiting.id in k], left
    assert Job.fetch(other.id, connection=redis_conn).id == other.id and theirs.count == 1


def test_python_m_sandbox_on_a_busy_port_says_so_in_one_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DATABASE_URL", "REDIS_URL"))}
        done = subprocess.run([sys.executable, "-m", "sandbox", "--port", str(port)], capture_output=True, text=True,
                              env=env, cwd=MIGRATIONS_DIR.parent, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip() == f"sandbox: could not start: {messages.page_port_busy(port, 'Address already in use')}"
    assert "Traceback" not in done.stdout + done.stderr
