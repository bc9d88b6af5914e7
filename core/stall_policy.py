"""Pure: whether the execute pipeline's maintenance steps run, from the dry run's stall forecast.

Per target, `maintenance_above_stall_s` makes maintenance mode required when the forecast blocks the
application at least that long (a target without a `maintenance_on` hook is then refused before any
request exists), and `skip_maintenance_below_stall_s` skips the maintenance steps when the forecast is
shorter. Without a forecast (an older plan) or without these keys, the configured hooks run as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from core.config import Target


class MaintenanceChoice(StrEnum):
    AS_CONFIGURED = "as_configured"
    REQUIRED = "required"
    SKIP = "skip"


@dataclass(frozen=True)
class MaintenanceDecision:
    choice: MaintenanceChoice
    stall_ms: float | None = None
    threshold_s: float | None = None
    hook_configured: bool = True

    @property
    def refused(self) -> bool:
        """Required, but the target has nothing to turn maintenance mode on with."""
        return self.choice is MaintenanceChoice.REQUIRED and not self.hook_configured


def decide(target: Target, stall_ms: float | None) -> MaintenanceDecision:
    if stall_ms is None:
        return MaintenanceDecision(MaintenanceChoice.AS_CONFIGURED)
    above, below = target.maintenance_above_stall_s, target.skip_maintenance_below_stall_s
    if above is not None and stall_ms >= above * 1000:
        return MaintenanceDecision(MaintenanceChoice.REQUIRED, stall_ms, above,
                                   hook_configured=target.maintenance_on is not None)
    if below is not None and stall_ms < below * 1000:
        return MaintenanceDecision(MaintenanceChoice.SKIP, stall_ms, below)
    return MaintenanceDecision(MaintenanceChoice.AS_CONFIGURED, stall_ms)
