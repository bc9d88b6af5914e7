"""Pure: turn what is on disk and what the database recorded into a status report or a plan."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping

from workers.engine import messages
from workers.engine.errors import (
    MigrationsDirError,
    MissingDownScript,
    NotRolledBack,
    UnparseableScript,
    UnsupportedStatement,
)
from workers.engine.results import MigrationState, Plan, PlanStep, ServerInfo, StatusReport
from workers.engine.scripts import MigrationSet
from workers.engine.store import Row
from workers.engine.versions import (
    Status,
    apply_versions,
    held_back,
    newest_completed,
    parse_version,
    rollback_versions,
)


def build_status(server: ServerInfo, disk: MigrationSet, rows: Mapping[str, Row],
                 lock_holder: dict[str, object] | None) -> StatusReport:
    states: list[MigrationState] = []
    warnings: list[str] = []
    for version in sorted(set(disk.migrations) | set(rows)):
        m = disk.get(version)
        row = rows.get(version)
        name = (m.name if m else None) or (row.name if row else None) or ""
        status = row.status if row else Status.PENDING.value
        drift = bool(row and m and m.up and row.checksum and status == Status.COMPLETED
                     and row.checksum != m.up.checksum)
        missing = m is None
        states.append(MigrationState(
            version=version, name=name, status=status, applied_at=row.applied_at if row else None,
            has_down=bool(m and m.down), drift=drift, missing_file=missing,
            error_message=row.error_message if row else None,
            transactional=bool(m is None or ((m.up is None or m.up.transactional)
                                             and (m.down is None or m.down.transactional))),
        ))
        if drift:
            warnings.append(messages.drift_warning(version, name))
        if missing and status in (Status.COMPLETED, Status.RUNNING):
            warnings.append(messages.missing_file_warning(version))
        if m and not m.down:
            warnings.append(messages.no_down_warning(version, name))
        if m and not m.up:
            warnings.append(messages.no_up_warning(version, name))
        for script in (m.up, m.down) if m else ():
            try:
                if script is not None:
                    script.check_supported()
            except (UnsupportedStatement, UnparseableScript) as exc:
                warnings.append(exc.message)
        if status == Status.FAILED:
            warnings.append(messages.failed_warning(version, name, row.error_message if row else None))
        if status == Status.RUNNING:
            warnings.append(messages.running_warning(version, name, lock_holder is not None))
    if disk.ignored:
        warnings.append(messages.ignored_entries_warning(disk.ignored))
    recorded = {v: r.recorded() for v, r in rows.items()}
    current = newest_completed(recorded)
    # A never-applied migration older than the current version was merged late: apply will run it out of
    # order. (Failed ones already have their own warning.)
    warnings += [messages.out_of_order_warning(s.version, s.name, current) for s in states
                 if current is not None and s.status == Status.PENDING and s.version < current]
    held = set(held_back(_up_checksums(disk), recorded))
    warnings += [messages.rolled_back_status(s.version, s.name, held=s.version in held,
                                             repaired=rows[s.version].repaired) for s in states
                 if s.status == Status.ROLLED_BACK and not s.missing_file]
    return StatusReport(server, states, warnings, current, lock_holder)


def plan_hash(server: ServerInfo, operation: str, to: str | None, steps: list[PlanStep]) -> str:
    """Identifies the exact change on the exact database: approving one plan never runs another."""
    payload = {
        "system_identifier": server.system_identifier, "dbname": server.dbname, "operation": operation,
        "to": to, "steps": [[s.version, s.sql, s.transactional] for s in steps],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def build_rollback_plan(server: ServerInfo, disk: MigrationSet, rows: Mapping[str, Row], to: str | None) -> Plan:
    recorded = {v: r.recorded() for v, r in rows.items()}
    versions = rollback_versions(recorded, to)
    steps = []
    for version in versions:
        m = disk.get(version)
        if m is None:
            raise MissingDownScript(version, rows[version].name or "", str(disk.directory), migration_missing=True)
        if m.down is None:
            raise MissingDownScript(version, m.name, str(m.folder))
        m.down.check_supported()
        steps.append(PlanStep(version, m.name, m.down.sql, m.down.transactional, tuple(m.down.statements)))
    return Plan("rollback", to, steps, plan_hash(server, "rollback", to, steps), server.dbname,
                newest_completed(recorded))


def _up_checksums(disk: MigrationSet) -> dict[str, str | None]:
    return {v: m.up.checksum if m.up else None for v, m in disk.migrations.items()}


def build_apply_plan(server: ServerInfo, disk: MigrationSet, rows: Mapping[str, Row],
                     reapply: Iterable[str] = ()) -> Plan:
    """Pending and failed migrations, and rolled-back ones whose up.sql changed or that `reapply` names;
    the other rolled-back ones are `held` (they stay rolled back, see versions.held_back)."""
    # A folder that starts like a version but does not parse is a mistyped migration: applying everything
    # else while silently skipping it would leave the schema behind the code.
    misnamed = [entry for entry in disk.ignored if entry[:1].isdigit()]
    if misnamed:
        raise MigrationsDirError(str(disk.directory / misnamed[0]), "misnamed")
    recorded = {v: r.recorded() for v, r in rows.items()}
    again = [parse_version(v) for v in reapply]
    for version in again:
        row = recorded.get(version)
        if version not in disk.migrations or row is None or row.status != Status.ROLLED_BACK:
            raise NotRolledBack(version, "missing" if version not in disk.migrations
                                else row.status if row is not None else Status.PENDING.value)
    held = held_back(_up_checksums(disk), recorded, again)
    steps = []
    for version in apply_versions(disk.migrations, recorded, held):
        m = disk.migrations[version]
        if m.up is None:
            raise MigrationsDirError(str(m.folder), "no up.sql; add it or remove the folder")
        m.up.check_supported()
        steps.append(PlanStep(version, m.name, m.up.sql, m.up.transactional, tuple(m.up.statements)))
    return Plan("apply", None, steps, plan_hash(server, "apply", None, steps), server.dbname,
                newest_completed(recorded), tuple((v, disk.migrations[v].name) for v in held))
