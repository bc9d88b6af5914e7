"""The migration engine: apply, report and roll back migrations as the playbook describes.

    from workers.engine import Engine
    engine = Engine(conninfo, "migrations", actor="alice")
    engine.status(); engine.plan_rollback(to="2025_10_20_120001"); engine.rollback(to=...)
"""

from core.versions import is_version
from workers.engine.engine import Engine
from workers.engine.errors import (
    BookkeepingConflict,
    ConnectionFailed,
    DatabaseError,
    EngineError,
    InterruptedMigration,
    InvalidDatabaseUrl,
    LockBusy,
    LockTimeout,
    MigrationFailed,
    MigrationsDirError,
    MissingDownScript,
    NotCompleted,
    PlanChanged,
    UnknownVersion,
    UnparseableScript,
    UnsupportedStatement,
)
from workers.engine.redact import redact
from workers.engine.results import (
    DryRunReport,
    MigrationState,
    Plan,
    PlanStep,
    RunReport,
    ServerInfo,
    StatementResult,
    StatusReport,
)
from workers.engine.versions import Status, parse_version

__all__ = [
    "BookkeepingConflict", "ConnectionFailed", "DatabaseError", "DryRunReport", "Engine", "EngineError",
    "InterruptedMigration", "InvalidDatabaseUrl", "LockBusy", "LockTimeout", "MigrationFailed", "MigrationState", "MigrationsDirError",
    "MissingDownScript", "NotCompleted", "Plan", "PlanChanged", "PlanStep", "RunReport", "ServerInfo", "StatementResult",
    "Status", "StatusReport", "UnknownVersion", "UnparseableScript",
    "UnsupportedStatement", "is_version", "parse_version", "redact",
]
