"""Undo a rollback: re-apply the reverted migrations' up scripts, then put every escrowed value back, in one transaction.

The escrow of a rollback (`escrow.py`) holds, in the order the down scripts destroyed it, each table's rows,
each dropped column's values and each UPDATE's old values, by primary key. Undo runs the up scripts (oldest
first), then puts the copies back newest first, so that where two copies cover the same value the older one,
taken before anything of the rollback ran, is the one that stays. Foreign keys on and to the restored tables
are checked once every copy is back (`deferred_keys.py`): newest first puts a child before its parent, and
no order satisfies a cycle. Each copy is checked as it is put back (every escrowed key found, every row back,
the table's row count); any mismatch or broken key rolls the whole undo back. Sequences owned by a dropped
table or column are set back to where they were. The escrow itself is kept (until the
retention period purges it) and marked undone, so a second undo is refused.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from core.jsontypes import JsonObject
from workers.engine import deferred_keys, escrow, interrupts, messages, runner, store
from workers.engine.errors import (
    EngineError,
    LockTimeout,
    MigrationFailed,
    PlanChanged,
    UndoFailed,
    UndoRefused,
)
from workers.engine.escrow import SCHEMA, Held, Restore
from workers.engine.locks import local_timeouts
from workers.engine.results import PlanStep, RunReport, ServerInfo, StatementResult
from workers.engine.sqleffects import qualified


@dataclass(frozen=True)
class UndoPlan:
    request_id: str  # the rollback being undone (its request id, or the CLI's run id)
    steps: list[PlanStep]  # the up scripts, oldest first
    held: list[Held]  # the copies, in the order they were made
    hash: str
    dbname: str
    to: str | None  # the version the rollback went back to

    @property
    def versions(self) -> list[str]:
        return [s.version for s in self.steps]

    def to_dict(self) -> JsonObject:
        return {"operation": "undo", "request_id": self.request_id, "versions": self.versions,
                "steps": [s.to_dict() for s in self.steps], "held": [h.to_dict() for h in self.held],
                "hash": self.hash, "dbname": self.dbname, "to": self.to,
                "rows": sum(h.rows for h in self.held), "bytes": sum(h.bytes for h in self.held)}


@dataclass(frozen=True)
class UndoReport:
    plan: UndoPlan
    statements: list[StatementResult]
    restored: list[dict[str, Any]]
    duration_ms: float
    dry_run: bool
    already_done: bool = False

    def to_dict(self) -> JsonObject:
        return {"operation": "undo", "dry_run": self.dry_run, "plan": self.plan.to_dict(),
                "statements": [s.to_dict() for s in self.statements], "restored": list(self.restored),
                "duration_ms": self.duration_ms, "already_done": self.already_done,
                "versions": self.plan.versions, "request_id": self.plan.request_id}


def _hash(server: ServerInfo, request_id: str, steps: list[PlanStep], held: list[Held]) -> str:
    payload = {"system_identifier": server.system_identifier, "dbname": server.dbname, "operation": "undo",
               "request_id": request_id, "steps": [[s.version, s.sql] for s in steps],
               "held": [[h.escrow_table, h.rows] for h in held]}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def build_plan(ctx: runner.Context, request_id: str, *, undo_request_id: str | None) -> UndoPlan | RunReport:
    """The undo of `request_id` as things stand (inside the caller's transaction), or the earlier result when this
    very undo request already ran. Raises UndoRefused with the reason it cannot run."""
    run = escrow.run_of(ctx.conn, request_id)
    if run is None:
        raise UndoRefused(request_id, "unknown")
    if run["undone_at"] is not None:
        if undo_request_id and run["undo_request_id"] == undo_request_id:
            return RunReport("undo", list(run["versions"]), [], 0.0, request_id=undo_request_id, already_done=True)
        raise UndoRefused(request_id, "already_undone",
                          f"by {run['undone_by']} at {run['undone_at']:%Y-%m-%d %H:%M:%S %Z}".strip())
    if run["not_escrowed"]:
        first = run["not_escrowed"][0]
        raise UndoRefused(request_id, "not_escrowed", f"{first['statement']}: {first['reason']}")
    rows = store.read_all(ctx.conn)
    versions = sorted(run["versions"])
    for version in versions:
        row = rows.get(version)
        if row is None or row.status != "rolled_back":
            raise UndoRefused(request_id, "not_rolled_back", version)
    newer = [v for v, r in rows.items() if r.status == "completed" and v > versions[0]]
    if newer:
        raise UndoRefused(request_id, "newer_applied", min(newer))
    steps = []
    for version in versions:
        m = ctx.disk.get(version)
        if m is None or m.up is None:
            raise UndoRefused(request_id, "no_up", version)
        recorded = rows[version].checksum
        if recorded and recorded != m.up.checksum:
            raise UndoRefused(request_id, "drift", f"{version}_{m.name}")
        if not m.up.transactional:
            raise UndoRefused(request_id, "no_transaction", f"{version}_{m.name}")
        steps.append(PlanStep(version, m.name, m.up.sql, True, tuple(m.up.statements)))
    held = escrow.held_of(ctx.conn, request_id)
    return UndoPlan(request_id, steps, held, _hash(ctx.server, request_id, steps, held), ctx.server.dbname,
                    run["to"])


def plan(ctx: runner.Context, request_id: str, *, undo_request_id: str | None) -> UndoPlan:
    """The undo plan as things stand (read in a transaction that is rolled back); an undo request that already
    ran is refused here like any other second undo."""
    with interrupts.transaction(ctx.conn, force_rollback=True):
        found = build_plan(ctx, request_id, undo_request_id=None)
    assert isinstance(found, UndoPlan)
    return found


# --- putting the copies back ---------------------------------------------------------------------


def _restore(conn: psycopg.Connection[Any], h: Held) -> int:
    """Put one copy back; returns the rows it put back. Raises UndoFailed when the copy does not fit exactly."""
    relation = qualified(h.relation)
    live = escrow.table(conn, h.relation)
    if live is None:
        raise UndoFailed("", relation, "the table does not exist after the up scripts")
    missing = [c for c in (*h.key, *h.columns) if c not in live.columns]
    if missing:
        raise UndoFailed("", relation, f"column(s) {', '.join(missing)} missing after the up scripts")
    target = sql.Identifier(*h.relation)
    copy = sql.Identifier(SCHEMA, h.escrow_table)
    # The copy's values, typed as the live table's columns (text-kept user types included): one record per row.
    typed = sql.SQL("{} AS e CROSS JOIN LATERAL json_populate_record(NULL::{}, row_to_json(e)) AS r").format(
        copy, target)
    writable = [c for c in h.columns if c not in live.generated and c not in h.key]
    match = sql.SQL(" AND ").join(sql.SQL("t.{} = r.{}").format(sql.Identifier(k), sql.Identifier(k)) for k in h.key)
    if h.restore == Restore.BY_KEY:
        sets = sql.SQL(", ").join(sql.SQL("{} = r.{}").format(sql.Identifier(c), sql.Identifier(c)) for c in writable)
        with _identity_writable(conn, target, live, writable):
            cur = conn.execute(sql.SQL("UPDATE {} AS t SET {} FROM {} WHERE {}").format(target, sets, typed, match))
        if cur.rowcount != h.rows:
            raise UndoFailed("", relation, f"{h.rows} escrowed key(s), {cur.rowcount} found")
        _set_sequences(conn, target, h.sequences)  # a dropped serial / identity column's sequence went with it
        return cur.rowcount
    if h.restore == Restore.REPLACE:
        if h.key:
            keep = sql.SQL(" AND ").join(
                sql.SQL("e.{} = t.{}{}").format(sql.Identifier(k), sql.Identifier(k),
                                                 sql.SQL("::text") if k in _text_kept(conn, h) else sql.SQL(""))
                for k in h.key)
            conn.execute(sql.SQL("DELETE FROM {} AS t WHERE NOT EXISTS (SELECT 1 FROM {} AS e WHERE {})").format(
                target, copy, keep))
        else:
            conn.execute(sql.SQL("DELETE FROM {}").format(target))
    columns = [c for c in h.columns if c not in live.generated]
    names = sql.SQL(", ").join(map(sql.Identifier, columns))
    values = sql.SQL(", ").join(sql.SQL("r.{}").format(sql.Identifier(c)) for c in columns)
    insert = sql.SQL("INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM {}").format(
        target, names, values, typed)
    put_back = 0
    if h.key:
        # Rows the up scripts made again under the same key are overwritten in place (no delete: that would fire
        # ON DELETE actions on other tables); the others are inserted. No unique index is needed for either.
        non_key = [c for c in columns if c not in h.key]
        if non_key:
            sets = sql.SQL(", ").join(sql.SQL("{} = r.{}").format(sql.Identifier(c), sql.Identifier(c)) for c in non_key)
            with _identity_writable(conn, target, live, non_key):
                put_back += conn.execute(sql.SQL("UPDATE {} AS t SET {} FROM {} WHERE {}").format(
                    target, sets, typed, match)).rowcount
        else:
            put_back += conn.execute(sql.SQL("SELECT count(*) FROM {} AS t JOIN {} ON {}").format(
                target, typed, match)).fetchone()[0]  # type: ignore[index]
        insert = sql.SQL("{} WHERE NOT EXISTS (SELECT 1 FROM {} AS t WHERE {})").format(insert, target, match)
    cur = conn.execute(insert)
    put_back += cur.rowcount
    if put_back != h.rows:
        raise UndoFailed("", relation, f"{h.rows} escrowed row(s), {put_back} put back")
    if h.restore == Restore.REPLACE:
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(target)).fetchone()
        if not row or row[0] != h.rows:
            raise UndoFailed("", relation, f"{h.rows} row(s) escrowed, the table holds {row[0] if row else 0}")
        _set_sequences(conn, target, h.sequences)  # exactly where it was: the table is exactly as it was
    return put_back


def _set_sequences(conn: psycopg.Connection[Any], target: sql.Identifier,
                   positions: dict[str, escrow.SequencePosition]) -> None:
    """Set the sequences of the table's columns back where they were, so nextval gives what it would have."""
    for column, position in positions.items():
        last: int | bool | None
        if isinstance(position, dict):
            last, called = position["last_value"], bool(position["is_called"])
        else:  # escrow kept before: pg_sequence_last_value, None when nothing had been handed out
            last, called = position, position is not None
        conn.execute(
            "SELECT setval(q.s, COALESCE(%s::bigint, p.seqstart), %s::boolean)"
            " FROM (SELECT pg_get_serial_sequence(%s, %s)::regclass AS s) q JOIN pg_sequence p ON p.seqrelid = q.s",
            (last, called, target.as_string(conn), column))


@contextmanager
def _identity_writable(conn: psycopg.Connection[Any], target: sql.Identifier, live: escrow.Table,
                       columns: list[str]) -> Iterator[None]:
    """An UPDATE may set a GENERATED ALWAYS identity column only to DEFAULT: for the time of the UPDATE, in the
    undo's transaction, such columns are GENERATED BY DEFAULT (then ALWAYS again, as the up script made them)."""
    always = [c for c in columns if c in live.identity_always]
    for c in always:
        conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET GENERATED BY DEFAULT").format(
            target, sql.Identifier(c)))
    yield
    for c in always:
        conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET GENERATED ALWAYS").format(target, sql.Identifier(c)))


