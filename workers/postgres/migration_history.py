"""The workers' operations in `migration_history` on the target (backup, verify, restore, identity_confirm...).

The engine records its own apply/rollback rows; this records the rest, with who asked and who approved.
A failure to record is logged and never hides the operation's own outcome.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg

from core.jsontypes import JsonObject
from workers.engine import store
from workers.postgres.check_results import VerifyReport

logger = logging.getLogger("workers.postgres.migration_history")


def record(
    conn: psycopg.Connection[Any],
    *,
    operation: str,
    status: str,
    executed_by: str,
    approved_by: str | None = None,
    request_id: str | None = None,
    version: str | None = None,
    duration_ms: int | None = None,
    error_message: str | None = None,
    details: JsonObject | None = None,
) -> bool:
    try:
        with conn.transaction():
            store.ensure_tables(conn)
            store.record_history(
                conn, version=version or "", operation=operation, status=status, executed_by=executed_by,
                approved_by=approved_by, request_id=request_id, duration_ms=duration_ms,
                error_message=error_message, details=details,
            )
        return True
    except psycopg.Error as exc:
        logger.warning("could not record %s in migration_history: %s", operation, type(exc).__name__)
        return False


def has_failure(conn: psycopg.Connection[Any], request_id: str, operation: str) -> bool:
    """Whether a failed `operation` of this request is already recorded."""
    if not store.tables_exist(conn):
        return False
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM migration_history WHERE request_id = %s AND operation = %s"
        " AND status = 'failed')",
        (request_id, operation),
    ).fetchone()
    return bool(row and row[0])


def last_rollback(conn: psycopg.Connection[Any]) -> JsonObject | None:
    """The most recent completed rollback recorded on this target: request_id and executed_at."""
    if not store.tables_exist(conn):
        return None
    row = conn.execute(
        "SELECT request_id, executed_at FROM migration_history WHERE operation = 'rollback' AND status = 'completed'"
        " ORDER BY executed_at DESC, id DESC LIMIT 1"
    ).fetchone()
    return {"request_id": row[0], "executed_at": row[1]} if row else None


def counts_before(conn: psycopg.Connection[Any], request_id: str) -> dict[str, int] | None:
    """The row counts taken before a request's rollback, as its verification recorded them."""
    row = conn.execute(
        "SELECT details FROM migration_history WHERE request_id = %s AND operation = 'verify'"
        " ORDER BY executed_at DESC, id DESC LIMIT 1",
        (request_id,),
    ).fetchone()
    details = (row[0] if row else None) or {}
    return VerifyReport.from_dict(details).counts_before() or None
