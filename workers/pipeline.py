"""The pipelines of approved requests, as data: a tuple of steps per request kind, run in order.

    rollback: backup -> maintenance on -> rollback -> verify -> maintenance off -> finish
    undo:     backup -> maintenance on -> undo     -> verify -> maintenance off -> finish
    restore:  backup -> maintenance on -> restore  -> verify -> maintenance off -> finish
    restore into a scratch database: restore -> finish (the target is left alone)

What a step is called and what its failure means (maintenance left on, recorded in history) is pure
data in core/steps.py, which the bot reads too; here each step is bound to the function that runs it.

`start_approved` is the one start check of every approved request (claimed once; still approved;
inside the start bound; same database; for a rollback the same plan, for a restore a backup that
exists and verifies). A request that is not approved (rejected, cancelled, expired) is said so in the
thread and left alone: never rewritten, never paged. A refusal of an approved one is its outcome.

A rollback's steps run as RQ jobs chained with `depends_on`: RQ runs a step only when the one before
it finished, so a failed backup stops everything before any change, and a failed rollback or
verification never reaches "maintenance off" (maintenance stays on). A restore runs the same way
inside its one job (its caller waits for the result). Either way a step's failure is reported by
`workers.failures`, which reads the step's facts from core/steps.py.

Exactly once: `store.claim(request, step)` makes a redelivered step a no-op, and the engine's
`request_id` makes a redelivered rollback return the earlier result instead of running again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from rq import Callback, Queue

from core import stall_policy, steps
from core.config import Target
from core.jobs import START_STEPS
from core.jsontypes import JsonObject
from core.requests import Request, RequestKind, RequestStatus
from core.steps import StepInfo
from workers import (
    errors,
    escrow_messages,
    history,
    identity,
    incident_messages,
    messages,
    recovery,
    recovery_messages,
    repairing,
    sessions,
    views,
)
from workers import watching as watching_
from workers.backup import BackupResult, take_backup
from workers.context import Context
from workers.digitalocean import DigitalOcean
from workers.engine import Engine
from workers.engine.errors import EngineError, UndoRefused
from workers.errors import Refused, StepFailed
from workers.maintenance import run_hook
from workers.paging import dedup_key
from workers.progress import Progress
from workers.restore import BackupCheck, check_backup, restore_backup
from workers.verify import VerifyReport, count_rows, run_checks

STEP_JOB = "workers.jobs.pipeline_step"
FAILURE_CALLBACK = "workers.failures.on_job_failure"
INTO = ("target", "scratch")

StepFunction = Callable[[Context, Request, Target, Progress], JsonObject]


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


def refuse(ctx: Context, request: Request, progress: Progress, text: str, outcome: str) -> JsonObject:
    # A refusal is the request's final outcome: the channel sees it, not only the thread.
    progress.post(text, broadcast=True)
    ctx.store().set_status(request.id, RequestStatus.FAILED, finished_at=time.time(), outcome=outcome)
    return {"request_id": request.id, "refused": True, "reason": outcome}


def start_approved(ctx: Context, request: Request, progress: Progress, *, into: str = "target") -> JsonObject | None:
    """The one start check of every approved request kind. None: go ahead (the start is claimed).
    Otherwise what the job returns: a duplicate delivery, or a refusal (nothing was changed)."""
    start = START_STEPS[request.kind]
    if not ctx.store().claim(request.id, start):
        progress.log(messages.duplicate_delivery(request.id, start))
        return {"request_id": request.id, "duplicate": True}
    if request.status is not RequestStatus.APPROVED:
        # Say so, but leave the record alone: it was rejected, cancelled or expired by someone else.
        progress.post(messages.not_approved(request.id, request.status.value))
        return {"request_id": request.id, "refused": True, "reason": f"request is {request.status.value}"}
    waited = time.time() - (request.decided_at or request.created_at)
    bound = ctx.settings.policy.start_within_seconds
    if waited > bound:
        return refuse(ctx, request, progress, messages.start_too_late(request.id, waited, bound), "approval too old")
    target = ctx.target(request.target)
    if into == "target":
        with ctx.connect(target) as conn:
            try:
                identity.guard(conn, ctx.redis, target.name, by=request.requester)
            except identity.IdentityMismatch as exc:
                return refuse(ctx, request, progress, messages.refused(request.id, str(exc)), "wrong database")
    if request.kind is RequestKind.RESTORE:
        if not request.backup:
            return refuse(ctx, request, progress, messages.refused(request.id, errors.restore_without_backup()),
                          "no backup named")
        check = inspect_backup(ctx, target, request.backup, into=into)
        if not check.ok:
            return refuse(ctx, request, progress, messages.refused(request.id, check.error or ""), "backup unusable")
        if into == "target" and check.backup:  # the restore preview the approval was bound to, recomputed
            stale = recovery.recheck_restore(ctx, request, target, Path(str(check.backup["path"])), check.backup)
            if stale is not None:
                return refuse(ctx, request, progress, messages.refused(request.id, stale), "preview changed")
    elif request.kind in recovery.PREVIEWS:
        stale = recovery.recheck(ctx, request, target)  # the preview the approval was bound to, recomputed
        if stale is not None:
            return refuse(ctx, request, progress, messages.refused(request.id, stale), "preview changed")
    elif request.kind is RequestKind.UNDO:
        try:
            undo_plan = ctx.engine(target, request.requester).plan_undo(str(request.undoes))
        except UndoRefused as exc:
            return refuse(ctx, request, progress, messages.refused(request.id, str(exc)), "undo refused")
        if undo_plan.hash != request.plan_hash:
            return refuse(ctx, request, progress, messages.plan_changed(request.id), "plan changed")
    elif request.kind is RequestKind.ROLLBACK:
        plan = ctx.engine(target, request.requester).plan_rollback(to=request.to_version)
        if plan.hash != request.plan_hash:
            return refuse(ctx, request, progress, messages.plan_changed(request.id), "plan changed")
    # terminate and repair check what they act on inside their own step (the session, the repair plan)
    if into == "target":  # it changes the target now: a watch running on it is over
        watching_.supersede(ctx, request, progress)
    return None


def inspect_backup(ctx: Context, target: Target, backup: str, *, into: str = "target") -> BackupCheck:
    return check_backup(backup, backup_dir=ctx.settings.backup_dir, target=target.name,
                        pg_restore=ctx.options.pg_restore, any_target=into == "scratch")


def execute(ctx: Context, request_id: str) -> JsonObject:
    """Check the approved rollback request and enqueue its chain. Runs at most once per request."""
    request = load_request(ctx, request_id)
    progress = ctx.progress(request.channel, request.thread_ts)
    refused = start_approved(ctx, request, progress)
    if refused is not None:
        return refused
    pipeline = PIPELINES[request.kind]
    ctx.store().set_status(request_id, RequestStatus.RUNNING, started_at=time.time())
    ctx.save_state(request_id, started=time.time())
    progress.post(messages.pipeline_queued(request_id, request.target, request.to_version,
                                           [s.info.label for s in pipeline if s.info is not steps.FINISH]))
    queue = Queue(ctx.settings.queue_name, connection=ctx.redis)
    previous = None
    job_ids = []
    for step in pipeline:
        # The thread and target ride along, so a failure can still be reported when Redis is gone.
        kwargs = {"request_id": request_id, "step": step.name, "channel": request.channel,
                  "thread_ts": request.thread_ts, "target": request.target, "version": request.to_version}
        job = queue.enqueue(
            STEP_JOB, kwargs=kwargs, job_id=step_job_id(request_id, step.name),
            depends_on=previous, on_failure=Callback(FAILURE_CALLBACK), job_timeout=ctx.options.job_timeout_s,
            description=f"{request_id} {step.name}",
        )
        job_ids.append(job.id)
        previous = job
    return {"request_id": request_id, "jobs": job_ids}


def restore(ctx: Context, request_id: str, into: str = "target") -> JsonObject:
    """An approved restore request: its pipeline, step after step, in this job."""
    if into not in INTO:
        raise Refused(errors.restore_into_invalid(into))
    request = load_request(ctx, request_id)
    progress = ctx.progress(request.channel, request.thread_ts)
    refused = start_approved(ctx, request, progress, into=into)
    if refused is not None:
        return refused
    pipeline = PIPELINES[RequestKind.RESTORE] if into == "target" else SCRATCH_RESTORE
    ctx.store().set_status(request_id, RequestStatus.RUNNING, started_at=time.time())
    ctx.save_state(request_id, started=time.time(), into=into)
    progress.post(messages.restore_queued(request_id, request.target, str(request.backup), into,
                                          [s.info.label for s in pipeline if s.info is not steps.FINISH]))
    results = _run_in_order(ctx, request, progress, pipeline)
    return {"request_id": request_id, "restore": results.get("restore"), "pre_restore_backup": results.get("backup")}


def run_in_job(ctx: Context, request_id: str) -> JsonObject:
    """An approved request whose steps are short (terminate, repair): its pipeline, in this job.
    Its last step records the outcome."""
    request = load_request(ctx, request_id)
    progress = ctx.progress(request.channel, request.thread_ts)
    refused = start_approved(ctx, request, progress)
    if refused is not None:
        return refused
    ctx.store().set_status(request_id, RequestStatus.RUNNING, started_at=time.time())
    ctx.save_state(request_id, started=time.time())
    results: JsonObject = {}
    target = ctx.target(request.target)
    for step in PIPELINES[request.kind]:
        ctx.save_state(request_id, current_step=step.name)
        results.update(_run(ctx, request, target, progress, step))
        if results.get("refused"):
            break
    return {"request_id": request_id, **results}


RECOVERY_WHAT = recovery_messages.RECOVERY_WHAT


def recover_request(ctx: Context, request_id: str, kind: RequestKind) -> JsonObject:
    """An approved recovery request (recover, pitr, snapshot_restore): its pipeline, step after step, in
    this job, after the one start check (which recomputes the approved preview)."""
    request = load_request(ctx, request_id)
    if request.kind is not kind:
        raise Refused(errors.wrong_kind(request_id, request.kind.value, kind.value))
    progress = ctx.progress(request.channel, request.thread_ts)
    refused = start_approved(ctx, request, progress)
    if refused is not None:
        return refused
    pipeline = PIPELINES[kind]
    ctx.store().set_status(request_id, RequestStatus.RUNNING, started_at=time.time())
    ctx.save_state(request_id, started=time.time())
    progress.post(recovery_messages.recovery_queued(request_id, request.target, RECOVERY_WHAT[kind],
                                           [s.info.label for s in pipeline if s.info is not steps.FINISH]))
    results = _run_in_order(ctx, request, progress, pipeline)
    return {"request_id": request_id, **{k: v for k, v in results.items() if k != "outcome"}}


def run_step(ctx: Context, request_id: str, step_name: str) -> JsonObject:
    """One step of a chained pipeline, as its RQ job: claimed once, its result saved for the next."""
    request = load_request(ctx, request_id)
    step = next((s for s in PIPELINES[request.kind] if s.name == step_name), None)
    if step is None:
        raise StepFailed(errors.unknown_step(step_name))
    progress = ctx.progress(request.channel, request.thread_ts)
    if not ctx.store().claim(request_id, step_name):
        progress.log(messages.duplicate_delivery(request_id, step_name))
        return {"request_id": request_id, "step": step_name, "duplicate": True}
    result = _run(ctx, request, ctx.target(request.target), progress, step)
    return {"request_id": request_id, "step": step_name, **result}


def _run_in_order(ctx: Context, request: Request, progress: Progress, pipeline: tuple[Step, ...]) -> JsonObject:
    """A pipeline's steps one after the other in this job; what they return, merged in their order."""
    results: JsonObject = {}
    target = ctx.target(request.target)
    for step in pipeline:
        ctx.save_state(request.id, current_step=step.name)  # which step a failure report names
        results.update(_run(ctx, request, target, progress, step))
    return results


