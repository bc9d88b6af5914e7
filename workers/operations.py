"""The standalone operations behind the slash commands: status, dry-run, backup, backups, verify, history, restore.

Each takes the process's Context and a Progress for the thread, posts its result there (rendered by
workers.messages) and returns JSON-able data. Expected failures raise one-line errors; the job layer
decides whether they page.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import psycopg

from core.config import Target
from core.requests import RequestStatus
from workers import history, identity, messages
from workers.context import Context
from workers.engine import Engine
from workers.errors import Refused, StepFailed
from workers.progress import Progress


def _engine(ctx: Context, target_name: str, actor: str) -> Engine:
    target = ctx.target(target_name)
    return Engine(
        ctx.conninfo(target), target.migrations_dir, actor=actor, lock_timeout_ms=ctx.settings.lock_timeout_ms,
        lock_retries=ctx.settings.lock_retries, statement_timeout_ms=ctx.settings.statement_timeout_ms,
    )


def status(ctx: Context, progress: Progress, target_name: str) -> dict[str, Any]:
    target = ctx.target(target_name)
    report = _engine(ctx, target_name, "status").status().to_dict()
    with ctx.connect(target) as conn:
        check = identity.observe(conn, ctx.redis, target.name).to_dict()
    active = ctx.store().active_for_target(target.name)
    active_dict = active.to_dict() if active else None
    progress.post(messages.status_text(target.name, report, check, active_dict))
    return {"target": target.name, "status": report, "identity": check, "active_request": active_dict}


def dry_run(ctx: Context, progress: Progress, target_name: str, version: str, requester: str,
            channel: str | None) -> dict[str, Any]:
    report = _engine(ctx, target_name, requester).dry_run_rollback(to=version).to_dict()
    if channel:  # the channel's current plan: what `/rollback execute` asks approval for
        ctx.store().save_plan(channel, target_name, report, ttl_seconds=ctx.settings.policy.plan_ttl_seconds)
    progress.post(messages.dry_run_text(target_name, report))
    return {"target": target_name, **report}


def dump(ctx: Context, progress: Progress, target: Target, reason: str, detail: str) -> tuple[float, dict[str, Any]]:
    """The *Backup* step's pg_dump with its heartbeat: (when it started, the verified backup). An
    unverified backup raises: no backup, no change."""
    from workers.backup import take_backup  # the step modules load only in the work-horse that needs them

    started = progress.start("backup", detail)
    with progress.heartbeat("backup") as beat:
        backup = take_backup(
            ctx.conninfo(target), target=target.name, reason=reason, backup_dir=ctx.settings.backup_dir,
            heartbeat=beat, pg_dump=ctx.options.pg_dump, pg_restore=ctx.options.pg_restore,
        ).to_dict()
    if not backup.get("verified"):
        raise StepFailed(messages.no_backup())
    return started, backup


def backup(ctx: Context, progress: Progress, target_name: str, requester: str, reason: str) -> dict[str, Any]:
    target = ctx.target(target_name)
    with ctx.connect(target) as conn:
        identity.guard(conn, ctx.redis, target.name, by=requester)
    started, result = dump(ctx, progress, target, reason or "manual", messages.dump_of(target.name))
    with ctx.connect(target) as conn:
        history.record(conn, operation="backup", status="completed", executed_by=requester,
                       duration_ms=int(float(result.get("duration_s") or 0) * 1000), details=result)
    progress.finish("backup", started, messages.backup_figures(result))
    return {"target": target.name, "backup": result}


def backups(ctx: Context, progress: Progress, target_name: str) -> dict[str, Any]:
    from workers.backup import list_backups

    target = ctx.target(target_name)
    local = list_backups(ctx.settings.backup_dir, target.name)
    snapshots: list[dict[str, Any]] = []
    managed: list[dict[str, Any]] = []
    notes: list[str] = []
    if (target.do_droplet_id or target.do_database_id) and ctx.settings.digitalocean_token:
        from workers.digitalocean import DigitalOcean

        client = DigitalOcean(ctx.settings.digitalocean_token, ctx.settings.digitalocean_api_url)
        try:
            if target.do_droplet_id:
                snapshots = client.list_snapshots(target.do_droplet_id)
            if target.do_database_id:
                managed = client.database_backups(target.do_database_id)
        except Exception as exc:  # the local list is still worth showing
            notes.append(messages.digitalocean_note(exc))
    progress.post(messages.backups_text(target.name, local, snapshots, managed, notes))
    return {"target": target.name, "local": local, "snapshots": snapshots, "managed": managed, "notes": notes}


def verify(ctx: Context, progress: Progress, target_name: str, requester: str) -> dict[str, Any]:
    """Standalone verification: no migration failed, running or drifted, and the row counts against
    those taken before the target's most recent rollback (when one is recorded)."""
    from workers.verify import run_checks

    target = ctx.target(target_name)
    status_report = _engine(ctx, target_name, requester).status().to_dict()
    baseline, source = last_baseline(ctx, target)
    started = progress.start("verify", f"{target.name}; {messages.baseline_from(**source)}")
    report = run_checks(ctx.conninfo(target), target, expected_status=None, baseline_counts=baseline,
                        migrations_dir=target.migrations_dir, status_report=status_report).to_dict()
    report["baseline"] = source
    failed = report_checks(ctx, progress, target, report, executed_by=requester)
    if failed:
        progress.fail("verify", messages.verification_failed(failed), started)
    else:
        progress.finish("verify", started, messages.checks_summary(report["checks"]))
    return {"target": target.name, "verify": report, "passed": not failed}


