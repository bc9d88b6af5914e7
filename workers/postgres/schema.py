"""Scenario 3, the wrong database: compare two targets' applied migrations and schemas.

`fingerprint(conn)` reads a database's applied versions and, per table, its columns, indexes and
constraints (definitions as PostgreSQL prints them, schema-qualified names stripped so that the same
schema in two databases prints the same). `compare(a, b)` is pure: the versions on one and not the
other, versions a target's migrations folder does not know, and the tables that differ, each
difference named. A version on one target only is the classic accident (staging's newest migration
run against prod): the comparison says which rollback takes it off again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg

SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")
BOOKKEEPING = frozenset({"public.schema_migrations", "public.migration_history", "public.rollback_target_identity"})


@dataclass(frozen=True)
class TableShape:
    columns: tuple[str, ...]  # "name type [not null] [default ...]", in column order
    indexes: tuple[str, ...]  # index definitions, sorted
    constraints: tuple[str, ...]  # "name: definition", sorted

    @property
    def digest(self) -> str:
        text = "\n".join([*self.columns, "--", *self.indexes, "--", *self.constraints])
        return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Fingerprint:
    target: str
    versions: tuple[str, ...]  # completed migrations, oldest first
    tables: Mapping[str, TableShape] = field(default_factory=dict)


_COLUMNS = """
SELECT n.nspname || '.' || c.relname, a.attname,
       format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
       || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
WHERE c.relkind IN ('r', 'p') AND n.nspname <> ALL(%(system)s) AND n.nspname NOT LIKE 'pg\\_temp\\_%%'
ORDER BY 1, a.attnum
"""
_INDEXES = """
SELECT n.nspname || '.' || c.relname, replace(pg_get_indexdef(i.indexrelid), n.nspname || '.', '')
       || CASE WHEN i.indisvalid THEN '' ELSE ' (INVALID)' END
FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname <> ALL(%(system)s) ORDER BY 1, 2
"""
_CONSTRAINTS = """
SELECT n.nspname || '.' || c.relname, k.conname || ': ' || replace(pg_get_constraintdef(k.oid), n.nspname || '.', '')
FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname <> ALL(%(system)s) ORDER BY 1, 2
"""


def fingerprint(conn: psycopg.Connection[Any], target: str) -> Fingerprint:
    """The target's completed migrations and the shape of each of its tables (bookkeeping tables left out)."""
    params = {"system": list(SYSTEM_SCHEMAS)}
    columns: dict[str, list[str]] = {}
    for table, name, shape in conn.execute(_COLUMNS, params):
        columns.setdefault(str(table), []).append(f"{name} {shape}")
    indexes: dict[str, list[str]] = {}
    for table, definition in conn.execute(_INDEXES, params):
        indexes.setdefault(str(table), []).append(str(definition))
    constraints: dict[str, list[str]] = {}
    for table, definition in conn.execute(_CONSTRAINTS, params):
        constraints.setdefault(str(table), []).append(str(definition))
    tables = {
        t: TableShape(tuple(cols), tuple(sorted(indexes.get(t, ()))), tuple(sorted(constraints.get(t, ()))))
        for t, cols in columns.items() if t not in BOOKKEEPING
    }
    has_bookkeeping = conn.execute("SELECT to_regclass('public.schema_migrations') IS NOT NULL").fetchone()
    versions: tuple[str, ...] = ()
    if has_bookkeeping and has_bookkeeping[0]:
        rows = conn.execute("SELECT version FROM schema_migrations WHERE status = 'completed' ORDER BY version")
        versions = tuple(str(r[0]) for r in rows)
    return Fingerprint(target=target, versions=versions, tables=tables)


def invalid_indexes(conn: psycopg.Connection[Any]) -> list[str]:
    """Indexes PostgreSQL will not use: what a failed CREATE INDEX CONCURRENTLY leaves behind."""
    rows = conn.execute(
        """
        SELECT n.nspname || '.' || c.relname FROM pg_index i
        JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE NOT i.indisvalid ORDER BY 1
        """
    ).fetchall()
    return [str(r[0]) for r in rows]
