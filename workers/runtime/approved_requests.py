"""The one runner of every approved request, whatever its kind (core/kinds.py says what differs per kind).

    run_request: the start check (claimed once; still approved; inside the start bound; the same database;
                 then the kind's own check: its plan, its backup, its preview), then the kind's steps in
                 order: each an RQ job chained with `depends_on` (`Kind.chained`), or all in this job.
    steps:       the shared ones here (backup, maintenance on/off, verify, finish), the kind's own in its
                 module workers/verbs/<kind>.py.

A request that is not approved (rejected, cancelled, expired) is said so in the thread and left alone: never
rewritten, never paged. A refusal of an approved one is its outcome, nothing changed, nobody paged. Any other
failure, at any step of any kind, is reported the same way by workers/runtime/failures.py: the request failed, the
thread told once, the page sent once (the job carries the request's id: that is all it needs).

`verify` compares the result with what the approval promised (the kind's `promised`), and `finish` says
"verified" only when it held (it checks the promise itself for a kind without a `verify` step).

Exactly once: `store.claim(request, step)` makes a redelivered start or step a no-op, and the engine's
`request_id` makes a redelivered rollback return the earlier result instead of running again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import redis
from rq import Callback, Queue

from core import kinds, stall_policy, steps
from core.config import Target
from core.jsontypes import JsonObject
from core.kinds import START_STEP, STEP_JOB
from core.requests import Request, RequestStatus
from core.steps import StepInfo
from workers import messages, verbs
from workers.postgres import identity, migration_history
from workers.postgres.check_results import Check, CheckKind
from workers.postgres.checks import VerifyReport, run_checks
from workers.postgres.pg_dump import BackupResult, take_backup
from workers.providers.digitalocean import DigitalOcean
from workers.runtime import errors
from workers.runtime.context import Context
from workers.runtime.errors import Refused, StepFailed
from workers.runtime.escalation import dedup_key
from workers.runtime.pipeline_state import (
    BackupStepResult,
    BackupWaived,
    FinishStepResult,
    MaintenanceStepResult,
    PipelineState,
    StepRefused,
    StepResult,
    VerifyStepResult,
)
from workers.runtime.progress import Progress
from workers.verbs import Promise, Refusal, StepFunction, watch
from workers.verbs.maintenance import HookResult, run_hook

FAILURE_CALLBACK = "workers.runtime.failures.on_job_failure"
INTO = ("target", "scratch")


@dataclass(frozen=True)
class Step:
    """One step of a pipeline: its facts (name, label, what a failure means) and what runs it."""

    info: StepInfo
    run: StepFunction

    @property
    def name(self) -> str:
        return self.info.name


def step_job_id(request_id: str, step: str) -> str:
    return f"{request_id}-{step}"


def load_request(ctx: Context, request_id: str) -> Request:
    request = ctx.store().get(request_id)
    if request is None:
        raise Refused(errors.request_missing(request_id))
    return request


def refuse(ctx: Context, request: Request, progress: Progress, refusal: Refusal) -> JsonObject:
    # A refusal is the request's final outcome: the channel sees it, not only the thread.
    progress.post(refusal.text, broadcast=True)
    ctx.store().set_status(request.id, RequestStatus.FAILED, finished_at=time.time(), outcome=refusal.outcome)
    return {"request_id": request.id, "refused": True, "reason": refusal.outcome}


def start_approved(ctx: Context, request: Request, progress: Progress, *, into: str = "target") -> JsonObject | None:
    """The one start check of every approved request kind. None: go ahead (the start is claimed).
    Otherwise what the job returns: a duplicate delivery, or a refusal (nothing was changed)."""
    if not ctx.store().claim(request.id, START_STEP):
        progress.log(messages.duplicate_delivery(request.id, START_STEP))
        return {"request_id": request.id, "duplicate": True}
    if request.status is not RequestStatus.APPROVED:
        # Say so, but leave the record alone: it was rejected, cancelled or expired by someone else.
        progress.post(messages.not_approved(request.id, request.status.value))
        return {"request_id": request.id, "refused": True, "reason": f"request is {request.status.value}"}
    ctx.save_state(request.id, into=into)
    waited = time.time() - (request.decided_at or request.created_at)
    bound = ctx.settings.policy.start_within_seconds
    if waited > bound:
        return refuse(ctx, request, progress,
                      Refusal(messages.start_too_late(request.id, waited, bound), "approval too old"))
    target = ctx.target(request.target)
    if into == "target":
        with ctx.connect(target) as conn:
            try:
                identity.guard(conn, ctx.redis, target.name, by=request.requester)
            except identity.IdentityMismatch as exc:
                return refuse(ctx, request, progress, Refusal(messages.refused(request.id, str(exc)), "wrong database"))
    refusal: Refusal | None = verbs.module_of(request.kind).start_check(ctx, request, target, progress)
    if refusal is not None:
        return refuse(ctx, request, progress, refusal)
    if into == "target":  # it changes the target now: a watch running on it is over
        watch.supersede(ctx, request, progress)
    return None


def pipeline_of(request: Request, into: str = "target") -> tuple[Step, ...]:
    kind = kinds.of(request.kind)
    infos = kind.steps if into == "target" else kind.scratch_steps
    own = verbs.module_of(request.kind).STEPS
    return tuple(Step(info, FUNCTIONS.get(info.name) or own[info.name]) for info in infos)


def run_request(ctx: Context, request_id: str, into: str = "target") -> JsonObject:
    """Start an approved request of any kind and run its steps: chained as RQ jobs, or in this job."""
    request = load_request(ctx, request_id)
    kind = kinds.of(request.kind)
    if into not in INTO or (into == "scratch" and not kind.scratch_steps):
        raise Refused(errors.restore_into_invalid(into))
    progress = ctx.progress(request.channel, request.thread_ts)
    refused = start_approved(ctx, request, progress, into=into)
    if refused is not None:
        return refused
    pipeline = pipeline_of(request, into)
    ctx.store().set_status(request_id, RequestStatus.RUNNING, started_at=time.time())
    ctx.save_state(request_id, started=time.time())
    progress.post(messages.request_queued(request, kinds.words(kind.queued, request, messages.code),
                                          [info.label for info in steps.announced(tuple(s.info for s in pipeline))],
                                          into, ctx.settings.contacts_for(ctx.target(request.target))))
    if kind.chained:
        return {"request_id": request_id, "jobs": _enqueue_chain(ctx, request, pipeline)}
    results: JsonObject = {}
    target = ctx.target(request.target)
    for step in pipeline:
        ctx.save_state(request.id, current_step=step.name)  # which step a failure report names
        result = _run(ctx, request, target, progress, step)
        results.update(result.to_dict())
        if isinstance(result, StepRefused):  # the step found it may not go on: its refusal is the outcome
            break
    return {"request_id": request_id, **{k: v for k, v in results.items() if k != "outcome"}}


def _enqueue_chain(ctx: Context, request: Request, pipeline: tuple[Step, ...]) -> list[str]:
    queue = Queue(ctx.settings.queue_name, connection=ctx.redis)
    previous = None
    job_ids = []
    for step in pipeline:
        # The thread and target ride along, so a failure can still be reported when Redis is gone.
        kwargs = {"request_id": request.id, "step": step.name, "channel": request.channel,
                  "thread_ts": request.thread_ts, "target": request.target, "version": request.to_version}
        job = queue.enqueue(
            STEP_JOB, kwargs=kwargs, job_id=step_job_id(request.id, step.name),
            depends_on=previous, on_failure=Callback(FAILURE_CALLBACK), job_timeout=ctx.options.job_timeout_s,
            description=f"{request.id} {step.name}",
        )
        job_ids.append(job.id)
        previous = job
    return job_ids


def run_step(ctx: Context, request_id: str, step_name: str) -> JsonObject:
    """One step of a chained pipeline, as its RQ job: claimed once, its result saved for the next."""
    request = load_request(ctx, request_id)
    step = next((s for s in pipeline_of(request) if s.name == step_name), None)
    if step is None:
        raise StepFailed(errors.unknown_step(step_name))
    progress = ctx.progress(request.channel, request.thread_ts)
    if not ctx.store().claim(request_id, step_name):
        progress.log(messages.duplicate_delivery(request_id, step_name))
        return {"request_id": request_id, "step": step_name, "duplicate": True}
    result = _run(ctx, request, ctx.target(request.target), progress, step)
    return {"request_id": request_id, "step": step_name, **result.to_dict()}


def _run(ctx: Context, request: Request, target: Target, progress: Progress, step: Step) -> StepResult:
    result = step.run(ctx, request, target, progress)
    try:
        ctx.save_state(request.id, **{step.name: result})
    except redis.RedisError as exc:
        raise StepFailed(errors.step_done_state_lost(step.name, type(exc).__name__)) from exc
    return result


# --- the shared steps -------------------------------------------------------------------------------


def _backup(ctx: Context, request: Request, target: Target, progress: Progress) -> BackupStepResult | BackupWaived:
    """A fresh, verified backup of the target before anything changes (no backup, no change)."""
    with ctx.connect(target) as conn:
        identity.guard(conn, ctx.redis, target.name, by=request.requester)
    waived = backup_waived(ctx, request, target, progress, "backup")
    if waived is not None:
        return waived
    if not _full_backup_needed(request, target):
        # Backup policy `escrow`: the rollback escrows what it destroys in its own transaction (and refuses if it
        # cannot), and the provider's snapshot or PITR is the other net. An undo is covered by that net alone.
        progress.skip("backup", messages.backup_skipped_for_escrow(target.name, target.platform_net))
        return BackupStepResult(None, escrow_only=True, snapshot=_digitalocean_snapshot(ctx, request, target, progress))
    kind = kinds.of(request.kind)
    started, backup = dump(ctx, progress, target, f"pre-{request.kind}-{request.id}",
                           messages.dump_of(target.name, kind.backup_reason))
    if not request.backup:  # the request's own backup (a restore's `backup` names the archive it restores)
        ctx.store().update(request.id, backup=backup.path)
    with ctx.connect(target) as conn:
        migration_history.record(conn, operation="backup", status="completed", executed_by=request.requester,
                       approved_by=request.approver, request_id=request.id, version=request.to_version,
                       duration_ms=int(backup.duration_s * 1000), details=backup.to_dict())
    progress.finish("backup", started, messages.backup_figures(backup))
    # The snapshot is a step of its own in the thread (not a second "Backup finished"), still inside
    # this job: no snapshot where one is configured, no change.
    return BackupStepResult(backup, snapshot=_digitalocean_snapshot(ctx, request, target, progress))


def backup_waived(ctx: Context, request: Request, target: Target, progress: Progress, step: str) -> BackupWaived | None:
    """Break-glass `run-migrations --no-backup` (the bot never asks for it): no backup, said and written into
    migration_history, so an incident review sees there was no net. None: take the backup."""
    if not request.params.get("no_backup"):
        return None
    progress.skip(step, messages.backup_waived(request.requester))
    with ctx.connect(target) as conn:
        migration_history.record(conn, operation="backup", status="skipped", executed_by=request.requester,
                                 approved_by=request.approver, request_id=request.id,
                                 details={"no_backup": True, "before": request.kind.value,
                                          "via": "run-migrations --no-backup"})
    return BackupWaived(step)


def _full_backup_needed(request: Request, target: Target) -> bool:
    """A full pg_dump, unless the target's policy is `escrow` and the plan's every destroyed value is escrowed.
    Only a rollback and an undo can go without: the escrow does not cover a restore, a repair or a recovery."""
    if not kinds.of(request.kind).escrow_covers or target.full_backup:
        return True
    return messages.not_escrowed_count(request.warnings) > 0


def dump(ctx: Context, progress: Progress, target: Target, reason: str, detail: str) -> tuple[float, BackupResult]:
    """The *Backup* step's pg_dump with its heartbeat: (when it started, the verified backup). An
    unverified backup raises: no backup, no change."""
    started = progress.start("backup", detail)
    with progress.heartbeat("backup") as beat:
        backup = take_backup(
            ctx.conninfo(target), target=target.name, reason=reason, backup_dir=ctx.settings.backup_dir,
            heartbeat=beat, pg_dump=ctx.options.pg_dump, pg_restore=ctx.options.pg_restore,
            progress_interval=ctx.options.progress_interval_s,
        )
    if not backup.verified:
        raise StepFailed(errors.no_backup())
    return started, backup


def _digitalocean_snapshot(ctx: Context, request: Request, target: Target, progress: Progress) -> JsonObject | None:
    if not (target.do_droplet_id or target.do_database_id) or not ctx.settings.digitalocean_token:
        return None
    client = DigitalOcean(ctx.settings.digitalocean_token, ctx.settings.digitalocean_api_url)
    found: JsonObject = {}
    if target.do_droplet_id:
        started = progress.start("snapshot", messages.snapshot_of_droplet(target.do_droplet_id))
        with progress.heartbeat("snapshot") as beat:
            found["droplet_snapshot"] = client.snapshot_droplet(
                target.do_droplet_id, f"{target.name}-pre-{request.kind}-{request.id}", heartbeat=beat,
                poll_seconds=ctx.options.do_poll_s, timeout_s=ctx.options.do_action_timeout_s)
        progress.finish("snapshot", started, messages.snapshot_figures(found["droplet_snapshot"]))
    if target.do_database_id:
        backups = client.database_backups(target.do_database_id)
        if not backups:
            raise StepFailed(errors.no_managed_backup(target.do_database_id))
        found["database_backup"] = backups[0]
    return found


def _maintenance(state: str) -> StepFunction:
    def run(ctx: Context, request: Request, target: Target, progress: Progress) -> MaintenanceStepResult:
        step = f"maintenance_{state}"
        policy = stall_policy.decide(target, request.stall_ms)
        if policy.choice is stall_policy.MaintenanceChoice.SKIP:
            detail = messages.maintenance_skipped_by_forecast(policy.stall_ms or 0.0, policy.threshold_s or 0.0)
            progress.skip(step, detail)
            return MaintenanceStepResult(skipped=True, ok=True, detail=detail, record={"policy": policy.choice.value})
        if policy.refused:
            raise StepFailed(messages.maintenance_required_without_hook(policy.stall_ms or 0.0,
                                                                         policy.threshold_s or 0.0))
        hook = target.maintenance_on if state == "on" else target.maintenance_off
        started = progress.start(step) if hook else None
        result = run_hook(hook, target=target.name, state=state)
        if result.skipped:
            progress.skip(step, result.detail)
            return _hook_result(result)
        ctx.store().clear_plans(target.name)  # the application around the target changed
        if not result.ok:
            raise StepFailed(result.detail)
        progress.finish(step, started, messages.maintenance_figures(result.detail))
        return _hook_result(result)

    return run


def _hook_result(hook: HookResult) -> MaintenanceStepResult:
    record = hook.to_dict()
    return MaintenanceStepResult(skipped=record.pop("skipped"), ok=record.pop("ok"), detail=record.pop("detail"),
                                 record=record)


def _verify(ctx: Context, request: Request, target: Target, progress: Progress) -> VerifyStepResult:
    """The post-change checks, with what the approval promised among them (workers/verbs/: `promised`)."""
    state = ctx.load_state(request.id)
    started = progress.start("verify")
    promise = _promised(ctx, request, target, state)
    report = run_checks(
        ctx.conninfo(target), target, expected_status=dict(promise.expected_status or {}) or None,
        baseline_counts=dict(promise.row_counts) if promise.row_counts is not None else None,
        migrations_dir=target.migrations_dir,
        status_report=ctx.engine(target, request.requester).status().to_dict() if promise.health_only else None,
    )
    report = replace(report, checks=[*report.checks, promise_check(promise)])
    failed = report_checks(ctx, progress, target, report, executed_by=request.requester,
                           approved_by=request.approver, request_id=request.id, version=request.to_version)
    if failed:
        raise StepFailed(messages.verification_failed(failed))
    progress.finish("verify", started, messages.checks_summary(report.checks))
    return VerifyStepResult(report)


def _promised(ctx: Context, request: Request, target: Target, state: PipelineState) -> Promise:
    """What the approval promised, from the kind's module; the database must still be the same one."""
    with ctx.connect(target) as conn:
        identity.guard(conn, ctx.redis, target.name, by=request.requester)
    promised: Promise = verbs.module_of(request.kind).promised(ctx, request, target, state)
    return promised


