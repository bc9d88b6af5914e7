"""`/rollback undo`: an earlier rollback reversed from its escrow (core/kinds.py UNDO).

backup → maintenance on → undo → verify → maintenance off, chained like a rollback; the undo re-applies the
reverted migrations and puts every escrowed value back in one transaction (workers/engine/undo.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from core.config import Target
from core.jsontypes import JsonObject
from core.requests import Request
from workers import messages
from workers.engine.errors import UndoRefused
from workers.messages import DONE, seconds
from workers.postgres import identity
from workers.runtime.context import Context
from workers.runtime.pipeline_state import PipelineState, UndoStepResult
from workers.runtime.progress import Progress
from workers.verbs import Promise, Refusal


def start_check(ctx: Context, request: Request, target: Target, progress: Progress) -> Refusal | None:
    """The undo's plan (what is re-applied, what is put back) is still the one its dry run showed."""
    try:
        undo_plan = ctx.engine(target, request.requester).plan_undo(str(request.undoes))
    except UndoRefused as exc:
        return Refusal(messages.refused(request.id, str(exc)), "undo refused")
    if undo_plan.hash != request.plan_hash:
        return Refusal(messages.plan_changed(request.id), "plan changed")
    return None


def undo(ctx: Context, request: Request, target: Target, progress: Progress) -> UndoStepResult:
    """Re-apply the reverted migrations and put the escrow back, in one transaction (engine/undo.py)."""
    with ctx.connect(target) as conn:
        identity.guard(conn, ctx.redis, target.name, by=request.requester)
    started = progress.start("undo", undo_of(request.undoes, request.versions))
    try:
        with progress.heartbeat("undo"):
            report = ctx.engine(target, request.requester, request=request, log=progress.log).undo(
                str(request.undoes), expected_plan_hash=request.plan_hash)
    finally:
        ctx.store().clear_plans(target.name)
    data = report.to_dict()
    progress.finish("undo", started, undo_figures(data))
    return UndoStepResult(data)


STEPS = {"undo": undo}


def promised(ctx: Context, request: Request, target: Target, state: PipelineState) -> Promise:
    """The re-applied migrations are completed again (rows may differ from before the undo by design)."""
    return Promise(expected_status={v: "completed" for v in request.versions})


def succeeded(request: Request, target: Target, state: PipelineState, duration_s: float) -> str:
    return undo_succeeded(request.id, target.name, request.undoes, request.requester,
                                          request.approver, duration_s)


def check_undo(ctx: Context, target_name: str, rollback_id: str) -> JsonObject:
    """The dry run of an undo (always rolled back): what the approval card shows, and the hash it binds."""
    target = ctx.target(target_name)
    report = ctx.engine(target, "rollback-bot").undo(rollback_id, dry_run=True)
    data = report.to_dict()
    plan = data.get("plan") or {}
    return {"ok": True, "error": None, "hash": plan.get("hash"), "versions": plan.get("versions") or [],
            "to": plan.get("to"), "restored": data.get("restored") or [], "duration_ms": data.get("duration_ms")}


def undo_of(undoes: str | None, versions: Sequence[str]) -> str:
    return f"of rollback {undoes}: re-apply {', '.join(versions)} and put the escrow back"


def undo_figures(report: Mapping[str, Any]) -> dict[str, Any]:
    return {"re-applied": ", ".join(report.get("versions") or []) or "nothing",
            "put back": "; ".join(f"{r['relation']} ({r['kind']}) {r['rows']} row(s)"
                                  for r in report.get("restored") or []) or "nothing",
            "already done": "yes" if report.get("already_done") else None}


def undo_succeeded(request_id: str, target: str, undoes: str | None, requester: str, approver: str | None,
                   duration_s: float | None) -> str:
    by = f"requested by <@{requester}>" + (f", approved by <@{approver}>" if approver else "")
    return (f"{DONE} Request {request_id}: rollback {undoes} of *{target}* undone and verified in "
            f"{seconds(duration_s)} ({by}). Maintenance mode is off.")
