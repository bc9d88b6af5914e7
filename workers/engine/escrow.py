"""Data-loss escrow: before a down script's statement destroys data, copy that data aside, in the same transaction.

Each destructive statement of a rollback is classified just before it runs (with the live catalog, so an
earlier statement's schema change counts) and its data is copied into the schema `rollback_escrow`, in
plain tables named after the request (or the CLI's run id):

- DROP TABLE / TRUNCATE / DROP SCHEMA ... CASCADE: every row of each table (and its sequences' positions);
- DROP COLUMN / ALTER COLUMN ... TYPE: the primary key and the column's values (and a dropped column's sequence);
- DROP TYPE / DOMAIN / EXTENSION ... CASCADE: the columns (and typed tables) it takes with it, as above;
- UPDATE: the primary key and the old values of the columns it sets, for the rows its WHERE matches;
- DELETE: the rows its WHERE matches.

The copies are `CREATE TABLE ... AS SELECT`: no constraint, default, trigger, sequence or index, so nothing
of the escrow can act on live data. Columns of a user-defined type (enum, domain, composite, extension
types) are kept as text, so that a later `DROP TYPE` of the same down script is not blocked by the escrow.

What cannot be captured (no primary key, an UPDATE whose rows the tree cannot bound, MERGE, upserts,
WHERE CURRENT OF, DO blocks, data-modifying WITH queries) is returned as a `NotEscrowed`: the plan shows
it and a full backup stays mandatory. `manifest` records every copy; `runs` records each rollback.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, LiteralString, cast

import psycopg
from pglast import ast, enums
from psycopg import sql
from psycopg.types.json import Jsonb

from core.jsontypes import JsonObject
from workers.engine import messages, sqltext
from workers.engine.catalog import PgCatalog
from workers.engine.errors import EscrowIncomplete
from workers.engine.sqleffects import DestroyKind, Destruction, Name, qualified, range_name

SCHEMA = "rollback_escrow"
RUNS = "runs"
MANIFEST = "manifest"
MAX_IDENTIFIER = 63  # PostgreSQL's NAMEDATALEN - 1

_ROW_KINDS = {DestroyKind.DROP_TABLE, DestroyKind.TRUNCATE, DestroyKind.DROP_SCHEMA}
_COLUMN_KINDS = {DestroyKind.DROP_COLUMN, DestroyKind.ALTER_COLUMN_TYPE}
_NOTHING_TO_KEEP = {DestroyKind.DROP_INDEX, DestroyKind.DROP_CONSTRAINT}  # the up script rebuilds them
_OPAQUE_COMMANDS = ("DO", "CALL")  # their effect is in code the tree does not show


class Restore(StrEnum):
    """How undo puts a copy back."""

    REPLACE = "replace"  # the table's whole content: rows not in the escrow go, escrowed rows come back
    REINSERT = "reinsert"  # deleted rows come back
    BY_KEY = "by_key"  # column values set back on the rows with the same primary key


@dataclass(frozen=True)
class Capture:
    """One copy to make before the statement runs."""

    kind: DestroyKind
    relation: Name
    restore: Restore
    key: tuple[str, ...]
    columns: tuple[str, ...]  # copied columns besides the key (every column for whole rows)
    as_text: frozenset[str]  # copied as text (user-defined types)
    query: sql.Composable  # SELECT ... producing the copy
    counted: bool = False  # UPDATE / DELETE: the statement's row count must equal the copy's


@dataclass(frozen=True)
class NotEscrowed:
    version: str
    statement: str
    kind: str
    relation: str
    reason: str  # a few words, shown after "not escrowed: "

    def to_dict(self) -> JsonObject:
        return dict(self.__dict__)


# A sequence's position as kept: {"last_value": n, "is_called": bool}. Escrow kept before it held the bare
# pg_sequence_last_value (an int, or None when nothing had been handed out yet).
SequencePosition = dict[str, int | bool] | int | None


@dataclass(frozen=True)
class Held:
    """One copy made: a manifest row."""

    version: str
    statement_index: int
    statement: str
    kind: str
    relation: Name
    escrow_table: str
    restore: str
    key: tuple[str, ...]
    columns: tuple[str, ...]
    rows: int
    bytes: int
    sequences: dict[str, SequencePosition] = field(default_factory=dict)

    def to_dict(self) -> JsonObject:
        return {"version": self.version, "statement_index": self.statement_index, "statement": self.statement,
                "kind": self.kind, "relation": qualified(self.relation), "escrow_table": self.escrow_table,
                "restore": self.restore, "key": list(self.key), "columns": list(self.columns),
                "rows": self.rows, "bytes": self.bytes, "sequences": dict(self.sequences)}


def _migration_sql(text: str) -> sql.Composable:
    # A clause taken from the migration's own statement (its WHERE, FROM/USING, WITH), which the engine runs
    # as written anyway; the escrow runs it unchanged so that it selects exactly the rows the statement hits.
    return sql.SQL(cast(LiteralString, text))


# --- the live table, as the catalog has it now ---------------------------------------------------

_TABLE = """
SELECT c.relkind,
       ARRAY(SELECT a.attname FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, n)
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
             WHERE i.indrelid = c.oid AND i.indisprimary ORDER BY k.n),
       ARRAY(SELECT a.attname FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum),
       ARRAY(SELECT a.attname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
               AND (a.atttypid >= 16384 OR COALESCE(NULLIF(t.typelem, 0), 0) >= 16384)),
       ARRAY(SELECT a.attname FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
               AND a.attgenerated <> ''),
       ARRAY(SELECT a.attname FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
               AND a.attidentity = 'a')
