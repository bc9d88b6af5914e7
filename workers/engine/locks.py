"""Locks: one runner per database (advisory lock), and bounded waits for table locks.

DDL that waits for a table lock queues every later query on that table behind it, so each attempt
waits at most `lock_timeout`; it is retried with exponential backoff a bounded number of times
(GitLab's `with_lock_retries`). While an attempt waits, a watcher on a second connection asks
`pg_blocking_pids` who blocks it, so that giving up can name the session.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.rows import dict_row

from workers.engine import messages, sqltext
from workers.engine.errors import LockBusy, LockTimeout

# The advisory-lock key that means "a rollback-bot run is migrating this database". Any constant would do;
# it must never change, or an old and a new runner would not exclude each other.
MIGRATION_LOCK_KEY = 0x5F3C_21A9_0D4E_7B16
WATCH_INTERVAL_SECONDS = 0.01
# How long `describe`/`holders` wait for the watcher's own connection (it connects in its thread).
WATCH_CONNECT_WAIT_SECONDS = 10

T = TypeVar("T")


def try_migration_lock(conn: psycopg.Connection[Any], dbname: str) -> None:
    """Take the session-level migration lock or raise LockBusy at once (never wait for another run)."""
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (MIGRATION_LOCK_KEY,)).fetchone()
    if row and row[0]:
        return
    raise LockBusy(dbname, lock_holder(conn))


def release_migration_lock(conn: psycopg.Connection[Any]) -> None:
    with contextlib.suppress(psycopg.Error):
        conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))


def lock_holder(conn: psycopg.Connection[Any]) -> dict[str, Any] | None:
    """The session holding the migration lock in this database (pid, user, application, since)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT a.pid, a.usename, a.application_name, a.client_addr::text AS client_addr,"
            " a.backend_start FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.database = ("
            "   SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND l.objsubid = 1 AND ((l.classid::bigint << 32) | l.objid::bigint) = %s::bigint"
            " AND a.pid <> pg_backend_pid() LIMIT 1",
            (MIGRATION_LOCK_KEY,),
        )
        return cur.fetchone()


def describe_sessions(conn: psycopg.Connection[Any], pids: list[int]) -> list[dict[str, Any]]:
    """pid, user, application, state and since when, for sessions that block us (never their SQL)."""
    if not pids:
        return []
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT pid, usename, application_name, state, xact_start FROM pg_stat_activity"
            " WHERE pid = ANY(%s) ORDER BY pid",
            (pids,),
        )
        found = {int(r["pid"]): r for r in cur.fetchall()}
    return [found.get(pid, {"pid": pid}) for pid in pids]


