"""The engine's errors: one base, each carrying its data and a one-line message (what is wrong, what to do).

The wording lives in `messages.py`. `str(error)` is the command line's wording; a boundary that is
not the command line (a Slack thread) calls `error.render(messages.SLACK)` so its advice names the
Slack command or the config key instead of a flag.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.errors import RollbackError, one_line
from workers.engine import messages
from workers.engine.messages import CLI, Advice


class EngineError(RollbackError):
    """Base of every expected engine failure. `str()` is one line and never holds a secret."""

    def render(self, advice: Advice = CLI) -> str:
        """The one line, with advice for where it is shown (the CLI's flags by default). Errors whose
        advice names a flag override it."""
        return str(self)


class ConnectionFailed(EngineError):
    def __init__(self, where: str, reason: str) -> None:
        self.where, self.reason = where, reason
        super().__init__(messages.connection_failed(where, reason))


class InvalidDatabaseUrl(ConnectionFailed):
    """DATABASE_URL does not parse; its text is never echoed (it may hold the password)."""

    def __init__(self) -> None:
        self.where, self.reason = "(unparseable DATABASE_URL)", "unparseable"
        EngineError.__init__(self, messages.unparseable_conninfo())


class MigrationsDirError(EngineError):
    """The migrations folder is missing or holds something the engine cannot read."""

    def __init__(self, path: str, problem: str) -> None:
        self.path, self.problem = path, problem
        super().__init__(messages.migrations_dir_error(path, problem))


class UnsupportedStatement(EngineError):
    """A migration script holds a statement the engine cannot run (COPY FROM STDIN, psql meta-commands)."""

    def __init__(self, path: str, statement: str, problem: str) -> None:
        self.path, self.statement, self.problem = path, statement, problem
        super().__init__(messages.unsupported_statement(path, statement, problem))


class UnparseableScript(EngineError):
    """A migration script that PostgreSQL's parser refuses: nothing of it runs."""

    def __init__(self, path: str, line: int, pg_message: str) -> None:
        self.path, self.line, self.pg_message = path, line, pg_message
        super().__init__(messages.unparseable_script(path, line, pg_message))


class UnknownVersion(EngineError):
    def __init__(self, version: str, reason: str) -> None:
        self.version, self.reason = version, reason
        super().__init__(self.render(CLI))

    def render(self, advice: Advice = CLI) -> str:
        return one_line(messages.unknown_version(self.version, self.reason, advice))


class NotRolledBack(EngineError):
    """`--reapply V` names a migration that is not rolled back (or not in the migrations folder)."""

    def __init__(self, version: str, status: str) -> None:
        self.version, self.status = version, status
        super().__init__(messages.not_rolled_back(version, status))


class NotCompleted(EngineError):
    def __init__(self, version: str, status: str) -> None:
        self.version, self.status = version, status
        super().__init__(self.render(CLI))

    def render(self, advice: Advice = CLI) -> str:
        return one_line(messages.not_completed(self.version, self.status, advice))


class MissingDownScript(EngineError):
    def __init__(self, version: str, name: str, folder: str, migration_missing: bool = False) -> None:
        self.version, self.name, self.folder = version, name, folder
        self.migration_missing = migration_missing
        super().__init__(messages.missing_down_script(version, name, folder, migration_missing))


class LockBusy(EngineError):
    """Another run holds the database's migration lock (advisory lock)."""

    def __init__(self, dbname: str, holder: dict[str, Any] | None) -> None:
        self.dbname, self.holder = dbname, holder
        super().__init__(self.render(CLI))

    def render(self, advice: Advice = CLI) -> str:
        return one_line(messages.lock_busy(self.dbname, self.holder, advice))


class LockTimeout(EngineError):
    """DDL could not get its table lock within lock_timeout, after every retry."""

    def __init__(self, attempts: int, lock_timeout_ms: int, statement: str, blockers: Sequence[dict[str, Any]]):
        self.attempts, self.lock_timeout_ms, self.statement = attempts, lock_timeout_ms, statement
        self.blockers = list(blockers)
        self.blocking_pids = [int(b["pid"]) for b in self.blockers]
        super().__init__(self.render(CLI))

    def render(self, advice: Advice = CLI) -> str:
        return one_line(messages.lock_timeout(self.attempts, self.lock_timeout_ms, self.statement, self.blockers, advice))


class MigrationFailed(EngineError):
    """A statement of a migration failed; nothing of the failed transaction remains."""

    def __init__(self, operation: str, version: str, name: str, statement: str, pg_message: str,
                 sqlstate: str | None = None, rolled_back: bool = True) -> None:
        self.operation, self.version, self.name = operation, version, name
        self.statement, self.pg_message, self.sqlstate = statement, pg_message, sqlstate
        self.rolled_back = rolled_back
        super().__init__(messages.migration_failed(operation, version, name, statement, pg_message, rolled_back))


class PlanChanged(EngineError):
    def __init__(self, expected: str, actual: str) -> None:
        self.expected, self.actual = expected, actual
        super().__init__(messages.plan_changed(expected, actual))


class InterruptedMigration(EngineError):
    """A migration that runs outside a transaction was left 'running' by a run that died."""

    def __init__(self, version: str, name: str) -> None:
        self.version, self.name = version, name
        super().__init__(messages.interrupted_migration(version, name))


class BookkeepingConflict(EngineError):
    """schema_migrations did not change exactly one row: someone edited it during the run."""

    def __init__(self, version: str, expected_status: str) -> None:
        self.version, self.expected_status = version, expected_status
        super().__init__(self.render(CLI))

    def render(self, advice: Advice = CLI) -> str:
        return one_line(messages.bookkeeping_conflict(self.version, self.expected_status, advice))


class DatabaseError(EngineError):
    """An unexpected database error outside a migration's statements (e.g. the connection dropped)."""

    def __init__(self, where: str, reason: str) -> None:
        self.where, self.reason = where, reason
        super().__init__(self.render(CLI))

    def render(self, advice: Advice = CLI) -> str:
        return one_line(messages.database_error(self.where, self.reason, advice))


class NothingToRepair(EngineError):
    """`repair` names a migration that is neither failed nor stuck running."""

    def __init__(self, version: str, status: str) -> None:
        self.version, self.status = version, status
        super().__init__(messages.nothing_to_repair(version, status))


class RepairFailed(EngineError):
    """A statement of a repair failed; what ran before it stays (each ran on its own), the plan says which."""

    def __init__(self, version: str, statement: str, pg_message: str) -> None:
        self.version, self.statement, self.pg_message = version, statement, pg_message
        super().__init__(messages.repair_failed(version, statement, pg_message))


class NeedsRepair(EngineError):
    """A rollback would go back past a migration that failed or is stuck running: repair it first."""

    def __init__(self, version: str, status: str) -> None:
        self.version, self.status = version, status
        super().__init__(self.render(CLI))

    def render(self, advice: Advice = CLI) -> str:
        return one_line(messages.needs_repair(self.version, self.status, advice))

class EscrowIncomplete(EngineError):
    """The data a statement destroys could not be escrowed where escrow is the only net, or its copy is not
    the truth (the statement changed another number of rows than were copied). Nothing of the run remains."""

    def __init__(self, request_id: str, reason: str) -> None:
        self.request_id, self.reason = request_id, reason
        super().__init__(reason)


class UndoRefused(EngineError):
    """An undo that cannot start: unknown escrow, already undone, the database moved on since the rollback."""

    def __init__(self, request_id: str, problem: str, detail: str = "") -> None:
        self.request_id, self.problem, self.detail = request_id, problem, detail
        super().__init__(messages.undo_refused(request_id, problem, detail))


class UndoFailed(EngineError):
    """An escrowed copy could not be put back exactly; the undo's transaction was rolled back."""

    def __init__(self, request_id: str, relation: str, reason: str) -> None:
        self.request_id, self.relation, self.reason = request_id, relation, reason
        super().__init__(messages.undo_failed(request_id, relation, reason))