FROM pg_class c WHERE c.oid = to_regclass(%s)
"""
# Sequences a table's columns own (serial, identity): dropped with the table or the column, so their position
# is kept too.
_SEQUENCES = """
SELECT a.attname, parse_ident(d.objid::regclass::text)
FROM pg_depend d JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
  AND d.refobjid = to_regclass(%s) AND d.deptype IN ('a', 'i')
ORDER BY a.attnum
"""
# What a DROP TYPE / DROP DOMAIN / DROP EXTENSION ... CASCADE takes with it, found the way PostgreSQL finds it
# (everything that depends on the object, recursively): whole tables (typed tables, attnum 0) and the columns
# of a type of it (the type, its array, a domain over it). Generated columns are recomputed, not kept.
_CASCADE = """
WITH RECURSIVE gone(classid, objid, objsubid) AS (
    SELECT %s::regclass::oid, %s::oid, 0
    UNION
    SELECT d.classid, d.objid, d.objsubid FROM pg_depend d
    JOIN gone g ON d.refclassid = g.classid AND d.refobjid = g.objid AND (g.objsubid = 0 OR d.refobjsubid = g.objsubid)
    WHERE d.deptype IN ('n', 'a', 'i', 'e')
)
SELECT DISTINCT c.oid, parse_ident(c.oid::regclass::text), a.attnum, a.attname
FROM gone g JOIN pg_class c ON g.classid = 'pg_class'::regclass AND c.oid = g.objid AND c.relkind IN ('r', 'p')
LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = g.objsubid AND g.objsubid > 0
WHERE g.objsubid = 0 OR (a.attgenerated = '' AND NOT a.attisdropped
                         AND NOT EXISTS (SELECT 1 FROM gone w WHERE w.classid = g.classid AND w.objid = g.objid
                                                                AND w.objsubid = 0))
