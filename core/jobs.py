"""Dotted paths of the worker jobs, and the shape of the results the bot reads back.

The bot enqueues by name and never imports worker code (rq's dotted-path convention); which verb
enqueues which job is said once, in bot/verbs.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core.requests import RequestKind

STATUS = "workers.jobs.status"
DRY_RUN = "workers.jobs.dry_run"
EXECUTE = "workers.jobs.execute"
BACKUP = "workers.jobs.backup"
BACKUPS = "workers.jobs.backups"
VERIFY = "workers.jobs.verify"
HISTORY = "workers.jobs.history"
RESTORE = "workers.jobs.restore"
REPORT = "workers.jobs.report"
# kwargs: target, backup. Returns BackupCheck.to_dict(): whether that backup exists and verifies
# (checksum and `pg_restore --list`); the bot waits for it before it creates a restore request.
CHECK_BACKUP = "workers.jobs.check_backup"
# kwargs: target, state ("on" / "off"), channel, thread_ts, requester: switch the target's maintenance.
MAINTENANCE = "workers.jobs.maintenance"

# The step a worker claims (RequestStore.claim) when it starts an approved request, per request kind.
# Whoever claims it first owns the start: the worker runs the request, or the bot's expiry sweeper
# records that it never started in time (and a late job then finds the claim taken and does nothing).
START_STEPS = {RequestKind.ROLLBACK: "execute", RequestKind.RESTORE: "restore"}


@dataclass(frozen=True)
class BackupCheck:
    """The result of CHECK_BACKUP, as the RQ return value carries it (`to_dict` / `from_dict`)."""

    ok: bool
    error: str | None = None  # why not, one line (no secret, no path outside the backups folder)
    newest: tuple[str, ...] = ()  # names of the target's newest verified backups, newest first
    backup: Mapping[str, Any] | None = field(default=None)  # the checked backup's manifest when ok

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "error": self.error, "newest": list(self.newest),
                "backup": dict(self.backup) if self.backup is not None else None}

    @classmethod
    def from_dict(cls, data: Any) -> BackupCheck:
        """Read a job's return value; anything not shaped like a BackupCheck is a failed check."""
        if not isinstance(data, Mapping):
            return cls(ok=False, error=None)
        newest = data.get("newest")
        backup = data.get("backup")
        return cls(
            ok=data.get("ok") is True,
            error=str(data["error"]) if data.get("error") else None,
            newest=tuple(str(n) for n in newest) if isinstance(newest, list) else (),
            backup=backup if isinstance(backup, Mapping) else None,
        )
