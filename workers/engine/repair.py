"""Scenario 1 of the playbook, a migration that failed halfway: bring it back to a clean state.

- A failed transactional migration changed nothing (its transaction rolled back): its row is removed,
  so that applying it is retried, and why is recorded in migration_history (like Flyway's `repair`).
- A no-transaction migration (`CREATE INDEX CONCURRENTLY`) left `failed` or stuck `running` may be
  partly applied: its down script runs statement by statement, skipping each statement whose objects
  are already gone (PostgreSQL's parser names what a statement destroys; the catalog says whether it
  still exists); the INVALID indexes its up script left are dropped; it is marked `rolled_back`.

The plan (`plan_repair`) says exactly which statements run and which are skipped, and why; its hash
is checked again under the migration lock before anything runs (PlanChanged otherwise).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from pglast import ast
from psycopg import sql

from core.errors import first_line
from core.jsontypes import JsonObject
from workers.engine import store
from workers.engine.catalog import PgCatalog
from workers.engine.errors import (
    MissingDownScript,
    NothingToRepair,
    PlanChanged,
    RepairFailed,
    UnknownVersion,
)
from workers.engine.scripts import Migration, MigrationSet
from workers.engine.sqleffects import DestroyKind, Destruction, qualified
from workers.engine.sqltext import parse_statement
from workers.engine.versions import Status

RETRY = "retry"  # a failed transactional migration: forget the failure, apply again
REVERT = "revert"  # a partly applied no-transaction migration: its down script, what is left of it


@dataclass(frozen=True)
class RepairStatement:
    sql: str
    run: bool
    why: str = ""  # why it is skipped ("index public.x is already gone") or what it drops

    def to_dict(self) -> JsonObject:
        return {"sql": self.sql, "run": self.run, "why": self.why}


@dataclass(frozen=True)
class RepairPlan:
    version: str
    name: str
    status: str  # failed | running
    kind: str  # RETRY | REVERT
    error_message: str | None
    statements: tuple[RepairStatement, ...] = ()
    invalid_indexes: tuple[str, ...] = ()  # INVALID indexes the up script left (dropped by the plan)
    hash: str = ""

    @property
    def to_run(self) -> tuple[RepairStatement, ...]:
        return tuple(s for s in self.statements if s.run)

    def to_dict(self) -> JsonObject:
        return {"version": self.version, "name": self.name, "status": self.status, "kind": self.kind,
                "error_message": self.error_message, "statements": [s.to_dict() for s in self.statements],
                "invalid_indexes": list(self.invalid_indexes), "hash": self.hash}


@dataclass(frozen=True)
class RepairReport:
    plan: RepairPlan
    ran: tuple[str, ...]
    duration_ms: float
    new_status: str  # pending (retry) or rolled_back (revert)

    def to_dict(self) -> JsonObject:
        return {"plan": self.plan.to_dict(), "ran": list(self.ran), "duration_ms": self.duration_ms,
                "new_status": self.new_status}


def _exists(conn: psycopg.Connection[Any], d: Destruction) -> tuple[bool, str]:
    """Whether what a statement would destroy is still there, and how to name it."""
    name = qualified(d.relation)
    if d.kind is DestroyKind.DROP_SCHEMA:
        row = conn.execute("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %s)", (d.relation[0],)).fetchone()
        return bool(row and row[0]), f"schema {name}"
    relation = conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()
    there = bool(relation and relation[0])
    if not there:
        return False, f"{name}"
    if d.kind is DestroyKind.DROP_COLUMN and d.columns:
        row = conn.execute("SELECT count(*) FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attname = ANY(%s)"
                           " AND NOT attisdropped AND attnum > 0", (name, list(d.columns))).fetchone()
        return bool(row and row[0]), f"column {name}.{', '.join(d.columns)}"
    if d.constraint:
        row = conn.execute("SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass(%s)"
                           " AND conname = %s)", (name, d.constraint)).fetchone()
        return bool(row and row[0]), f"constraint {d.constraint} of {name}"
    return True, name


def _statement(conn: psycopg.Connection[Any], text: str) -> RepairStatement:
    parsed = parse_statement(text, PgCatalog(conn))
    own = [d for d in (parsed.destroys if parsed else ()) if d.via is None]
    if not own:
        return RepairStatement(text, True)
    found = [_exists(conn, d) for d in own]
    gone = [what for there, what in found if not there]
    if len(gone) == len(found):
        return RepairStatement(text, False, f"{', '.join(gone)} already gone")
    return RepairStatement(text, True, f"drops {', '.join(what for there, what in found if there)}")


def _created_indexes(migration: Migration) -> list[str]:
    """Names of the indexes the up script creates (schema-qualified when it says so)."""
    names = []
    for statement in migration.up.parsed if migration.up else ():
        tree = statement.tree
        if isinstance(tree, ast.IndexStmt) and tree.idxname:
            schema = tree.relation.schemaname if tree.relation else None
            names.append(f"{schema}.{tree.idxname}" if schema else tree.idxname)
    return names


def _invalid(conn: psycopg.Connection[Any], names: list[str]) -> list[str]:
    found = []
    for name in names:
        row = conn.execute("SELECT i.indexrelid::regclass::text FROM pg_index i WHERE i.indexrelid = to_regclass(%s)"
                           " AND NOT i.indisvalid", (name,)).fetchone()
        if row:
            found.append(str(row[0]))
    return found


def _hash(dbname: str, plan: RepairPlan) -> str:
    payload = json.dumps({"db": dbname, **plan.to_dict(), "hash": None}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def plan_repair(conn: psycopg.Connection[Any], disk: MigrationSet, version: str, dbname: str) -> RepairPlan:
    row = store.read_all(conn).get(version)
    if row is None:
        raise UnknownVersion(version, "not_applied")
    if row.status not in (Status.FAILED.value, Status.RUNNING.value):
        raise NothingToRepair(version, row.status)
    migration = disk.get(version)
    name = row.name or (migration.name if migration else "")
    transactional = migration is None or migration.up is None or migration.up.transactional
    if transactional:
        plan = RepairPlan(version, name, row.status, RETRY, row.error_message)
        return RepairPlan(**{**plan.__dict__, "hash": _hash(dbname, plan)})
    if migration is None or migration.down is None:
        raise MissingDownScript(version, name, str(disk.directory), migration_missing=migration is None)
    migration.down.check_supported()
    statements = [_statement(conn, text) for text in migration.down.statements]
    leftover = _invalid(conn, _created_indexes(migration))
    dropped_by_down = {w for s in statements if s.run for w in leftover if w in s.why}
    for index in leftover:
        if index not in dropped_by_down:
            text = sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(
                sql.Identifier(*index.split("."))).as_string(conn)
            statements.append(RepairStatement(text, True, f"INVALID index {index} left by the failed run"))
    plan = RepairPlan(version, name, row.status, REVERT, row.error_message, tuple(statements), tuple(leftover))
    return RepairPlan(**{**plan.__dict__, "hash": _hash(dbname, plan)})


def run_repair(conn: psycopg.Connection[Any], disk: MigrationSet, version: str, dbname: str, *,
               expected_hash: str | None, actor: str, approved_by: str | None, request_id: str | None,
               reason: str, log: Callable[[str], None], redact: Callable[[str], str]) -> RepairReport:
    """Under the migration lock (the caller holds it): re-plan, compare, run, record."""
    started = time.perf_counter()
    plan = plan_repair(conn, disk, version, dbname)
    if expected_hash is not None and plan.hash != expected_hash:
        raise PlanChanged(expected_hash, plan.hash)
    ran: list[str] = []
    details: dict[str, Any] = {"plan": plan.to_dict(), "reason": reason, "previous_error": plan.error_message}
    try:
        for statement in plan.to_run:  # outside a transaction: CONCURRENTLY cannot run inside one
            log(f"repair {version}: {statement.sql}")
            conn.execute(statement.sql.encode())
            ran.append(statement.sql)
    except psycopg.Error as exc:
        message = redact(first_line(exc, type(exc).__name__))
        failure = RepairFailed(version, statement.sql, message)
        store.record_history(conn, version=version, operation="repair", status="failed", executed_by=actor,
                             approved_by=approved_by, request_id=request_id, error_message=failure.message,
                             details={**details, "ran": ran})
        raise failure from None
    elapsed = (time.perf_counter() - started) * 1000
    with conn.transaction():
        if plan.kind == RETRY:
            conn.execute("DELETE FROM schema_migrations WHERE version = %s", (version,))
            new_status = "pending"
        else:
            conn.execute("UPDATE schema_migrations SET status = 'rolled_back', rolled_back_at = now(),"
                         " error_message = NULL WHERE version = %s", (version,))
            new_status = Status.ROLLED_BACK.value
        store.record_history(conn, version=version, operation="repair", status="completed", executed_by=actor,
                             approved_by=approved_by, request_id=request_id, duration_ms=int(elapsed),
                             details={**details, "ran": ran, "new_status": new_status})
    return RepairReport(plan, tuple(ran), round(elapsed, 1), new_status)