def _run(ctx: Context, request: Request, target: Target, progress: Progress, step: Step) -> JsonObject:
    result = step.run(ctx, request, target, progress)
    try:
        ctx.save_state(request.id, **{step.name: result})
    except redis.RedisError as exc:
        raise StepFailed(errors.step_done_state_lost(step.name, type(exc).__name__)) from exc
    return result


# --- the steps ------------------------------------------------------------------------------------


def _backup(ctx: Context, request: Request, target: Target, progress: Progress) -> JsonObject:
    """A fresh, verified backup of the target before anything changes (no backup, no change)."""
    with ctx.connect(target) as conn:
        identity.guard(conn, ctx.redis, target.name, by=request.requester)
    if not _full_backup_needed(request, target):
        # Backup policy `escrow`: the rollback escrows what it destroys in its own transaction (and refuses if it
        # cannot), and the provider's snapshot or PITR is the other net. An undo is covered by that net alone.
        progress.skip("backup", escrow_messages.backup_skipped_for_escrow(target.name, target.platform_net))
        result: JsonObject = {"backup": None, "escrow_only": True}
        snapshot = _digitalocean_snapshot(ctx, request, target, progress)
        if snapshot:
            result["snapshot"] = snapshot
        return result
    why = {RequestKind.ROLLBACK: messages.BEFORE_ROLLBACK, RequestKind.UNDO: messages.BEFORE_UNDO,
           RequestKind.REPAIR: incident_messages.BEFORE_REPAIR}.get(request.kind, messages.BEFORE_RESTORE)
    started, backup = dump(ctx, progress, target, f"pre-{request.kind}-{request.id}", messages.dump_of(target.name, why))
    result = {"backup": backup.to_dict()}
    if request.kind is RequestKind.ROLLBACK:  # a restore request's `backup` names the archive to restore
        ctx.store().update(request.id, backup=backup.path)
    with ctx.connect(target) as conn:
        history.record(conn, operation="backup", status="completed", executed_by=request.requester,
                       approved_by=request.approver, request_id=request.id, version=request.to_version,
                       duration_ms=int(backup.duration_s * 1000), details=backup.to_dict())
    progress.finish("backup", started, messages.backup_figures(backup))
    # The snapshot is a step of its own in the thread (not a second "Backup finished"), still inside
    # this job: no snapshot where one is configured, no change.
    snapshot = _digitalocean_snapshot(ctx, request, target, progress)
    if snapshot:
        result["snapshot"] = snapshot
    return result


