"""`/rollback repair <version>`: a failed or half-applied migration brought back to a clean state
(core/kinds.py REPAIR): a verified backup, then the engine's repair (workers/engine/repair.py), whose
plan the card showed and the approval bound."""

from __future__ import annotations

from core.config import Target
from core.jsontypes import JsonObject
from core.requests import Request
from workers.engine import messages as engine_messages
from workers.messages import DONE
from workers.postgres import identity
from workers.runtime.context import Context
from workers.runtime.errors import describe
from workers.runtime.pipeline_state import PipelineState, RepairStepResult
from workers.runtime.progress import Progress
from workers.verbs import Promise, Refusal


def start_check(ctx: Context, request: Request, target: Target, progress: Progress) -> Refusal | None:
    return None  # the engine refuses a changed repair plan itself (expected_plan_hash), inside its transaction


BEFORE_REPAIR = "before repairing a migration"


def repair_of(version: str, target: str) -> str:
    return f"migration {version} on {target}"


def repair_reason(request_id: str, requester: str, approver: str | None) -> str:
    return f"/rollback repair {request_id}: requested by {requester}, approved by {approver}"


def repaired(request_id: str, version: str, target: str, new_status: str) -> str:
    after = ("the next apply retries it" if new_status == "pending"
             else "it is rolled_back; a rollback past it goes through again")
    return f"{DONE} {request_id}: migration {version} on *{target}* repaired ({new_status}): {after}."


def repair_not_kept(version: str, expected: str, found: str) -> str:
    return f"migration {version} is {found} after the repair, whose plan said {expected}"


def plan(ctx: Context, target_name: str, version: str) -> JsonObject:
    """What the bot shows on the card before anyone approves: `{"ok", "error", "text", "hash", "plan"}`."""
    try:
        found = ctx.engine(ctx.target(target_name), "repair-plan").plan_repair(version)
    except Exception as exc:  # noqa: BLE001 - the bot shows the one line; nothing was changed
        return {"ok": False, "error": describe(exc, ctx.secrets())}
    return {"ok": True, "error": None, "text": engine_messages.render_repair_plan(found), "hash": found.hash,
            "plan": found.to_dict()}


def repair_step(ctx: Context, request: Request, target: Target, progress: Progress) -> RepairStepResult:
    version = str(request.subject)
    with ctx.connect(target) as conn:
        identity.guard(conn, ctx.redis, target.name, by=request.requester)
    started = progress.start("repair", repair_of(version, target.name))
    try:
        report = ctx.engine(target, request.requester, request=request, log=progress.log).repair(
            version, expected_plan_hash=request.plan_hash,
            reason=repair_reason(request.id, request.requester, request.approver))
    finally:
        ctx.store().clear_plans(target.name)  # the target changed (or may have): no earlier plan holds
    progress.finish("repair", started, engine_messages.render_repair(report))
    return RepairStepResult(report.new_status, report.to_dict())


STEPS = {"repair": repair_step}


def promised(ctx: Context, request: Request, target: Target, state: PipelineState) -> Promise:
    """The migration is in the state the repair's plan said: gone from the table (retried by the next apply)
    or rolled_back."""
    expected = state.repair.new_status if state.repair else ""
    with ctx.connect(target) as conn:
        row = conn.execute("SELECT status FROM schema_migrations WHERE version = %s", (request.subject,)).fetchone()
    found = str(row[0]) if row else "pending"
    if found == expected:
        return Promise()
    return Promise(mismatches=(repair_not_kept(str(request.subject), expected, found),))


def succeeded(request: Request, target: Target, state: PipelineState, duration_s: float) -> str:
    new_status = state.repair.new_status if state.repair else ""
    return repaired(request.id, str(request.subject), target.name, new_status)