def last_baseline(ctx: Context, target: Target) -> tuple[dict[str, int] | None, dict[str, str | None]]:
    """The row counts taken before the target's most recent rollback, and which request and when
    (`{"request_id": None, "when": None}` when no rollback with counts is recorded)."""
    none: dict[str, str | None] = {"request_id": None, "when": None}
    try:
        with ctx.connect(target) as conn:
            last = history.last_rollback(conn)
            if not last or not last.get("request_id"):
                return None, none
            request_id = str(last["request_id"])
            counts = ctx.load_state(request_id).get("baseline_counts") or history.counts_before(conn, request_id)
    except psycopg.Error:  # a hand-made history table without our columns: nothing to compare with
        return None, none
    if not counts:
        return None, none
    when = last["executed_at"]
    shown = when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if isinstance(when, datetime) else str(when)
    return dict(counts), {"request_id": request_id, "when": shown}


def report_checks(ctx: Context, progress: Progress, target: Target, report: dict[str, Any],
                  **record: Any) -> list[str]:
    """Post the checks, record the verification in migration_history; the names of the failed checks."""
    checks = report.get("checks") or []
    progress.post(messages.checks_block(checks))
    failed = messages.failed_checks(checks)
    with ctx.connect(target) as conn:
        history.record(conn, operation="verify", status="failed" if failed else "completed", details=report,
                       error_message=messages.verification_failed(failed) if failed else None, **record)
    return failed


def history_of(ctx: Context, progress: Progress, target_name: str) -> dict[str, Any]:
    rows = _engine(ctx, target_name, "history").history(limit=30)
    plain = [{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()} for row in rows]
    progress.post(messages.history_text(target_name, plain))
    return {"target": target_name, "history": plain}


def restore(ctx: Context, request_id: str, into: str = "target") -> dict[str, Any]:
    """An approved restore request: fresh backup of the current state, restore, count rows, record."""
    from workers.restore import restore_backup

    store = ctx.store()
    request = store.get(request_id)
    if request is None:
        raise Refused(messages.request_missing(request_id))
    progress = ctx.progress(request.channel, request.thread_ts)
    if not store.claim(request_id, "restore"):
        progress.log(messages.duplicate_delivery(request_id, "restore"))
        return {"request_id": request_id, "duplicate": True}
    if request.status is not RequestStatus.APPROVED:
        raise Refused(messages.not_approved(request_id, request.status.value))
    waited = time.time() - (request.decided_at or request.created_at)
    if waited > ctx.settings.policy.start_within_seconds:
        raise Refused(messages.start_too_late(request_id, waited, ctx.settings.policy.start_within_seconds))
    if not request.backup:
        raise Refused(messages.restore_without_backup())
    target = ctx.target(request.target)
    if into == "target":
        with ctx.connect(target) as conn:
            identity.guard(conn, ctx.redis, target.name, by=request.requester)
    store.set_status(request_id, RequestStatus.RUNNING, started_at=time.time())
    fresh: dict[str, Any] | None = None
    if into == "target":  # the state being replaced is kept too, so the restore itself can be undone
        started, fresh = dump(ctx, progress, target, f"pre-restore-{request_id}",
                              messages.dump_of(target.name, messages.BEFORE_RESTORE))
        progress.finish("backup", started, messages.backup_figures(fresh))
    started = progress.start("restore", messages.restore_of(str(request.backup), into, target.name))
    with progress.heartbeat("restore") as beat:
        result = restore_backup(
            ctx.conninfo(target), request.backup, into=into, backup_dir=ctx.settings.backup_dir,
            target=target.name, heartbeat=beat, pg_restore=ctx.options.pg_restore,
        ).to_dict()
    if into == "target":
        with ctx.connect(target) as conn:
            history.record(conn, operation="restore", status="completed", executed_by=request.requester,
                           approved_by=request.approver, request_id=request_id,
                           duration_ms=int(float(result.get("duration_s") or 0) * 1000),
                           details={"restore": result, "pre_restore_backup": fresh})
    progress.finish("restore", started, messages.restore_figures(result))
    store.set_status(request_id, RequestStatus.SUCCEEDED, finished_at=time.time(), outcome="restored")
    progress.post(messages.restore_succeeded(request_id, target.name, str(request.backup), into), broadcast=True)
    return {"request_id": request_id, "restore": result, "pre_restore_backup": fresh}