def _full_backup_needed(request: Request, target: Target) -> bool:
    """A full pg_dump, unless the target's policy is `escrow` and the plan's every destroyed value is escrowed.
    Only a rollback and an undo can go without: the escrow does not cover a restore, a repair or a recovery."""
    if request.kind not in (RequestKind.ROLLBACK, RequestKind.UNDO) or target.full_backup:
        return True
    return escrow_messages.not_escrowed_count(request.warnings) > 0


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


def _maintenance_ran(state: JsonObject) -> bool:
    """Whether this request's `maintenance_on` step ran a hook (and it succeeded: else no later step runs)."""
    result = (state.get("maintenance_on") or {}).get("maintenance") or {}
    return bool(result) and not result.get("skipped")


def _maintenance(state: str) -> StepFunction:
    def run(ctx: Context, request: Request, target: Target, progress: Progress) -> JsonObject:
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
        result = run_hook(hook, target=target.name, state=state)
        if result.skipped:
            progress.skip(step, result.detail)
            return {"maintenance": result.to_dict()}
        ctx.store().clear_plans(target.name)  # the application around the target changed
        if not result.ok:
            raise StepFailed(result.detail)
        progress.finish(step, started, messages.maintenance_figures(result.detail))
        return {"maintenance": result.to_dict()}

    return run


