"""What the engine returns: plain dataclasses with `to_dict()` (JSON-able) for the CLI and the RQ jobs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from core.jsontypes import JsonObject

if TYPE_CHECKING:
    from workers.engine.forecast import Forecast


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


@dataclass(frozen=True)
class ServerInfo:
    host: str
    port: str
    dbname: str
    system_identifier: str | None
    server_version: str
    user: str

    def to_dict(self) -> JsonObject:
        return dict(self.__dict__)


@dataclass(frozen=True)
class MigrationState:
    version: str
    name: str
    status: str
    applied_at: datetime | None
    has_down: bool
    drift: bool
    missing_file: bool
    error_message: str | None
    transactional: bool = True

    def to_dict(self) -> JsonObject:
        return {k: _json(v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class StatusReport:
    server: ServerInfo
    migrations: list[MigrationState]
    warnings: list[str]
    current_version: str | None
    lock_holder: dict[str, Any] | None = None

    def to_dict(self) -> JsonObject:
        return {
            "server": self.server.to_dict(),
            "migrations": [m.to_dict() for m in self.migrations],
            "warnings": list(self.warnings),
            "current_version": self.current_version,
            "lock_holder": {k: _json(v) for k, v in self.lock_holder.items()} if self.lock_holder else None,
        }


@dataclass(frozen=True)
class PlanStep:
    version: str
    name: str
    sql: str
    transactional: bool
    statements: tuple[str, ...]

    @property
    def down_sql(self) -> str:
        return self.sql

    def to_dict(self) -> JsonObject:
        return {"version": self.version, "name": self.name, "sql": self.sql, "down_sql": self.sql,
                "transactional": self.transactional, "statements": list(self.statements)}


@dataclass(frozen=True)
class Plan:
    operation: str  # rollback | apply
    to: str | None
    steps: list[PlanStep]
    hash: str
    dbname: str
    current_version: str | None
    held: tuple[tuple[str, str], ...] = ()  # apply: (version, name) of rolled-back migrations left alone

    @property
    def versions(self) -> list[str]:
        return [s.version for s in self.steps]

    @property
    def empty(self) -> bool:
        return not self.steps

    @property
    def transactional(self) -> bool:
        return all(s.transactional for s in self.steps)

    def to_dict(self) -> JsonObject:
        return {"operation": self.operation, "to": self.to, "versions": self.versions,
                "steps": [s.to_dict() for s in self.steps], "hash": self.hash, "dbname": self.dbname,
                "current_version": self.current_version, "transactional": self.transactional,
                "held": [{"version": v, "name": n} for v, n in self.held]}


@dataclass(frozen=True)
class StatementResult:
    version: str
    sql: str
    tag: str
    rowcount: int | None
    duration_ms: float

    def to_dict(self) -> JsonObject:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StatementResult:
        return cls(version=data["version"], sql=data["sql"], tag=data["tag"], rowcount=data["rowcount"],
                   duration_ms=data["duration_ms"])


@dataclass(frozen=True)
class DryRunReport:
    plan: Plan
    statements: list[StatementResult]
    warnings: list[str]
    dry_run: bool = True
    forecast: Forecast | None = None  # how long the real run would block the application, per table

    def to_dict(self) -> JsonObject:
        return {"dry_run": True, "plan": self.plan.to_dict(),
                "statements": [s.to_dict() for s in self.statements], "warnings": list(self.warnings),
                "forecast": self.forecast.to_dict() if self.forecast else None}


@dataclass(frozen=True)
class RunReport:
    operation: str
    versions: list[str]
    statements: list[StatementResult]
    duration_ms: float
    to: str | None = None
    plan_hash: str | None = None
    request_id: str | None = None
    already_done: bool = False
    warnings: list[str] = field(default_factory=list)
    dry_run: bool = False
    escrow: dict[str, Any] | None = None  # a rollback's escrow: what it holds and what it could not hold
    held: tuple[tuple[str, str], ...] = ()  # apply: (version, name) of rolled-back migrations left alone

    def to_dict(self) -> JsonObject:
        return {"operation": self.operation, "versions": list(self.versions), "to": self.to,
                "statements": [s.to_dict() for s in self.statements], "duration_ms": self.duration_ms,
                "plan_hash": self.plan_hash, "request_id": self.request_id, "already_done": self.already_done,
                "warnings": list(self.warnings), "dry_run": False, "escrow": self.escrow,
                "held": [{"version": v, "name": n} for v, n in self.held]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunReport:
        """Back from `to_dict` (a rollback step's result in the pipeline's state)."""
        return cls(operation=str(data["operation"]), versions=list(data["versions"]),
                   statements=[StatementResult.from_dict(s) for s in data["statements"]],
                   duration_ms=float(data["duration_ms"]), to=data["to"], plan_hash=data["plan_hash"],
                   request_id=data["request_id"], already_done=bool(data["already_done"]),
                   warnings=list(data["warnings"]), escrow=data["escrow"],
                   held=tuple((h["version"], h["name"]) for h in data["held"]))