@dataclass
class BlockerWatch:
    """Polls pg_blocking_pids(pid) from its own connection while an attempt runs.

    The watcher connects in its own thread, so an attempt never waits for a second connection (TCP,
    startup and authentication: several round trips to a remote database) before it starts. After a
    failed attempt `__exit__` waits for the thread, so that `describe`/`holders` can use its connection;
    after a successful one it does not wait, and the thread closes its connection itself.
    """

    conninfo: str
    pid: int
    seen: list[int] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _conn: psycopg.Connection[Any] | None = None
    _thread: threading.Thread | None = None
    _guard: threading.Lock = field(default_factory=threading.Lock)
    _connected: threading.Event = field(default_factory=threading.Event)  # tried: with or without success
    _finished: bool = False
    _abandoned: bool = False

    def __enter__(self) -> BlockerWatch:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            try:
                self._conn = psycopg.connect(self.conninfo, autocommit=True,
                                             application_name="rollback-bot watcher",
                                             connect_timeout=int(WATCH_CONNECT_WAIT_SECONDS))
            except psycopg.Error:
                return  # no spare connection: run unwatched; a timeout then says "blocking session unknown"
            finally:
                self._connected.set()
            while not self._stop.is_set():
                try:
                    row = self._conn.execute("SELECT pg_blocking_pids(%s)", (self.pid,)).fetchone()
                except psycopg.Error:
                    return
                for pid in (row[0] if row else None) or []:
                    if pid not in self.seen:
                        self.seen.append(int(pid))
                self._stop.wait(WATCH_INTERVAL_SECONDS)
        finally:
            with self._guard:
                self._finished = True
                if self._abandoned and self._conn is not None:
                    self._conn.close()

    def _wait_connected(self) -> None:
        if self._thread is not None:
            self._connected.wait(WATCH_CONNECT_WAIT_SECONDS)

    def describe(self) -> list[dict[str, Any]]:
        self._wait_connected()
        if self._conn is None or not self.seen:
            return [{"pid": pid} for pid in self.seen]
        with contextlib.suppress(psycopg.Error):
            return describe_sessions(self._conn, self.seen)
        return [{"pid": pid} for pid in self.seen]

    def holders(self, statement: str) -> list[dict[str, Any]]:
        """Fallback when the poll missed the wait: other sessions holding locks on the statement's tables."""
        names = sqltext.effects(statement).relations
        self._wait_connected()
        if self._conn is None or not names:
            return []
        with contextlib.suppress(psycopg.Error):
            regclasses = [sql.Identifier(*name).as_string(self._conn) for name in names]
            rows = self._conn.execute(
                "SELECT DISTINCT l.pid FROM pg_locks l WHERE l.locktype = 'relation' AND l.granted"
                " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                " AND l.relation IN (SELECT to_regclass(n) FROM unnest(%s::text[]) AS n)"
                " AND l.pid <> %s AND l.pid <> pg_backend_pid() ORDER BY l.pid",
                (regclasses, self.pid),
            ).fetchall()
            return describe_sessions(self._conn, [int(r[0]) for r in rows])
        return []

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self._stop.set()
        if exc_type is not None and self._thread is not None:
            self._thread.join()  # the caller may ask who blocked us: that needs the watcher's connection

    def close(self) -> None:
        """Close the watcher's connection now, or have its thread close it as it ends."""
        with self._guard:
            if not self._finished and self._thread is not None:
                self._abandoned = True
                return
        if self._conn is not None:
            self._conn.close()


@dataclass(frozen=True)
class RetryPolicy:
    lock_timeout_ms: int
    retries: int
    base_seconds: float

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (1-based): base, 2*base, 4*base, ..."""
        return self.base_seconds * (2 ** (attempt - 1))


def with_lock_retries(
    attempt: Callable[[], T],
    *,
    policy: RetryPolicy,
    conninfo: str,
    pid: int,
    statement_of: Callable[[], str],
    log: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run `attempt` (one whole transaction); on lock_timeout, back off and run it again.

    `attempt` must leave nothing behind when it raises (its transaction is rolled back), so that
    running it again is safe. `statement_of` names the statement that was waiting.
    """
    blockers: list[dict[str, Any]] = []
    total = policy.retries + 1
    for number in range(1, total + 1):
        watch = BlockerWatch(conninfo, pid)
        try:
            with watch:
                return attempt()
        except pg_errors.LockNotAvailable:
            statement = statement_of()
            blockers = watch.describe() or watch.holders(statement) or blockers
            if number == total:
                raise LockTimeout(total, policy.lock_timeout_ms, statement, blockers) from None
            delay = policy.delay(number)
            log(messages.lock_retry(number, total, policy.lock_timeout_ms, statement, blockers, delay))
            sleep(delay)
        finally:
            watch.close()
    raise AssertionError("unreachable")  # pragma: no cover


def local_timeouts(conn: psycopg.Connection[Any], lock_timeout_ms: int, statement_timeout_ms: int) -> None:
    """SET LOCAL both timeouts for the current transaction (values as parameters)."""
    conn.execute("SELECT set_config('lock_timeout', %s, true), set_config('statement_timeout', %s, true)",
                 (f"{int(lock_timeout_ms)}ms", f"{int(statement_timeout_ms)}ms"))


def session_timeouts(conn: psycopg.Connection[Any], lock_timeout_ms: int, statement_timeout_ms: int) -> None:
    """SET both timeouts for the session (statements run outside a transaction)."""
    conn.execute("SELECT set_config('lock_timeout', %s, false)", (f"{int(lock_timeout_ms)}ms",))
    conn.execute("SELECT set_config('statement_timeout', %s, false)", (f"{int(statement_timeout_ms)}ms",))
