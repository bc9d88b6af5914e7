"""Run plans against a connection: apply, roll back, and dry-run (always rolled back).

The caller (Engine) holds the migration lock. Rollback runs every down script and the bookkeeping in
one transaction; a failure leaves nothing behind and is recorded in migration_history afterwards,
outside the aborted transaction. Each attempt is bounded by lock_timeout and retried with backoff.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import pq, sql

from core import defaults
from core.errors import first_line
from workers.engine import bounded, escrow, interrupts, messages, sqltext, store
from workers.engine.errors import EngineError, EscrowIncomplete, LockTimeout, MigrationFailed, PlanChanged
from workers.engine.locks import RetryPolicy, local_timeouts, session_timeouts, with_lock_retries
from workers.engine.planning import build_apply_plan, build_rollback_plan
from workers.engine.results import DryRunReport, Plan, PlanStep, RunReport, ServerInfo, StatementResult
from workers.engine.scripts import MigrationSet

if TYPE_CHECKING:
    from workers.engine.forecast import Forecast

# Failures are written on a fresh connection when the run's own was abandoned after an interruption.
BOOKKEEPING_APPLICATION = "rollback-bot bookkeeping"
BOOKKEEPING_CONNECT_TIMEOUT_SECONDS = 5
# The dry run's escrow copies are made under this name and undone with it (never recorded).
DRY_RUN_ESCROW_ID = "dry-run"


@dataclass
class Context:
    """Everything a run needs, passed in by the Engine."""

    conn: psycopg.Connection[Any]
    conninfo: str
    server: ServerInfo
    disk: MigrationSet
    actor: str
    approved_by: str | None
    request_id: str | None
    policy: RetryPolicy
    statement_timeout_ms: int
    log: Callable[[str], None]
    redact: Callable[[str], str]
    current: dict[str, str] = field(default_factory=dict)  # the statement running now, for errors
    dry_run_budget_ms: int = defaults.DRY_RUN_BUDGET_MS  # how long a dry run may block the application
    escrow: escrow.Recorder | None = None  # a rollback copies what each statement destroys (None: no escrow)
    assess_escrow: bool = False  # a rollback's dry run names what its escrow could not hold

    @property
    def pid(self) -> int:
        return int(self.conn.info.backend_pid)

    @property
    def statement(self) -> str:
        """The statement running now ("" before the first)."""
        return self.current.get("sql", "")

    def retries(self, attempt: Callable[[], Any], policy: RetryPolicy | None = None) -> Any:
        return with_lock_retries(
            attempt, policy=policy or self.policy, conninfo=self.conninfo, pid=self.pid,
            statement_of=lambda: self.statement, log=self.log,
        )


@dataclass
class _Progress:
    """How far a run got, kept across its attempts so that a failure can name its plan and step."""

    plan: Plan | None = None
    step: PlanStep | None = None
    done: list[str] = field(default_factory=list)  # versions reverted in the first transaction


def _elapsed_ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)


def _run_statement(ctx: Context, version: str, statement: str) -> StatementResult:
    ctx.current.update(version=version, sql=statement)
    ctx.log(messages.running_statement(version, statement))
    start = time.perf_counter()
    with ctx.conn.cursor() as cur:
        cur.execute(statement.encode())  # the migration's own SQL, sent as written (no parameters)
        tag = cur.statusmessage or ""
        rowcount = cur.rowcount
    result = StatementResult(version, statement, tag, rowcount if rowcount >= 0 else None, _elapsed_ms(start))
    ctx.log(messages.statement_done(version, tag, result.duration_ms))
    return result


def _pg_message(exc: psycopg.Error) -> str:
    first = first_line(exc, type(exc).__name__)
    text = exc.diag.message_primary or first
    return f"{text} (SQLSTATE {exc.sqlstate})" if exc.sqlstate else text


def _read_rows(ctx: Context) -> dict[str, store.Row]:
    return store.read_all(ctx.conn)


# --- rollback ------------------------------------------------------------------------------------


def _already_done(ctx: Context) -> RunReport | None:
    if not ctx.request_id or not store.tables_exist(ctx.conn):
        return None
    rows = store.completed_rollback(ctx.conn, ctx.request_id)
    if not rows:
        return None
    statements = [StatementResult(**s) for r in rows for s in (r["details"] or {}).get("statements", [])]
    first = (rows[0]["details"] or {}) if rows else {}
    return RunReport("rollback", [r["version"] for r in rows], statements,
                     float(sum(r["duration_ms"] or 0 for r in rows)), to=first.get("to"),
                     plan_hash=first.get("plan_hash"), request_id=ctx.request_id, already_done=True)


def _revert_step(ctx: Context, plan: Plan, step: PlanStep) -> list[StatementResult]:
    ctx.log(messages.step_start("rollback", step.version, step.name, step.transactional))
    start = time.perf_counter()
    results = []
    for index, statement in enumerate(step.statements):
        if ctx.escrow is not None:
            ctx.current.update(version=step.version, sql=statement)
            ctx.escrow.before(step.version, index, statement)  # in this transaction, just before it runs
        result = _run_statement(ctx, step.version, statement)
        if ctx.escrow is not None:
            ctx.escrow.after(result.rowcount)
        results.append(result)
    ctx.current.update(sql="(bookkeeping)")
    checksum = store.mark_rolled_back(ctx.conn, step.version)
    store.record_history(
        ctx.conn, version=step.version, operation="rollback", status="completed", executed_by=ctx.actor,
        approved_by=ctx.approved_by, request_id=ctx.request_id, duration_ms=int(_elapsed_ms(start)),
        details={"to": plan.to, "plan_hash": plan.hash, "statements": [r.to_dict() for r in results],
                 "checksum": checksum},
    )
    return results


def rollback(ctx: Context, to: str | None, expected_plan_hash: str | None) -> RunReport:
    store.ensure_tables(ctx.conn)
    started = time.perf_counter()
    state = _Progress()

    def attempt() -> RunReport:
        state.plan, state.step, state.done = None, None, []  # a retried attempt starts afresh, like its transaction
        with interrupts.transaction(ctx.conn):
            local_timeouts(ctx.conn, ctx.policy.lock_timeout_ms, ctx.statement_timeout_ms)
            done = _already_done(ctx)  # inside the transaction, under the lock: exactly once
            if done is not None:
                return done
            plan = build_rollback_plan(ctx.server, ctx.disk, _read_rows(ctx), to)
            state.plan = plan
            if expected_plan_hash and plan.hash != expected_plan_hash:
                raise PlanChanged(expected_plan_hash, plan.hash)
            if ctx.escrow is not None and plan.steps:
                ctx.escrow.begin(target_version=to, versions=plan.versions, plan_hash=plan.hash,
                                 executed_by=ctx.actor, approved_by=ctx.approved_by)
                for step in plan.steps:
                    for statement in () if step.transactional else step.statements:
                        ctx.escrow.outside_transaction(step.version, statement)
            results: list[StatementResult] = []
            for step in plan.steps:
                if not step.transactional:
                    break  # runs below, outside this transaction
                state.step = step
                results += _revert_step(ctx, plan, step)
                state.done.append(step.version)
            if ctx.escrow is not None and plan.steps:
                ctx.escrow.finish()
            return RunReport("rollback", list(state.done), results, 0.0, to=to, plan_hash=plan.hash,
                             request_id=ctx.request_id)

    try:
        report: RunReport = ctx.retries(attempt)
        if report.already_done:
            return report
        plan = state.plan
        assert plan is not None  # set by every attempt that did not find the rollback already done
        remaining = [s for s in plan.steps if s.version not in report.versions]
        results = list(report.statements)
        done = list(report.versions)
        # After a no-transaction step: each run of transactional steps is again one transaction.
        for transactional, group in _segments(remaining):
            if transactional:
                def segment(group: list[PlanStep] = group) -> list[StatementResult]:
                    out: list[StatementResult] = []
                    with interrupts.transaction(ctx.conn):
                        local_timeouts(ctx.conn, ctx.policy.lock_timeout_ms, ctx.statement_timeout_ms)
                        for step in group:
                            state.step = step
                            out += _revert_step(ctx, plan, step)
                        if ctx.escrow is not None:
                            ctx.escrow.finish()
                    return out
                results += ctx.retries(segment)
            else:
                for step in group:
                    state.step = step
                    results += _revert_outside_transaction(ctx, plan, step)
            done += [step.version for step in group]
    except (LockTimeout, EscrowIncomplete) as exc:
        _record_failure_at(ctx, "rollback", state.step, state.plan, to, exc.message)
        raise
    except psycopg.Error as exc:
        failed = state.step
        if failed is None:
            raise
        failure = MigrationFailed("rollback", failed.version, failed.name, ctx.statement,
                                  ctx.redact(_pg_message(exc)), exc.sqlstate, rolled_back=failed.transactional)
        _record_failure_at(ctx, "rollback", state.step, state.plan, to, failure.message)
        raise failure from None
    except EngineError:
        raise
    except BaseException as exc:  # a job timeout, a signal, Ctrl-C: record it, then let it go on unchanged
        interrupts.abandon_if_busy(ctx.conn)
        _record_failure_at(ctx, "rollback", state.step, state.plan, to,
                           _interruption(ctx, "rollback", state.step, exc))
        raise
    return RunReport("rollback", done, results, _elapsed_ms(started), to=to, plan_hash=plan.hash,
                     request_id=ctx.request_id, escrow=ctx.escrow.to_dict() if ctx.escrow and done else None)


def _segments(steps: list[PlanStep]) -> list[tuple[bool, list[PlanStep]]]:
    """Consecutive steps grouped by whether they run in a transaction."""
    groups: list[tuple[bool, list[PlanStep]]] = []
    for step in steps:
        if groups and groups[-1][0] == step.transactional:
            groups[-1][1].append(step)
        else:
            groups.append((step.transactional, [step]))
    return groups


def _revert_outside_transaction(ctx: Context, plan: Plan, step: PlanStep) -> list[StatementResult]:
    """A no-transaction down script: mark it running (truthfully, committed), then statement by statement."""
    ctx.log(messages.step_start("rollback", step.version, step.name, transactional=False))
    store.set_status(ctx.conn, step.version, "running")
    start = time.perf_counter()
    results = _run_outside_transaction(ctx, step)
    with interrupts.transaction(ctx.conn):
        store.set_status(ctx.conn, step.version, "completed")  # so that mark_rolled_back sees it
        checksum = store.mark_rolled_back(ctx.conn, step.version)
        store.record_history(
            ctx.conn, version=step.version, operation="rollback", status="completed", executed_by=ctx.actor,
            approved_by=ctx.approved_by, request_id=ctx.request_id, duration_ms=int(_elapsed_ms(start)),
            details={"to": plan.to, "plan_hash": plan.hash, "statements": [r.to_dict() for r in results],
                     "transactional": False, "checksum": checksum},
        )
    return results


def _run_outside_transaction(ctx: Context, step: PlanStep) -> list[StatementResult]:
    session_timeouts(ctx.conn, ctx.policy.lock_timeout_ms, ctx.statement_timeout_ms)
    try:
        results: list[StatementResult] = []
        for statement in step.statements:
            def one(statement: str = statement) -> StatementResult:
                with interrupts.guarded(ctx.conn):
                    return _run_statement(ctx, step.version, statement)
            results.append(ctx.retries(one))
        return results
    finally:
        if interrupts.usable(ctx.conn):  # after an interruption the connection is gone: nothing to reset
            ctx.conn.execute("RESET lock_timeout")
            ctx.conn.execute("RESET statement_timeout")


def _record_failure(ctx: Context, operation: str, state: dict[str, Any], to: str | None, error: str) -> None:
    """`_record_failure_at`, from a run's state kept as a dict (the undo's)."""
    _record_failure_at(ctx, operation, state.get("step"), state.get("plan"), to, error)


def _record_failure_at(ctx: Context, operation: str, step: PlanStep | None, plan: Plan | None, to: str | None,
                       error: str) -> None:
    """Write the failure to migration_history on its own (the failed transaction is already rolled back)."""
    if step is None and plan is not None and plan.steps:
        step = plan.steps[0]
    try:
        _write_failure(ctx, operation, step, plan, to, error)
    except psycopg.Error as exc:  # e.g. the connection is gone: the run's own error matters more
        ctx.log(messages.failure_not_recorded(ctx.redact(_pg_message(exc))))


def _interruption(ctx: Context, operation: str, step: PlanStep | None, exc: BaseException) -> str:
    reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return messages.run_interrupted(operation, step.version if step else None, step.name if step else None,
                                    ctx.statement, ctx.redact(reason))


@contextlib.contextmanager
def _bookkeeping(ctx: Context) -> Iterator[psycopg.Connection[Any]]:
    """A connection to write a failure on, in autocommit: the run's own, or a fresh one if that one is gone."""
    if interrupts.usable(ctx.conn):
        if ctx.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            ctx.conn.rollback()
        yield ctx.conn
        return
    with psycopg.connect(ctx.conninfo, autocommit=True, application_name=BOOKKEEPING_APPLICATION,
                         connect_timeout=BOOKKEEPING_CONNECT_TIMEOUT_SECONDS) as conn:
        yield conn