def _rollback(ctx: Context, request: Request, target: Target, progress: Progress) -> JsonObject:
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


def _undo(ctx: Context, request: Request, target: Target, progress: Progress) -> JsonObject:
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


def _restore(ctx: Context, request: Request, target: Target, progress: Progress) -> JsonObject:
    state = ctx.load_state(request.id)
    into = str(state.get("into") or "target")
    pre_restore = (state.get("backup") or {}).get("backup") or {}
    backup = str(request.backup)
    started = progress.start("restore", messages.restore_of(backup, into, target.name))
    try:
        with progress.heartbeat("restore") as beat:
            result = restore_backup(
                ctx.conninfo(target), backup, into=into, backup_dir=ctx.settings.backup_dir,
                target=target.name, heartbeat=beat, pg_restore=ctx.options.pg_restore, psql=ctx.options.psql,
                pg_dump=ctx.options.pg_dump, jobs=ctx.options.restore_jobs,
                progress_interval=ctx.options.progress_interval_s, method=ctx.options.restore_method,
                # The application is in maintenance only when this pipeline's hook said so: only then
                # may a swap end the sessions still on the target.
                end_sessions=_maintenance_ran(state), maintenance_database=ctx.options.maintenance_database,
            )
    finally:
        if into == "target":
            ctx.store().clear_plans(target.name)
    if into == "target":  # the record of the restore itself, beside the history the restore kept
        with ctx.connect(target) as conn:
            history.record(conn, operation="restore", status="completed", executed_by=request.requester,
                           approved_by=request.approver, request_id=request.id,
                           duration_ms=int(result.duration_s * 1000),
                           details={"backup": result.backup, "sha256": result.sha256,
                                    "pre_restore_backup": pre_restore.get("path"),
                                    "dropped_tables": result.dropped_tables, "method": result.method,
                                    "replaced_database": result.replaced_database})
    progress.finish("restore", started, views.restore_figures(result))
    return {"restore": result.to_dict()}


