"""Step 1 assessment against a real PostgreSQL: the sessions that stand in a rollback's way."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from workers.postgres.schema import invalid_indexes
from workers.postgres.sessions import Why, blockers, is_listed, masked_first_line


def _until(condition: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Wait for a condition the database reports (not a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.fixture
def app_db(database_url: str) -> Iterator[str]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE users (id int PRIMARY KEY, email text); CREATE TABLE other (id int)")
        conn.execute("INSERT INTO users SELECT i, 'u' || i FROM generate_series(1, 10) i")
    yield database_url


def test_idle_in_transaction_holder_and_the_waiter_behind_it_are_named(app_db: str) -> None:
    holder = psycopg.connect(app_db, application_name="app-worker")
    holder.execute("SELECT email FROM users WHERE email = 'secret-value-hunter2'")  # idle in transaction after
    waiter_error: list[BaseException] = []

    def wait_for_lock() -> None:
        try:
            with psycopg.connect(app_db, application_name="migrator", autocommit=True) as conn:
                conn.execute("SET lock_timeout = '20s'")
                with conn.transaction():
                    conn.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            waiter_error.append(exc)

    waiter = threading.Thread(target=wait_for_lock)
    waiter.start()
    try:
        with psycopg.connect(app_db, autocommit=True) as conn:
            found = _until(lambda: [b for b in blockers(conn, long_running_s=3600, plan_tables=["users"])
                                    if Why.WAITING_ON_LOCK in b.why])
            by_app = {b.application: b for b in blockers(conn, long_running_s=3600, plan_tables=["users"])}
        idle = by_app["app-worker"]
        assert Why.IDLE_IN_TRANSACTION in idle.why and Why.HOLDS_PLAN_LOCKS in idle.why
        assert idle.tables == ("public.users",)
        assert "hunter2" not in idle.query and idle.query.startswith("SELECT email FROM users WHERE email = '…'")
        assert found[0].application == "migrator" and idle.pid in found[0].blocked_by
        assert is_listed(idle.pid, by_app.values()) and not is_listed(1, by_app.values())
    finally:
        holder.close()  # frees the lock: the waiter gets it and ends
        waiter.join(30)
    assert not waiter_error


def test_a_session_that_matters_to_nothing_is_left_out(app_db: str) -> None:
    with psycopg.connect(app_db, application_name="bystander", autocommit=True) as bystander, \
            psycopg.connect(app_db, autocommit=True) as conn:
        bystander.execute("SELECT 1")
        assert [b for b in blockers(conn, long_running_s=3600, plan_tables=["users"])
                if b.application == "bystander"] == []


def test_long_running_queries_are_flagged(app_db: str) -> None:
    done = threading.Event()

    def slow() -> None:
        with psycopg.connect(app_db, application_name="report", autocommit=True) as conn, \
                pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(5)")  # cancelled by the test once it has been seen
        done.set()

    thread = threading.Thread(target=slow)
    thread.start()
    try:
        with psycopg.connect(app_db, autocommit=True) as conn:
            found = _until(lambda: [b for b in blockers(conn, long_running_s=0.2) if b.application == "report"
                                    and Why.LONG_RUNNING in b.why])
            assert found[0].query == "SELECT pg_sleep(5)" and found[0].age_s >= 0.2
            conn.execute("SELECT pg_cancel_backend(%s)", (found[0].pid,))
    finally:
        thread.join(30)
    assert done.is_set()


def test_an_invalid_index_left_by_a_failed_concurrent_build_is_found(app_db: str) -> None:
    with psycopg.connect(app_db, autocommit=True) as conn:
        conn.execute("INSERT INTO other VALUES (1), (1)")
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("CREATE UNIQUE INDEX CONCURRENTLY other_id_key ON other (id)")
        assert invalid_indexes(conn) == ["public.other_id_key"]


@pytest.mark.parametrize(
    ("query", "shown"),
    [
        ("ALTER ROLE app PASSWORD 'p@ss''word'", "ALTER ROLE app PASSWORD '…'"),
        ("\n\n  UPDATE t SET a = E'x\\'y' WHERE b = $q$ z $q$\nAND c", "UPDATE t SET a = '…' WHERE b = '…'"),
        (None, ""),
        ("SELECT " + "x, " * 100, ("SELECT " + "x, " * 100)[:119] + "…"),
    ],
)
def test_masked_first_line(query: str | None, shown: str) -> None:
    assert masked_first_line(query) == shown
