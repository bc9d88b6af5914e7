"""The channel's current plan, as the bot needs it: the worker's dry-run result, read once (`DryRunPlan`).

The worker saves the dry-run's `to_dict()` (engine `DryRunReport`: `{"plan": {"hash", "to", "versions",
...}, "warnings": [...], "forecast": {"lines", "worst_ms", ...}}`); a bare plan dict (`{"hash", "to", "versions"}`) is accepted as well.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.stall_policy import MaintenanceDecision


@dataclass(frozen=True)
class PlanSummary:
    target: str
    hash: str | None
    to_version: str | None
    versions: tuple[str, ...]
    warnings: tuple[str, ...]
    forecast: tuple[str, ...] = ()  # the dry run's lock-impact lines (engine wording), worst table first
    stall_ms: float | None = None  # the longest forecast block of the application's reads or writes
    maintenance: MaintenanceDecision | None = None  # what the target's policy makes of that forecast
    net: str | None = None  # which net is under the rollback (full backup, escrow, provider snapshot/PITR)

    @property
    def empty(self) -> bool:
        return not self.versions

    def summary(self) -> str:
        return f"revert {len(self.versions)} migration(s) of {self.target} to {self.to_version or 'nothing'}"


@dataclass(frozen=True)
class PlanStep:
    """One migration a dry run's plan reverts, and the SQL that reverts it."""

    version: str
    name: str
    sql: str


@dataclass(frozen=True)
class DryRunPlan:
    """A saved dry run (`SavedPlan.plan`), read once: its plan, warnings, forecast, net and where it was answered."""

    hash: str | None
    to_version: str | None
    versions: tuple[str, ...]
    warnings: tuple[str, ...]
    steps: tuple[PlanStep, ...] | None  # None: the plan holds no SQL
    forecast: tuple[str, ...] = ()
    stall_ms: float | None = None
    net: str | None = None
    source_channel: str = ""  # the thread the dry run was answered in ("" : unknown)
    source_thread_ts: str | None = None

    @classmethod
    def from_dict(cls, saved: Mapping[str, Any]) -> DryRunPlan:
        nested, forecast, source = saved.get("plan"), saved.get("forecast"), saved.get("source")
        plan = nested if isinstance(nested, Mapping) else saved
        forecast = forecast if isinstance(forecast, Mapping) else {}
        source = source if isinstance(source, Mapping) else {}
        warnings = [*(plan.get("warnings") or []), *(saved.get("warnings") or [] if plan is not saved else [])]
        steps, worst = plan.get("steps"), forecast.get("worst_ms")
        return cls(
            hash=plan.get("hash") or plan.get("plan_hash"),
            to_version=plan.get("to") or plan.get("to_version"),
            versions=tuple(_version(v) for v in plan.get("versions") or []),
            warnings=tuple(str(w.get("message", w)) if isinstance(w, Mapping) else str(w) for w in warnings),
            steps=tuple(PlanStep(str(s.get("version")), str(s.get("name")), str(s.get("sql") or "").strip())
                        for s in steps if isinstance(s, Mapping)) if isinstance(steps, list) else None,
            forecast=tuple(str(line) for line in forecast.get("lines") or []),
            stall_ms=float(worst) if isinstance(worst, int | float) else None,
            net=str(saved["net"]) if saved.get("net") else None,
            source_channel=str(source.get("channel") or ""), source_thread_ts=source.get("thread_ts"),
        )

    @property
    def sql(self) -> str | None:
        """The SQL the plan runs, migration by migration (None when it holds none)."""
        return "\n".join(f"-- {s.version} {s.name}\n{s.sql}\n" for s in self.steps or ()) or None

    def summary(self, target: str) -> PlanSummary:
        return PlanSummary(target=target, hash=self.hash, to_version=self.to_version, versions=self.versions,
                           warnings=self.warnings, forecast=self.forecast, stall_ms=self.stall_ms, net=self.net)


def _version(item: Any) -> str:
    return str(item.get("version")) if isinstance(item, Mapping) else str(item)


def summarize(target: str, saved: Mapping[str, Any]) -> PlanSummary:
    return DryRunPlan.from_dict(saved).summary(target)