def _write_failure(ctx: Context, operation: str, step: PlanStep | None, plan: Plan | None, to: str | None,
                   error: str) -> None:
    with _bookkeeping(ctx) as conn, conn.transaction():
        if step is not None and not step.transactional and operation == "rollback":
            store.set_status(conn, step.version, "failed", error)
        store.record_history(
            conn, version=step.version if step else (to or ""), operation=operation, status="failed",
            executed_by=ctx.actor, approved_by=ctx.approved_by, request_id=ctx.request_id, error_message=error,
            details={"to": to, "plan_hash": plan.hash if plan else None,
                     "versions": plan.versions if plan else [], "statement": ctx.statement or None},
        )


# --- apply ---------------------------------------------------------------------------------------


def apply(ctx: Context, *, reapply: Iterable[str] = (), before: Callable[[Plan], None] | None = None) -> RunReport:
    """Apply the plan; `before(plan)` runs first when there is something to apply (the pre-migration backup),
    under the migration lock, so that no other run changes the database between the backup and the apply."""
    store.ensure_tables(ctx.conn)
    started = time.perf_counter()
    plan = build_apply_plan(ctx.server, ctx.disk, store.read_recorded(ctx.conn), reapply)
    if plan.steps and before is not None:
        before(plan)
    results: list[StatementResult] = []
    done: list[str] = []
    late = _out_of_order(plan)
    for step in plan.steps:
        m = ctx.disk.migrations[step.version]
        assert m.up is not None
        checksum, down_checksum = m.up.checksum, (m.down.checksum if m.down else None)
        if step.version in late:
            ctx.log(late[step.version])
        ctx.log(messages.step_start("apply", step.version, step.name, step.transactional))
        start = time.perf_counter()
        try:
            if step.transactional:
                def attempt(step: PlanStep = step, checksum: str = checksum, down_checksum: str | None = down_checksum,
                            start: float = start) -> list[StatementResult]:
                    with interrupts.transaction(ctx.conn):
                        local_timeouts(ctx.conn, ctx.policy.lock_timeout_ms, ctx.statement_timeout_ms)
                        out = [_run_statement(ctx, step.version, s) for s in step.statements]
                        ctx.current.update(sql="(bookkeeping)")
                        _record_applied(ctx, step, checksum, down_checksum, start, out)
                        return out
                results += ctx.retries(attempt)
            else:
                store.mark_running(ctx.conn, step.version, step.name, checksum)
                out = _run_outside_transaction(ctx, step)
                with interrupts.transaction(ctx.conn):
                    _record_applied(ctx, step, checksum, down_checksum, start, out)
                results += out
        except LockTimeout as exc:
            _record_apply_failure(ctx, step, checksum, exc.message, mark=not step.transactional)
            raise
        except psycopg.Error as exc:
            failure = MigrationFailed("apply", step.version, step.name, ctx.statement,
                                      ctx.redact(_pg_message(exc)), exc.sqlstate, rolled_back=step.transactional)
            _record_apply_failure(ctx, step, checksum, failure.message, mark=True)
            raise failure from None
        except EngineError:
            raise
        except BaseException as exc:  # a job timeout, a signal, Ctrl-C: record it, then let it go on unchanged
            interrupts.abandon_if_busy(ctx.conn)
            _record_apply_failure(ctx, step, checksum, _interruption(ctx, "apply", step, exc), mark=True)
            raise
        done.append(step.version)
    return RunReport("apply", done, results, _elapsed_ms(started), plan_hash=plan.hash, request_id=ctx.request_id,
                     warnings=[late[v] for v in done if v in late], held=plan.held)