def _verify(ctx: Context, request: Request, target: Target, progress: Progress) -> JsonObject:
    state = ctx.load_state(request.id)
    started = progress.start("verify")
    if request.kind is RequestKind.ROLLBACK:
        report = run_checks(
            ctx.conninfo(target), target, expected_status={v: "rolled_back" for v in request.versions},
            baseline_counts=state.get("baseline_counts"), migrations_dir=target.migrations_dir,
        )
    elif request.kind is RequestKind.UNDO:  # the re-applied migrations are completed again; rows may differ by design
        report = run_checks(
            ctx.conninfo(target), target, expected_status={v: "completed" for v in request.versions},
            baseline_counts=None, migrations_dir=target.migrations_dir,
        )
    else:  # after a restore: no migration failed, running or drifted; the rows as restored are still there
        restored = ((state.get("restore") or {}).get("restore") or {}).get("row_counts") or {}
        baseline = {t: restored.get(t, restored.get(f"public.{t}")) for t in target.critical_tables}
        report = run_checks(
            ctx.conninfo(target), target, expected_status=None,
            baseline_counts={t: n for t, n in baseline.items() if n is not None},
            migrations_dir=target.migrations_dir, status_report=ctx.engine(target, request.requester).status().to_dict(),
        )
    failed = report_checks(ctx, progress, target, report, executed_by=request.requester,
                           approved_by=request.approver, request_id=request.id, version=request.to_version)
    if failed:
        raise StepFailed(messages.verification_failed(failed))
    progress.finish("verify", started, messages.checks_summary(report.checks))
    return {"verify": report.to_dict()}


def report_checks(ctx: Context, progress: Progress, target: Target, report: VerifyReport, *,
                  extra: JsonObject | None = None, **record: Any) -> list[str]:
    """Post the checks, record the verification in migration_history; the names of the failed checks."""
    progress.post(messages.checks_block(report.checks))
    failed = [check.name for check in report.failed]
    with ctx.connect(target) as conn:
        history.record(conn, operation="verify", status="failed" if failed else "completed",
                       details={**report.to_dict(), **(extra or {})},
                       error_message=messages.verification_failed(failed) if failed else None, **record)
    return failed


