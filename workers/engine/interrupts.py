"""Interruptions that land while a query runs: an RQ job timeout, a signal handler, any exception.

psycopg cancels the query itself only on Ctrl-C; after any other exception the connection stays
busy, and every later command on it (the transaction's ROLLBACK, a RESET, writing the failure row)
fails with "another command is already in progress", hiding the real error. So on a busy connection
we cancel the query on the server and close the connection (PostgreSQL then rolls back whatever
was open and releases its locks), and let the original exception go on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import pq

# How long to wait for the server to acknowledge a cancel request before closing regardless.
CANCEL_TIMEOUT_SECONDS = 5.0


def busy(conn: psycopg.Connection[Any]) -> bool:
    """A query was sent on this connection and its result never read."""
    return not conn.closed and conn.pgconn.transaction_status == pq.TransactionStatus.ACTIVE


def usable(conn: psycopg.Connection[Any]) -> bool:
    return not conn.closed and not conn.broken and not busy(conn)


def abandon(conn: psycopg.Connection[Any]) -> None:
    """Stop the running query and drop the connection; never raises (the caller's error matters more)."""
    with contextlib.suppress(psycopg.Error):
        conn.cancel_safe(timeout=CANCEL_TIMEOUT_SECONDS)
    with contextlib.suppress(psycopg.Error):
        conn.close()


def abandon_if_busy(conn: psycopg.Connection[Any]) -> None:
    if busy(conn):
        abandon(conn)


@contextlib.contextmanager
def guarded(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """Abandon the connection if anything but a database error interrupts it mid-query."""
    try:
        yield
    except psycopg.Error:
        raise  # psycopg has read the error result: the connection is not busy
    except BaseException:
        abandon_if_busy(conn)
        raise


@contextlib.contextmanager
def transaction(conn: psycopg.Connection[Any], *, force_rollback: bool = False) -> Iterator[None]:
    """`conn.transaction()` whose exit never runs ROLLBACK on a busy connection."""
    with conn.transaction(force_rollback=force_rollback), guarded(conn):
        yield
