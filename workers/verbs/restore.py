"""`/rollback restore <backup>`: a verified backup restored over the target (core/kinds.py RESTORE).

backup → maintenance on → restore → verify → maintenance off, in its one job; the restore is built beside
the live database and swapped in (workers/postgres/pg_restore.py, workers/postgres/swap.py). Into a scratch database (`into`):
restore → finish, the target left alone.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from core.config import Target
from core.prechecks import Preview, TablePreview
from core.requests import Request, RequestKind
from workers import messages
from workers.messages import DONE
from workers.postgres import dump_reader, migration_history
from workers.postgres.pg_restore import BackupCheck, BackupManifest, check_backup, restore_backup
from workers.runtime import errors
from workers.runtime.context import Context
from workers.runtime.errors import WorkerError
from workers.runtime.pipeline_state import PipelineState, RestoreStepResult
from workers.runtime.previews import _guarded_identity, _iso_unix, applied_versions, digest_of, written_since
from workers.runtime.progress import Progress
from workers.verbs import Promise, Refusal

if TYPE_CHECKING:
    from workers.postgres.pg_restore import RestoreResult


def inspect_backup(ctx: Context, target: Target, backup: str, *, into: str = "target") -> BackupCheck:
    return check_backup(backup, backup_dir=ctx.settings.backup_dir, target=target.name,
                        pg_restore=ctx.options.pg_restore, any_target=into == "scratch")


def _into(ctx: Context, request: Request) -> str:
    return ctx.load_state(request.id).into


def start_check(ctx: Context, request: Request, target: Target, progress: Progress) -> Refusal | None:
    """The backup still exists and verifies, and (into the target) the preview the approval bound still holds."""
    if not request.backup:
        return Refusal(messages.refused(request.id, errors.restore_without_backup()), "no backup named")
    into = _into(ctx, request)
    check = inspect_backup(ctx, target, request.backup, into=into)
    if not check.ok:
        return Refusal(messages.refused(request.id, check.error or ""), "backup unusable")
    if into == "target" and check.backup:  # the restore preview the approval was bound to, recomputed
        stale = recheck_restore(ctx, request, target, Path(str(check.backup["path"])), check.backup)
        if stale is not None:
            return Refusal(messages.refused(request.id, stale), "preview changed")
    return None


def restore(ctx: Context, request: Request, target: Target, progress: Progress) -> RestoreStepResult:
    state = ctx.load_state(request.id)
    into = state.into
    pre_restore = state.backup.backup if state.backup else None
    backup = str(request.backup)
    started = progress.start("restore", restore_of(backup, into, target.name))
    try:
        with progress.heartbeat("restore") as beat:
            result = restore_backup(
                ctx.conninfo(target), backup, into=into, backup_dir=ctx.settings.backup_dir,
                target=target.name, heartbeat=beat, pg_restore=ctx.options.pg_restore, psql=ctx.options.psql,
                pg_dump=ctx.options.pg_dump, jobs=ctx.options.restore_jobs,
                progress_interval=ctx.options.progress_interval_s, method=ctx.options.restore_method,
                # The application is in maintenance only when this pipeline's hook said so: only then
                # may a swap end the sessions still on the target.
                end_sessions=state.maintenance_ran, maintenance_database=ctx.options.maintenance_database,
            )
    finally:
        if into == "target":
            ctx.store().clear_plans(target.name)
    if into == "target":  # the record of the restore itself, beside the history the restore kept
        with ctx.connect(target) as conn:
            migration_history.record(conn, operation="restore", status="completed", executed_by=request.requester,
                           approved_by=request.approver, request_id=request.id,
                           duration_ms=int(result.duration_s * 1000),
                           details={"backup": result.backup, "sha256": result.sha256,
                                    "pre_restore_backup": pre_restore.path if pre_restore else None,
                                    "dropped_tables": result.dropped_tables, "method": result.method,
                                    "replaced_database": result.replaced_database, "format": result.format,
                                    "ours": result.ours})
    progress.finish("restore", started, restore_figures(result))
    return RestoreStepResult(result)


STEPS = {"restore": restore}


def promised(ctx: Context, request: Request, target: Target, state: PipelineState) -> Promise:
    """No migration failed, running or drifted; the critical tables hold the rows as restored."""
    restored = state.restore.result.row_counts if state.restore else {}
    baseline = {t: restored.get(t, restored.get(f"public.{t}")) for t in target.critical_tables}
    return Promise(row_counts={t: int(n) for t, n in baseline.items() if n is not None}, health_only=True)


def succeeded(request: Request, target: Target, state: PipelineState, duration_s: float) -> str:
    return restore_succeeded(request.id, target.name, str(request.backup), state.into)


def restore_figures(result: RestoreResult) -> dict[str, Any]:
    return {"into": f"{result.into} `{result.database}`", "backup": f"`{result.backup}`",
            "method": restore_method(result),
            "rows": ", ".join(f"{t} {n}" for t, n in sorted(result.row_counts.items())) or None}


def restore_method(result: RestoreResult) -> str | None:
    if result.method == "swap":
        return (f"pg_restore -j{result.jobs} into a new database, switched in at once; the replaced database "
                f"is kept as `{result.replaced_database}` (rename it back to undo; drop it when satisfied)")
    why = f" ({result.method_note})" if result.method_note else ""
    return f"in one transaction on the target, serially{why}" if result.method == "transaction" else None


def restore_succeeded(request_id: str, target: str, backup: str, into: str) -> str:
    return f"{DONE} Request {request_id}: `{backup}` restored into {into} *{target}* and its rows counted."


def restore_of(backup: str, into: str, target: str) -> str:
    return f"`{backup}` into {into} {target}"


def recheck_restore(ctx: Context, request: Request, target: Target, archive: Path,
                    manifest: Mapping[str, Any]) -> str | None:
    """A whole-backup restore bound to a preview: None when it still holds, else the refusal."""
    if not request.plan_hash:
        return None  # asked for before restores had previews
    try:
        digest, _ = restore_preview(ctx, target, archive, manifest)
    except (WorkerError, psycopg.Error) as exc:
        return str(exc)
    return None if digest == request.plan_hash else messages.preview_changed()


def restore_preview(ctx: Context, target: Target, archive: Path, manifest: Mapping[str, Any]) -> tuple[str, Preview]:
    """What restoring `archive` into the target changes, from one whole read of the file
    (workers/postgres/dump_reader.py, ours or made by hand): versions now and in the file, the file's tables and
    rows, the critical tables' rows live and in the file, and what was written since it was taken (lost)."""
    contents = dump_reader.read(archive, pg_restore=ctx.options.pg_restore)
    after = list(contents.versions)
    read = BackupManifest.from_dict(manifest)
    taken = _iso_unix(read.created_at)
    with ctx.connect(target) as conn:
        found = _guarded_identity(ctx, conn, target)
        before = [v for v, _ in applied_versions(conn)]
        tables = []
        for table in target.critical_tables:
            qualified = table if "." in table else f"public.{table}"
            schema, _, name = qualified.partition(".")
            live = None
            exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (qualified,)).fetchone()
            if exists and exists[0]:  # a bad migration may have dropped it
                row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, name))).fetchone()
                live = int(row[0]) if row else 0
            tables.append(TablePreview(table, live_rows=live, restored_rows=contents.tables.get(qualified) or 0))
        lost = written_since(conn, taken) if taken else {}
    preview = Preview(
        kind=RequestKind.RESTORE.value, target=target.name, backup=archive.name, versions_before=tuple(before),
        versions_after=tuple(after), tables=tuple(tables), file=contents.summary(),
        point_unix=int(taken) if taken else None, lost_seconds=round(time.time() - taken) if taken else None,
        written_since=lost,
    )
    digest = digest_of(found, {"kind": "restore", "sha256": read.sha256 or contents.sha256,
                               "versions_before": before, "versions_after": after})
    return digest, preview
