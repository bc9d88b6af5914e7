"""One runner per database, bounded lock waits with retries, and a killed runner changing nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.engine_support import (
    BOOKKEEPING,
    HISTORY,
    KNOWN_GOOD,
    NEW_FEATURE,
    NEW_FEATURE_DIR,
    REPO,
    apply_examples,
    copy_migrations,
    make_engine,
    pg_dump,
    query,
    statuses,
    table_exists,
    wait_for_backend,
    wait_until_gone,
)
from workers.engine import LockBusy, LockTimeout, MigrationFailed
from workers.engine.locks import MIGRATION_LOCK_KEY, BlockerWatch


@pytest.fixture
def applied(database_url: str, tmp_path: Path) -> tuple[str, Path]:
    return database_url, apply_examples(database_url, tmp_path)


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
    before = pg_dump(url, exclude=HISTORY)
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
    assert pg_dump(url, exclude=HISTORY) == before
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
        backend = wait_for_backend(url, "SELECT pg_sleep")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # the server notices the dead client (client_connection_check_interval) and rolls back
        wait_until_gone(url, backend)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert pg_dump(url) == before
    assert table_exists(url, "new_feature_table")
    assert statuses(url)[NEW_FEATURE] == "completed"
    down.write_text((REPO / "migrations" / NEW_FEATURE_DIR / "down.sql").read_text())
    assert make_engine(url, migrations).rollback(KNOWN_GOOD).versions == [NEW_FEATURE]  # lock was released


def test_statement_timeout_fails_the_rollback_cleanly(applied: tuple[str, Path]) -> None:
    url, migrations = applied
    (migrations / NEW_FEATURE_DIR / "down.sql").write_text("DROP TABLE new_feature_table;\nSELECT pg_sleep(5);\n")
    before = pg_dump(url, exclude=HISTORY)
    with pytest.raises(MigrationFailed, match="canceling statement due to statement timeout"):
        make_engine(url, migrations, statement_timeout_ms=100).rollback(KNOWN_GOOD)
    assert pg_dump(url, exclude=HISTORY) == before


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


class JobTimeout(Exception):
    """Stands in for RQ's JobTimeoutException: raised by a signal handler in the thread running the query."""


@pytest.fixture
def interrupt_when_sleeping(database_url: str) -> Iterator[None]:
    """Once a `SELECT pg_sleep` runs in this database, SIGALRM makes the main thread raise JobTimeout."""
    def raise_timeout(signum: int, frame: object) -> None:
        raise JobTimeout("job exceeded its 3 s timeout")

    previous = signal.signal(signal.SIGALRM, raise_timeout)
    main = threading.main_thread().ident
    assert main is not None

    def watch() -> None:
        wait_for_backend(database_url, "SELECT pg_sleep")
        signal.pthread_kill(main, signal.SIGALRM)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        watcher.join()
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("marker", ["", "-- rollback-bot: no-transaction\n"], ids=["transaction", "no-transaction"])
def test_an_interrupted_rollback_raises_the_original_error_and_records_it(
        applied: tuple[str, Path], marker: str, interrupt_when_sleeping: None,
        caplog: pytest.LogCaptureFixture) -> None:
    url, migrations = applied
    (migrations / NEW_FEATURE_DIR / "down.sql").write_text(f"{marker}SELECT pg_sleep(5);\nDROP TABLE new_feature_table;\n")
    before = pg_dump(url, exclude=BOOKKEEPING)

    with pytest.raises(JobTimeout, match="job exceeded its 3 s timeout") as caught:
        make_engine(url, migrations).rollback(KNOWN_GOOD)

    assert caught.value.__context__ is None  # nothing went wrong while cleaning up after it
    assert "another command is already in progress" not in caplog.text
    assert pg_dump(url, exclude=BOOKKEEPING) == before
    assert table_exists(url, "new_feature_table")
    [(status, error)] = query(url, "SELECT status, error_message FROM migration_history WHERE operation = 'rollback'")
    assert status == "failed"
    assert error.startswith(f"rollback of {NEW_FEATURE_DIR} was interrupted (JobTimeout: job exceeded its 3 s timeout)")
    assert "`SELECT pg_sleep(5)`" in error
    # Only this test's database: other suites (and the benchmarks' 10 s reader) share the server.
    assert query(url, "SELECT count(*) FROM pg_stat_activity WHERE starts_with(query, 'SELECT pg_sleep')"
                      " AND state = 'active' AND datname = current_database()") == [(0,)]  # cancelled, not left running
    (migrations / NEW_FEATURE_DIR / "down.sql").write_text((REPO / "migrations" / NEW_FEATURE_DIR / "down.sql").read_text())
    if marker:  # a no-transaction step is marked failed (its effects are the operator's to check) ...
        assert statuses(url)[NEW_FEATURE] == "failed"
    else:  # ... a transactional one is untouched, and the lock was released: the next run succeeds
        assert statuses(url)[NEW_FEATURE] == "completed"
        assert make_engine(url, migrations).rollback(KNOWN_GOOD).versions == [NEW_FEATURE]


def test_an_interrupted_apply_raises_the_original_error_and_records_it(
        database_url: str, tmp_path: Path, interrupt_when_sleeping: None) -> None:
    migrations = copy_migrations(tmp_path)
    up = migrations / NEW_FEATURE_DIR / "up.sql"
    up.write_text("CREATE TABLE new_feature_table (id int);\nSELECT pg_sleep(5);\n")

    with pytest.raises(JobTimeout) as caught:
        make_engine(database_url, migrations).apply()

    assert caught.value.__context__ is None
    assert not table_exists(database_url, "new_feature_table")
    assert statuses(database_url)[NEW_FEATURE] == "failed"
    [(error,)] = query(database_url, "SELECT error_message FROM schema_migrations WHERE version = %s", (NEW_FEATURE,))
    assert error.startswith(f"apply of {NEW_FEATURE_DIR} was interrupted (JobTimeout")


def test_an_interrupted_dry_run_raises_the_original_error_and_changes_nothing(
        applied: tuple[str, Path], interrupt_when_sleeping: None) -> None:
    url, migrations = applied
    (migrations / NEW_FEATURE_DIR / "down.sql").write_text("DROP TABLE new_feature_table;\nSELECT pg_sleep(5);\n")
    before = pg_dump(url)
    with pytest.raises(JobTimeout) as caught:
        make_engine(url, migrations).dry_run_rollback(KNOWN_GOOD)
    assert caught.value.__context__ is None
    assert pg_dump(url) == before  # a dry run records nothing, even when interrupted