def _out_of_order(plan: Plan) -> dict[str, str]:
    """Steps older than the current version (a branch merged late), with the notice that says so."""
    current = plan.current_version
    return {s.version: messages.applying_out_of_order(s.version, s.name, current)
            for s in plan.steps if current is not None and s.version < current}


def _record_applied(ctx: Context, step: PlanStep, checksum: str, down_checksum: str | None, start: float,
                    results: list[StatementResult]) -> None:
    elapsed = int(_elapsed_ms(start))
    store.mark_applied(ctx.conn, step.version, step.name, checksum, down_checksum, elapsed)
    store.record_history(
        ctx.conn, version=step.version, operation="apply", status="completed", executed_by=ctx.actor,
        approved_by=ctx.approved_by, request_id=ctx.request_id, duration_ms=elapsed,
        details={"statements": [r.to_dict() for r in results], "transactional": step.transactional,
                 "checksum": checksum},
    )


def _record_apply_failure(ctx: Context, step: PlanStep, checksum: str, error: str, *, mark: bool) -> None:
    """Scenario 1 of the playbook: status 'failed' with error_message (outside the failed transaction)."""
    try:
        with _bookkeeping(ctx) as conn, conn.transaction():
            if mark:
                store.mark_failed(conn, step.version, step.name, checksum, error)
            store.record_history(
                conn, version=step.version, operation="apply", status="failed", executed_by=ctx.actor,
                approved_by=ctx.approved_by, request_id=ctx.request_id, error_message=error,
                details={"statement": ctx.statement or None},
            )
    except psycopg.Error as exc:
        ctx.log(messages.failure_not_recorded(ctx.redact(_pg_message(exc))))