ORDER BY c.oid, a.attnum NULLS FIRST
"""
_CASCADE_ROOTS: dict[object, tuple[str, LiteralString]] = {
    enums.ObjectType.OBJECT_TYPE: ("pg_type", "SELECT to_regtype(%s)::oid"),
    enums.ObjectType.OBJECT_DOMAIN: ("pg_type", "SELECT to_regtype(%s)::oid"),
    enums.ObjectType.OBJECT_EXTENSION: ("pg_extension", "SELECT oid FROM pg_extension WHERE extname = %s")}


@dataclass(frozen=True)
class Table:
    relation: Name
    relkind: str
    key: tuple[str, ...]
    columns: tuple[str, ...]
    user_typed: frozenset[str]
    generated: frozenset[str]
    identity_always: frozenset[str]  # GENERATED ALWAYS AS IDENTITY: an UPDATE may only set them to DEFAULT


def table(conn: psycopg.Connection[Any], relation: Name) -> Table | None:
    row = conn.execute(_TABLE, (sql.Identifier(*relation).as_string(conn),)).fetchone()
    if row is None:
        return None
    return Table(relation, str(row[0]), tuple(row[1]), tuple(row[2]), frozenset(row[3]), frozenset(row[4]),
                 frozenset(row[5]))


def sequences(conn: psycopg.Connection[Any], relation: Name, columns: Sequence[str] | None = None
              ) -> dict[str, SequencePosition]:
    """Positions of the sequences the table's columns own (they go with a dropped table or column): the last
    value and whether it was handed out (not yet, after a RESTART), so nextval gives exactly what it would have."""
    out: dict[str, SequencePosition] = {}
    for column, name in conn.execute(_SEQUENCES, (sql.Identifier(*relation).as_string(conn),)).fetchall():
        if columns is None or column in columns:
            row = conn.execute(sql.SQL("SELECT last_value, is_called FROM {}").format(
                sql.Identifier(*name))).fetchone()
            if row is not None:
                out[column] = {"last_value": int(row[0]), "is_called": bool(row[1])}
    return out


# --- what to copy for one statement --------------------------------------------------------------


def _select(t: Table, columns: Sequence[str], ref: Name, source: sql.Composable, condition: sql.Composable | None,
            with_: str | None) -> sql.Composable:
    items = []
    for c in columns:
        value: sql.Composable = sql.Identifier(*ref, c)
        if c in t.user_typed:
            value = sql.SQL("{}::text").format(value)
        items.append(sql.SQL("{} AS {}").format(value, sql.Identifier(c)))
    query = sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(items), source)
    if condition is not None:
        query = sql.SQL("{} WHERE {}").format(query, condition)
    if with_:
        query = sql.SQL("{} {}").format(_migration_sql(with_), query)
    return query


def _whole(t: Table, kind: DestroyKind) -> Capture:
    ref = (t.relation[-1],)
    query = _select(t, t.columns, ref, sql.Identifier(*t.relation), None, None)
    return Capture(kind, t.relation, Restore.REPLACE, t.key, t.columns, t.user_typed & set(t.columns), query)


def _row_change(t: Table, d: Destruction, tree: ast.UpdateStmt | ast.DeleteStmt) -> Capture | str:
    if d.current_of:
        return "WHERE CURRENT OF a cursor"
    if tree.whereClause is not None and d.where is None:
        return "its WHERE could not be read"
    joins = tree.fromClause if isinstance(tree, ast.UpdateStmt) else tree.usingClause
    if joins and d.using is None:
        return "its FROM/USING could not be read"
    rv = tree.relation
    if rv is None:
        return "its target could not be read"
    alias = rv.alias.aliasname if rv.alias is not None else None
    ref: Name = (alias,) if alias else (t.relation[-1],)
    source: sql.Composable = sql.Identifier(*t.relation)
    if not rv.inh:
        source = sql.SQL("ONLY {}").format(source)
    if alias:
        source = sql.SQL("{} AS {}").format(source, sql.Identifier(alias))
    condition: sql.Composable | None = _migration_sql(d.where) if d.where is not None else None
    if d.using is not None:  # a joined row may match many times: the copy keeps each target row once
        inner = sql.SQL("SELECT 1 FROM {}").format(_migration_sql(d.using))
        if condition is not None:
            inner = sql.SQL("{} WHERE {}").format(inner, condition)
        condition = sql.SQL("EXISTS ({})").format(inner)
    if d.kind == DestroyKind.DELETE:
        query = _select(t, t.columns, ref, source, condition, d.with_)
        return Capture(d.kind, t.relation, Restore.REINSERT, t.key, t.columns, t.user_typed & set(t.columns),
                       query, counted=True)
    if not t.key:
        return "no primary key"
    if set(d.columns) & set(t.key):
        return "it changes the primary key"
    columns = tuple(c for c in d.columns if c in t.columns)
    query = _select(t, (*t.key, *columns), ref, source, condition, d.with_)
    return Capture(d.kind, t.relation, Restore.BY_KEY, t.key, columns, t.user_typed & {*t.key, *columns}, query,
                   counted=True)


def _data_modifying_with(tree: ast.Node | None) -> bool:
    with_clause = getattr(tree, "withClause", None)
    ctes = getattr(with_clause, "ctes", None) or ()
    return any(not isinstance(getattr(c, "ctequery", None), ast.SelectStmt) for c in ctes)


def plan(conn: psycopg.Connection[Any], statement: sqltext.Statement) -> list[Capture | tuple[Destruction | None, str]]:
    """The copies to make before `statement` runs, or (destruction, reason) for what cannot be copied.

    Reads the catalog as it is now, inside the caller's transaction.
    """
    out: list[Capture | tuple[Destruction | None, str]] = []
    if statement.kind.split(" ")[0] in _OPAQUE_COMMANDS:
        return [(None, f"a {statement.kind} block's effect cannot be read from its text")]
    row_changes = [d for d in statement.destroys if d.kind in (DestroyKind.UPDATE, DestroyKind.DELETE)]
    for d in statement.destroys:
        if d.kind in _NOTHING_TO_KEEP:
            continue
        if d.kind in (DestroyKind.MERGE, DestroyKind.UPSERT):
            out.append((d, f"{'MERGE' if d.kind == DestroyKind.MERGE else 'INSERT ... ON CONFLICT DO UPDATE'}"
                           " overwrites rows the tree cannot bound"))
            continue
        if d.kind == DestroyKind.DROP_SCHEMA:
            if d.cascade:
                for name in PgCatalog(conn).schema_tables(d.relation[0]):
                    t = table(conn, name)
                    if t is not None and t.relkind in ("r", "p"):
                        out.append(_whole(t, DestroyKind.DROP_SCHEMA))
            continue
        t = table(conn, d.relation)
        if t is None or t.relkind not in ("r", "p"):
            continue  # IF EXISTS of nothing, a view, a foreign table: no rows of this database are lost
        if d.kind in _ROW_KINDS:
            out.append(_whole(t, d.kind))
        elif d.kind in _COLUMN_KINDS:
            column = d.columns[0] if d.columns else ""
            if column not in t.columns:
                continue  # DROP COLUMN IF EXISTS of a column that is not there
            found_column = _column(t, d.kind, column)
            out.append(found_column if isinstance(found_column, Capture) else (d, found_column))
        elif d.kind in (DestroyKind.UPDATE, DestroyKind.DELETE):
            tree = statement.tree
            if len(row_changes) > 1 or _data_modifying_with(tree) \
                    or not isinstance(tree, ast.UpdateStmt | ast.DeleteStmt) \
                    or range_name(tree.relation) != d.relation:
                out.append((d, "a data-modifying WITH query"))
                continue
            found = _row_change(t, d, tree)
            out.append(found if isinstance(found, Capture) else (d, found))
    return out + _cascaded(conn, statement.tree)


def _column(t: Table, kind: DestroyKind, column: str) -> Capture | str:
    """A dropped (or retyped) column's values, by primary key; or why they cannot be kept."""
    if not t.key:
        return "no primary key"
    if column in t.key:
        return "the column is part of the primary key"
    query = _select(t, (*t.key, column), (t.relation[-1],), sql.Identifier(*t.relation), None, None)
    return Capture(kind, t.relation, Restore.BY_KEY, t.key, (column,), t.user_typed & {*t.key, column}, query)


