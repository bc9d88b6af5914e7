"""Pure: how long the application's reads and writes of each table would be blocked by the real run.

The dry run records, per statement, how long it took (and its escrow copy, when the real run makes one)
and which table locks its backend held after it (`StatementImpact`). A lock is held until commit, so a
table's reads are blocked from the first statement after which it holds ACCESS EXCLUSIVE on it, and its
writes from the first one after which it holds SHARE or stronger (PostgreSQL's lock conflict table,
`LockMode.blocks_reads` / `blocks_writes`), until the end of that transaction. Time spent waiting in the lock queue is not in the forecast: it is
bounded by lock_timeout separately.

`suggest_reorder` proposes (never applies) an order of a down script that takes the strong locks last,
when long statements that need no strong lock run after one that does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pglast import ast, enums

from core.jsontypes import JsonObject
from workers.engine.sqleffects import DestroyKind, LockMode, qualified
from workers.engine.sqltext import Statement

# A statement is "long" for the reorder suggestion from this duration (shorter ones are not worth moving).
LONG_STATEMENT_MS = 500.0


@dataclass(frozen=True)
class HeldLock:
    relation: str  # as PostgreSQL prints the regclass: schema-qualified only off the search_path
    mode: LockMode

    def to_dict(self) -> JsonObject:
        return {"relation": self.relation, "mode": self.mode.sql}


@dataclass(frozen=True)
class StatementImpact:
    """One statement of the dry run: its duration and the table locks its backend held after it."""

    version: str
    sql: str
    duration_ms: float
    locks: tuple[HeldLock, ...]
    estimated: bool = False  # not (fully) executed: duration from EXPLAIN rows and a measured rate
    rows: int | None = None  # rows it changed (measured, or estimated with it)
    segment: int = 0  # statements of one segment run in one transaction (a no-transaction step starts another)
    escrow_ms: float = 0.0  # the escrow copy made just before it runs (before it takes its own locks)

    def to_dict(self) -> JsonObject:
        return {"version": self.version, "sql": self.sql, "duration_ms": round(self.duration_ms, 3),
                "locks": [lock.to_dict() for lock in self.locks], "estimated": self.estimated, "rows": self.rows,
                "segment": self.segment, "escrow_ms": round(self.escrow_ms, 3)}


@dataclass(frozen=True)
class TableStall:
    """How long the real run would block the application's reads and writes of one table."""

    relation: str
    mode: LockMode  # the strongest mode the run holds on it
    reads_blocked_ms: float  # 0: reads never blocked
    writes_blocked_ms: float
    first_statement: str  # the statement after which its writes are first blocked
    estimated: bool  # part of the blocked time comes from statements the dry run did not finish

    @property
    def worst_ms(self) -> float:
        return max(self.reads_blocked_ms, self.writes_blocked_ms)

    def to_dict(self) -> JsonObject:
        return {"relation": self.relation, "mode": self.mode.sql, "reads_blocked_ms": round(self.reads_blocked_ms, 1),
                "writes_blocked_ms": round(self.writes_blocked_ms, 1), "first_statement": self.first_statement,
                "estimated": self.estimated}


@dataclass(frozen=True)
class DryRunStop:
    """Where the bounded dry run stopped executing, and why."""

    version: str
    sql: str  # the statement it was running (or about to run) when the budget ran out
    budget_ms: int
    held_ms: float  # how long it held a lock that blocks the application

    def to_dict(self) -> JsonObject:
        return {"version": self.version, "sql": self.sql, "budget_ms": self.budget_ms,
                "held_ms": round(self.held_ms, 1)}


@dataclass(frozen=True)
class Forecast:
    tables: tuple[TableStall, ...]
    statements: tuple[StatementImpact, ...]
    stopped: DryRunStop | None = None
    reordered: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (version, statements in the suggested order)
    lines: tuple[str, ...] = field(default=())  # the wording, rendered once by the engine's messages

    @property
    def estimated(self) -> bool:
        return any(s.estimated for s in self.statements)

    @property
    def worst_ms(self) -> float:
        """The longest time any table's reads or writes would be blocked."""
        return max((t.worst_ms for t in self.tables), default=0.0)

    def to_dict(self) -> JsonObject:
        return {"tables": [t.to_dict() for t in self.tables], "worst_ms": round(self.worst_ms, 1),
                "estimated": self.estimated, "statements": [s.to_dict() for s in self.statements],
                "stopped": self.stopped.to_dict() if self.stopped else None,
                "reordered": [{"version": v, "statements": list(s)} for v, s in self.reordered],
                "lines": list(self.lines)}


def table_stalls(statements: Sequence[StatementImpact], commit_ms: float = 0.0) -> tuple[TableStall, ...]:
    """Per table, the blocked time of its reads and writes; the longest segment counts. Worst first."""
    found: dict[str, TableStall] = {}
    segments = sorted({s.segment for s in statements})
    for segment in segments:
        run = [s for s in statements if s.segment == segment]
        for relation in dict.fromkeys(lock.relation for s in run for lock in s.locks):
            stall = _stall(relation, run, commit_ms)
            if stall is None:
                continue
            known = found.get(relation)
            if known is None or stall.worst_ms > known.worst_ms:
                found[relation] = stall
    return tuple(sorted(found.values(), key=lambda t: (-t.worst_ms, t.relation)))


