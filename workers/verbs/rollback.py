"""`/rollback execute`: the approved rollback of the channel's current plan (core/kinds.py ROLLBACK).

backup → maintenance on → rollback → verify → maintenance off, each step an RQ job chained on the one
before; the rollback runs all down scripts and the bookkeeping in one transaction (workers/engine).
"""

from __future__ import annotations

from core.config import Target
from core.jsontypes import JsonObject
from core.requests import Request
from workers import errors, escrow_messages, identity, messages
from workers.context import Context
from workers.engine import Engine
from workers.engine.errors import EngineError
from workers.errors import StepFailed
from workers.progress import Progress
from workers.verbs import Promise, Refusal
from workers.verify import count_rows


def start_check(ctx: Context, request: Request, target: Target, progress: Progress) -> Refusal | None:
    """The plan the approval bound (its hash: the database's identity, the versions, their SQL) still holds."""
    plan = ctx.engine(target, request.requester).plan_rollback(to=request.to_version)
    if plan.hash != request.plan_hash:
        return Refusal(messages.plan_changed(request.id), "plan changed")
    return None


def rollback(ctx: Context, request: Request, target: Target, progress: Progress) -> JsonObject:
    state = ctx.load_state(request.id)
    backup = (state.get("backup") or {}).get("backup") or {}
    escrow_only = bool((state.get("backup") or {}).get("escrow_only"))
    if not backup.get("verified") and not escrow_only:
        raise StepFailed(errors.no_backup())  # never reached through the chain; a guard for hand-made jobs
    with ctx.connect(target) as conn:
        identity.guard(conn, ctx.redis, target.name, by=request.requester)
    baseline = count_rows(ctx.conninfo(target), target.critical_tables) if target.critical_tables else {}
    ctx.save_state(request.id, baseline_counts=baseline)
    started = progress.start("rollback", messages.rollback_of(request.versions, request.to_version))
    try:
        with progress.heartbeat("rollback"):
            engine = ctx.engine(target, request.requester, request=request, log=progress.log,
                                escrow_required=not backup.get("verified"))  # no dump: escrow is the net
            if target.escrow:
                purge_escrow(engine, ctx.settings.escrow_retention_days, progress)
            run = engine.rollback(to=request.to_version, expected_plan_hash=request.plan_hash)
    finally:
        ctx.store().clear_plans(target.name)  # whatever happened, no earlier plan is known to hold
    statements = messages.statements_lines(run.statements)
    if statements:
        progress.post(statements)
    progress.finish("rollback", started, {**messages.rollback_figures(run),
                                          **(escrow_messages.escrow_figures(run.escrow) if not run.already_done else {})})
    return {"rollback": run.to_dict(), "baseline_counts": baseline}


def purge_escrow(engine: Engine, retention_days: float, progress: Progress) -> list[tuple[str, int]]:
    """Old escrow goes in the worker's own time; a purge that cannot run now (the migration lock is busy, the
    database hiccups) is logged and left for the next time, never in the way of the job."""
    try:
        return engine.purge_escrow(retention_days)
    except EngineError as exc:
        progress.log(escrow_messages.escrow_purge_skipped(str(exc)))
        return []


STEPS = {"rollback": rollback}


def promised(ctx: Context, request: Request, target: Target, state: JsonObject) -> Promise:
    """Every reverted version rolled back; the critical tables' rows as they were just before the rollback."""
    return Promise(expected_status={v: "rolled_back" for v in request.versions},
                   row_counts=state.get("baseline_counts"))


def succeeded(request: Request, target: Target, state: JsonObject, duration_s: float) -> str:
    return messages.outcome_succeeded(request.id, target.name, request.to_version, request.requester,
                                      request.approver, duration_s)