def _cascaded(conn: psycopg.Connection[Any], tree: ast.Node | None) -> list[Capture | tuple[Destruction | None, str]]:
    """The tables and columns a DROP TYPE / DOMAIN / EXTENSION ... CASCADE takes with it (IF EXISTS of nothing:
    none)."""
    if not isinstance(tree, ast.DropStmt) or tree.behavior != enums.DropBehavior.DROP_CASCADE:
        return []
    root = _CASCADE_ROOTS.get(tree.removeType)
    if root is None:
        return []
    catalog, find = root
    out: list[Capture | tuple[Destruction | None, str]] = []
    for obj in tree.objects or ():
        parts = [str(getattr(n, "sval", "")) for n in (getattr(obj, "names", None) or (obj,))]
        # A type by its (quoted) name, as to_regtype reads it; an extension by its bare name.
        name = sql.Identifier(*parts).as_string(conn) if catalog == "pg_type" else parts[-1]
        found = conn.execute(find, (name,)).fetchone()
        if not found or found[0] is None:
            continue
        for _oid, relation, _attnum, column in conn.execute(_CASCADE, (catalog, found[0])).fetchall():
            t = table(conn, tuple(relation))
            if t is None:
                continue
            if column is None:
                out.append(_whole(t, DestroyKind.DROP_TABLE))
                continue
            kept = _column(t, DestroyKind.DROP_COLUMN, column)
            out.append(kept if isinstance(kept, Capture)
                       else (Destruction(DestroyKind.DROP_COLUMN, t.relation, (column,), cascade=True), kept))
    return out


