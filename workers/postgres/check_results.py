"""What a verification finds: each check with its figure, pass, fail or skipped, and the report.

Pure data (no I/O): workers/postgres/checks.py runs the checks, workers/messages.py renders them, and the
stored form (`to_dict`, in the request's state and migration_history) is read back with `from_dict`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from core.jsontypes import JsonObject


class CheckKind(StrEnum):
    MIGRATIONS = "migrations"
    ROW_COUNT = "row_count"
    HEALTH = "health"
    SMOKE = "smoke"
    CONNECTIONS = "connections"
    PROMISE = "promise"  # the result against what the approval card promised (workers/verbs/)


@dataclass(frozen=True)
class Check:
    """One check: `figure` is the data (JSON-able), `detail` the sentence people read (workers.messages)."""

    name: str
    passed: bool
    figure: Any = None
    detail: str = ""
    skipped: bool = False
    kind: CheckKind | None = None
    subject: str = ""  # the table of a row count

    def to_dict(self) -> JsonObject:
        return {**asdict(self), "kind": self.kind.value if self.kind else ""}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Check:
        kind = str(data.get("kind") or "")
        return cls(name=str(data.get("name") or ""), passed=bool(data.get("passed")), figure=data.get("figure"),
                   detail=str(data.get("detail") or ""), skipped=bool(data.get("skipped")),
                   kind=CheckKind(kind) if kind in CheckKind._value2member_map_ else None,
                   subject=str(data.get("subject") or ""))


@dataclass(frozen=True)
class VerifyReport:
    target: str
    checks: list[Check] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def passed(self) -> bool:
        return all(check.passed or check.skipped for check in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [check for check in self.checks if not check.passed and not check.skipped]

    def to_dict(self) -> JsonObject:
        return {
            "target": self.target,
            "passed": self.passed,
            "duration_s": self.duration_s,
            "checks": [check.to_dict() for check in self.checks],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VerifyReport:
        return cls(target=str(data.get("target") or ""),
                   checks=[Check.from_dict(c) for c in data.get("checks") or [] if isinstance(c, Mapping)],
                   duration_s=float(data.get("duration_s") or 0.0))

    def counts_before(self) -> dict[str, int]:
        """The row counts taken before the change, by table (what a later verification compares with)."""
        return {
            check.subject: int(check.figure["before"])
            for check in self.checks
            if check.kind is CheckKind.ROW_COUNT and check.subject and isinstance(check.figure, Mapping)
            and check.figure.get("before") is not None
        }
