"""The execute pipeline: backup -> maintenance on -> rollback -> verify -> maintenance off -> outcome.

`execute` checks the approved request (start bound, same plan, same database) and enqueues the
steps as RQ jobs chained with `depends_on`: RQ runs a step only when the one before it finished, so
a failed or unverified backup stops everything before any change (no backup, no rollback), and a
failed rollback or verification never reaches "maintenance off" (maintenance stays on). Each step
job has the failure callback of `workers.failures`, which reports into the thread and pages.

Exactly once: `store.claim(request, step)` makes a redelivered step a no-op, and the engine's
`request_id` makes a redelivered rollback return the earlier result instead of running again.
"""

from __future__ import annotations

import time
from typing import Any

import redis
from rq import Callback, Queue

from core import stall_policy
from core.config import Target
from core.requests import Request, RequestStatus
from workers import history, identity, messages
from workers.context import Context
from workers.engine import Engine
from workers.errors import Refused, StepFailed
from workers.paging import dedup_key
from workers.progress import Progress

STEPS = ("backup", "maintenance_on", "rollback", "verify", "maintenance_off", "finish")
STEP_JOB = "workers.jobs.pipeline_step"
FAILURE_CALLBACK = "workers.failures.on_job_failure"


def step_job_id(request_id: str, step: str) -> str:
    return f"{request_id}-{step}"


def engine_for(ctx: Context, target: Target, request: Request, progress: Progress | None = None) -> Engine:
    return Engine(
        ctx.conninfo(target), target.migrations_dir, actor=request.requester, approved_by=request.approver,
        request_id=request.id, lock_timeout_ms=ctx.settings.lock_timeout_ms,
        lock_retries=ctx.settings.lock_retries, statement_timeout_ms=ctx.settings.statement_timeout_ms,
        log=progress.log if progress else None,
    )


def load_request(ctx: Context, request_id: str) -> Request:
    request = ctx.store().get(request_id)
    if request is None:
        raise Refused(messages.request_missing(request_id))
    return request


def refuse(ctx: Context, request: Request, progress: Progress, text: str, outcome: str) -> dict[str, Any]:
    # A refusal is the request's final outcome: the channel sees it, not only the thread.
    progress.post(text, broadcast=True)
    ctx.store().set_status(request.id, RequestStatus.FAILED, finished_at=time.time(), outcome=outcome)
    return {"request_id": request.id, "refused": True, "reason": outcome}


def execute(ctx: Context, request_id: str) -> dict[str, Any]:
    """Check the approved request and enqueue the chain. Runs at most once per request."""
    request = load_request(ctx, request_id)
    progress = ctx.progress(request.channel, request.thread_ts)
    store = ctx.store()
    if not store.claim(request_id, "execute"):
        progress.log(messages.duplicate_delivery(request_id, "execute"))
        return {"request_id": request_id, "duplicate": True}
    if request.status is not RequestStatus.APPROVED:
        # Say so, but leave the record alone: it was rejected, cancelled or expired by someone else.
        progress.post(messages.not_approved(request_id, request.status.value))
        return {"request_id": request_id, "refused": True, "reason": f"request is {request.status.value}"}
    waited = time.time() - (request.decided_at or request.created_at)
    bound = ctx.settings.policy.start_within_seconds
    if waited > bound:
        return refuse(ctx, request, progress, messages.start_too_late(request_id, waited, bound), "approval too old")
    target = ctx.target(request.target)
    with ctx.connect(target) as conn:
        try:
            identity.guard(conn, ctx.redis, target.name, by=request.requester)
        except identity.IdentityMismatch as exc:
            return refuse(ctx, request, progress, messages.step_failed("Execute", str(exc)), "wrong database")
    plan = engine_for(ctx, target, request).plan_rollback(to=request.to_version)
    if plan.hash != request.plan_hash:
        return refuse(ctx, request, progress, messages.plan_changed(request_id), "plan changed")

    store.set_status(request_id, RequestStatus.RUNNING, started_at=time.time())
    ctx.save_state(request_id, plan=plan.to_dict(), started=time.time())
    progress.post(messages.pipeline_queued(request_id, target.name, request.to_version, STEPS[:-1]))
    queue = Queue(ctx.settings.queue_name, connection=ctx.redis)
    previous = None
    job_ids = []
    for step in STEPS:
        # The thread and target ride along, so a failure can still be reported when Redis is gone.
        kwargs = {"request_id": request_id, "step": step, "channel": request.channel,
                  "thread_ts": request.thread_ts, "target": request.target, "version": request.to_version}
        job = queue.enqueue(
            STEP_JOB, kwargs=kwargs, job_id=step_job_id(request_id, step),
            depends_on=previous, on_failure=Callback(FAILURE_CALLBACK), job_timeout=ctx.options.job_timeout_s,
            description=f"{request_id} {step}",
        )
        job_ids.append(job.id)
        previous = job
    return {"request_id": request_id, "plan_hash": plan.hash, "jobs": job_ids}