def not_escrowed(version: str, statement: str, destruction: Destruction | None, reason: str,
                 kind: str) -> NotEscrowed:
    return NotEscrowed(version, sqltext.one_line(statement),
                       str(destruction.kind) if destruction else kind.lower(),
                       qualified(destruction.relation) if destruction else "", reason)


def assess(conn: psycopg.Connection[Any], version: str, text: str) -> list[NotEscrowed]:
    """What of `text` would not be escrowed if it ran now (for the dry run and the plan)."""
    statement = sqltext.parse_statement(text, PgCatalog(conn))
    if statement is None:
        return [NotEscrowed(version, sqltext.one_line(text), "unknown", "", "it does not parse")]
    return [not_escrowed(version, text, item[0], item[1], statement.kind)
            for item in plan(conn, statement) if not isinstance(item, Capture)]


def assess_outside(version: str, text: str) -> list[NotEscrowed]:
    """What of a no-transaction statement destroys data: none of it can be escrowed."""
    statement = sqltext.parse_statement(text)
    kept = [d for d in (statement.destroys if statement else ()) if d.kind not in _NOTHING_TO_KEEP]
    return [not_escrowed(version, text, d, "it runs outside a transaction", statement.kind if statement else "")
            for d in kept]


# --- the tables that hold it ---------------------------------------------------------------------


def ensure_schema(conn: psycopg.Connection[Any]) -> None:
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)))
    conn.execute(sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} (request_id text PRIMARY KEY, target_version text, versions text[] NOT NULL,"
        " plan_hash text, executed_by text, approved_by text, created_at timestamptz NOT NULL DEFAULT now(),"
        " not_escrowed jsonb NOT NULL DEFAULT '[]', undone_at timestamptz, undone_by text, undo_request_id text)"
    ).format(sql.Identifier(SCHEMA, RUNS)))
    conn.execute(sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} (id bigserial PRIMARY KEY, request_id text NOT NULL, version text NOT NULL,"
        " statement_index integer NOT NULL, statement text NOT NULL, kind text NOT NULL,"
        " source_relation text[] NOT NULL, escrow_table text NOT NULL, restore text NOT NULL,"
        " key_columns text[] NOT NULL, columns text[] NOT NULL, row_count bigint NOT NULL,"
        " size_bytes bigint NOT NULL, sequences jsonb NOT NULL DEFAULT '{{}}',"
        " created_at timestamptz NOT NULL DEFAULT now())"
    ).format(sql.Identifier(SCHEMA, MANIFEST)))


def schema_exists(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL",
                       (sql.Identifier(SCHEMA, MANIFEST).as_string(conn),)).fetchone()
    return bool(row and row[0])


def escrow_table_name(request_id: str, index: int, relation: Name) -> str:
    owner = re.sub(r"[^a-z0-9]+", "_", request_id.lower()).strip("_")[:36]
    rel = re.sub(r"[^a-z0-9]+", "_", relation[-1].lower()).strip("_")[:20]
    return f"{owner}_{index:03d}_{rel}"[:MAX_IDENTIFIER]


