"""Break-glass parity (issue 18): the whole playbook from the shell alone, when Slack or Redis is down.

The real `run-migrations` console script as a subprocess, against the real PostgreSQL and the sandbox's
DigitalOcean and Supabase stand-ins; no bot and no worker run, and REDIS_URL points at a closed port, so
nothing here can lean on Redis. Each recovery runs the workers' own steps (the guard, a verified backup,
the preview confirmed, verification against it) and is recorded in migration_history with --actor and
--reason."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from sandbox.digitalocean import DEFAULT_DATABASE_ID, DEFAULT_DROPLET_ID, DigitalOceanServer
from sandbox.supabase import DEFAULT_REF, SupabaseServer
from tests.fixtures.stack import (
    EXAMPLE_MIGRATIONS,
    apply_example,
    incident_history,
    maintenance_hooks,
    process_env,
    write_config,
)
from workers.engine import Engine

GOOD, BAD = "2025_10_20_120001", "2025_10_20_150000"
RUN_MIGRATIONS = str(Path(sys.executable).parent / "run-migrations")
SUPABASE_TOKEN = "sbp_breakglass_test_token"


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def shell(tmp_path: Path, database_url: str, digitalocean: DigitalOceanServer) -> dict[str, str]:
    """The operator's shell: target prod in rollback.toml, backups/, the stand-ins' URLs, Redis unreachable."""
    backups = tmp_path / "backups"
    backups.mkdir()
    config = tmp_path / "rollback.toml"
    write_config(config, target_extra=maintenance_hooks(tmp_path / "maintenance"))
    return {"PROD_DATABASE_URL": database_url, "ROLLBACK_CONFIG": str(config), "BACKUP_DIR": str(backups),
            "REDIS_URL": f"redis://127.0.0.1:{closed_port()}/0", "DIGITALOCEAN_TOKEN": "do-test-token",
            "DIGITALOCEAN_API_URL": digitalocean.url, "ROLLBACK_DO_POLL_SECONDS": "0.1",
            "ROLLBACK_PITR_POLL_SECONDS": "0.1"}


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`run-migrations ARGS` as typed in a shell with no terminal on stdin."""
    return subprocess.run([RUN_MIGRATIONS, *args], env=process_env(env), capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=300, check=False)