def run_step(ctx: Context, request_id: str, step: str) -> dict[str, Any]:
    if step not in STEPS:
        raise StepFailed(messages.unknown_step(step))
    request = load_request(ctx, request_id)
    progress = ctx.progress(request.channel, request.thread_ts)
    if not ctx.store().claim(request_id, step):
        progress.log(messages.duplicate_delivery(request_id, step))
        return {"request_id": request_id, "step": step, "duplicate": True}
    target = ctx.target(request.target)
    result: dict[str, Any] = STEP_FUNCTIONS[step](ctx, request, target, progress)
    try:
        ctx.save_state(request_id, **{step: result})
    except redis.RedisError as exc:
        raise StepFailed(messages.step_done_state_lost(step, type(exc).__name__)) from exc
    return {"request_id": request_id, "step": step, **result}


def _backup(ctx: Context, request: Request, target: Target, progress: Progress) -> dict[str, Any]:
    from workers.operations import dump

    with ctx.connect(target) as conn:
        identity.guard(conn, ctx.redis, target.name, by=request.requester)
    started, backup = dump(ctx, progress, target, f"pre-rollback-{request.id}",
                           messages.dump_of(target.name, messages.BEFORE_ROLLBACK))
    result: dict[str, Any] = {"backup": backup}
    ctx.store().update(request.id, backup=str(backup.get("path")))
    with ctx.connect(target) as conn:
        history.record(conn, operation="backup", status="completed", executed_by=request.requester,
                       approved_by=request.approver, request_id=request.id, version=request.to_version,
                       duration_ms=int(float(backup.get("duration_s") or 0) * 1000), details=backup)
    progress.finish("backup", started, messages.backup_figures(backup))
    # The snapshot is a step of its own in the thread (not a second "Backup finished"), still inside
    # this job: no snapshot where one is configured, no rollback.
    snapshot = _digitalocean_snapshot(ctx, request, target, progress)
    if snapshot:
        result["snapshot"] = snapshot
    return result


def _digitalocean_snapshot(ctx: Context, request: Request, target: Target, progress: Progress) -> dict[str, Any] | None:
    if not (target.do_droplet_id or target.do_database_id) or not ctx.settings.digitalocean_token:
        return None
    from workers.digitalocean import DigitalOcean

    client = DigitalOcean(ctx.settings.digitalocean_token, ctx.settings.digitalocean_api_url)
    found: dict[str, Any] = {}
    if target.do_droplet_id:
        started = progress.start("snapshot", messages.snapshot_of_droplet(target.do_droplet_id))
        with progress.heartbeat("snapshot") as beat:
            found["droplet_snapshot"] = client.snapshot_droplet(
                target.do_droplet_id, f"{target.name}-pre-rollback-{request.id}", heartbeat=beat)
        progress.finish("snapshot", started, messages.snapshot_figures(found["droplet_snapshot"]))
    if target.do_database_id:
        backups = client.database_backups(target.do_database_id)
        if not backups:
            raise StepFailed(messages.no_managed_backup(target.do_database_id))
        found["database_backup"] = backups[0]
    return found