class Recorder:
    """Makes the copies of one rollback run, statement by statement, in the run's transaction."""

    def __init__(self, conn: psycopg.Connection[Any], request_id: str, *, required: bool,
                 rehearsal: bool = False) -> None:
        self.conn = conn
        self.request_id = request_id
        self.required = required  # no full backup protects this run: anything not escrowed refuses it
        # A dry run's copies: the same tables made the same way in its transaction (so that the lock forecast
        # holds their time), never recorded: no manifest or run row, whose id sequence would advance.
        self.rehearsal = rehearsal
        self.held: list[Held] = []
        self.not_escrowed: list[NotEscrowed] = []
        self._counted: list[Held] = []

    def begin(self, *, target_version: str | None, versions: Sequence[str], plan_hash: str, executed_by: str,
              approved_by: str | None) -> None:
        """Start afresh (a retried attempt's transaction lost the earlier copies) and record the run."""
        self.held, self.not_escrowed, self._counted = [], [], []
        ensure_schema(self.conn)
        if self.rehearsal:
            return
        self.conn.execute(sql.SQL(
            "INSERT INTO {} (request_id, target_version, versions, plan_hash, executed_by, approved_by)"
            " VALUES (%s, %s, %s, %s, %s, %s)").format(sql.Identifier(SCHEMA, RUNS)),
            (self.request_id, target_version, list(versions), plan_hash, executed_by, approved_by))

    def before(self, version: str, index: int, text: str) -> None:
        """Copy what `text` is about to destroy. Raises EscrowIncomplete when escrow is required and cannot be made."""
        statement = sqltext.parse_statement(text, PgCatalog(self.conn))
        self._counted = []
        if statement is None:
            self._refuse(NotEscrowed(version, sqltext.one_line(text), "unknown", "", "it does not parse"))
            return
        for item in plan(self.conn, statement):
            if isinstance(item, Capture):
                held = self._copy(version, index, text, item)
                self.held.append(held)
                if item.counted:
                    self._counted.append(held)
            else:
                self._refuse(not_escrowed(version, text, item[0], item[1], statement.kind))

    def after(self, rowcount: int | None) -> None:
        """An UPDATE / DELETE must have changed exactly the rows copied (else the copy is not the truth)."""
        for held in self._counted:
            if rowcount is not None and rowcount != held.rows:
                raise EscrowIncomplete(self.request_id, messages.escrow_count_mismatch(
                    qualified(held.relation), held.rows, rowcount))
        self._counted = []

    def outside_transaction(self, version: str, text: str) -> None:
        """A statement of a no-transaction script: its data cannot be copied in its transaction."""
        for item in assess_outside(version, text):
            self._refuse(item)

    def finish(self) -> None:
        if self.rehearsal:
            return
        self.conn.execute(sql.SQL("UPDATE {} SET not_escrowed = %s WHERE request_id = %s").format(
            sql.Identifier(SCHEMA, RUNS)), (Jsonb([n.to_dict() for n in self.not_escrowed]), self.request_id))

    def _refuse(self, item: NotEscrowed) -> None:
        if self.required:
            raise EscrowIncomplete(self.request_id, messages.escrow_required(item.statement, item.reason))
        self.not_escrowed.append(item)

    def _copy(self, version: str, index: int, text: str, capture: Capture) -> Held:
        name = escrow_table_name(self.request_id, len(self.held) + 1, capture.relation)
        target = sql.Identifier(SCHEMA, name)
        with self.conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE TABLE {} AS {}").format(target, capture.query))
            rows = max(cur.rowcount, 0)
        if self.rehearsal:
            return Held(version, index, text, str(capture.kind), capture.relation, name, str(capture.restore),
                        capture.key, capture.columns, rows, 0)
        seqs = sequences(self.conn, capture.relation) if capture.restore == Restore.REPLACE \
            else sequences(self.conn, capture.relation, capture.columns) if capture.kind == DestroyKind.DROP_COLUMN \
            else {}
        row = self.conn.execute(sql.SQL(
            "INSERT INTO {} (request_id, version, statement_index, statement, kind, source_relation, escrow_table,"
            " restore, key_columns, columns, row_count, size_bytes, sequences)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, pg_total_relation_size(%s::regclass), %s)"
            " RETURNING size_bytes").format(sql.Identifier(SCHEMA, MANIFEST)),
            (self.request_id, version, index, text, str(capture.kind), list(capture.relation), name,
             str(capture.restore), list(capture.key), list(capture.columns), rows, target.as_string(self.conn),
             Jsonb(seqs))).fetchone()
        held = Held(version, index, text, str(capture.kind), capture.relation, name, str(capture.restore),
                    capture.key, capture.columns, rows, int(row[0]) if row else 0, seqs)
        return held

    def to_dict(self) -> JsonObject:
        return {"request_id": self.request_id, "held": [h.to_dict() for h in self.held],
                "not_escrowed": [n.to_dict() for n in self.not_escrowed],
                "rows": sum(h.rows for h in self.held), "bytes": sum(h.bytes for h in self.held)}


# --- what is held: listing, reading back, purging ------------------------------------------------