def _finish(ctx: Context, request: Request, target: Target, progress: Progress) -> JsonObject:
    state = ctx.load_state(request.id)
    started = float(state.get("started") or request.started_at or time.time())
    outcome = {RequestKind.ROLLBACK: "rolled back and verified", RequestKind.UNDO: "undone and verified",
               RequestKind.RECOVER: "rows recovered", RequestKind.PITR: "recovered to a point in time and verified",
               RequestKind.SNAPSHOT_RESTORE: "restored from the snapshot and verified",
               RequestKind.CLUSTER_RESTORE: recovery_messages.NEW_CLUSTER_OUTCOME}.get(request.kind, "restored")
    # The watch follows every verified change of the live target (core/steps.py UNWATCHED: a new cluster is
    # not live yet; a restore into a scratch database leaves the target alone).
    watching = (ctx.options.watch_window_s > 0 and request.kind not in steps.UNWATCHED
                and str(state.get("into") or "target") == "target")
    # Done now; its watch (workers/watching.py) is state on the request and holds nothing.
    ctx.store().set_status(request.id, RequestStatus.SUCCEEDED, finished_at=time.time(), outcome=outcome,
                           watch=watching_.opened(ctx, request, target) if watching else None)
    resolved = None
    if state.get("paged") and not watching:
        resolved = ctx.pager().resolve(dedup_key(request.id)).to_dict()
        progress.post(messages.page_resolved(request.id))
    if request.kind is RequestKind.UNDO:
        text = escrow_messages.undo_succeeded(request.id, target.name, request.undoes, request.requester, request.approver,
                                       time.time() - started)
    elif request.kind is RequestKind.ROLLBACK:
        text = messages.outcome_succeeded(request.id, target.name, request.to_version, request.requester,
                                          request.approver, time.time() - started)
    elif request.kind in RECOVERY_WHAT:
        new_target = recovery.restored_target_name(target.name) if request.kind is RequestKind.CLUSTER_RESTORE else None
        text = recovery_messages.recovery_succeeded(request.id, target.name, RECOVERY_WHAT[request.kind], new_target,
                                                    watched=request.kind not in steps.UNWATCHED)
    else:
        text = views.restore_succeeded(request.id, target.name, str(request.backup),
                                          str(state.get("into") or "target"))
    progress.post(text, broadcast=True)
    if watching:
        return {"outcome": "succeeded", "resolved": None, **watching_.start(ctx, request, target, progress)}
    return {"outcome": "succeeded", "resolved": resolved}


FUNCTIONS: dict[str, StepFunction] = {
    steps.BACKUP.name: _backup,
    steps.MAINTENANCE_ON.name: _maintenance("on"),
    steps.ROLLBACK.name: _rollback,
    steps.RESTORE.name: _restore,
    steps.UNDO.name: _undo,
    steps.VERIFY.name: _verify,
    steps.MAINTENANCE_OFF.name: _maintenance("off"),
    steps.FINISH.name: _finish,
    steps.TERMINATE.name: sessions.terminate_step,
    steps.REPAIR.name: repairing.repair_step,
    steps.TABLE_BACKUP.name: recovery.table_backup,
    steps.RECOVER.name: recovery.recover_rows,
    steps.PITR.name: recovery.pitr,
    steps.SNAPSHOT_RESTORE.name: recovery.snapshot_restore,
    steps.NEW_CLUSTER.name: recovery.new_cluster,
}


def _bind(infos: tuple[StepInfo, ...]) -> tuple[Step, ...]:
    return tuple(Step(info, FUNCTIONS[info.name]) for info in infos)


PIPELINES: dict[RequestKind, tuple[Step, ...]] = {kind: _bind(infos) for kind, infos in steps.PIPELINES.items()}
SCRATCH_RESTORE = _bind(steps.RESTORE_INTO_SCRATCH)
