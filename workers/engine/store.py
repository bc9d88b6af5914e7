"""The bookkeeping tables, `schema_migrations` and `migration_history` (compatible with the playbook's SQL).

Every function takes the connection it runs on; the caller decides the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from core.jsontypes import JsonObject
from workers.engine.errors import BookkeepingConflict
from workers.engine.versions import Recorded, Status

# Columns beyond the playbook's are added to tables an operator created by hand, too.
_SCHEMA_MIGRATIONS_COLUMNS: tuple[tuple[str, sql.SQL], ...] = (
    ("name", sql.SQL("text")),
    ("status", sql.SQL("text")),
    ("applied_at", sql.SQL("timestamptz")),
    ("error_message", sql.SQL("text")),
    ("checksum", sql.SQL("text")),
    ("down_checksum", sql.SQL("text")),
    ("execution_ms", sql.SQL("integer")),
    ("rolled_back_at", sql.SQL("timestamptz")),
)
_MIGRATION_HISTORY_COLUMNS: tuple[tuple[str, sql.SQL], ...] = (
    ("id", sql.SQL("bigserial")),
    ("version", sql.SQL("text")),
    ("operation", sql.SQL("text")),
    ("status", sql.SQL("text")),
    ("executed_by", sql.SQL("text")),
    ("executed_at", sql.SQL("timestamptz DEFAULT now()")),
    ("approved_by", sql.SQL("text")),
    ("request_id", sql.SQL("text")),
    ("duration_ms", sql.SQL("integer")),
    ("error_message", sql.SQL("text")),
    ("details", sql.SQL("jsonb")),
)


@dataclass(frozen=True)
class Row:
    version: str
    name: str | None
    status: str
    applied_at: datetime | None
    error_message: str | None
    checksum: str | None
    down_checksum: str | None
    execution_ms: int | None
    rolled_back_at: datetime | None
    repaired: bool = False  # rolled back by --repair (never fully applied), not taken out on purpose

    def recorded(self) -> Recorded:
        return Recorded(self.version, self.status, self.name, self.checksum, self.repaired)


def tables_exist(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute(
        "SELECT to_regclass('schema_migrations') IS NOT NULL AND to_regclass('migration_history') IS NOT NULL"
    ).fetchone()
    return bool(row and row[0])


def ensure_tables(conn: psycopg.Connection[Any]) -> None:
    """Create the tables (or add our extra columns to hand-made ones). Call while holding the lock."""
    if _complete(conn):
        return  # the usual case: nothing to create, so no lock is taken at all
    conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY KEY)")
    conn.execute("CREATE TABLE IF NOT EXISTS migration_history (id bigserial PRIMARY KEY)")
    for table, columns in (
        ("schema_migrations", _SCHEMA_MIGRATIONS_COLUMNS),
        ("migration_history", _MIGRATION_HISTORY_COLUMNS),
    ):
        existing = {
            r[0]
            for r in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0"
                " AND NOT attisdropped",
                (table,),
            )
        }
        for column, type_ in columns:
            if column not in existing:
                conn.execute(
                    sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
                        sql.Identifier(table), sql.Identifier(column), type_
                    )
                )
    # Checked first: CREATE INDEX IF NOT EXISTS would still lock the table, and wait behind any open writer.
    row = conn.execute("SELECT to_regclass('migration_history_request_id_idx') IS NULL").fetchone()
    if row and row[0]:
        conn.execute("CREATE INDEX migration_history_request_id_idx ON migration_history (request_id)")


def _complete(conn: psycopg.Connection[Any]) -> bool:
    """True when both tables, all our columns and the request_id index exist (one round trip)."""
    wanted = [("schema_migrations", c) for c, _ in _SCHEMA_MIGRATIONS_COLUMNS]
    wanted += [("migration_history", c) for c, _ in _MIGRATION_HISTORY_COLUMNS]
    row = conn.execute(
        "SELECT (SELECT count(*) FROM pg_attribute WHERE NOT attisdropped AND attnum > 0"
        " AND (attrelid, attname) IN (SELECT to_regclass(t), c FROM unnest(%s::text[], %s::text[]) AS w(t, c))),"
        " to_regclass('migration_history_request_id_idx') IS NOT NULL",
        ([t for t, _ in wanted], [c for _, c in wanted]),
    ).fetchone()
    return bool(row and row[0] == len(wanted) and row[1])


def read_all(conn: psycopg.Connection[Any]) -> dict[str, Row]:
    """Every schema_migrations row by version; empty when the table does not exist yet."""
    # Whether both tables exist and schema_migrations' columns, in one round trip.
    found = conn.execute(
        "SELECT to_regclass('migration_history') IS NOT NULL, ARRAY(SELECT attname::text FROM pg_attribute"
        " WHERE attrelid = to_regclass('schema_migrations') AND attnum > 0 AND NOT attisdropped)"
    ).fetchone()
    if not found or not found[0] or not found[1]:
        return {}
    columns = set(found[1])
    wanted = ["version", *[c for c, _ in _SCHEMA_MIGRATIONS_COLUMNS]]
    select = sql.SQL("SELECT {} FROM schema_migrations").format(
        sql.SQL(", ").join(
            sql.Identifier(c) if c in columns else sql.SQL("NULL AS {}").format(sql.Identifier(c)) for c in wanted
        )
    )
    rows: dict[str, Row] = {}
    with conn.cursor(row_factory=dict_row) as cur:
        for r in cur.execute(select):
            status = r["status"] or Status.COMPLETED.value  # a hand-inserted row without status ran
            rows[r["version"]] = Row(
                version=r["version"], name=r["name"], status=status, applied_at=r["applied_at"],
                error_message=r["error_message"], checksum=r["checksum"], down_checksum=r["down_checksum"],
                execution_ms=r["execution_ms"], rolled_back_at=r["rolled_back_at"],
            )
    return rows


def read_recorded(conn: psycopg.Connection[Any]) -> dict[str, Row]:
    """`read_all`, plus the migrations whose row a hand rollback deleted (see `_deleted_by_hand_rollback`):
    what apply and --status plan with, so that such a migration stays rolled back too."""
    rows = read_all(conn)
    repaired = _repaired(conn, [v for v, r in rows.items() if r.status == Status.ROLLED_BACK])
    rows = {v: replace(r, repaired=True) if v in repaired else r for v, r in rows.items()}
    return {**_deleted_by_hand_rollback(conn, rows), **rows}


def _repaired(conn: psycopg.Connection[Any], rolled_back: list[str]) -> set[str]:
    """Rolled-back versions whose last completed apply, rollback, undo or repair is a repair: a failed
    no-transaction migration --repair cleaned up. It never ran to the end, so it is applied again as before."""
    if not rolled_back:
        return set()
    found = conn.execute(
        "SELECT version FROM (SELECT DISTINCT ON (version) version, operation FROM migration_history"
        "  WHERE status = 'completed' AND operation IN ('apply', 'rollback', 'undo', 'repair')"
        "  AND version = ANY(%s::text[]) ORDER BY version, executed_at DESC NULLS LAST, id DESC) AS last"
        " WHERE last.operation = 'repair'",
        (rolled_back,),
    ).fetchall()
    return {r[0] for r in found}


def _deleted_by_hand_rollback(conn: psycopg.Connection[Any], rows: dict[str, Row]) -> dict[str, Row]:
    """Versions without a schema_migrations row that migration_history shows applied here and then rolled
    back (the last completed apply, rollback or undo is a rollback): a hand rollback that DELETEd the row
    instead of Method 2's UPDATE ... SET status = 'rolled_back'. The up.sql checksum is the rollback row's,
    else the last apply's (the engine records it in both); none known: it stays rolled back until --reapply.
    A deleted row without those history rows left no trace: it reads as never applied (Scenario 3)."""
    if not _complete(conn):  # no bookkeeping of ours (yet): nothing of ours can have been rolled back
        return {}
    found = conn.execute(
        "SELECT last.version, last.executed_at, COALESCE(last.details->>'checksum', applied.checksum)"
        " FROM (SELECT DISTINCT ON (version) version, operation, executed_at, details FROM migration_history"
        "  WHERE status = 'completed' AND operation IN ('apply', 'rollback', 'undo')"
        "  AND NOT (version = ANY(%s::text[])) ORDER BY version, executed_at DESC NULLS LAST, id DESC) AS last"
        # ... and it had been applied here: a rollback row alone (say, copied along with the tables) is no proof
        " CROSS JOIN LATERAL (SELECT a.details->>'checksum' AS checksum FROM migration_history a"
        "  WHERE a.version = last.version AND a.operation IN ('apply', 'undo') AND a.status = 'completed'"
        "  ORDER BY a.executed_at DESC NULLS LAST, a.id DESC LIMIT 1) AS applied"
        " WHERE last.operation = 'rollback'",
        (list(rows),),
    ).fetchall()
    return {version: Row(version=version, name=None, status=Status.ROLLED_BACK.value, applied_at=None,
                         error_message=None, checksum=checksum, down_checksum=None, execution_ms=None,
                         rolled_back_at=at)
            for version, at, checksum in found}


def mark_running(conn: psycopg.Connection[Any], version: str, name: str, checksum: str | None) -> None:
    conn.execute(
        "INSERT INTO schema_migrations (version, name, status, applied_at, error_message, checksum)"
        " VALUES (%s, %s, 'running', now(), NULL, %s)"
        " ON CONFLICT (version) DO UPDATE SET name = EXCLUDED.name, status = 'running',"
        " applied_at = now(), error_message = NULL, checksum = EXCLUDED.checksum",
        (version, name, checksum),
    )


def mark_applied(conn: psycopg.Connection[Any], version: str, name: str, checksum: str | None,
                 down_checksum: str | None, execution_ms: int) -> None:
    conn.execute(
        "INSERT INTO schema_migrations"
        " (version, name, status, applied_at, error_message, checksum, down_checksum, execution_ms, rolled_back_at)"
        " VALUES (%s, %s, 'completed', now(), NULL, %s, %s, %s, NULL)"
        " ON CONFLICT (version) DO UPDATE SET name = EXCLUDED.name, status = 'completed', applied_at = now(),"
        " error_message = NULL, checksum = EXCLUDED.checksum, down_checksum = EXCLUDED.down_checksum,"
        " execution_ms = EXCLUDED.execution_ms, rolled_back_at = NULL",
        (version, name, checksum, down_checksum, execution_ms),
    )


def mark_failed(conn: psycopg.Connection[Any], version: str, name: str, checksum: str | None,
                error_message: str) -> None:
    conn.execute(
        "INSERT INTO schema_migrations (version, name, status, applied_at, error_message, checksum)"
        " VALUES (%s, %s, 'failed', now(), %s, %s)"
        " ON CONFLICT (version) DO UPDATE SET name = EXCLUDED.name, status = 'failed', applied_at = now(),"
        " error_message = EXCLUDED.error_message, checksum = EXCLUDED.checksum",
        (version, name, error_message, checksum),
    )


def set_status(conn: psycopg.Connection[Any], version: str, status: str, error_message: str | None = None) -> None:
    conn.execute("UPDATE schema_migrations SET status = %s, error_message = %s WHERE version = %s",
                 (status, error_message, version))


def mark_rolled_back(conn: psycopg.Connection[Any], version: str) -> str | None:
    """Mark a completed migration rolled back; returns its up.sql checksum (kept: a plain apply leaves the
    migration rolled back while its up.sql is unchanged)."""
    cur = conn.execute(
        "UPDATE schema_migrations SET status = 'rolled_back', rolled_back_at = now()"
        " WHERE version = %s AND status = 'completed' RETURNING checksum",
        (version,),
    )
    if cur.rowcount != 1:  # the plan was made under the lock; anything else means a hand edit raced us
        raise BookkeepingConflict(version, Status.COMPLETED.value)
    row = cur.fetchone()
    return row[0] if row else None


def record_history(conn: psycopg.Connection[Any], *, version: str, operation: str, status: str,
                   executed_by: str, approved_by: str | None = None, request_id: str | None = None,
                   duration_ms: int | None = None, error_message: str | None = None,
                   details: JsonObject | None = None) -> None:
    conn.execute(
        "INSERT INTO migration_history (version, operation, status, executed_by, executed_at, approved_by,"
        " request_id, duration_ms, error_message, details) VALUES (%s, %s, %s, %s, now(), %s, %s, %s, %s, %s)",
        (version, operation, status, executed_by, approved_by, request_id, duration_ms, error_message,
         Jsonb(details) if details is not None else None),
    )


def completed_rollback(conn: psycopg.Connection[Any], request_id: str) -> list[dict[str, Any]]:
    """History rows of a rollback already completed for this request (exactly-once check)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT version, executed_at, duration_ms, details FROM migration_history"
            " WHERE request_id = %s AND operation = 'rollback' AND status = 'completed' ORDER BY version DESC",
            (request_id,),
        )
        return list(cur.fetchall())


def history(conn: psycopg.Connection[Any], limit: int = 50) -> list[dict[str, Any]]:
    if not tables_exist(conn):
        return []
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT * FROM migration_history ORDER BY executed_at DESC NULLS LAST, id DESC NULLS LAST LIMIT %s",
                    (limit,))
        return list(cur.fetchall())
