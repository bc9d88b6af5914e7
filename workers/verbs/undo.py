"""`/rollback undo`: an earlier rollback reversed from its escrow (core/kinds.py UNDO).

backup → maintenance on → undo → verify → maintenance off, chained like a rollback; the undo re-applies the
reverted migrations and puts every escrowed value back in one transaction (workers/engine/undo.py).
"""

from __future__ import annotations

from core.config import Target
from core.jsontypes import JsonObject
from core.requests import Request
from workers import escrow_messages, identity, messages
from workers.context import Context
from workers.engine.errors import UndoRefused
from workers.progress import Progress
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


def undo(ctx: Context, request: Request, target: Target, progress: Progress) -> JsonObject:
    """Re-apply the reverted migrations and put the escrow back, in one transaction (engine/undo.py)."""
    with ctx.connect(target) as conn:
        identity.guard(conn, ctx.redis, target.name, by=request.requester)
    started = progress.start("undo", escrow_messages.undo_of(request.undoes, request.versions))
    try:
        with progress.heartbeat("undo"):
            report = ctx.engine(target, request.requester, request=request, log=progress.log).undo(
                str(request.undoes), expected_plan_hash=request.plan_hash)
    finally:
        ctx.store().clear_plans(target.name)
    data = report.to_dict()
    progress.finish("undo", started, escrow_messages.undo_figures(data))
    return {"undo": data}


STEPS = {"undo": undo}


def promised(ctx: Context, request: Request, target: Target, state: JsonObject) -> Promise:
    """The re-applied migrations are completed again (rows may differ from before the undo by design)."""
    return Promise(expected_status={v: "completed" for v in request.versions})


def succeeded(request: Request, target: Target, state: JsonObject, duration_s: float) -> str:
    return escrow_messages.undo_succeeded(request.id, target.name, request.undoes, request.requester,
                                          request.approver, duration_s)
