"""The standalone operations behind the slash commands: status, dry-run, backup, backups, verify, history, maintenance.

Each takes the process's Context and a Progress for the thread, posts its result there (rendered by
workers.messages) and returns JSON-able data. Expected failures raise one-line errors; the job layer
decides whether they page.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import psycopg

from core.config import Target
from core.jsontypes import JsonObject
from workers import (
    assessment,
    errors,
    escrow_messages,
    history,
    identity,
    incident_messages,
    messages,
    pipeline,
    views,
)
from workers.context import KEY_PREFIX, Context
from workers.digitalocean import DigitalOcean
from workers.dumpfiles import list_backups
from workers.errors import StepFailed
from workers.maintenance import STATES, run_hook
from workers.progress import Progress
from workers.verbs import rollback as rollback_verb
from workers.verify import run_checks

logger = logging.getLogger("workers.operations")


def status(ctx: Context, progress: Progress, target_name: str, channel: str | None = None) -> JsonObject:
    """The migration table and Step 1's assessment (health, sessions, leftovers, work in progress);
    the sessions become the channel's current assessment, which `terminate` may act on."""
    target = ctx.target(target_name)
    report = ctx.engine(target, "status").status().to_dict()
    active = ctx.store().active_for_target(target.name)
    active_dict = active.to_dict() if active else None
    plan = ctx.store().current_plan(channel, target.name) if channel else None
    with ctx.connect(target) as conn:
        check = identity.observe(conn, ctx.redis, target.name).to_dict()
        found = assessment.assess(conn, target, report, long_running_s=ctx.options.long_running_s, plan=plan,
                                  active=active_dict)
    if channel:
        assessment.save(ctx.redis, channel, found, prefix=KEY_PREFIX, ttl_seconds=ctx.settings.policy.plan_ttl_seconds)
    progress.post(views.status_text(target.name, report, check, active_dict)
                  + "\n" + incident_messages.assessment_text(found.to_dict()))
    return {"target": target.name, "status": report, "identity": check, "active_request": active_dict,
            "assessment": found.to_dict()}


def dry_run(ctx: Context, progress: Progress, target_name: str, version: str, requester: str,
            channel: str | None) -> JsonObject:
    target = ctx.target(target_name)
    try:
        report = ctx.engine(target, requester).dry_run_rollback(to=version)
    except Exception:
        ctx.store().clear_plans(target.name)  # a failed dry run leaves no plan to approve
        raise
    plan = report.to_dict()
    # Which net is under this rollback: the card shows it; `not escrowed` statements make the full backup mandatory.
    plan["net"] = escrow_messages.safety_net(target, escrow_messages.not_escrowed_count(report.warnings))
    if channel:  # the channel's current plan: what `/rollback execute` asks approval for
        # where the dry run was answered: the execute card links it
        saved = {**plan, "source": {"channel": channel, "thread_ts": progress.thread_ts}}
        ctx.store().save_plan(channel, target_name, saved, ttl_seconds=ctx.settings.policy.plan_ttl_seconds)
    progress.post(views.dry_run_text(target_name, report) + f"\nSafety net: {plan['net']}")
    return {"target": target_name, **plan}


def backup(ctx: Context, progress: Progress, target_name: str, requester: str, reason: str) -> JsonObject:
    target = ctx.target(target_name)
    with ctx.connect(target) as conn:
        identity.guard(conn, ctx.redis, target.name, by=requester)
    started, result = pipeline.dump(ctx, progress, target, reason or "manual", messages.dump_of(target.name))
    with ctx.connect(target) as conn:
        history.record(conn, operation="backup", status="completed", executed_by=requester,
                       duration_ms=int(result.duration_s * 1000), details=result.to_dict())
    progress.finish("backup", started, messages.backup_figures(result))
    return {"target": target.name, "backup": result.to_dict()}


def backups(ctx: Context, progress: Progress, target_name: str) -> JsonObject:
    target = ctx.target(target_name)
    local = list_backups(ctx.settings.backup_dir, target.name)
    snapshots: list[JsonObject] = []
    managed: list[JsonObject] = []
    notes: list[str] = []
    if (target.do_droplet_id or target.do_database_id) and ctx.settings.digitalocean_token:
        client = DigitalOcean(ctx.settings.digitalocean_token, ctx.settings.digitalocean_api_url)
        try:
            if target.do_droplet_id:
                snapshots = client.list_snapshots(target.do_droplet_id)
            if target.do_database_id:
                managed = client.database_backups(target.do_database_id)
        except Exception as exc:  # the local list is still worth showing
            notes.append(messages.digitalocean_note(exc))
    progress.post(views.backups_text(target.name, local, snapshots, managed, notes))
    return {"target": target.name, "local": local, "snapshots": snapshots, "managed": managed, "notes": notes}