def _stall(relation: str, run: Sequence[StatementImpact], commit_ms: float) -> TableStall | None:
    def mode_after(s: StatementImpact) -> LockMode | None:
        modes = [lock.mode for lock in s.locks if lock.relation == relation]
        return max(modes) if modes else None

    def blocked_from(test: str) -> int | None:
        for i, s in enumerate(run):
            mode = mode_after(s)
            if mode is not None and getattr(mode, test):
                return i
        return None

    writes_from, reads_from = blocked_from("blocks_writes"), blocked_from("blocks_reads")
    if writes_from is None:
        return None

    def until_commit(start: int | None) -> float:
        # The first blocking statement's own escrow copy ran before it took its locks; every later one's under them.
        if start is None:
            return 0.0
        return (sum(s.duration_ms for s in run[start:]) + sum(s.escrow_ms for s in run[start + 1:]) + commit_ms)

    strongest = max(m for m in (mode_after(s) for s in run) if m is not None)
    return TableStall(relation, strongest, until_commit(reads_from), until_commit(writes_from),
                      run[writes_from].sql, any(s.estimated for s in run[writes_from:]))


# --- the reorder suggestion ---------------------------------------------------------------------


@dataclass(frozen=True)
class ScriptStatement:
    """What the suggestion needs of one statement of a down script (from the parser and the dry run)."""

    sql: str
    kind: str  # the command: DROP TABLE, ALTER TABLE, UPDATE, ...
    strong: bool  # its own locks block the application's writes of some table
    named: frozenset[str]  # relations its text names (not the ones found through the catalog)
    dropped_columns: Mapping[str, frozenset[str]]  # table -> columns it drops or retypes
    destroys_only: bool  # everything it does is a destruction the parser knows (a pure DROP ...)
    duration_ms: float


_DML = ("UPDATE", "DELETE", "INSERT", "MERGE")


def _can_precede(moving: ScriptStatement, earlier: ScriptStatement) -> bool:
    """Whether `moving` can run before `earlier` without changing what either does (conservatively)."""
    if earlier.kind.startswith(_DML) or earlier.kind.startswith("CREATE"):
        return not (moving.named & earlier.named) and not earlier.kind.startswith("CREATE")
    shared = moving.named & earlier.named
    if not shared:
        return True
    if not earlier.destroys_only:
        return False
    for table in shared:
        for column in earlier.dropped_columns.get(table, frozenset()):
            if re.search(rf"(?<![\w$]){re.escape(column)}(?![\w$])", moving.sql, re.IGNORECASE):
                return False
    return not any(t in shared for t in earlier.named if not earlier.dropped_columns.get(t))


def suggest_reorder(statements: Sequence[ScriptStatement]) -> tuple[str, ...] | None:
    """The same statements with the long lock-light ones moved before the strong locks, or None.

    Only long DML statements that take no strong lock themselves move, each to before the first
    strong statement it can pass (every statement it passes must be independent of it).
    """
    order = list(statements)
    moved = False
    for statement in list(order):
        if statement.strong or not statement.kind.startswith(_DML) or statement.duration_ms < LONG_STATEMENT_MS:
            continue
        at = order.index(statement)
        target = at
        while target > 0 and _can_precede(statement, order[target - 1]):
            target -= 1
        if not any(s.strong for s in order[target:at]):
            continue
        # Stop just after the last non-strong statement passed at the front: move only past strong ones' span.
        first_strong = next(i for i in range(target, at) if order[i].strong)
        order.pop(at)
        order.insert(first_strong, statement)
        moved = True
    return tuple(s.sql for s in order) if moved else None


def script_statement(statement: Statement, duration_ms: float) -> ScriptStatement:
    """What the suggestion needs of a parsed statement."""
    dropped: dict[str, set[str]] = {}
    for d in statement.destroys:
        if d.kind in (DestroyKind.DROP_COLUMN, DestroyKind.ALTER_COLUMN_TYPE):
            dropped.setdefault(qualified(d.relation), set()).update(d.columns)
    tree = statement.tree
    pure_drop = statement.kind.startswith("DROP") or (
        isinstance(tree, ast.AlterTableStmt) and bool(tree.cmds) and all(
            getattr(cmd, "subtype", None) in _DROPPING for cmd in tree.cmds or ()))
    return ScriptStatement(
        sql=statement.text, kind=statement.kind, strong=any(t.mode.blocks_writes for t in statement.locks),
        named=frozenset(qualified(t.relation) for t in statement.locks if t.via is None),
        dropped_columns={k: frozenset(v) for k, v in dropped.items()}, destroys_only=pure_drop,
        duration_ms=duration_ms)


_DROPPING = (enums.AlterTableType.AT_DropColumn, enums.AlterTableType.AT_DropConstraint)
