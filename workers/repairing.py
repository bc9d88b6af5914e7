"""`/rollback repair <version>` on the workers: its dry run for the bot's card (`plan`), and the approved
request's repair step (after the pipeline's verified backup). The engine does the repair itself
(workers/engine/repair.py); here are the thread, the guard and the request's outcome."""

from __future__ import annotations

from core.config import Target
from core.jsontypes import JsonObject
from core.requests import Request
from workers import identity, incident_messages
from workers.context import Context
from workers.engine import messages as engine_messages
from workers.errors import describe
from workers.progress import Progress


def plan(ctx: Context, target_name: str, version: str) -> JsonObject:
    """What the bot shows on the card before anyone approves: `{"ok", "error", "text", "hash", "plan"}`."""
    try:
        found = ctx.engine(ctx.target(target_name), "repair-plan").plan_repair(version)
    except Exception as exc:  # noqa: BLE001 - the bot shows the one line; nothing was changed
        return {"ok": False, "error": describe(exc, ctx.secrets())}
    return {"ok": True, "error": None, "text": engine_messages.render_repair_plan(found), "hash": found.hash,
            "plan": found.to_dict()}


def repair_step(ctx: Context, request: Request, target: Target, progress: Progress) -> JsonObject:
    version = str(request.subject)
    with ctx.connect(target) as conn:
        identity.guard(conn, ctx.redis, target.name, by=request.requester)
    started = progress.start("repair", incident_messages.repair_of(version, target.name))
    try:
        report = ctx.engine(target, request.requester, request=request, log=progress.log).repair(
            version, expected_plan_hash=request.plan_hash,
            reason=incident_messages.repair_reason(request.id, request.requester, request.approver))
    finally:
        ctx.store().clear_plans(target.name)  # the target changed (or may have): no earlier plan holds
    progress.finish("repair", started, engine_messages.render_repair(report))
    return {"repair": report.to_dict()}
