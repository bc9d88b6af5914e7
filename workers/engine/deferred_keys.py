"""Hold foreign-key checks until every escrowed copy of an undo is back, then check them all, in its transaction.

Undo puts copies back newest first (so the oldest value of a row is the one that stays). In that order a
child's rows can come back before its parent's (`DROP TABLE warehouses CASCADE; DROP TABLE stock;`), and
no order at all satisfies two tables that reference each other, or a self-referencing row that the up
script seeded and that points to a row not back yet. So the foreign keys on and to the restored tables are
checked once, at the end: those declared DEFERRABLE are deferred; the others are made DEFERRABLE for the
time of the undo (ALTER CONSTRAINT, in the undo's transaction) and set back to NOT DEFERRABLE once checked,
so the schema ends exactly as the up scripts built it. A key that does not hold fails the check, and with
it the whole undo. Referential actions (ON DELETE CASCADE, SET NULL) are never deferred by PostgreSQL:
they act as the copies go back, as they would have.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg import sql

from workers.engine.sqleffects import Name

# Top-level foreign keys (a partition's copy of its parent's key follows the parent's) on or to the tables.
_NOT_DEFERRABLE = """
SELECT parse_ident(conrelid::regclass::text), conname FROM pg_constraint
WHERE contype = 'f' AND NOT condeferrable AND conparentid = 0
  AND (conrelid IN (SELECT to_regclass(t) FROM unnest(%(tables)s::text[]) t)
       OR confrelid IN (SELECT to_regclass(t) FROM unnest(%(tables)s::text[]) t))
ORDER BY oid
"""


def defer(conn: psycopg.Connection[Any], tables: Iterable[Name]) -> list[tuple[Name, str]]:
    """Defer the foreign-key checks on and to `tables`; returns the keys made deferrable for it."""
    # Checks the up scripts left pending would block ALTER TABLE ("pending trigger events"): run them now,
    # as their commit would have.
    conn.execute("SET CONSTRAINTS ALL IMMEDIATE")
    names = sorted({sql.Identifier(*t).as_string(conn) for t in tables})
    made = [(tuple(r[0]), str(r[1])) for r in conn.execute(_NOT_DEFERRABLE, {"tables": names}).fetchall()]
    for table, constraint in made:
        conn.execute(sql.SQL("ALTER TABLE {} ALTER CONSTRAINT {} DEFERRABLE").format(
            sql.Identifier(*table), sql.Identifier(constraint)))
    conn.execute("SET CONSTRAINTS ALL DEFERRED")
    return made


def check(conn: psycopg.Connection[Any], made: list[tuple[Name, str]]) -> None:
    """Check every deferred key now (raises psycopg's IntegrityError on the first that fails), then set the keys
    made deferrable back to NOT DEFERRABLE."""
    conn.execute("SET CONSTRAINTS ALL IMMEDIATE")
    for table, constraint in made:
        conn.execute(sql.SQL("ALTER TABLE {} ALTER CONSTRAINT {} NOT DEFERRABLE").format(
            sql.Identifier(*table), sql.Identifier(constraint)))