def holdings(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """One entry per rollback run that holds escrow, newest first."""
    if not schema_exists(conn):
        return []
    rows = conn.execute(sql.SQL(
        "SELECT r.request_id, r.versions, r.target_version, r.created_at, r.undone_at, r.undo_request_id,"
        " r.not_escrowed, now() - r.created_at,"
        " COALESCE(array_agg(DISTINCT array_to_string(m.source_relation, '.'))"
        "   FILTER (WHERE m.id IS NOT NULL), '{{}}'),"
        " COALESCE(sum(m.row_count), 0), COALESCE(sum(m.size_bytes), 0), count(m.id)"
        " FROM {} r LEFT JOIN {} m USING (request_id)"
        " GROUP BY r.request_id ORDER BY r.created_at DESC").format(
            sql.Identifier(SCHEMA, RUNS), sql.Identifier(SCHEMA, MANIFEST))).fetchall()
    return [{"request_id": r[0], "versions": list(r[1]), "to": r[2], "created_at": r[3].isoformat(),
             "undone_at": r[4].isoformat() if r[4] else None, "undo_request_id": r[5],
             "not_escrowed": list(r[6] or []), "age": _age(r[7].total_seconds()), "age_seconds": int(r[7].total_seconds()),
             "tables": sorted(r[8]), "rows": int(r[9]), "bytes": int(r[10]), "copies": int(r[11])} for r in rows]


def _age(seconds: float) -> str:
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    if seconds < 86400 * 2:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def run_of(conn: psycopg.Connection[Any], request_id: str) -> dict[str, Any] | None:
    if not schema_exists(conn):
        return None
    row = conn.execute(sql.SQL(
        "SELECT request_id, versions, target_version, plan_hash, created_at, undone_at, undone_by, undo_request_id,"
        " not_escrowed FROM {} WHERE request_id = %s FOR UPDATE").format(sql.Identifier(SCHEMA, RUNS)),
        (request_id,)).fetchone()
    if row is None:
        return None
    keys = ("request_id", "versions", "to", "plan_hash", "created_at", "undone_at", "undone_by", "undo_request_id",
            "not_escrowed")
    return dict(zip(keys, row, strict=True))


def held_of(conn: psycopg.Connection[Any], request_id: str) -> list[Held]:
    """The copies of one run, in the order they were made."""
    rows = conn.execute(sql.SQL(
        "SELECT version, statement_index, statement, kind, source_relation, escrow_table, restore, key_columns,"
        " columns, row_count, size_bytes, sequences FROM {} WHERE request_id = %s ORDER BY id").format(
            sql.Identifier(SCHEMA, MANIFEST)), (request_id,)).fetchall()
    return [Held(r[0], r[1], r[2], r[3], tuple(r[4]), r[5], r[6], tuple(r[7]), tuple(r[8]), int(r[9]), int(r[10]),
                 dict(r[11] or {})) for r in rows]


def mark_undone(conn: psycopg.Connection[Any], request_id: str, by: str, undo_request_id: str | None) -> None:
    conn.execute(sql.SQL("UPDATE {} SET undone_at = now(), undone_by = %s, undo_request_id = %s"
                         " WHERE request_id = %s").format(sql.Identifier(SCHEMA, RUNS)),
                 (by, undo_request_id, request_id))


def purge(conn: psycopg.Connection[Any], retention_days: float) -> list[tuple[str, int]]:
    """Drop the escrow of runs older than the retention period, one run per transaction; (request, tables)."""
    if not schema_exists(conn):
        return []
    old = [r[0] for r in conn.execute(sql.SQL(
        "SELECT request_id FROM {} WHERE created_at < now() - make_interval(secs => %s) ORDER BY created_at").format(
            sql.Identifier(SCHEMA, RUNS)), (retention_days * 86400,)).fetchall()]
    purged = []
    for request_id in old:
        with conn.transaction():
            tables = [h.escrow_table for h in held_of(conn, request_id)]
            for name in tables:
                conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(SCHEMA, name)))
            conn.execute(sql.SQL("DELETE FROM {} WHERE request_id = %s").format(sql.Identifier(SCHEMA, MANIFEST)),
                         (request_id,))
            conn.execute(sql.SQL("DELETE FROM {} WHERE request_id = %s").format(sql.Identifier(SCHEMA, RUNS)),
                         (request_id,))
        purged.append((request_id, len(tables)))
    return purged
