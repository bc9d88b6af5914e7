"""What the bot and the workers agree on about jobs, besides their names: the step that starts an
approved request, and the shape of a result the bot reads back.

The dotted paths of the jobs (rq's convention: the bot enqueues `"workers.jobs.status"` by name and
never imports worker code) are written once, in the verb that enqueues them (bot/verbs.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

# A JSON object: what a job returns (RQ stores it), what a request's pipeline state keeps in Redis,
# what a result's `to_dict()` gives. Inside a process results travel as typed objects; they become
# this only at those boundaries.


def _text(data: Mapping[str, Any], key: str) -> str | None:
    """An optional text field of a job's return value: None when absent or empty."""
    value = data.get(key)
    return str(value) if value else None


def _items(data: Mapping[str, Any], key: str) -> list[Any]:
    """A list field of a job's return value: empty when absent or null."""
    return list(data.get(key) or ())


@dataclass(frozen=True)
class FileSummary:
    """What a worker read in a backup file itself (workers/postgres/dump_reader.py): its kind, whether it is
    ours, its tables with their rows (None: no data), its last completed migration."""

    name: str
    format: str
    format_name: str
    ours: bool
    tables: Mapping[str, int | None] = field(default_factory=dict)
    last_version: str | None = None
    verified_by: str | None = None  # a dump made by hand: how it was found whole

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "tables": dict(self.tables)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FileSummary:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})



@dataclass(frozen=True)
class TablePreview:
    """One table on a restore preview: its rows live and in the backup; for a table recovery, the rows
    matched by primary key (missing from live, differing, only in live) and a few sample keys of each."""

    table: str
    live_rows: int | None  # None: no such table live (a bad migration may have dropped it)
    restored_rows: int | None
    missing: int = 0
    differing: int = 0
    only_live: int = 0
    missing_sample: tuple[str, ...] = ()
    differing_sample: tuple[str, ...] = ()
    only_live_sample: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"table": self.table, "live_rows": self.live_rows, "restored_rows": self.restored_rows,
                "missing": self.missing, "differing": self.differing, "only_live": self.only_live,
                "missing_sample": list(self.missing_sample), "differing_sample": list(self.differing_sample),
                "only_live_sample": list(self.only_live_sample)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TablePreview:
        return cls(table=str(data["table"]), live_rows=data["live_rows"], restored_rows=data["restored_rows"],
                   missing=int(data["missing"]), differing=int(data["differing"]), only_live=int(data["only_live"]),
                   missing_sample=tuple(data["missing_sample"]), differing_sample=tuple(data["differing_sample"]),
                   only_live_sample=tuple(data["only_live_sample"]))


@dataclass(frozen=True)
class Preview:
    """The restore preview a recovery's approval card shows (bot/messages.py `preview_summary`) and its
    request binds (its digest): built by the worker's check (workers/verbs/<kind>.py), JSON only in the
    check job's return value (`to_dict` / `from_dict`).

    `versions_after` None: not known before running (a snapshot without a date, a new cluster);
    `point_unix` / `lost_seconds`: the moment restored to and how long ago (PITR, snapshot, a backup);
    `written_since`: rows per table written after that point; `file`: what the worker read in the backup
    file (workers/postgres/dump_reader.py `summary()`); `overwrite`: a table recovery's --overwrite (None:
    not a table recovery). The rest are the kind's facts its card headline names (core/kinds.py)."""

    kind: str
    target: str
    versions_before: tuple[str, ...] = ()
    versions_after: tuple[str, ...] | None = None
    tables: tuple[TablePreview, ...] = ()
    point_unix: int | None = None
    lost_seconds: int | None = None
    written_since: Mapping[str, int] = field(default_factory=dict)
    file: FileSummary | None = None
    overwrite: bool | None = None
    backup: str | None = None
    created_at: str | None = None
    project_ref: str | None = None
    bad_version: str | None = None
    snapshot: str | None = None
    snapshot_name: str | None = None
    droplet_id: str | int | None = None
    database_id: str | None = None
    backup_created_at: str | None = None
    new_name: str | None = None
    chosen_before: str | None = None  # a recovery with no backup named: the migration its backup was taken before
    # a new droplet from a snapshot: when the snapshot was taken, and the droplet it is of (its size and region)
    taken_at: str | None = None
    source_droplet: str | int | None = None
    size: str | None = None
    region: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data.update(versions_before=list(self.versions_before),
                    versions_after=list(self.versions_after) if self.versions_after is not None else None,
                    tables=[t.to_dict() for t in self.tables], written_since=dict(self.written_since),
                    file=self.file.to_dict() if self.file is not None else None)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Preview:
        known = {f.name for f in fields(cls)}
        after = data.get("versions_after")
        return cls(**{**{k: v for k, v in data.items() if k in known},
                      "versions_before": tuple(_items(data, "versions_before")),
                      "versions_after": tuple(after) if isinstance(after, list) else None,
                      "tables": tuple(TablePreview.from_dict(t) for t in _items(data, "tables")),
                      "written_since": dict(data.get("written_since") or {}),
                      "file": FileSummary.from_dict(data["file"]) if isinstance(data.get("file"), Mapping) else None})