# --- dry run -------------------------------------------------------------------------------------


def _qualified(name: tuple[str, ...]) -> str:
    return ".".join(name)


def _relation_exists(conn: psycopg.Connection[Any], name: tuple[str, ...]) -> bool:
    regclass_text = sql.Identifier(*name).as_string(conn)
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (regclass_text,)).fetchone()
    return bool(row and row[0])


def _column_exists(conn: psycopg.Connection[Any], table: tuple[str, ...], column: str) -> bool:
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attname = %s"
        " AND attnum > 0 AND NOT attisdropped)",
        (sql.Identifier(*table).as_string(conn), column),
    ).fetchone()
    return bool(row and row[0])


def _count(conn: psycopg.Connection[Any], query: sql.Composed) -> int:
    row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


def _measure_before(conn: psycopg.Connection[Any], statement: str) -> tuple[sqltext.Effects, list[str]]:
    """Data that the statement is about to destroy, counted before it runs (inside the dry-run transaction)."""
    eff = sqltext.effects(statement)
    warnings = []
    for table in eff.dropped_tables:
        if _relation_exists(conn, table):
            rows = _count(conn, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(*table)))
            warnings.append(messages.dropped_table_loss(_qualified(table), rows))
    for table in eff.truncated_tables:
        if _relation_exists(conn, table):
            rows = _count(conn, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(*table)))
            warnings.append(messages.truncate_loss(_qualified(table), rows))
    for table, column in eff.dropped_columns:
        if _column_exists(conn, table, column):
            values = _count(conn, sql.SQL("SELECT count({}) FROM {}").format(
                sql.Identifier(column), sql.Identifier(*table)))
            warnings.append(messages.dropped_column_loss(_qualified(table), column, values))
    return eff, warnings