def _text_kept(conn: psycopg.Connection[Any], h: Held) -> set[str]:
    """Columns of the copy stored as text (a user-defined type at escrow time)."""
    rows = conn.execute("SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND atttypid = 'text'::regtype",
                        (sql.Identifier(SCHEMA, h.escrow_table).as_string(conn),)).fetchall()
    return {r[0] for r in rows}


# --- the run -------------------------------------------------------------------------------------


def _elapsed_ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)


def undo(ctx: runner.Context, request_id: str, *, dry_run: bool, expected_plan_hash: str | None = None
         ) -> UndoReport | RunReport:
    store.ensure_tables(ctx.conn)
    started = time.perf_counter()
    state: dict[str, Any] = {}

    def attempt() -> UndoReport | RunReport:
        state.clear()
        with interrupts.transaction(ctx.conn, force_rollback=dry_run):
            local_timeouts(ctx.conn, ctx.policy.lock_timeout_ms, ctx.statement_timeout_ms)
            found = build_plan(ctx, request_id, undo_request_id=ctx.request_id)
            if isinstance(found, RunReport):
                return found
            plan = found
            state["plan"] = plan
            if expected_plan_hash and plan.hash != expected_plan_hash:
                raise PlanChanged(expected_plan_hash, plan.hash)
            results: list[StatementResult] = []
            for step in plan.steps:
                state["step"] = step
                ctx.log(messages.step_start("undo", step.version, step.name, True))
                start = time.perf_counter()
                out = [runner._run_statement(ctx, step.version, s) for s in step.statements]
                results += out
                if not dry_run:
                    ctx.current.update(sql="(bookkeeping)")
                    m = ctx.disk.migrations[step.version]
                    store.mark_applied(ctx.conn, step.version, step.name, m.up.checksum if m.up else None,
                                       m.down.checksum if m.down else None, int(_elapsed_ms(start)))
                    store.record_history(
                        ctx.conn, version=step.version, operation="undo", status="completed", executed_by=ctx.actor,
                        approved_by=ctx.approved_by, request_id=ctx.request_id, duration_ms=int(_elapsed_ms(start)),
                        details={"undoes": request_id, "plan_hash": plan.hash,
                                 "statements": [r.to_dict() for r in out]})
            restored = []
            state.pop("step", None)
            ctx.current.update(sql="(deferring foreign-key checks to the end of the undo)")
            made_deferrable = deferred_keys.defer(ctx.conn, {h.relation for h in plan.held})
            for h in reversed(plan.held):  # newest copy first: the oldest value is the one that stays
                ctx.current.update(sql=f"(putting back escrow {h.escrow_table})")
                try:
                    rows = _restore(ctx.conn, h)
                except UndoFailed as exc:
                    raise UndoFailed(request_id, exc.relation, exc.reason) from None
                except psycopg.Error as exc:  # e.g. the up scripts built another table: name the copy
                    raise UndoFailed(request_id, qualified(h.relation), ctx.redact(runner._pg_message(exc))) from None
                ctx.log(messages.undo_restored(qualified(h.relation), h.kind, rows))
                restored.append({"relation": qualified(h.relation), "kind": h.kind, "rows": rows,
                                 "escrow_table": h.escrow_table})
            ctx.current.update(sql="(checking the foreign keys of what was put back)")
            try:
                deferred_keys.check(ctx.conn, made_deferrable)
            except psycopg.errors.IntegrityError as exc:  # name the table whose key does not hold
                broken = (exc.diag.schema_name or "", exc.diag.table_name or "")
                raise UndoFailed(request_id, qualified(broken[1:] if broken[0] == "public" else broken),
                                 ctx.redact(runner._pg_message(exc))) from None
            if not dry_run:
                escrow.mark_undone(ctx.conn, request_id, ctx.actor, ctx.request_id)
            return UndoReport(plan, results, restored, 0.0, dry_run)

    try:
        report = ctx.retries(attempt)
    except (LockTimeout, UndoFailed) as exc:
        if not dry_run:
            runner._record_failure(ctx, "undo", state, None, exc.message)
        raise
    except psycopg.Error as exc:
        step: PlanStep | None = state.get("step")
        what = f"dry run of undo {request_id}" if dry_run else f"undo {request_id}"
        failure = MigrationFailed(what, step.version if step else request_id, step.name if step else "escrow",
                                  ctx.current.get("sql", ""), ctx.redact(runner._pg_message(exc)), exc.sqlstate)
        if not dry_run and state.get("plan") is not None:
            runner._record_failure(ctx, "undo", state, None, failure.message)
        raise failure from None
    except EngineError:
        raise
    except BaseException as exc:
        interrupts.abandon_if_busy(ctx.conn)
        if not dry_run and state.get("plan") is not None:
            runner._record_failure(ctx, "undo", state, None,
                                   runner._interruption(ctx, "undo", state.get("step"), exc))
        raise
    if isinstance(report, RunReport):
        return report
    return UndoReport(report.plan, report.statements, report.restored, _elapsed_ms(started), dry_run)
