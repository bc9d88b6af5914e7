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
from collections.abc import Collection, Mapping
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


@dataclass(frozen=True)
class TableDifference:
    table: str
    only_in: str | None = None  # the target that has the table, when the other lacks it
    details: tuple[str, ...] = ()  # "column email: text not null on prod, varchar(80) on staging", ...


@dataclass(frozen=True)
class StrayVersion:
    version: str
    on: str  # the target that has it
    missing_on: str
    roll_back_to: str | None  # the version to roll `on` back to, to take it off (None: before the first)
    also_reverts: tuple[str, ...] = ()  # newer versions on `on` that the same rollback reverts


@dataclass(frozen=True)
class Comparison:
    a: str
    b: str
    stray: tuple[StrayVersion, ...] = ()
    unknown: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # target -> versions not in its folder
    tables: tuple[TableDifference, ...] = ()

    @property
    def same(self) -> bool:
        return not (self.stray or any(self.unknown.values()) or self.tables)


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


def _column_map(shape: TableShape) -> dict[str, str]:
    return {c.split(" ", 1)[0]: c.split(" ", 1)[1] if " " in c else "" for c in shape.columns}


def table_details(table: str, a: Fingerprint, b: Fingerprint) -> tuple[str, ...]:
    """Each difference between one table on two targets, named."""
    sa, sb = a.tables[table], b.tables[table]
    details = []
    ca, cb = _column_map(sa), _column_map(sb)
    for name in [*ca, *(n for n in cb if n not in ca)]:
        if name not in cb:
            details.append(f"column {name} only on {a.target}")
        elif name not in ca:
            details.append(f"column {name} only on {b.target}")
        elif ca[name] != cb[name]:
            details.append(f"column {name}: {ca[name]} on {a.target}, {cb[name]} on {b.target}")
    for kind, la, lb in (("index", sa.indexes, sb.indexes), ("constraint", sa.constraints, sb.constraints)):
        details += [f"{kind} only on {a.target}: {x}" for x in la if x not in lb]
        details += [f"{kind} only on {b.target}: {x}" for x in lb if x not in la]
    return tuple(details)


def _stray(version: str, on: Fingerprint, missing_on: Fingerprint) -> StrayVersion:
    older = [v for v in on.versions if v < version]
    newer = tuple(v for v in on.versions if v > version)
    return StrayVersion(version, on.target, missing_on.target, older[-1] if older else None, newer)


def compare(a: Fingerprint, b: Fingerprint, known: Mapping[str, Collection[str]] | None = None) -> Comparison:
    """`known[target]`: the versions in that target's migrations folder (a version applied there but
    unknown to its folder came from somewhere else)."""
    known = known or {}
    stray = [_stray(v, a, b) for v in a.versions if v not in b.versions]
    stray += [_stray(v, b, a) for v in b.versions if v not in a.versions]
    unknown = {
        fp.target: tuple(v for v in fp.versions if v not in known[fp.target])
        for fp in (a, b) if fp.target in known
    }
    tables = []
    for table in sorted(set(a.tables) | set(b.tables)):
        if table not in b.tables:
            tables.append(TableDifference(table, only_in=a.target))
        elif table not in a.tables:
            tables.append(TableDifference(table, only_in=b.target))
        elif a.tables[table].digest != b.tables[table].digest:
            tables.append(TableDifference(table, details=table_details(table, a, b)))
    return Comparison(a=a.target, b=b.target, stray=tuple(stray), unknown=unknown, tables=tuple(tables))
