"""`/rollback restore <backup>`: a verified backup restored over the target (core/kinds.py RESTORE).

backup → maintenance on → restore → verify → maintenance off, in its one job; the restore is built beside
the live database and swapped in (workers/restore.py, workers/swap.py). Into a scratch database (`into`):
restore → finish, the target left alone.
"""

from __future__ import annotations

from pathlib import Path

from core.config import Target
from core.jsontypes import JsonObject
from core.requests import Request
from workers import errors, history, messages, recovery, views
from workers.context import Context
from workers.progress import Progress
from workers.restore import BackupCheck, check_backup, restore_backup
from workers.verbs import Promise, Refusal


def inspect_backup(ctx: Context, target: Target, backup: str, *, into: str = "target") -> BackupCheck:
    return check_backup(backup, backup_dir=ctx.settings.backup_dir, target=target.name,
                        pg_restore=ctx.options.pg_restore, any_target=into == "scratch")


def _into(ctx: Context, request: Request) -> str:
    return str(ctx.load_state(request.id).get("into") or "target")


def start_check(ctx: Context, request: Request, target: Target, progress: Progress) -> Refusal | None:
    """The backup still exists and verifies, and (into the target) the preview the approval bound still holds."""
    if not request.backup:
        return Refusal(messages.refused(request.id, errors.restore_without_backup()), "no backup named")
    into = _into(ctx, request)
    check = inspect_backup(ctx, target, request.backup, into=into)
    if not check.ok:
        return Refusal(messages.refused(request.id, check.error or ""), "backup unusable")
    if into == "target" and check.backup:  # the restore preview the approval was bound to, recomputed
        stale = recovery.recheck_restore(ctx, request, target, Path(str(check.backup["path"])), check.backup)
        if stale is not None:
            return Refusal(messages.refused(request.id, stale), "preview changed")
    return None


def _maintenance_ran(state: JsonObject) -> bool:
    """Whether this request's `maintenance_on` step ran a hook (and it succeeded: else no later step runs)."""
    result = (state.get("maintenance_on") or {}).get("maintenance") or {}
    return bool(result) and not result.get("skipped")


def restore(ctx: Context, request: Request, target: Target, progress: Progress) -> JsonObject:
    state = ctx.load_state(request.id)
    into = str(state.get("into") or "target")
    pre_restore = (state.get("backup") or {}).get("backup") or {}
    backup = str(request.backup)
    started = progress.start("restore", messages.restore_of(backup, into, target.name))
    try:
        with progress.heartbeat("restore") as beat:
            result = restore_backup(
                ctx.conninfo(target), backup, into=into, backup_dir=ctx.settings.backup_dir,
                target=target.name, heartbeat=beat, pg_restore=ctx.options.pg_restore, psql=ctx.options.psql,
                pg_dump=ctx.options.pg_dump, jobs=ctx.options.restore_jobs,
                progress_interval=ctx.options.progress_interval_s, method=ctx.options.restore_method,
                # The application is in maintenance only when this pipeline's hook said so: only then
                # may a swap end the sessions still on the target.
                end_sessions=_maintenance_ran(state), maintenance_database=ctx.options.maintenance_database,
            )
    finally:
        if into == "target":
            ctx.store().clear_plans(target.name)
    if into == "target":  # the record of the restore itself, beside the history the restore kept
        with ctx.connect(target) as conn:
            history.record(conn, operation="restore", status="completed", executed_by=request.requester,
                           approved_by=request.approver, request_id=request.id,
                           duration_ms=int(result.duration_s * 1000),
                           details={"backup": result.backup, "sha256": result.sha256,
                                    "pre_restore_backup": pre_restore.get("path"),
                                    "dropped_tables": result.dropped_tables, "method": result.method,
                                    "replaced_database": result.replaced_database, "format": result.format,
                                    "ours": result.ours})
    progress.finish("restore", started, views.restore_figures(result))
    return {"restore": result.to_dict()}


STEPS = {"restore": restore}


def promised(ctx: Context, request: Request, target: Target, state: JsonObject) -> Promise:
    """No migration failed, running or drifted; the critical tables hold the rows as restored."""
    restored = ((state.get("restore") or {}).get("restore") or {}).get("row_counts") or {}
    baseline = {t: restored.get(t, restored.get(f"public.{t}")) for t in target.critical_tables}
    return Promise(row_counts={t: int(n) for t, n in baseline.items() if n is not None}, health_only=True)


def succeeded(request: Request, target: Target, state: JsonObject, duration_s: float) -> str:
    return views.restore_succeeded(request.id, target.name, str(request.backup), str(state.get("into") or "target"))
