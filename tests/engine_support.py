"""Helpers for the engine and CLI tests: copies of the example migrations, dumps, direct SQL."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_MIGRATIONS = REPO / "migrations"
KNOWN_GOOD = "2025_10_20_120001"
NEW_FEATURE = "2025_10_20_150000"
NEW_FEATURE_DIR = f"{NEW_FEATURE}_add_new_feature"
KNOWN_GOOD_DIR = f"{KNOWN_GOOD}_add_projects_archived_at"
BOOKKEEPING = ("schema_migrations", "migration_history", "migration_history_id_seq")
HISTORY = ("migration_history", "migration_history_id_seq")
# The playbook's Method 2 (manual SQL rollback) of 150000, copied from playbook.md byte for byte.
METHOD_2 = """BEGIN;

-- Example: Drop table that was created
DROP TABLE IF EXISTS new_feature_table;

-- Example: Restore old column
ALTER TABLE users DROP COLUMN new_field;

-- Example: Revert data changes
UPDATE users SET status = 'active' WHERE status = 'migrated';

UPDATE schema_migrations
SET status = 'rolled_back'
WHERE version = '2025_10_20_150000';

INSERT INTO migration_history (version, operation, status, executed_by, executed_at)
VALUES ('2025_10_20_150000', 'rollback', 'completed', 'admin', NOW());

SELECT * FROM schema_migrations WHERE version = '2025_10_20_150000';

