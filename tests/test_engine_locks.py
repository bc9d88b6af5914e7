"""One runner per database, bounded lock waits with retries, and a killed runner changing nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.engine_support import (
    KNOWN_GOOD,
    NEW_FEATURE,
    NEW_FEATURE_DIR,
    REPO,
    copy_migrations,
    make_engine,
    pg_dump,
    query,
    statuses,
    table_exists,
)
from workers.engine import LockBusy, LockTimeout, MigrationFailed
from workers.engine.locks import MIGRATION_LOCK_KEY, BlockerWatch


@pytest.fixture
def applied(database_url: str, tmp_path: Path) -> tuple[str, Path]:
    migrations = copy_migrations(tmp_path)
    make_engine(database_url, migrations).apply()
    return database_url, migrations


@pytest.fixture
def other_session(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True, application_name="the app") as conn:
        yield conn


def test_a_second_concurrent_run_is_refused_at_once(applied: tuple[str, Path], other_session: psycopg.Connection[Any]) -> None:
    url, migrations = applied
    other_session.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
    pid = other_session.info.backend_pid
    before = pg_dump(url)
    engine = make_engine(url, migrations)
    for call in (lambda: engine.rollback(KNOWN_GOOD), lambda: engine.dry_run_rollback(KNOWN_GOOD), engine.apply):
        with pytest.raises(LockBusy, match=f"another migration run holds the migration lock .*pid {pid}"):
            call()
    assert pg_dump(url) == before
    assert engine.status().lock_holder["pid"] == pid  # status still works and says who holds it
    other_session.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    assert engine.rollback(KNOWN_GOOD).versions == [NEW_FEATURE]


def test_a_table_lock_held_elsewhere_times_out_cleanly_after_retries(applied: tuple[str, Path],
                                                                      other_session: psycopg.Connection[Any]) -> None:
    url, migrations = applied
    other_session.execute("BEGIN")
    other_session.execute("LOCK TABLE users IN ACCESS SHARE MODE")
    blocker = other_session.info.backend_pid
    before = pg_dump(url, exclude=("migration_history", "migration_history_id_seq"))
    lines: list[str] = []

    with pytest.raises(LockTimeout) as caught:
        make_engine(url, migrations, lock_timeout_ms=200, lock_retries=2, log=lines.append).rollback(KNOWN_GOOD)

    error = caught.value
    assert error.attempts == 3
    assert error.blocking_pids == [blocker]
    assert f"blocked by pid {blocker}" in str(error) and "application 'the app'" in str(error)
    assert "gave up after 3 attempts" in str(error) and "\n" not in str(error)
    retries = [ln for ln in lines if ln.startswith("lock wait: attempt ")]
    assert [ln.split(" timed out")[0] for ln in retries] == ["lock wait: attempt 1/3", "lock wait: attempt 2/3"]
    assert all(f"pid {blocker}" in ln for ln in retries)
    other_session.execute("ROLLBACK")
    assert pg_dump(url, exclude=("migration_history", "migration_history_id_seq")) == before
    assert query(url, "SELECT status FROM migration_history WHERE operation = 'rollback'") == [("failed",)]


def test_rollback_succeeds_when_the_blocker_lets_go_during_backoff(applied: tuple[str, Path],
                                                                   other_session: psycopg.Connection[Any]) -> None:
    url, migrations = applied
    other_session.execute("BEGIN")
    other_session.execute("LOCK TABLE users IN ACCESS SHARE MODE")
    lines: list[str] = []

    def log(line: str) -> None:
        lines.append(line)
        if line.startswith("lock wait: attempt 1/"):
            other_session.execute("COMMIT")  # the application finishes its transaction

    report = make_engine(url, migrations, lock_retries=3, log=log).rollback(KNOWN_GOOD)
    assert report.versions == [NEW_FEATURE]
    assert len([ln for ln in lines if ln.startswith("lock wait: attempt ")]) == 1
    assert statuses(url)[NEW_FEATURE] == "rolled_back"
    assert query(url, "SELECT count(*) FROM migration_history WHERE operation = 'rollback'") == [(1,)]


def test_a_killed_runner_leaves_the_database_as_it_was(applied: tuple[str, Path]) -> None:
    url, migrations = applied
    down = migrations / NEW_FEATURE_DIR / "down.sql"
    down.write_text("DROP TABLE new_feature_table;\nSELECT pg_sleep(60);\n"
                    "ALTER TABLE users DROP COLUMN new_field;\n")
    before = pg_dump(url)
    env = dict(os.environ, DATABASE_URL=url, MIGRATIONS_DIR=str(migrations), PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "workers.cli", "--rollback", "--to", KNOWN_GOOD],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        sleeping = ("SELECT pid FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%%'"
                    " AND state = 'active' AND datname = current_database()")
        deadline = time.monotonic() + 30
        while not query(url, sleeping) and time.monotonic() < deadline:
            time.sleep(0.05)
        [(backend,)] = query(url, sleeping)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # the server notices the dead client (client_connection_check_interval) and rolls back
        alive = "SELECT count(*) FROM pg_stat_activity WHERE pid = %s"
        while query(url, alive, (backend,)) != [(0,)] and time.monotonic() < deadline + 30:
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert query(url, alive, (backend,)) == [(0,)]
    assert pg_dump(url) == before
    assert table_exists(url, "new_feature_table")
    assert statuses(url)[NEW_FEATURE] == "completed"
    down.write_text((REPO / "migrations" / NEW_FEATURE_DIR / "down.sql").read_text())
    assert make_engine(url, migrations).rollback(KNOWN_GOOD).versions == [NEW_FEATURE]  # lock was released


def test_statement_timeout_fails_the_rollback_cleanly(applied: tuple[str, Path]) -> None:
    url, migrations = applied
    (migrations / NEW_FEATURE_DIR / "down.sql").write_text("DROP TABLE new_feature_table;\nSELECT pg_sleep(5);\n")
    before = pg_dump(url, exclude=("migration_history", "migration_history_id_seq"))
    with pytest.raises(MigrationFailed, match="canceling statement due to statement timeout"):
        make_engine(url, migrations, statement_timeout_ms=100).rollback(KNOWN_GOOD)
    assert pg_dump(url, exclude=("migration_history", "migration_history_id_seq")) == before


def test_dry_run_uses_its_own_short_lock_timeout(applied: tuple[str, Path],
                                                 other_session: psycopg.Connection[Any]) -> None:
    url, migrations = applied
    other_session.execute("BEGIN")
    other_session.execute("LOCK TABLE users IN ACCESS SHARE MODE")
    engine = make_engine(url, migrations, lock_timeout_ms=60_000, lock_retries=0, dry_run_lock_timeout_ms=150)
    with pytest.raises(LockTimeout) as caught:
        engine.dry_run_rollback(KNOWN_GOOD)
    assert caught.value.lock_timeout_ms == 150 and caught.value.attempts == 1
    assert caught.value.blocking_pids == [other_session.info.backend_pid]


def test_blockers_are_found_from_the_statements_tables_when_the_poll_missed_them(
        applied: tuple[str, Path], other_session: psycopg.Connection[Any]) -> None:
    url, _ = applied
    other_session.execute("BEGIN")
    other_session.execute("LOCK TABLE users IN ACCESS SHARE MODE")
    with psycopg.connect(url, autocommit=True) as runner:
        watch = BlockerWatch(url, runner.info.backend_pid)
        with watch:
            pass  # the runner never waited, so the poll saw nothing
        try:
            assert watch.describe() == []
            found = watch.holders("ALTER TABLE users DROP COLUMN new_field")
        finally:
            watch.close()
    assert [b["pid"] for b in found] == [other_session.info.backend_pid]
    assert found[0]["application_name"] == "the app"
