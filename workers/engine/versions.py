"""Pure planning: versions, statuses, which migrations to apply or revert, and status warnings.

No files and no database here (alembic's `script/revision.py` split): everything is tested in memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from core import versions as core_versions
from workers.engine.errors import InterruptedMigration, NeedsRepair, NotCompleted, UnknownVersion


class Status(StrEnum):
    PENDING = "pending"  # on disk, not in schema_migrations
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"


def parse_version(text: str) -> str:
    """`text` if it is a valid YYYY_MM_DD_HHMMSS version (core/versions.py), else UnknownVersion saying so."""
    try:
        return core_versions.parse_version(text)
    except core_versions.InvalidVersion:
        raise UnknownVersion(text, "malformed") from None


@dataclass(frozen=True)
class Recorded:
    """One schema_migrations row, as the planner needs it."""

    version: str
    status: str
    name: str | None = None
    checksum: str | None = None
    repaired: bool = False  # rolled back by --repair after a failed apply: applied again like a failed one


def rollback_versions(recorded: Mapping[str, Recorded], to: str | None) -> list[str]:
    """Completed versions to revert, newest first.

    `to` is the last known-good version: it must be recorded and completed; every completed version
    newer than it is reverted. Without `to`, only the newest completed version is reverted.
    """
    completed = sorted((v for v, r in recorded.items() if r.status == Status.COMPLETED), reverse=True)
    if to is None:
        reverted = completed[:1]
        floor = completed[1] if len(completed) > 1 else None
    else:
        target = parse_version(to)
        row = recorded.get(target)
        if row is None:
            raise UnknownVersion(target, "not_applied")
        if row.status != Status.COMPLETED:
            raise NotCompleted(target, row.status)
        reverted, floor = [v for v in completed if v > target], target
    if reverted:
        # A failed or interrupted migration inside the range is in an unknown state: repair it first.
        unclear = sorted(v for v, r in recorded.items() if r.status in (Status.FAILED, Status.RUNNING)
                         and (floor is None or v > floor))
        if unclear:
            raise NeedsRepair(unclear[-1], str(recorded[unclear[-1]].status))
    return reverted


def held_back(up_checksums: Mapping[str, str | None], recorded: Mapping[str, Recorded],
              reapply: Iterable[str] = ()) -> list[str]:
    """Rolled-back versions that stay rolled back, oldest first: someone took them out on purpose (the bot,
    `--rollback`, or the playbook's Method 2), so a plain apply (every CI deploy) must not put them back.

    One is applied again when its up.sql differs from the one rolled back (the fix, playbook Step 8), or
    when named in `reapply`. One that `--repair` rolled back never ran to the end: it is applied again,
    as a failed one is. A row without a checksum (applied by another tool) cannot tell a fix from
    the same script: it stays rolled back until named in `reapply`.
    """
    again = set(reapply)
    return [v for v in sorted(up_checksums)
            if (row := recorded.get(v)) is not None and row.status == Status.ROLLED_BACK and v not in again
            and not row.repaired and (row.checksum is None or row.checksum == up_checksums[v])]


def apply_versions(on_disk: Iterable[str], recorded: Mapping[str, Recorded], held: Iterable[str] = ()) -> list[str]:
    """Versions to apply, oldest first: never recorded, failed, or rolled back and not `held` (`held_back`).

    A 'running' row seen while we hold the migration lock was left by a run that died outside a
    transaction: its effects are unknown, so we stop and ask a person rather than guess.
    """
    kept = set(held)
    pending = []
    for version in sorted(set(on_disk)):
        row = recorded.get(version)
        if row is not None and row.status == Status.RUNNING:
            raise InterruptedMigration(version, row.name or "")
        if version in kept:
            continue
        if row is None or row.status in (Status.FAILED, Status.ROLLED_BACK):
            pending.append(version)
    return pending


def newest_completed(recorded: Mapping[str, Recorded]) -> str | None:
    completed = [v for v, r in recorded.items() if r.status == Status.COMPLETED]
    return max(completed) if completed else None


def ordered(versions: Iterable[str], newest_first: bool = False) -> Sequence[str]:
    return sorted(set(versions), reverse=newest_first)
