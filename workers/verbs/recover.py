"""`/rollback recover <backup> <tables>`: lost rows back from a verified backup, newer rows kept
(core/kinds.py RECOVER; playbook scenario 4): a backup of just those tables, then the rows in one
transaction (workers/runtime/previews.py, workers/postgres/row_merge.py)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.config import Target
from core.prechecks import Preview, PreviewCheck, TablePreview
from core.requests import Request, RequestKind
from workers import messages
from workers.postgres import dump_reader, identity, migration_history, row_merge
from workers.postgres.checks import count_rows
from workers.postgres.dump_reader import list_backups
from workers.postgres.pg_dump import take_backup
from workers.postgres.pg_restore import BackupManifest, check_backup
from workers.runtime import approved_requests, previews
from workers.runtime.context import Context
from workers.runtime.errors import StepFailed
from workers.runtime.pipeline_state import (
    BackupWaived,
    PipelineState,
    RecoverStepResult,
    TableBackupStepResult,
)
from workers.runtime.previews import RecoveryRefused, _guarded_identity, applied_versions, digest_of
from workers.runtime.progress import Progress
from workers.verbs import Promise, Refusal


@dataclass(frozen=True)
class RecoverParams:
    """What the approval bound (the preview's `params`), read once from `request.params`."""

    tables: list[str]
    overwrite: bool
    recovery_digest: str  # the diff approved: the one the recovery must find again

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> RecoverParams:
        return cls(tables=list(params.get("tables") or []), overwrite=bool(params.get("overwrite")),
                   recovery_digest=str(params.get("recovery_digest")))


def start_check(ctx: Context, request: Request, target: Target, progress: Progress) -> Refusal | None:
    params = RecoverParams.from_params(request.params)
    return previews.recheck(request, lambda: recover_preview(
        ctx, target, str(request.backup), params.tables, params.overwrite))


BEFORE_RECOVERY = "before the table recovery"


def no_table_backup() -> str:
    return "no verified backup of the tables, so nothing was recovered (no backup, no change)"


def recover_of(backup: str, tables: Sequence[str], overwrite: bool) -> str:
    mode = "missing rows inserted, differing rows overwritten" if overwrite else "missing rows inserted"
    return f"{', '.join(tables)} from `{backup}` ({mode}, one transaction)"


def recover_figures(inserted: Mapping[str, int], overwritten: Mapping[str, int], before: Mapping[str, int],
                    after: Mapping[str, int]) -> dict[str, Any]:
    return {
        "inserted": ", ".join(f"{t} {n}" for t, n in inserted.items()) or "0",
        "overwritten": ", ".join(f"{t} {n}" for t, n in overwritten.items() if n) or None,
        "rows": ", ".join(f"{t} {before[t]} → {after.get(t)}" for t in before) or None,
    }


def rows_not_put_back(table: str, before: int, inserted: int, after: int) -> str:
    return f"{table} should have at least {before} + {inserted} rows after the recovery, has {after}"


def _archive(ctx: Context, target: Target, backup: str) -> tuple[Path, Mapping[str, Any]]:
    """The backup's archive and manifest, when it exists and verifies (checksum, `pg_restore --list`)."""
    checked = check_backup(backup, backup_dir=ctx.settings.backup_dir, target=target.name,
                           pg_restore=ctx.options.pg_restore)
    if not checked.ok or not checked.backup:
        raise RecoveryRefused(checked.error or messages.backup_unusable(backup))
    return Path(str(checked.backup["path"])), checked.backup


def _session(ctx: Context, target: Target, archive: Path, tables: Sequence[str],
             beat: Callable[[str], None] | None = None) -> Any:
    conninfo = ctx.conninfo(target)
    return row_merge.recovery_session(
        conninfo, archive, tables, jobs=ctx.options.restore_jobs, pg_restore=ctx.options.pg_restore,
        run=row_merge.client_runner(conninfo, beat, ctx.options.progress_interval_s),
        lock_timeout_ms=ctx.settings.lock_timeout_ms, statement_timeout_ms=ctx.settings.statement_timeout_ms,
        psql=ctx.options.psql, heartbeat=beat,
    )


def backup_before(ctx: Context, target: Target, version: str | None = None) -> tuple[str, str]:
    """The backup a recovery takes its rows from when none is named: the newest of the target's backups that
    verifies and was taken before the migration that lost the rows was applied (`version`, by default the newest
    migration applied); (its name, that migration's version)."""
    with ctx.connect(target) as conn:
        row = conn.execute(
            "SELECT version, applied_at FROM schema_migrations WHERE applied_at IS NOT NULL"
            " AND (%(v)s::text IS NULL OR version = %(v)s) ORDER BY applied_at DESC, version DESC LIMIT 1",
            {"v": version}).fetchone() if previews.has_migrations_table(conn) else None
    if row is None:
        raise RecoveryRefused(no_migration_to_go_before(target.name, version))
    lost_by, applied_at = str(row[0]), row[1]
    for found in list_backups(ctx.settings.backup_dir, target.name):  # newest first
        taken = datetime.fromisoformat(str(found["created_at"]))
        taken = taken if taken.tzinfo else taken.replace(tzinfo=UTC)
        if taken < applied_at and check_backup(str(found["name"]), backup_dir=ctx.settings.backup_dir,
                                               target=target.name, pg_restore=ctx.options.pg_restore).ok:
            return str(found["name"]), lost_by
    raise RecoveryRefused(no_backup_before(target.name, lost_by))


def no_migration_to_go_before(target: str, version: str | None) -> str:
    which = f"migration {version} was never applied to {target}" if version else f"no migration was applied to {target}"
    return f"{which}: name the backup to recover from (`/rollback backups` lists them)"


def no_backup_before(target: str, version: str) -> str:
    return (f"no backup of {target} that verifies was taken before {version} was applied: name one "
            "(`/rollback backups` lists them), or restore a snapshot")


def recover_preview(ctx: Context, target: Target, backup: str | None, tables: Sequence[str], overwrite: bool,
                    before: str | None = None) -> PreviewCheck:
    """Restore the tables into a scratch database, compare by primary key, try the inserts (rolled back). With no
    backup named, the newest taken before the migration that lost the rows (`before`, or the newest applied)."""
    names = [str(row_merge.parse_table(t)) for t in tables]  # InvalidTableName before anything runs
    chosen_before = None
    if not backup:
        backup, chosen_before = backup_before(ctx, target, before)
    archive, manifest = _archive(ctx, target, backup)
    with ctx.connect(target) as conn:
        found = _guarded_identity(ctx, conn, target)
        versions = [v for v, _ in applied_versions(conn)]
    with _session(ctx, target, archive, names) as session:
        shown = row_merge.preview(session, archive.name, overwrite, time.monotonic())
    preview = Preview(
        kind=RequestKind.RECOVER.value, target=target.name, backup=archive.name, overwrite=overwrite,
        versions_before=tuple(versions), versions_after=tuple(versions),
        tables=tuple(TablePreview(t.table, live_rows=t.live_rows, restored_rows=t.restored_rows, missing=t.missing,
                                  differing=t.differing, only_live=t.only_live,
                                  missing_sample=tuple(t.missing_sample), differing_sample=tuple(t.differing_sample),
                                  only_live_sample=tuple(t.only_live_sample)) for t in shown.tables),
        created_at=BackupManifest.from_dict(manifest).created_at,
        file=dump_reader.read(archive, pg_restore=ctx.options.pg_restore).summary(),
        chosen_before=chosen_before,  # no backup named: the newest taken before this migration was applied
    )
    digest = digest_of(found, {"kind": "recover", "recovery": shown.digest})
    return PreviewCheck(ok=True, digest=digest, preview=preview,
                        params={"tables": names, "overwrite": overwrite, "recovery_digest": shown.digest,
                                "backup": archive.name})


def table_backup(ctx: Context, request: Request, target: Target, progress: Progress) -> TableBackupStepResult | BackupWaived:
    """A fresh, verified backup of just the tables about to change (pg_dump -t): no backup, no change."""
    tables = [row_merge.parse_table(t) for t in RecoverParams.from_params(request.params).tables]
    with ctx.connect(target) as conn:
        identity.guard(conn, ctx.redis, target.name, by=request.requester)
    waived = approved_requests.backup_waived(ctx, request, target, progress, "table_backup")
    if waived is not None:
        return waived
    started = progress.start("table_backup", messages.dump_of(", ".join(str(t) for t in tables), BEFORE_RECOVERY))
    with progress.heartbeat("table_backup") as beat:
        backup = take_backup(
            ctx.conninfo(target), target=target.name, reason=f"pre-recover-{request.id}",
            backup_dir=ctx.settings.backup_dir, heartbeat=beat, pg_dump=ctx.options.pg_dump,
            pg_restore=ctx.options.pg_restore, progress_interval=ctx.options.progress_interval_s,
            tables=[(t.schema, t.name) for t in tables],
        )
    if not backup.verified:
        raise StepFailed(no_table_backup())
    with ctx.connect(target) as conn:
        migration_history.record(conn, operation="backup", status="completed", executed_by=request.requester,
                       approved_by=request.approver, request_id=request.id,
                       duration_ms=int(backup.duration_s * 1000), details=backup.to_dict())
    progress.finish("table_backup", started, messages.backup_figures(backup))
    return TableBackupStepResult(backup)


def recover_rows(ctx: Context, request: Request, target: Target, progress: Progress) -> RecoverStepResult:
    """Insert the missing rows (overwrite the differing ones only if asked) in one transaction, parents
    first; the diff is recomputed in that transaction and must be the one approved; counts verified."""
    params = RecoverParams.from_params(request.params)
    tables, overwrite = params.tables, params.overwrite
    archive, _ = _archive(ctx, target, str(request.backup))
    started = progress.start("recover", recover_of(archive.name, tables, overwrite))
    with progress.heartbeat("recover") as beat, _session(ctx, target, archive, tables, beat) as session:
        result = row_merge.apply(session, archive.name, overwrite, params.recovery_digest, time.monotonic())
    ctx.store().clear_plans(target.name)  # the target's rows changed
    with ctx.connect(target) as conn:
        migration_history.record(conn, operation="recover", status="completed", executed_by=request.requester,
                       approved_by=request.approver, request_id=request.id,
                       duration_ms=int(result.duration_s * 1000),
                       details={"backup": archive.name, "overwrite": overwrite, "inserted": result.inserted,
                                "overwritten": result.overwritten, "counts_before": result.counts_before,
                                "counts_after": result.counts_after})
    progress.finish("recover", started, recover_figures(result.inserted, result.overwritten,
                                                                 result.counts_before, result.counts_after))
    return RecoverStepResult(result.inserted, result.overwritten, result.counts_before, result.counts_after)


STEPS = {"table_backup": table_backup, "recover": recover_rows}


def promised(ctx: Context, request: Request, target: Target, state: PipelineState) -> Promise:
    """Every row the recovery put back is still there when the verification looks: each table has at least
    its rows before the recovery plus the rows inserted (counted now, not as the step saw them, so rows lost
    again before the end are not called recovered; rows the application adds meanwhile are welcome)."""
    done = state.recover
    # Counters: a table the step did not count had none before and none inserted.
    before, inserted = (Counter(done.counts_before), Counter(done.inserted)) if done else (Counter(), Counter())
    tables = [str(t) for t in RecoverParams.from_params(request.params).tables]
    now = count_rows(ctx.conninfo(target), tables)
    wrong = tuple(rows_not_put_back(t, int(before[t]), int(inserted[t]), now[t])
                  for t in tables if now[t] < int(before[t]) + int(inserted[t]))
    return Promise(mismatches=wrong)


def succeeded(request: Request, target: Target, state: PipelineState, duration_s: float) -> str:
    return messages.recovery_succeeded(request.id, target.name, "table recovery")
