"""Answer `sqleffects.Catalog` from a live database: foreign keys, index tables, schema contents.

Read-only catalog queries on the connection it is given (inside the caller's transaction, so a script's
earlier statements are seen). Names come back as PostgreSQL prints a regclass: schema-qualified only when
the schema is not on the search_path, exactly like names written in a migration.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from workers.engine.sqleffects import Name

_REFERENCED = ("SELECT DISTINCT parse_ident(confrelid::regclass::text) FROM pg_constraint"
               " WHERE contype = 'f' AND conrelid = to_regclass(%s) AND confrelid <> conrelid")
_REFERENCING = ("SELECT DISTINCT parse_ident(conrelid::regclass::text) FROM pg_constraint"
                " WHERE contype = 'f' AND confrelid = to_regclass(%s) AND confrelid <> conrelid")
_FOREIGN_KEY_TARGET = ("SELECT parse_ident(confrelid::regclass::text) FROM pg_constraint"
                       " WHERE contype = 'f' AND conrelid = to_regclass(%s) AND conname = %s")
_INDEX_TABLE = "SELECT parse_ident(indrelid::regclass::text) FROM pg_index WHERE indexrelid = to_regclass(%s)"
_SCHEMA_TABLES = ("SELECT parse_ident(c.oid::regclass::text) FROM pg_class c"
                  " JOIN pg_namespace n ON n.oid = c.relnamespace"
                  " WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'm') ORDER BY c.oid")


class PgCatalog:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def _regclass(self, name: Name) -> str:
        return sql.Identifier(*name).as_string(self._conn)

    def _names(self, query: str, *params: object) -> tuple[Name, ...]:
        rows = self._conn.execute(query, params).fetchall()
        return tuple(tuple(r[0]) for r in rows)

    def referenced_tables(self, table: Name) -> Sequence[Name]:
        return self._names(_REFERENCED, self._regclass(table))

    def referencing_tables(self, table: Name) -> Sequence[Name]:
        return self._names(_REFERENCING, self._regclass(table))

    def foreign_key_target(self, table: Name, constraint: str) -> Name | None:
        found = self._names(_FOREIGN_KEY_TARGET, self._regclass(table), constraint)
        return found[0] if found else None

    def index_table(self, index: Name) -> Name | None:
        found = self._names(_INDEX_TABLE, self._regclass(index))
        return found[0] if found else None

    def schema_tables(self, schema: str) -> Sequence[Name]:
        return self._names(_SCHEMA_TABLES, schema)