def verify(ctx: Context, progress: Progress, target_name: str, requester: str) -> JsonObject:
    """Standalone verification: no migration failed, running or drifted, and the row counts against
    those taken before the target's most recent rollback (when one is recorded)."""
    target = ctx.target(target_name)
    status_report = ctx.engine(target, requester).status().to_dict()
    baseline, source = last_baseline(ctx, target)
    started = progress.start("verify", f"{target.name}; {messages.baseline_from(**source)}")
    report = run_checks(ctx.conninfo(target), target, expected_status=None, baseline_counts=baseline,
                        migrations_dir=target.migrations_dir, status_report=status_report)
    failed = pipeline.report_checks(ctx, progress, target, report, extra={"baseline": source},
                                    executed_by=requester)
    if failed:
        progress.fail("verify", messages.verification_failed(failed), started)
    else:
        progress.finish("verify", started, messages.checks_summary(report.checks))
    return {"target": target.name, "verify": {**report.to_dict(), "baseline": source}, "passed": not failed}


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


def history_of(ctx: Context, progress: Progress, target_name: str) -> JsonObject:
    rows = ctx.engine(ctx.target(target_name), "history").history(limit=30)
    plain = [{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()} for row in rows]
    progress.post(views.history_text(target_name, plain))
    return {"target": target_name, "history": plain}


def maintenance(ctx: Context, progress: Progress, target_name: str, state: str, requester: str) -> JsonObject:
    """Maintenance mode on or off by hand, through the target's hook (after a failed rollback left it
    on): posted in the thread and recorded in migration_history. A failing hook raises."""
    if state not in STATES:
        raise StepFailed(errors.maintenance_state_invalid(state))
    target = ctx.target(target_name)
    step = f"maintenance_{state}"
    hook = target.maintenance_on if state == "on" else target.maintenance_off
    started = progress.start(step, target.name) if hook else None
    result = run_hook(hook, target=target.name, state=state)
    if result.skipped:
        progress.skip(step, result.detail)
        return {"target": target.name, "maintenance": result.to_dict()}
    ctx.store().clear_plans(target.name)
    try:  # the database may be the very thing that is down: the hook's outcome still counts
        with ctx.connect(target) as conn:
            history.record(conn, operation=step, status="completed" if result.ok else "failed",
                           executed_by=requester, error_message=None if result.ok else result.detail,
                           details=result.to_dict())
    except psycopg.Error as exc:
        logger.warning("could not record %s of %s in history: %s", step, target.name, type(exc).__name__)
    if not result.ok:
        raise StepFailed(errors.maintenance_failed(state, result.detail))
    progress.finish(step, started, messages.maintenance_figures(result.detail))
    return {"target": target.name, "maintenance": result.to_dict()}


def escrow(ctx: Context, progress: Progress, target_name: str) -> JsonObject:
    """What the target's escrow holds, after purging what is older than the retention period."""
    target = ctx.target(target_name)
    engine = ctx.engine(target, "rollback-bot")
    purged = rollback_verb.purge_escrow(engine, ctx.settings.escrow_retention_days, progress)
    held = engine.escrow_holdings()
    progress.post(escrow_messages.escrow_list(target.name, held, ctx.settings.escrow_retention_days, purged))
    return {"target": target.name, "held": held, "purged": [r for r, _ in purged]}


def check_undo(ctx: Context, target_name: str, rollback_id: str) -> JsonObject:
    """The dry run of an undo (always rolled back): what the approval card shows, and the hash it binds."""
    target = ctx.target(target_name)
    report = ctx.engine(target, "rollback-bot").undo(rollback_id, dry_run=True)
    data = report.to_dict()
    plan = data.get("plan") or {}
    return {"ok": True, "error": None, "hash": plan.get("hash"), "versions": plan.get("versions") or [],
            "to": plan.get("to"), "restored": data.get("restored") or [], "duration_ms": data.get("duration_ms")}