@dataclass(frozen=True)
class BackupFacts:
    """What a restore's card says of the checked backup: its manifest (`BackupCheck.backup`), read once."""

    created_at: str | None = None
    size_bytes: Any = None
    sha256: str | None = None
    verified_by: str | None = None  # a dump made by hand: how it was found whole (no checksum of ours)

    @classmethod
    def from_dict(cls, manifest: Mapping[str, Any]) -> BackupFacts:
        return cls(created_at=_text(manifest, "created_at"), size_bytes=manifest.get("size_bytes"),
                   sha256=_text(manifest, "sha256"), verified_by=_text(manifest, "verified_by"))


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
    preview: Preview | None = None
    preview_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "error": self.error, "newest": list(self.newest),
                "backup": dict(self.backup) if self.backup is not None else None,
                "digest": self.digest, "preview": self.preview.to_dict() if self.preview is not None else None,
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
            error=_text(data, "error"),
            newest=tuple(str(n) for n in newest) if isinstance(newest, list) else (),
            backup=backup if isinstance(backup, Mapping) else None,
            digest=digest if isinstance(digest := data.get("digest"), str) else None,
            preview=Preview.from_dict(preview) if isinstance(preview, Mapping) else None,
            preview_error=_text(data, "preview_error"),
        )


@dataclass(frozen=True)
class PreviewCheck:
    """The result of a recovery verb's check job (`workers.jobs.check_recover`, `check_pitr`,
    `check_snapshot`): whether the recovery may be asked for, and the restore preview its approval
    card shows and binds. The bot waits for it before it creates the request.

    `digest` is a hash of the preview and of the database's identity: the request keeps it and the
    worker recomputes it at start (a stale preview is refused). `preview`: the `Preview` above.
    `params` are what the request keeps for the workers (tables, overwrite, point, snapshot)."""

    ok: bool
    error: str | None = None  # why not, one line, no secret
    digest: str | None = None
    preview: Preview | None = None
    params: Mapping[str, Any] | None = field(default=None)

    @property
    def backup(self) -> str | None:
        """The backup the check chose for the recovery (none named: the one before the bad migration)."""
        return _text(self.params or {}, "backup")

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "error": self.error, "digest": self.digest,
                "preview": self.preview.to_dict() if self.preview is not None else None,
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
            error=_text(data, "error"),
            digest=_text(data, "digest"),
            preview=Preview.from_dict(preview) if isinstance(preview, Mapping) else None,
            params=params if isinstance(params, Mapping) else None,
        )


@dataclass(frozen=True)
class RestoredRelation:
    """A relation an undo puts back from the escrow, and how many rows."""

    relation: str
    kind: str
    rows: int | None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RestoredRelation:
        return cls(relation=str(data.get("relation")), kind=str(data.get("kind")), rows=data.get("rows"))


@dataclass(frozen=True)
class UndoCheck:
    """The result of `workers.jobs.check_undo` (an undo's dry run, rolled back): what it re-applies and puts
    back, and the plan hash the request binds. The bot waits for it before it creates the request."""

    ok: bool
    error: str | None = None  # why not, one line, no secret
    hash: str = ""
    versions: tuple[str, ...] = ()
    restored: tuple[RestoredRelation, ...] = ()

    @classmethod
    def from_dict(cls, data: Any) -> UndoCheck:
        """Read a job's return value; anything not shaped like an UndoCheck is a failed check."""
        if not isinstance(data, Mapping):
            return cls(ok=False)
        return cls(ok=data.get("ok") is True, error=_text(data, "error"), hash=_text(data, "hash") or "",
                   versions=tuple(str(v) for v in _items(data, "versions")),
                   restored=tuple(RestoredRelation.from_dict(r) for r in _items(data, "restored")))


@dataclass(frozen=True)
class RepairPlanCheck:
    """The result of a repair's check job (`workers.verbs.repair.plan`): the repair plan as the card shows
    it (`text`) and its hash, which the approved repair must still match."""

    ok: bool
    error: str | None = None  # why not, one line, no secret
    text: str = ""
    hash: str = ""

    @classmethod
    def from_dict(cls, data: Any) -> RepairPlanCheck:
        """Read a job's return value; anything not shaped like a RepairPlanCheck is a failed check."""
        if not isinstance(data, Mapping):
            return cls(ok=False)
        return cls(ok=bool(data.get("ok")), error=_text(data, "error"), text=_text(data, "text") or "",
                   hash=_text(data, "hash") or "")