def _maintenance(state: str) -> Any:
    def run(ctx: Context, request: Request, target: Target, progress: Progress) -> dict[str, Any]:
        from workers.maintenance import run_hook

        step = f"maintenance_{state}"
        policy = stall_policy.decide(target, request.stall_ms)
        if policy.choice is stall_policy.MaintenanceChoice.SKIP:
            detail = messages.maintenance_skipped_by_forecast(policy.stall_ms or 0.0, policy.threshold_s or 0.0)
            progress.skip(step, detail)
            return {"maintenance": {"skipped": True, "ok": True, "detail": detail, "policy": policy.choice.value}}
        if policy.refused:
            raise StepFailed(messages.maintenance_required_without_hook(policy.stall_ms or 0.0,
                                                                         policy.threshold_s or 0.0))
        hook = target.maintenance_on if state == "on" else target.maintenance_off
        started = progress.start(step) if hook else None
        result = run_hook(hook, target=target.name, state=state).to_dict()
        if result.get("skipped"):
            progress.skip(step, str(result.get("detail")))
        elif not result.get("ok"):
            raise StepFailed(str(result.get("detail")))
        else:
            progress.finish(step, started, messages.maintenance_figures(result))
        return {"maintenance": result}

    return run


def _rollback(ctx: Context, request: Request, target: Target, progress: Progress) -> dict[str, Any]:
    from workers.verify import count_rows

    state = ctx.load_state(request.id)
    backup = (state.get("backup") or {}).get("backup") or {}
    if not backup.get("verified"):
        raise StepFailed(messages.no_backup())  # never reached through the chain; a guard for hand-made jobs
    with ctx.connect(target) as conn:
        identity.guard(conn, ctx.redis, target.name, by=request.requester)
    baseline = count_rows(ctx.conninfo(target), target.critical_tables) if target.critical_tables else {}
    ctx.save_state(request.id, baseline_counts=baseline)
    started = progress.start("rollback", messages.rollback_of(request.versions, request.to_version))
    with progress.heartbeat("rollback"):
        run = engine_for(ctx, target, request, progress).rollback(
            to=request.to_version, expected_plan_hash=request.plan_hash).to_dict()
    statements = messages.statements_lines(run)
    if statements:
        progress.post(statements)
    progress.finish("rollback", started, messages.rollback_figures(run))
    return {"rollback": run, "baseline_counts": baseline}


def _verify(ctx: Context, request: Request, target: Target, progress: Progress) -> dict[str, Any]:
    from workers.operations import report_checks
    from workers.verify import run_checks

    state = ctx.load_state(request.id)
    started = progress.start("verify")
    report = run_checks(
        ctx.conninfo(target), target, expected_status={v: "rolled_back" for v in request.versions},
        baseline_counts=state.get("baseline_counts"), migrations_dir=target.migrations_dir,
    ).to_dict()
    failed = report_checks(ctx, progress, target, report, executed_by=request.requester,
                           approved_by=request.approver, request_id=request.id, version=request.to_version)
    if failed:
        raise StepFailed(messages.verification_failed(failed))
    progress.finish("verify", started, messages.checks_summary(report["checks"]))
    return {"verify": report}


def _finish(ctx: Context, request: Request, target: Target, progress: Progress) -> dict[str, Any]:
    state = ctx.load_state(request.id)
    started = float(state.get("started") or request.started_at or time.time())
    ctx.store().set_status(request.id, RequestStatus.SUCCEEDED, finished_at=time.time(),
                           outcome="rolled back and verified")
    resolved = None
    if state.get("paged"):
        resolved = ctx.pager().resolve(dedup_key(request.id)).to_dict()
        progress.post(messages.page_resolved(request.id))
    progress.post(
        messages.outcome_succeeded(request.id, target.name, request.to_version, request.requester,
                                   request.approver, time.time() - started),
        broadcast=True,
    )
    return {"outcome": "succeeded", "resolved": resolved}


STEP_FUNCTIONS = {
    "backup": _backup,
    "maintenance_on": _maintenance("on"),
    "rollback": _rollback,
    "verify": _verify,
    "maintenance_off": _maintenance("off"),
    "finish": _finish,
}
