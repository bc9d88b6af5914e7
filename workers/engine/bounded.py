"""The dry run's statement loop, bounded in how long it may block the application, and its lock forecast.

Each statement is classified just before it runs (`sqltext.parse_statement` with the live catalog). The
first one that will take a lock blocking the application's writes (SHARE or stronger) takes those locks
first with LOCK TABLE, under a savepoint: the budget counts from the moment they are granted (the wait
before that is bounded by lock_timeout, like the real run's). From then on every statement runs under a
statement_timeout of what is left of the budget. When it runs out, the run rolls back to that savepoint,
which releases the locks, and estimates the rest:

- the statement that was cut: its elapsed time scaled by EXPLAIN's row count over the rows it had
  changed (pg_stat_get_xact_tuples_*: aborted work is counted too);
- a later INSERT/UPDATE/DELETE that needs no blocking lock: run for at most the budget on its own, rolled
  back at once (the rows it touched are locked only that long), and scaled the same way;
- any other statement: EXPLAIN rows times the per-row rate measured so far (DDL that only changes the
  catalog counts as instant; one that rewrites a table, as its rows times that rate).

Its own worst stall of the application is then lock_timeout + the budget, at any data size.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import psycopg
from psycopg import errors, sql

from workers.engine import escrow, measure, messages, sqltext
from workers.engine.catalog import PgCatalog
from workers.engine.forecast import (
    DryRunStop,
    Forecast,
    HeldLock,
    StatementImpact,
    script_statement,
    suggest_reorder,
    table_stalls,
)
from workers.engine.results import Plan, StatementResult
from workers.engine.sqleffects import DestroyKind, LockMode, qualified

_DML = ("INSERT", "UPDATE", "DELETE", "MERGE")
_REWRITES = ("CREATE INDEX", "CLUSTER", "REFRESH MATERIALIZED VIEW")
_WINDOW = "rollback_bot_dry_run_{}"
_PROBE = "rollback_bot_probe"
# An unfinished statement's rate is pooled from this many budgets' worth of samples (at most _MAX_PROBES runs).
_SAMPLE_BUDGETS = 2
_MAX_PROBES = 3


class _BudgetSpent(Exception):
    pass


@dataclass
class Estimate:
    result: StatementResult
    warnings: list[str]


@dataclass
class _Deferred:
    version: str
    sql: str
    segment: int
    elapsed_ms: float = 0.0  # the statement that was cut: how long it ran
    processed: int | None = None  # and how many rows it had changed by then
    escrow_ms: float | None = None  # its escrow copy, when that was made before the cut


@dataclass
class BoundedRun:
    conn: psycopg.Connection[Any]
    budget_ms: int
    statement_timeout_ms: int
    escrow: escrow.Recorder | None = None  # the real run escrows: its copies are made here too (a rehearsal)
    impacts: list[StatementImpact] = field(default_factory=list)
    written: dict[tuple[str, ...], None] = field(default_factory=dict)  # tables whose rows it changed (undone)
    stop: DryRunStop | None = None
    _segment: int = 0
    _window_started: float | None = None
    _window_savepoint: str | None = None
    _armed: bool = False
    _savepoints: int = 0
    _held: tuple[HeldLock, ...] = ()
    _deferred: list[_Deferred] = field(default_factory=list)
    _rates: dict[str, list[float]] = field(default_factory=dict)  # table -> ms per changed row
    _parsed: dict[tuple[str, str], sqltext.Statement | None] = field(default_factory=dict)

    @property
    def stopped(self) -> bool:
        return self.stop is not None

    def next_segment(self) -> None:
        """A no-transaction step: the real run commits before it, so later locks are a new window."""
        self._segment += 1

    def defer(self, version: str, statement: str) -> None:
        self._deferred.append(_Deferred(version, statement, self._segment))

    # --- executing ------------------------------------------------------------------------------

    def execute(self, version: str, statement: str, before: Callable[[], tuple[Any, list[str]]],
                run: Callable[[], StatementResult]) -> tuple[Any, list[str], StatementResult] | None:
        """Run one statement within the budget: (effects, warnings, result), or None when the budget ran out."""
        parsed = self._parse(version, statement)
        strong = [t for t in (parsed.locks if parsed else ()) if t.mode.blocks_writes]
        changed = _changed_tables(parsed)
        savepoint = _WINDOW.format(self._savepoints)
        self._savepoints += 1
        self.conn.execute(sql.SQL("SAVEPOINT {}").format(sql.Identifier(savepoint)))
        started = time.perf_counter()
        running_since: float | None = None
        touched: int | None = None
        copy_ms: float | None = None
        self.written.update(dict.fromkeys(changed))
        try:
            self._arm()
            effects, warnings = before()
            copy_ms = self._copy(version, statement)
            if strong and self._window_started is None:
                measure.lock_now(self.conn, strong)
                self._open(savepoint, time.perf_counter())
                self._arm()
            if self._window_started is not None and changed:
                touched = measure.rows_touched(self.conn, changed)
            running_since = time.perf_counter()
            result = run()
            # Under the same budget: it may be what runs out. The escrow's own new tables block nobody.
            self._held = tuple(lock for lock in measure.held_locks(self.conn)
                               if not lock.relation.startswith(f"{escrow.SCHEMA}."))
        except errors.QueryCanceled:
            if not self._armed:
                raise  # the configured statement_timeout, not the budget: a real failure
            self._cut(version, statement, running_since, touched, changed, copy_ms)
            return None
        except _BudgetSpent:
            self._cut(version, statement, None, None, changed, copy_ms)
            return None
        if self._window_started is None and any(lock.mode.blocks_writes for lock in self._held):
            self._open(savepoint, started)  # the parser did not foresee it: count from the statement's start
        elif self._window_savepoint != savepoint:
            self.conn.execute(sql.SQL("RELEASE SAVEPOINT {}").format(sql.Identifier(savepoint)))
        self.impacts.append(StatementImpact(version, statement, result.duration_ms, self._held,
                                            rows=result.rowcount, segment=self._segment, escrow_ms=copy_ms or 0.0))
        self._learn(changed, result.duration_ms, result.rowcount)
        return effects, warnings, result

    def _copy(self, version: str, statement: str) -> float:
        """The escrow copy the real run makes just before `statement` (ms; 0 without escrow)."""
        if self.escrow is None:
            return 0.0
        started = time.perf_counter()
        self.escrow.before(version, len(self.impacts) + 1, statement)
        return (time.perf_counter() - started) * 1000

    def _parse(self, version: str, statement: str) -> sqltext.Statement | None:
        parsed = sqltext.parse_statement(statement, PgCatalog(self.conn))
        self._parsed[(version, statement)] = parsed
        return parsed

    def _open(self, savepoint: str, since: float) -> None:
        self._window_started = since
        self._window_savepoint = savepoint

    def _remaining_ms(self) -> float:
        assert self._window_started is not None
        return self.budget_ms - (time.perf_counter() - self._window_started) * 1000

    def _arm(self) -> None:
        """Inside the window: the statement_timeout becomes what is left of the budget."""
        if self._window_started is None:
            return
        remaining = self._remaining_ms()
        if remaining <= 0:
            raise _BudgetSpent
        limit = remaining if not self.statement_timeout_ms else min(remaining, self.statement_timeout_ms)
        self._set_timeout(max(1, int(limit)))
        self._armed = True

    def _set_timeout(self, ms: int) -> None:
        self.conn.execute("SELECT set_config('statement_timeout', %s, true)", (f"{int(ms)}ms",))

    def _cut(self, version: str, statement: str, running_since: float | None, touched: int | None,
             changed: list[tuple[str, ...]], copy_ms: float | None) -> None:
        now = time.perf_counter()
        assert self._window_started is not None and self._window_savepoint is not None
        held_ms = (now - self._window_started) * 1000
        self.conn.execute(sql.SQL("ROLLBACK TO SAVEPOINT {}").format(sql.Identifier(self._window_savepoint)))
        self._armed = False
        self._set_timeout(self.statement_timeout_ms)
        processed = measure.rows_touched(self.conn, changed) - touched if touched is not None else None
        elapsed = (now - running_since) * 1000 if running_since is not None else 0.0
        self.stop = DryRunStop(version, statement, self.budget_ms, held_ms)
        self._deferred.append(_Deferred(version, statement, self._segment, elapsed, processed, copy_ms))

    def _learn(self, tables: list[tuple[str, ...]], duration_ms: float, rows: int | None) -> None:
        if rows and rows > 0 and tables:
            self._rates.setdefault(qualified(tables[0]), []).append(duration_ms / rows)

    def _rate(self, tables: list[tuple[str, ...]]) -> float | None:
        for table in tables:
            if self._rates.get(qualified(table)):
                return statistics.median(self._rates[qualified(table)])
        every = [r for rates in self._rates.values() for r in rates]
        return statistics.median(every) if every else None

    # --- estimating what was not run -------------------------------------------------------------

    def estimate_rest(self, before: Callable[[str, str], tuple[Any, list[str]]]) -> list[Estimate]:
        """The statements after the stop: estimated, never executed under a lock that blocks the app."""
        out: list[Estimate] = []
        held = {lock.relation: lock.mode for lock in self._held}
        for item in self._deferred:
            parsed = self._parse(item.version, item.sql)
            for target in parsed.locks if parsed else ():
                name = measure.regclass_text(self.conn, target.relation)
                held[name] = max(held.get(name, target.mode), target.mode)
            warnings = self._warnings(before, item.version, item.sql)
            duration, rows = self._estimate(item, parsed)
            copy_ms = item.escrow_ms if item.escrow_ms is not None else self._estimate_copy(parsed, rows)
            locks = tuple(HeldLock(r, m) for r, m in sorted(held.items()))
            self.impacts.append(StatementImpact(item.version, item.sql, duration, locks, estimated=True, rows=rows,
                                                segment=item.segment, escrow_ms=copy_ms))
            if rows is not None and parsed is not None and parsed.kind.startswith(("UPDATE", "DELETE")):
                warnings.append(messages.estimated_row_change(parsed.kind.split()[0], _target_name(parsed), rows))
            out.append(Estimate(StatementResult(item.version, item.sql, messages.ESTIMATED_TAG, rows,
                                                round(duration, 3)), warnings))
        return out

    def _warnings(self, before: Callable[[str, str], tuple[Any, list[str]]], version: str, statement: str
                  ) -> list[str]:
        """The data-loss counts of a statement that was not run (skipped when they cannot be taken now)."""
        self.conn.execute(sql.SQL("SAVEPOINT {}").format(sql.Identifier(_PROBE)))
        try:
            _, warnings = before(version, statement)
        except psycopg.Error:
            self.conn.execute(sql.SQL("ROLLBACK TO SAVEPOINT {}").format(sql.Identifier(_PROBE)))
            return []
        self.conn.execute(sql.SQL("RELEASE SAVEPOINT {}").format(sql.Identifier(_PROBE)))
        return warnings

    def _estimate(self, item: _Deferred, parsed: sqltext.Statement | None) -> tuple[float, int | None]:
        changed = _changed_tables(parsed)
        strong = parsed is not None and any(t.mode.blocks_writes for t in parsed.locks)
        dml = parsed is not None and parsed.kind.startswith(_DML)
        explained = self._matching_rows(parsed) if dml else None
        # Samples of (ms, rows changed): the part of the cut statement that ran, then runs of its own (each at
        # most the budget, undone at once) until SAMPLE_BUDGETS budgets' worth is pooled: a single short
        # sample swings with what the server does meanwhile (a GIN pending-list flush, a checkpoint).
        samples: list[tuple[float, int]] = []
        if dml and item.processed:
            samples.append((item.elapsed_ms, item.processed))
        probes = 0
        while (dml and not strong and probes < _MAX_PROBES
               and sum(ms for ms, _ in samples) < self.budget_ms * _SAMPLE_BUDGETS):
            probes += 1
            probed = self._probe(item.sql, changed)
            if probed is None:
                break
            duration, processed, complete = probed
            if complete:
                return duration, processed
            if not processed:
                break
            samples.append((duration, processed))
        if samples:
            pooled_ms, pooled_rows = sum(ms for ms, _ in samples), sum(n for _, n in samples)
            rows = max(explained or 0, max(n for _, n in samples))
            return pooled_ms * rows / pooled_rows, rows
        rate = self._rate(changed)
        if dml:
            return max(item.elapsed_ms, (explained or 0) * (rate or 0.0)), explained
        rewritten = _rewritten_table(parsed)
        if rewritten is not None and rate is not None:
            return max(item.elapsed_ms, measure.table_rows(self.conn, rewritten) * rate), None
        return item.elapsed_ms, None  # catalog-only DDL: as long as it ran, if it ran at all

    def _estimate_copy(self, parsed: sqltext.Statement | None, rows: int | None) -> float:
        """The escrow copy of a statement that was not run: each copy timed alone for at most the budget (a
        read of the source and a write of a table of its own: it blocks nobody), scaled to the rows it will hold."""
        if self.escrow is None or parsed is None:
            return 0.0
        self.conn.execute(sql.SQL("SAVEPOINT {}").format(sql.Identifier(_PROBE)))
        try:
            captures = [c for c in escrow.plan(self.conn, parsed) if isinstance(c, escrow.Capture)]
        except psycopg.Error:
            captures = []  # not plannable in this state (an object an earlier, undone statement made)
        self.conn.execute(sql.SQL("ROLLBACK TO SAVEPOINT {}").format(sql.Identifier(_PROBE)))
        total = 0.0
        for capture in captures:
            expected = rows if capture.counted and rows is not None else measure.table_rows(self.conn, capture.relation)
            total += measure.copy_ms(self.conn, escrow.SCHEMA, capture.query, expected, self.budget_ms,
                                     self.statement_timeout_ms)
        return total

    def _matching_rows(self, parsed: sqltext.Statement | None) -> int | None:
        """How many rows a DML statement will change: its WHERE counted exactly when that takes at most the
        budget (a read, blocking nobody), else EXPLAIN's row estimate."""
        assert parsed is not None
        change = next((d for d in parsed.destroys if d.kind in (DestroyKind.UPDATE, DestroyKind.DELETE)), None)
        if change is not None and not (change.using or change.with_ or change.current_of or change.via):
            alias = getattr(getattr(getattr(parsed.tree, "relation", None), "alias", None), "aliasname", None)
            counted = measure.count_matching(self.conn, change.relation, alias, change.where, self.budget_ms,
                                             self.statement_timeout_ms)
            if counted is not None:
                return counted
        return measure.explain_rows(self.conn, parsed.text)

    def _probe(self, statement: str, changed: list[tuple[str, ...]]) -> tuple[float, int | None, bool] | None:
        """Run a lock-light statement alone for at most the budget, then undo it: (ms, rows, finished)."""
        self.conn.execute(sql.SQL("SAVEPOINT {}").format(sql.Identifier(_PROBE)))
        self._set_timeout(self.budget_ms)
        self.written.update(dict.fromkeys(changed))
        before = measure.rows_touched(self.conn, changed)
        started = time.perf_counter()
        outcome: tuple[float, int | None, bool] | None
        try:
            with self.conn.cursor() as cur:
                cur.execute(statement.encode())  # the migration's own SQL, as the real run sends it
                rows = cur.rowcount
            outcome = ((time.perf_counter() - started) * 1000, rows if rows >= 0 else None, True)
        except errors.QueryCanceled:
            outcome = ((time.perf_counter() - started) * 1000, None, False)
        except psycopg.Error:
            outcome = None
        self.conn.execute(sql.SQL("ROLLBACK TO SAVEPOINT {}").format(sql.Identifier(_PROBE)))
        self._set_timeout(self.statement_timeout_ms)
        if outcome is not None and not outcome[2]:
            outcome = (outcome[0], measure.rows_touched(self.conn, changed) - before, False)
        if outcome is not None and outcome[1]:
            self._learn(changed, outcome[0], outcome[1])
        return outcome

    # --- the forecast ----------------------------------------------------------------------------

    def forecast(self, plan: Plan) -> Forecast:
        reordered: list[tuple[str, tuple[str, ...]]] = []
        durations: dict[tuple[str, str], float] = {(s.version, s.sql): s.duration_ms for s in self.impacts}
        for step in plan.steps:
            if not step.transactional:
                continue
            parsed = [self._parsed.get((step.version, s)) for s in step.statements]
            if any(p is None for p in parsed):
                continue
            suggestion = suggest_reorder([script_statement(p, durations.get((step.version, s), 0.0))
                                          for p, s in zip(parsed, step.statements, strict=True) if p is not None])
            if suggestion is not None:
                reordered.append((step.version, suggestion))
        result = Forecast(table_stalls(self.impacts), tuple(self.impacts), self.stop, tuple(reordered))
        return replace(result, lines=tuple(messages.forecast_lines(result)))


def _changed_tables(parsed: sqltext.Statement | None) -> list[tuple[str, ...]]:
    """The tables whose rows a DML statement changes (ROW EXCLUSIVE, named in its text)."""
    if parsed is None or not parsed.kind.startswith(_DML):
        return []
    return [t.relation for t in parsed.locks if t.mode is LockMode.ROW_EXCLUSIVE and t.via is None]


def _target_name(parsed: sqltext.Statement) -> str:
    tables = _changed_tables(parsed)
    return qualified(tables[0]) if tables else "?"


def _rewritten_table(parsed: sqltext.Statement | None) -> tuple[str, ...] | None:
    """The table a statement rewrites or reads whole under its lock (ALTER COLUMN TYPE, CREATE INDEX...)."""
    if parsed is None:
        return None
    for d in parsed.destroys:
        if d.kind is DestroyKind.ALTER_COLUMN_TYPE:
            return d.relation
    if parsed.kind.startswith(_REWRITES):
        named = [t.relation for t in parsed.locks if t.via is None]
        return named[-1] if named else None
    return None