def _measure_after(eff: sqltext.Effects, result: StatementResult) -> list[str]:
    if eff.target is None or result.rowcount is None or eff.command not in ("DELETE", "UPDATE"):
        return []
    if eff.command == "DELETE":
        return [messages.delete_loss(_qualified(eff.target), result.rowcount)]
    if eff.command == "UPDATE":
        return [messages.update_change(_qualified(eff.target), result.rowcount)]
    return []


def _sequence_values(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    rows = conn.execute(
        "SELECT format('%I.%I', schemaname, sequencename), last_value FROM pg_sequences"
    ).fetchall()
    return {r[0]: r[1] for r in rows}


def _vacuum(ctx: Context, tables: list[tuple[str, ...]]) -> None:
    """Clear the dead rows the dry run's undone writes left, so that the real run does not pay for them
    (1 GB bench, twice each: the UPDATE of `users` took 1.2-1.5 s alone, 2.4-2.5 s right after a dry run,
    1.6-1.8 s with this VACUUM between).
    Plain VACUUM takes SHARE UPDATE EXCLUSIVE: application reads and writes go on; SKIP_LOCKED passes a
    table another VACUUM or DDL holds. A courtesy: a failure is logged, never the dry run's."""
    if not tables or ctx.conn.info.transaction_status != pq.TransactionStatus.IDLE:
        return
    started = time.perf_counter()
    autocommit, ctx.conn.autocommit = ctx.conn.autocommit, True  # VACUUM runs outside a transaction
    try:
        for table in tables:
            ctx.conn.execute(sql.SQL("VACUUM (SKIP_LOCKED) {}").format(sql.Identifier(*table)))
    except psycopg.Error as exc:
        ctx.log(messages.dry_run_vacuum_failed(ctx.redact(_pg_message(exc))))
        return
    finally:
        ctx.conn.autocommit = autocommit
    ctx.log(messages.dry_run_vacuumed([".".join(t) for t in tables], _elapsed_ms(started)))


@dataclass
class _DryRunProgress:
    """What a dry run's attempt got to, read once it is rolled back."""

    plan: Plan | None = None
    run: bounded.BoundedRun | None = None
    step: PlanStep | None = None
    results: list[StatementResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    forecast: Forecast | None = None


def dry_run(ctx: Context, operation: str, to: str | None, dry_run_lock_timeout_ms: int,
            reapply: Iterable[str] = ()) -> DryRunReport:
    """Run the plan's real SQL in a transaction that is always rolled back; report what would happen.

    Bookkeeping rows are not written at all (their id sequence would advance). Statements of a
    no-transaction script are not run: they cannot be undone. Once the run holds a lock that blocks the
    application, it executes for at most `ctx.dry_run_budget_ms` more (see `bounded.py`); the rest is
    estimated and the lock forecast says so.
    """
    policy = RetryPolicy(min(ctx.policy.lock_timeout_ms, dry_run_lock_timeout_ms), ctx.policy.retries,
                         ctx.policy.base_seconds)
    sequences_before = _sequence_values(ctx.conn)
    holder = _DryRunProgress()
    rehearse_escrow = ctx.assess_escrow and operation == "rollback"

    def losses_of(version: str, statement: str) -> tuple[sqltext.Effects, list[str]]:
        """What a statement would destroy, counted before it runs; for a rollback, what escrow could not hold
        (with the catalog as it is at this point). Runs under the dry run's budget once that counts."""
        eff, losses = _measure_before(ctx.conn, statement)
        if ctx.assess_escrow and operation == "rollback":
            losses = [*(messages.not_escrowed_line(n.statement, n.reason)
                        for n in escrow.assess(ctx.conn, version, statement)), *losses]
        return eff, losses

    def attempt() -> None:
        results: list[StatementResult] = []
        warnings: list[str] = []
        holder.plan, holder.run, holder.step = None, None, None  # a retried attempt starts afresh
        with interrupts.transaction(ctx.conn, force_rollback=True):
            local_timeouts(ctx.conn, policy.lock_timeout_ms, ctx.statement_timeout_ms)
            plan = (build_rollback_plan(ctx.server, ctx.disk, _read_rows(ctx), to) if operation == "rollback"
                    else build_apply_plan(ctx.server, ctx.disk, store.read_recorded(ctx.conn), reapply))
            holder.plan = plan
            if operation == "apply":
                warnings += list(_out_of_order(plan).values())
            rehearsal = None
            if rehearse_escrow and plan.steps:  # the real run's copies, made and timed here too (for the forecast)
                rehearsal = escrow.Recorder(ctx.conn, DRY_RUN_ESCROW_ID, required=False, rehearsal=True)
                rehearsal.begin(target_version=to, versions=plan.versions, plan_hash=plan.hash,
                                executed_by=ctx.actor, approved_by=None)
            run = bounded.BoundedRun(ctx.conn, ctx.dry_run_budget_ms, ctx.statement_timeout_ms, escrow=rehearsal)
            holder.run = run
            for step in plan.steps:
                holder.step = step
                if not step.transactional:
                    warnings.append(messages.no_transaction_dry_run(step.version, step.name))
                    if ctx.assess_escrow and operation == "rollback":
                        warnings += [messages.not_escrowed_line(n.statement, n.reason)
                                     for s in step.statements for n in escrow.assess_outside(step.version, s)]
                    results += [StatementResult(step.version, s, "(not run)", None, 0.0) for s in step.statements]
                    run.next_segment()
                    continue
                for statement in step.statements:
                    ctx.current.update(version=step.version, sql=statement)
                    if run.stopped:
                        run.defer(step.version, statement)
                        continue

                    def count_losses(s: str = statement, v: str = step.version) -> tuple[sqltext.Effects, list[str]]:
                        return losses_of(v, s)

                    def execute(s: str = statement, v: str = step.version) -> StatementResult:
                        return _run_statement(ctx, v, s)

                    outcome = run.execute(step.version, statement, count_losses, execute)
                    if outcome is None:
                        continue  # the budget ran out: this statement and the rest are estimated below
                    eff, losses, result = outcome
                    results.append(result)
                    warnings += losses + _measure_after(eff, result)
            if run.stopped:
                ctx.log(messages.dry_run_budget_spent(ctx.dry_run_budget_ms))
                for estimate in run.estimate_rest(losses_of):
                    results.append(estimate.result)
                    warnings += estimate.warnings
            holder.results, holder.warnings, holder.forecast = results, warnings, run.forecast(plan)

    try:
        ctx.retries(attempt, policy)
    except psycopg.Error as exc:
        step = holder.step
        if step is None:
            raise
        raise MigrationFailed(f"dry run of {operation}", step.version, step.name, ctx.statement,
                              ctx.redact(_pg_message(exc)), exc.sqlstate) from None
    assert holder.plan is not None and holder.run is not None  # the attempt went through
    warnings = list(holder.warnings)
    _vacuum(ctx, list(holder.run.written))
    after = _sequence_values(ctx.conn)
    warnings += [messages.sequence_advanced(n) for n, v in sequences_before.items()
                 if n in after and after[n] != v]
    return DryRunReport(holder.plan, holder.results, warnings, forecast=holder.forecast)
