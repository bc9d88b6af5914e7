"""What the bot and the workers agree on about jobs, besides their names: the step that starts an
approved request, and the shape of a result the bot reads back.

The dotted paths of the jobs (rq's convention: the bot enqueues `"workers.jobs.status"` by name and
never imports worker code) are written once, in the verb that enqueues them (bot/verbs.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# A JSON object: what a job returns (RQ stores it), what a request's pipeline state keeps in Redis,
# what a result's `to_dict()` gives. Inside a process results travel as typed objects; they become
# this only at those boundaries.


@dataclass(frozen=True)
class BackupCheck:
    """The result of `workers.jobs.check_backup` (kwargs: target, backup), as its RQ return value carries
    it (`to_dict` / `from_dict`): whether that backup exists and verifies (checksum and
    `pg_restore --list`). The bot waits for it before it creates a restore request."""

    ok: bool
    error: str | None = None  # why not, one line (no secret, no path outside the backups folder)
    newest: tuple[str, ...] = ()  # names of the target's newest verified backups, newest first
    backup: Mapping[str, Any] | None = field(default=None)  # the checked backup's manifest when ok
    # The restore preview (as in PreviewCheck) and its digest, which the request binds; None when it
    # could not be computed (`preview_error` says why) or was not asked for.
    digest: str | None = None
    preview: Mapping[str, Any] | None = field(default=None)
    preview_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "error": self.error, "newest": list(self.newest),
                "backup": dict(self.backup) if self.backup is not None else None,
                "digest": self.digest, "preview": dict(self.preview) if self.preview is not None else None,
                "preview_error": self.preview_error}

    @classmethod
    def from_dict(cls, data: Any) -> BackupCheck:
        """Read a job's return value; anything not shaped like a BackupCheck is a failed check."""
        if not isinstance(data, Mapping):
            return cls(ok=False, error=None)
        newest = data.get("newest")
        backup = data.get("backup")
        preview = data.get("preview")
        return cls(
            ok=data.get("ok") is True,
            error=str(data["error"]) if data.get("error") else None,
            newest=tuple(str(n) for n in newest) if isinstance(newest, list) else (),
            backup=backup if isinstance(backup, Mapping) else None,
            digest=str(data["digest"]) if isinstance(data.get("digest"), str) else None,
            preview=preview if isinstance(preview, Mapping) else None,
            preview_error=str(data["preview_error"]) if data.get("preview_error") else None,
        )


@dataclass(frozen=True)
class PreviewCheck:
    """The result of a recovery verb's check job (`workers.jobs.check_recover`, `check_pitr`,
    `check_snapshot`): whether the recovery may be asked for, and the restore preview its approval
    card shows and binds. The bot waits for it before it creates the request.

    `digest` is a hash of the preview and of the database's identity: the request keeps it and the
    worker recomputes it at start (a stale preview is refused). `preview` is a JSON object:
    - `kind`: the RequestKind; `target`;
    - `versions_before` / `versions_after`: applied migration versions now and after the recovery
      (`versions_after` None when it cannot be known before running);
    - `tables`: per table `{table, live_rows, restored_rows, missing, differing, only_live,
      missing_sample, differing_sample, only_live_sample}` (table restores);
    - `point_unix`, `lost_seconds`: the moment restored to and how long ago it is (PITR, snapshot);
    - `written_since`: `{table: rows}` written after the point (a newer created_at/updated_at);
    - kind-specific facts: `backup`, `overwrite`, `project_ref`, `bad_version`, `snapshot`, `snapshot_name`.
    `params` are what the request keeps for the workers (tables, overwrite, point, snapshot)."""

    ok: bool
    error: str | None = None  # why not, one line, no secret
    digest: str | None = None
    preview: Mapping[str, Any] | None = field(default=None)
    params: Mapping[str, Any] | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "error": self.error, "digest": self.digest,
                "preview": dict(self.preview) if self.preview is not None else None,
                "params": dict(self.params) if self.params is not None else None}

    @classmethod
    def from_dict(cls, data: Any) -> PreviewCheck:
        """Read a job's return value; anything not shaped like a PreviewCheck is a failed check."""
        if not isinstance(data, Mapping):
            return cls(ok=False)
        preview, params = data.get("preview"), data.get("params")
        ok = data.get("ok") is True and isinstance(data.get("digest"), str) and isinstance(preview, Mapping)
        return cls(
            ok=ok,
            error=str(data["error"]) if data.get("error") else None,
            digest=str(data["digest"]) if data.get("digest") else None,
            preview=preview if isinstance(preview, Mapping) else None,
            params=params if isinstance(params, Mapping) else None,
        )