COMMIT;
"""
# Upper bound for waiting on another process or session to reach a point; never a measured duration.
WAIT_SECONDS = 30


def copy_migrations(dest: Path, *, without: tuple[str, ...] = ()) -> Path:
    """A private copy of migrations/ (tests edit their copy, never the project's)."""
    target = dest / "migrations"
    shutil.copytree(EXAMPLE_MIGRATIONS, target)
    for name in without:
        shutil.rmtree(target / name)
    return target


def write_migration(root: Path, folder: str, up: str, down: str) -> None:
    """One migration folder (up.sql and down.sql) under `root`, e.g. a schema shape a test needs."""
    path = root / folder
    path.mkdir(parents=True)
    (path / "up.sql").write_text(up)
    (path / "down.sql").write_text(down)


NEWER = "2025_10_21_090000"  # a migration merged after the examples (add_newer_migration)


def add_newer_migration(migrations: Path) -> str:
    """A small migration newer than the examples (an index on users.status); returns its version."""
    folder = migrations / f"{NEWER}_add_users_status_index"
    folder.mkdir()
    (folder / "up.sql").write_text("CREATE INDEX users_status_idx ON users (status);\n")
    (folder / "down.sql").write_text("DROP INDEX users_status_idx;\n")
    return NEWER


def pg_dump(conninfo: str, *, exclude: tuple[str, ...] = ()) -> str:
    """Schema and data, as text (sequence values included)."""
    # The escrow schema is the engine's own bookkeeping, like schema_migrations: never application data.
    cmd = ["pg_dump", "--no-owner", "--no-privileges", "--exclude-schema", "rollback_escrow", "--dbname", conninfo]
    for table in exclude:
        cmd += ["--exclude-table", table]
    text = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    # Newer pg_dump brackets the dump with \restrict <random key> lines: the only part that differs per run.
    return "\n".join(ln for ln in text.splitlines() if not ln.startswith(("\\restrict ", "\\unrestrict ")))


def rows_sorted(dump: str) -> str:
    """The dump with each COPY block's rows sorted: UPDATE moves rows in the heap, which changes dump order."""
    out: list[str] = []
    block: list[str] | None = None
    for line in dump.splitlines():
        if block is not None:
            if line == "\\.":
                out += sorted(block) + [line]
                block = None
            else:
                block.append(line)
        else:
            out.append(line)
            if line.startswith("COPY "):
                block = []
    return "\n".join(out)


def query(conninfo: str, text: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        cur = conn.execute(text.encode() if not params else text, params or None)
        return cur.fetchall() if cur.description else []


def psql(conninfo: str, command: str) -> str:
    """Run SQL exactly as the playbook does: psql "$URL" -c "...". Fails the test on any SQL error."""
    return subprocess.run(["psql", "-X", "-v", "ON_ERROR_STOP=1", conninfo, "-c", command],
                          check=True, capture_output=True, text=True).stdout


def psql_script(conninfo: str, script: str) -> str:
    """psql "$URL" << 'SQL' ... SQL (the playbook's manual rollback form)."""
    return subprocess.run(["psql", "-X", "-v", "ON_ERROR_STOP=1", conninfo], input=script,
                          check=True, capture_output=True, text=True).stdout


def run_cli(args: list[str], env: dict[str, str], *, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """`run-migrations` as an operator or CI runs it: a separate process, exit status and stderr as they are."""
    full_env = dict(os.environ, PYTHONPATH=str(REPO), **env)
    return subprocess.run([sys.executable, "-m", "workers.cli", *args], env=full_env, capture_output=True,
                          text=True, cwd=cwd, timeout=60)


def seed_app_data(conninfo: str) -> None:
    """A few users (active and suspended) and projects, as the app would have before 150000."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO users (email, full_name, status) VALUES"
            " ('ana@example.com', 'Ana', 'active'), ('bo@example.com', 'Bo', 'active'),"
            " ('cy@example.com', 'Cy', 'suspended'), ('di@example.com', 'Di', 'active')"
        )
        conn.execute(
            "INSERT INTO projects (owner_id, name) SELECT id, full_name || ' project' FROM users ORDER BY id"
        )


def statuses(conninfo: str) -> dict[str, str]:
    return dict(query(conninfo, "SELECT version, status FROM schema_migrations"))


def table_exists(conninfo: str, name: str) -> bool:
    return bool(query(conninfo, "SELECT to_regclass(%s) IS NOT NULL", (name,))[0][0])


def make_engine(conninfo: str, migrations_dir: Path, **overrides: Any) -> Any:
    """An Engine with test-sized timeouts: 200 ms lock waits, 2 retries, 10 ms backoff."""
    from workers.engine import Engine

    options: dict[str, Any] = dict(actor="tester", lock_timeout_ms=200, lock_retries=2,
                                   lock_retry_base_seconds=0.01, statement_timeout_ms=10_000)
    options.update(overrides)
    return Engine(conninfo, migrations_dir, **options)


@contextlib.contextmanager
def held_back(migrations: Path, dirname: str = NEW_FEATURE_DIR) -> Iterator[None]:
    """One migration folder kept out of the folder for the block (e.g. before it was written or merged)."""
    held = migrations.parent / "held"
    held.mkdir(exist_ok=True)
    (migrations / dirname).rename(held / dirname)
    try:
        yield
    finally:
        (held / dirname).rename(migrations / dirname)


def apply_examples(conninfo: str, tmp_path: Path, *, seed: bool = False) -> Path:
    """A copy of the example migrations, all applied; with `seed`, app data inserted before 150000 ran."""
    migrations = copy_migrations(tmp_path)
    if seed:
        with held_back(migrations):
            make_engine(conninfo, migrations).apply()
            seed_app_data(conninfo)
    make_engine(conninfo, migrations).apply()
    return migrations


def wait_for_backend(conninfo: str, query_prefix: str) -> int:
    """The pid of the session in this database running a query that starts with `query_prefix`."""
    running = ("SELECT pid FROM pg_stat_activity WHERE starts_with(query, %s) AND state = 'active'"
               " AND datname = current_database() AND pid <> pg_backend_pid()")
    deadline = time.monotonic() + WAIT_SECONDS
    while not (rows := query(conninfo, running, (query_prefix,))) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert rows, f"no session started {query_prefix!r} within {WAIT_SECONDS} s"
    return int(rows[0][0])


def wait_until_gone(conninfo: str, pid: int) -> None:
    """Until the backend `pid` has ended (e.g. the server noticed its client died)."""
    alive = "SELECT count(*) FROM pg_stat_activity WHERE pid = %s"
    deadline = time.monotonic() + WAIT_SECONDS
    while query(conninfo, alive, (pid,)) != [(0,)] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert query(conninfo, alive, (pid,)) == [(0,)], f"backend {pid} still alive after {WAIT_SECONDS} s"
