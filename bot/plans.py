"""The channel's current plan, as the bot needs it: pure reading of the worker's dry-run result.

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


def _version(item: Any) -> str:
    return str(item.get("version")) if isinstance(item, Mapping) else str(item)


def summarize(target: str, saved: Mapping[str, Any]) -> PlanSummary:
    plan = saved.get("plan") if isinstance(saved.get("plan"), Mapping) else saved
    assert isinstance(plan, Mapping)
    warnings = [*(plan.get("warnings") or []), *(saved.get("warnings") or [] if plan is not saved else [])]
    forecast = saved.get("forecast") if isinstance(saved.get("forecast"), Mapping) else {}
    assert isinstance(forecast, Mapping)
    return PlanSummary(
        target=target,
        hash=plan.get("hash") or plan.get("plan_hash"),
        to_version=plan.get("to") or plan.get("to_version"),
        versions=tuple(_version(v) for v in plan.get("versions") or []),
        warnings=tuple(str(w.get("message", w)) if isinstance(w, Mapping) else str(w) for w in warnings),
        forecast=tuple(str(line) for line in forecast.get("lines") or []),
        stall_ms=float(forecast["worst_ms"]) if isinstance(forecast.get("worst_ms"), int | float) else None,
        net=str(saved["net"]) if saved.get("net") else None,
    )