def promise_check(promise: Promise) -> Check:
    return Check(name="as approved", passed=not promise.mismatches, figure=list(promise.mismatches),
                 detail="; ".join(promise.mismatches) or messages.AS_APPROVED, kind=CheckKind.PROMISE)


def report_checks(ctx: Context, progress: Progress, target: Target, report: VerifyReport, *,
                  extra: JsonObject | None = None, **record: Any) -> list[str]:
    """Post the checks, record the verification in migration_history; the names of the failed checks."""
    progress.post(messages.checks_block(report.checks))
    failed = [check.name for check in report.failed]
    with ctx.connect(target) as conn:
        migration_history.record(conn, operation="verify", status="failed" if failed else "completed",
                       details={**report.to_dict(), **(extra or {})},
                       error_message=messages.verification_failed(failed) if failed else None, **record)
    return failed


def _finish(ctx: Context, request: Request, target: Target, progress: Progress) -> FinishStepResult:
    """The request's outcome: said "verified" only once what the approval promised holds (checked here for a
    kind without a verification step), then succeeded, its page resolved, and its watch started."""
    kind = kinds.of(request.kind)
    state = ctx.load_state(request.id)
    into = state.into
    if kinds.VERIFY not in kind.steps and into == "target":
        mismatches = _promised(ctx, request, target, state).mismatches
        if mismatches:
            raise StepFailed(messages.promise_not_kept(mismatches))
    started = state.started or request.started_at or time.time()
    outcome = kinds.words(kind.outcome, request)
    # The watch follows every verified change of the live target (a restore into a scratch database leaves it alone).
    watching = ctx.options.watch_window_s > 0 and kind.watched and into == "target"
    # Done now; its watch (workers/verbs/watch.py) is state on the request and holds nothing.
    ctx.store().set_status(request.id, RequestStatus.SUCCEEDED, finished_at=time.time(), outcome=outcome,
                           watch=watch.opened(ctx, request, target).to_dict() if watching else None)
    resolved = None
    if state.paged and not watching:
        resolved = ctx.pager().resolve(dedup_key(request.id)).to_dict()
        progress.post(messages.page_resolved(request.id))
    progress.post(verbs.module_of(request.kind).succeeded(request, target, state, time.time() - started),
                  broadcast=True)
    if watching:
        return FinishStepResult(watch=watch.start(ctx, request, target, progress))
    return FinishStepResult(resolved=resolved)


FUNCTIONS: dict[str, StepFunction] = {
    kinds.BACKUP.name: _backup,
    kinds.MAINTENANCE_ON.name: _maintenance("on"),
    kinds.VERIFY.name: _verify,
    kinds.MAINTENANCE_OFF.name: _maintenance("off"),
    kinds.FINISH.name: _finish,
}
