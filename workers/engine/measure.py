"""What the bounded dry run asks the database about its own session: locks held, rows touched, row estimates.

All on the dry run's connection, inside its transaction (and so under its timeouts). Nothing here
changes data; `lock_now` takes the table locks a statement is about to take, so that the moment they
are granted is known (the dry run's budget counts from then).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg import sql

from workers.engine.forecast import HeldLock
from workers.engine.sqleffects import LockMode, LockTarget

_MODES = {mode.pg_locks_mode: mode for mode in LockMode}

# The table locks this backend holds (granted), application tables only, by regclass text.
_HELD = ("SELECT l.relation::regclass::text, l.mode FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
         " WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.granted"
         " AND c.relkind IN ('r', 'p', 'm') AND c.relnamespace NOT IN"
         " ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)")
# Rows inserted, updated and deleted in this transaction so far (aborted subtransactions included).
_TOUCHED = ("SELECT coalesce(sum(pg_stat_get_xact_tuples_inserted(r) + pg_stat_get_xact_tuples_updated(r)"
            " + pg_stat_get_xact_tuples_deleted(r)), 0) FROM unnest(%s::regclass[]) AS r")
_LOCKABLE = "SELECT c.oid FROM pg_class c WHERE c.oid = to_regclass(%s) AND c.relkind IN ('r', 'p')"
_RELTUPLES = "SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = to_regclass(%s)"


def held_locks(conn: psycopg.Connection[Any]) -> tuple[HeldLock, ...]:
    """The strongest table lock this session holds on each application table."""
    strongest: dict[str, LockMode] = {}
    for relation, mode_name in conn.execute(_HELD).fetchall():
        mode = _MODES.get(mode_name)
        if mode is not None and (relation not in strongest or mode > strongest[relation]):
            strongest[relation] = mode
    return tuple(HeldLock(r, m) for r, m in sorted(strongest.items()))


def _regclass(conn: psycopg.Connection[Any], name: tuple[str, ...]) -> str:
    return sql.Identifier(*name).as_string(conn)


def existing(conn: psycopg.Connection[Any], names: Iterable[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """The tables among `names` that exist now (a script may name one an earlier statement creates)."""
    return [n for n in names if conn.execute(_LOCKABLE, (_regclass(conn, n),)).fetchone()]


def lock_now(conn: psycopg.Connection[Any], targets: Iterable[LockTarget]) -> None:
    """LOCK TABLE each existing target in its mode, in order (waits at most lock_timeout each)."""
    for target in targets:
        if not existing(conn, [target.relation]):
            continue
        conn.execute(sql.SQL("LOCK TABLE {} IN {} MODE").format(
            sql.Identifier(*target.relation), sql.SQL(target.mode.sql)))


def regclass_text(conn: psycopg.Connection[Any], name: tuple[str, ...]) -> str:
    """A relation's name as pg_locks shows it (schema-qualified only off the search_path)."""
    row = conn.execute("SELECT to_regclass(%s)::text", (_regclass(conn, name),)).fetchone()
    return str(row[0]) if row and row[0] else ".".join(name)


def rows_touched(conn: psycopg.Connection[Any], tables: Iterable[tuple[str, ...]]) -> int:
    names = [_regclass(conn, t) for t in existing(conn, tables)]
    if not names:
        return 0
    row = conn.execute(_TOUCHED, (names,)).fetchone()
    return int(row[0]) if row else 0


def explain_rows(conn: psycopg.Connection[Any], statement: str) -> int | None:
    """The planner's estimate of the rows a DML statement changes (None: it cannot be explained now)."""
    query = sql.Composed([sql.SQL("EXPLAIN (FORMAT JSON) "), sql.SQL(statement)])
    try:
        conn.execute("SAVEPOINT rollback_bot_explain")
        row = conn.execute(query).fetchone()
        conn.execute("RELEASE SAVEPOINT rollback_bot_explain")
    except psycopg.Error:
        conn.execute("ROLLBACK TO SAVEPOINT rollback_bot_explain")
        return None
    if not row:
        return None
    document = row[0] if not isinstance(row[0], str) else json.loads(row[0])
    plan = document[0]["Plan"]
    if plan.get("Node Type") == "ModifyTable" and plan.get("Plans"):
        plan = plan["Plans"][0]
    return int(plan.get("Plan Rows") or 0)


def count_matching(conn: psycopg.Connection[Any], table: tuple[str, ...], alias: str | None, where: str | None,
                   timeout_ms: int, restore_timeout_ms: int) -> int | None:
    """The rows an UPDATE/DELETE's WHERE matches now, counted exactly within `timeout_ms` (None: not in time).

    A plain read (ACCESS SHARE): it blocks nobody. On a table too big to count in time the caller falls
    back to EXPLAIN's estimate.
    """
    query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(*table))
    if alias:
        query = sql.SQL("{} AS {}").format(query, sql.Identifier(alias))
    if where:
        query = sql.SQL("{} WHERE {}").format(query, sql.SQL(where))  # the migration's own condition, as written
    conn.execute("SAVEPOINT rollback_bot_count")
    try:
        conn.execute("SELECT set_config('statement_timeout', %s, true)", (f"{max(1, int(timeout_ms))}ms",))
        row = conn.execute(query).fetchone()
        conn.execute("RELEASE SAVEPOINT rollback_bot_count")
    except psycopg.Error:
        conn.execute("ROLLBACK TO SAVEPOINT rollback_bot_count")
        return None
    finally:
        conn.execute("SELECT set_config('statement_timeout', %s, true)", (f"{int(restore_timeout_ms)}ms",))
    return int(row[0]) if row else None


def table_rows(conn: psycopg.Connection[Any], table: tuple[str, ...]) -> int:
    row = conn.execute(_RELTUPLES, (_regclass(conn, table),)).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def copy_ms(conn: psycopg.Connection[Any], schema: str, query: sql.Composable, expected_rows: int,
            timeout_ms: int, restore_timeout_ms: int) -> float:
    """How long copying `query`'s rows into a new table of `schema` takes (an escrow copy), timed for at most
    `timeout_ms` and scaled to `expected_rows` when cut. It reads the source (ACCESS SHARE: it blocks nobody)
    and writes only a table of its own, created and dropped under a savepoint."""
    probe = sql.Identifier(schema, "rollback_bot_copy_probe")
    conn.execute("SAVEPOINT rollback_bot_copy")
    try:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("CREATE TABLE {} AS {} WITH NO DATA").format(probe, query))
        conn.execute("SAVEPOINT rollback_bot_copy_run")
        conn.execute("SELECT set_config('statement_timeout', %s, true)", (f"{max(1, int(timeout_ms))}ms",))
        started = time.perf_counter()
        try:
            conn.execute(sql.SQL("INSERT INTO {} {}").format(probe, query))
            return (time.perf_counter() - started) * 1000
        except psycopg.errors.QueryCanceled:
            elapsed = (time.perf_counter() - started) * 1000
            conn.execute("ROLLBACK TO SAVEPOINT rollback_bot_copy_run")
        row = conn.execute("SELECT pg_stat_get_xact_tuples_inserted(%s::regclass)",
                           (probe.as_string(conn),)).fetchone()
        copied = int(row[0]) if row and row[0] else 0
        return elapsed * max(expected_rows, copied) / copied if copied else elapsed
    except psycopg.Error:
        return 0.0  # not measurable now (the source is gone in this state): the forecast leaves it out
    finally:
        conn.execute("ROLLBACK TO SAVEPOINT rollback_bot_copy")
        conn.execute("SELECT set_config('statement_timeout', %s, true)", (f"{int(restore_timeout_ms)}ms",))
