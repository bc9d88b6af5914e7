"""What the bot and the workers agree on about jobs, besides their names: the step that starts an
approved request, and the shape of a result the bot reads back.

The dotted paths of the jobs (rq's convention: the bot enqueues `"workers.jobs.status"` by name and
never imports worker code) are written once, in the verb that enqueues them (bot/verbs.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core.requests import RequestKind

# A JSON object: what a job returns (RQ stores it), what a request's pipeline state keeps in Redis,
# what a result's `to_dict()` gives. Inside a process results travel as typed objects; they become
# this only at those boundaries.
JsonObject = dict[str, Any]

# The step a worker claims (RequestStore.claim) when it starts an approved request, per request kind.
# Whoever claims it first owns the start: the worker runs the request, or the bot's expiry sweeper
# records that it never started in time (and a late job then finds the claim taken and does nothing).
START_STEPS = {RequestKind.ROLLBACK: "execute", RequestKind.RESTORE: "restore", RequestKind.UNDO: "execute",
               RequestKind.TERMINATE: "terminate", RequestKind.REPAIR: "repair"}


@dataclass(frozen=True)
class BackupCheck:
    """The result of `workers.jobs.check_backup` (kwargs: target, backup), as its RQ return value carries
    it (`to_dict` / `from_dict`): whether that backup exists and verifies (checksum and
    `pg_restore --list`). The bot waits for it before it creates a restore request."""

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
