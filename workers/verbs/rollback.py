"""`/rollback execute`: the approved rollback of the channel's current plan (core/kinds.py ROLLBACK).

backup → maintenance on → rollback → verify → maintenance off, each step an RQ job chained on the one
before; the rollback runs all down scripts and the bookkeeping in one transaction (workers/engine).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from core.config import Target
from core.requests import Request
from workers import messages
from workers.messages import human_bytes
from workers.postgres import identity
from workers.postgres.checks import count_rows
from workers.runtime import errors
from workers.runtime.context import Context
from workers.runtime.errors import StepFailed
from workers.runtime.pipeline_state import PipelineState, RollbackStepResult
from workers.runtime.progress import Progress
from workers.verbs import Promise, Refusal
from workers.verbs.escrow import purge_escrow

if TYPE_CHECKING:
    from workers.engine.results import RunReport


def start_check(ctx: Context, request: Request, target: Target, progress: Progress) -> Refusal | None:
    """The plan the approval bound (its hash: the database's identity, the versions, their SQL) still holds."""
    plan = ctx.engine(target, request.requester).plan_rollback(to=request.to_version)
    if plan.hash != request.plan_hash:
        return Refusal(messages.plan_changed(request.id), "plan changed")
    return None


def rollback(ctx: Context, request: Request, target: Target, progress: Progress) -> RollbackStepResult:
    backup_step = ctx.load_state(request.id).backup
    verified = bool(backup_step and backup_step.backup and backup_step.backup.verified)
    if not verified and not (backup_step and backup_step.escrow_only):
        raise StepFailed(errors.no_backup())  # never reached through the chain; a guard for hand-made jobs
    with ctx.connect(target) as conn:
        identity.guard(conn, ctx.redis, target.name, by=request.requester)
    baseline = count_rows(ctx.conninfo(target), target.critical_tables) if target.critical_tables else {}
    ctx.save_state(request.id, baseline_counts=baseline)
    started = progress.start("rollback", rollback_of(request.versions, request.to_version))
    try:
        with progress.heartbeat("rollback"):
            engine = ctx.engine(target, request.requester, request=request, log=progress.log,
                                escrow_required=not verified)  # no dump: escrow is the net
            if target.escrow:
                purge_escrow(engine, ctx.settings.escrow_retention_days, progress)
            run = engine.rollback(to=request.to_version, expected_plan_hash=request.plan_hash)
    finally:
        ctx.store().clear_plans(target.name)  # whatever happened, no earlier plan is known to hold
    statements = messages.statements_lines(run.statements)
    if statements:
        progress.post(statements)
    progress.finish("rollback", started, {**rollback_figures(run),
                                          **(escrow_figures(run.escrow) if not run.already_done else {})})
    return RollbackStepResult(run, baseline)


STEPS = {"rollback": rollback}


def promised(ctx: Context, request: Request, target: Target, state: PipelineState) -> Promise:
    """Every reverted version rolled back; the critical tables' rows as they were just before the rollback."""
    return Promise(expected_status={v: "rolled_back" for v in request.versions},
                   row_counts=state.baseline_counts)


def succeeded(request: Request, target: Target, state: PipelineState, duration_s: float) -> str:
    return messages.outcome_succeeded(request.id, target.name, request.to_version, request.requester,
                                      request.approver, duration_s)


def escrow_figures(escrow: Mapping[str, Any] | None) -> dict[str, Any]:
    if not escrow:
        return {"escrow": "off (backup policy full)"}
    return {"escrow": f"{len(escrow['held'])} table(s), {escrow['rows']} row(s), {human_bytes(escrow['bytes'])}",
            "escrow id": f"`{escrow['request_id']}`",
            "not escrowed": len(escrow["not_escrowed"]) or None}


def rollback_of(versions: Sequence[str], to_version: str | None) -> str:
    return f"{', '.join(versions)} → {to_version}"


def rollback_figures(run: RunReport) -> dict[str, Any]:
    return {
        "reverted": ", ".join(run.versions) or "nothing",
        "statements": len(run.statements),
        "already done": "yes" if run.already_done else None,
    }