def ok(env: dict[str, str], *args: str) -> str:
    done = run(env, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def rows(url: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()


def count(url: str, table: str) -> int:
    return int(rows(url, f"SELECT count(*) FROM {table}")[0][0])  # noqa: S608 - a fixed table name of the example


def status_of(url: str, version: str) -> str:
    found = rows(url, "SELECT status FROM schema_migrations WHERE version = %s", (version,))
    return str(found[0][0]) if found else "pending"


def breakglass_rows(url: str) -> list[tuple[Any, ...]]:
    return rows(url, "SELECT status, executed_by, approved_by, details->>'verb', details->>'reason', request_id"
                     " FROM migration_history WHERE operation = 'breakglass' ORDER BY id")


def test_the_main_path_from_the_shell_alone(shell: dict[str, str], database_url: str, tmp_path: Path) -> None:
    apply_example(database_url)
    # Step 1: assess
    assert BAD in ok(shell, "--target", "prod", "--status")
    # Step 2: an emergency backup; a change without a reason is refused in one line, exit 2
    refused = run(shell, "--target", "prod", "--backup")
    assert refused.returncode == 2 and "--reason" in refused.stderr and len(refused.stderr.splitlines()) == 1
    made = json.loads(ok(shell, "--target", "prod", "--backup", "--reason", "before rollback", "--actor", "alice",
                         "--json"))
    assert made["backup"]["verified"] is True and Path(made["backup"]["path"]).exists()
    assert made["backup"]["name"] in ok(shell, "--target", "prod", "--backups")
    # Step 3: maintenance on, through the target's hook
    ok(shell, "--target", "prod", "--maintenance", "on", "--reason", "rollback", "--actor", "alice")
    assert (tmp_path / "maintenance").read_text().split() == ["on"]
    # Step 4: the playbook's Method 1, exactly as it writes it
    dry = ok({**shell, "DATABASE_URL": database_url}, "--rollback", "--to", GOOD, "--dry-run", "--verbose")
    assert "DROP" in dry.upper() and status_of(database_url, BAD) == "completed"
    ok({**shell, "DATABASE_URL": database_url}, "--rollback", "--to", GOOD, "--verbose")
    assert status_of(database_url, BAD) == "rolled_back"
    # Step 5: verify; Step 6: maintenance off
    assert "Verification" in ok(shell, "--target", "prod", "--verify", "--actor", "alice")
    ok(shell, "--target", "prod", "--maintenance", "off", "--reason", "rolled back", "--actor", "alice")
    assert (tmp_path / "maintenance").read_text().split() == ["on", "off"]
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in breakglass_rows(database_url)] == [
        ("completed", "alice", "alice", "backup", "before rollback"),
        ("completed", "alice", "alice", "maintenance", "rollback"),
        ("completed", "alice", "alice", "maintenance", "rolled back"),
    ]
    assert "breakglass" in ok(shell, "--target", "prod", "--history")


def test_method_3c_restores_the_teams_own_gzipped_pg_dump(shell: dict[str, str], database_url: str) -> None:
    apply_example(database_url)
    dump = Path(shell["BACKUP_DIR"]) / "prod-pre-migration-2025-10-20.sql.gz"
    subprocess.run(f"pg_dump '{database_url}' | gzip > '{dump}'", shell=True, check=True)  # noqa: S602 - the playbook's own command
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM projects")
        conn.execute("DELETE FROM users WHERE id > 5")
    args = ("--target", "prod", "--restore", dump.name, "--reason", "data corrupted", "--actor", "alice")

    no_tty = run(shell, *args)  # no terminal to confirm on and no --yes: refused, nothing changed
    assert no_tty.returncode == 2 and "--yes" in no_tty.stderr, no_tty.stderr
    assert "Restore preview" in no_tty.stdout and "users: 5 rows now -> 20 after" in no_tty.stdout
    assert count(database_url, "users") == 5 and breakglass_rows(database_url) == []

    out = ok(shell, *args, "--yes")
    assert count(database_url, "users") == 20 and count(database_url, "projects") == 10
    assert "Verification finished" in out, out
    [backup] = rows(database_url, "SELECT status, executed_by, approved_by FROM migration_history"
                                  " WHERE operation = 'backup' AND request_id LIKE 'BG-%%'")
    assert backup == ("completed", "alice", "alice")  # the verified backup taken before the restore
    [(status, actor, approver, verb, reason, request_id)] = breakglass_rows(database_url)
    assert (status, actor, approver, verb, reason) == ("completed", "alice", "alice", "restore", "data corrupted")
    assert rows(database_url, "SELECT executed_by, approved_by FROM migration_history WHERE operation = 'restore'"
                              " AND request_id = %s", (request_id,)) == [("alice", "alice")]


def test_scenario_4_recovers_lost_rows_and_keeps_newer_ones(shell: dict[str, str], database_url: str) -> None:
    apply_example(database_url)
    made = json.loads(ok(shell, "--target", "prod", "--backup", "--reason", "nightly", "--json"))
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM projects WHERE id IN (SELECT id FROM projects ORDER BY id LIMIT 3)")
        conn.execute("INSERT INTO users (email, full_name, status) VALUES ('new@example.com', 'New', 'active')")
    out = ok(shell, "--target", "prod", "--recover", made["backup"]["name"], "--tables", "projects,users",
             "--reason", "rows deleted", "--actor", "alice", "--yes")
    assert "projects: 3 missing rows to insert" in out and "Recovery finished" in out, out
    assert count(database_url, "projects") == 10 and count(database_url, "users") == 21
    assert [r[3] for r in breakglass_rows(database_url)] == ["backup", "recover"]


def test_no_backup_skips_the_backup_and_history_says_so(shell: dict[str, str], database_url: str) -> None:
    apply_example(database_url)
    made = json.loads(ok(shell, "--target", "prod", "--backup", "--reason", "nightly", "--json"))
    ok(shell, "--target", "prod", "--restore", made["backup"]["name"], "--reason", "test", "--actor", "bob",
       "--yes", "--no-backup")
    assert rows(database_url, "SELECT status, executed_by, details->>'before' FROM migration_history"
                              " WHERE operation = 'backup' AND request_id LIKE 'BG-%%'") == [("skipped", "bob", "restore")]


@pytest.fixture
def supabase() -> Iterator[SupabaseServer]:
    with SupabaseServer(token=SUPABASE_TOKEN, polls_until_healthy=2) as server:
        yield server


def test_method_3a_point_in_time_recovery(shell: dict[str, str], database_url: str, supabase: SupabaseServer) -> None:
    write_config(shell["ROLLBACK_CONFIG"], target_extra=f'supabase_project_ref = "{DEFAULT_REF}"')
    env = {**shell, "SUPABASE_ACCESS_TOKEN": SUPABASE_TOKEN, "SUPABASE_API_URL": supabase.url}
    incident_history(database_url)
    supabase.on_restore = lambda ref, point: Engine(database_url, str(EXAMPLE_MIGRATIONS),
                                                    actor="supabase").rollback(to=GOOD)
    out = ok(env, "--target", "prod", "--pitr", "--before", BAD, "--reason", "bad deploy", "--actor", "alice",
             "--yes")
    assert f"Supabase project {DEFAULT_REF} back to" in out and "Verification finished" in out, out
    assert status_of(database_url, BAD) == "rolled_back"
    assert [r[3] for r in breakglass_rows(database_url)] == ["pitr"]


def test_method_3b_snapshot_restore(shell: dict[str, str], database_url: str,
                                    digitalocean: DigitalOceanServer) -> None:
    write_config(shell["ROLLBACK_CONFIG"], target_extra=f"do_droplet_id = {DEFAULT_DROPLET_ID}")
    incident_history(database_url)
    an_hour_ago = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
    snapshot = digitalocean.add_snapshot(DEFAULT_DROPLET_ID, "app-prod-1-nightly", created_at=an_hour_ago)
    digitalocean.on_droplet_restore = lambda droplet, taken: Engine(
        database_url, str(EXAMPLE_MIGRATIONS), actor="droplet").rollback(to=GOOD)
    assert "app-prod-1-nightly" in ok(shell, "--target", "prod", "--backups")
    out = ok(shell, "--target", "prod", "--snapshot-restore", snapshot, "--reason", "bad deploy", "--yes")
    assert "Snapshot restore finished" in out and "Verification finished" in out, out
    assert [(a.image, a.status) for a in digitalocean.actions.values() if a.type == "restore"] == [
        (int(snapshot), "completed")]
    assert status_of(database_url, BAD) == "rolled_back"


def test_method_3b_cluster_restore(shell: dict[str, str], database_url: str,
                                   digitalocean: DigitalOceanServer) -> None:
    write_config(shell["ROLLBACK_CONFIG"], target_extra=f'do_database_id = "{DEFAULT_DATABASE_ID}"')
    apply_example(database_url)
    out = ok(shell, "--target", "prod", "--cluster-restore", "--reason", "bad deploy", "--yes")
    [created] = [c for c in digitalocean.clusters.values() if c["name"].startswith("prod-restored-")]
    assert created["status"] == "online" and created["connection"]["host"] in out, out
    assert "stand-in-password" not in out
    assert [r[3] for r in breakglass_rows(database_url)] == ["cluster-restore"]


def test_help_is_grouped_by_the_playbooks_steps_and_explains_each_verb(shell: dict[str, str]) -> None:
    text = ok(shell, "--help")
    headings = [line.split(" (")[0] for line in text.splitlines() if line[:1].isupper() and "usage" not in line]
    assert headings[:5] == ["Assess", "Protect", "Roll back", "Recover", "After"]
    assert max(len(line) for line in text.splitlines()) <= 100
    for verb in ("restore", "recover", "pitr", "snapshot-restore", "cluster-restore", "maintenance", "backup"):
        details = ok(shell, "help", verb)
        assert f"--{verb}" in details and "example:" in details
    assert ok(shell, "--help", "pitr") == ok(shell, "help", "pitr")
    assert run(shell, "--help", "nonsense").returncode == 2
