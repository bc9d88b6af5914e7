"""Reporting a failed job: into the thread, in the request record and history, and to PagerDuty.

Three ways a job can fail, one report (claimed once per job id, whichever path gets there first):
- the job raised (or hit its RQ timeout inside the work-horse): RQ runs `on_job_failure` (Callback);
- the work-horse was killed (SIGKILL, OOM): the worker's `work_horse_killed_handler` calls `on_horse_killed`;
- the whole worker died with its horse: the watchdog of any live worker finds the job's lease lapsed
  (workers/runtime/watchdog.py), and RQ's own abandoned-job cleanup later runs `on_job_failure` too.
A failed look of a watch window is not a failed request: workers/verbs/watch.py `look_failed` carries on or ends
the watch as interrupted.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import redis
from rq.exceptions import AbandonedJobError
from rq.job import Job

from core import steps
from core.jsontypes import JsonObject
from core.kinds import RUN_JOB, START_STEP, STEP_JOB
from core.requests import RequestStatus
from workers import messages
from workers.postgres import migration_history
from workers.runtime import errors
from workers.runtime.context import Context, context
from workers.runtime.errors import describe, timeout_in_chain
from workers.runtime.escalation import dedup_key, escalate
from workers.runtime.pipeline_state import PipelineState
from workers.verbs import watch

logger = logging.getLogger("workers.runtime.failures")

WATCH_LOOK_JOB = watch.TICK_JOB
# The jobs that run an approved request (every kind: core/kinds.py); their failure is the request's.
REQUEST_JOBS = frozenset({RUN_JOB, STEP_JOB})
# Standalone jobs whose failure pages (the read-only ones only report into the thread).
PAGING_JOBS = {"workers.jobs.backup": "backup", "workers.jobs.verify": "verify"}
# A request in one of these may still fail; any other status is someone else's final word.
STARTED = frozenset({RequestStatus.APPROVED, RequestStatus.RUNNING})
# Jobs this process has already reported (the job's own report, then RQ's callback, in one work-horse).
_reported_here: set[str] = set()


@dataclass(frozen=True)
class JobArguments:
    """The keyword arguments a failed job was given, read once (any of them may be missing)."""

    request_id: str | None = None
    step: str | None = None  # a chained step's job names its step; the runner's own job does not
    tick: int = 0  # one look of a watch window
    target: str | None = None
    version: str | None = None
    channel: str | None = None
    thread_ts: str | None = None

    @classmethod
    def of(cls, job: Job) -> JobArguments:
        return cls.from_dict(job.kwargs or {})

    @classmethod
    def from_dict(cls, data: JsonObject) -> JobArguments:
        def text(name: str) -> str | None:
            value = data.get(name)
            return str(value) if value else None
        return cls(request_id=text("request_id"), step=text("step"), tick=int(data.get("tick") or 0),
                   target=text("target"), version=text("version"), channel=text("channel"),
                   thread_ts=text("thread_ts"))


def on_job_failure(job: Job, connection: Any, exc_type: Any = None, exc_value: Any = None, tb: Any = None) -> None:
    """RQ failure callback (referenced by dotted path)."""
    report(job, describe(exc_value, _secrets(context())), crashed=is_crash(exc_value))


def on_horse_killed(job: Job, retpid: int, ret_val: int, rusage: Any) -> None:
    """The worker's work_horse_killed_handler: the forked process running the job died."""
    reason = f"signal {os.WTERMSIG(ret_val)}" if ret_val and os.WIFSIGNALED(ret_val) else f"exit status {ret_val}"
    step = JobArguments.of(job).step or _job_step(job)
    report(job, errors.job_crashed(step, reason), crashed=True)


def is_crash(error: BaseException | None) -> bool:
    """The job's process died or was stopped (no chance to record its own failure in history)."""
    return error is None or isinstance(error, AbandonedJobError) or timeout_in_chain(error) is not None


def _secrets(ctx: Context) -> list[str | None]:
    return list(ctx.secrets())


def _job_step(job: Job) -> str:
    name = job.func_name or ""
    return PAGING_JOBS.get(name) or name.rsplit(".", 1)[-1]


def report(job: Job, error: str, *, crashed: bool = False) -> None:
    """Report a failed job once; never raises (a failing report must not hide the failure)."""
    ctx = context()
    if job.id in _reported_here:
        return
    _reported_here.add(job.id)
    try:
        try:
            if not ctx.claim_report(job.id):
                return
        except redis.RedisError:
            pass  # Redis is gone: report anyway (a second report beats none; PagerDuty dedups the page)
        arguments = JobArguments.of(job)
        if job.func_name == WATCH_LOOK_JOB:  # one look of a watch window: the watch goes on, or ends as interrupted
            watch.look_failed(ctx, str((job.kwargs or {})["request_id"]), arguments.tick, error)
        elif arguments.request_id and job.func_name in REQUEST_JOBS:
            # An approved request's job, whatever its kind: a chained step names its step, the runner's own job
            # the step it was in (saved as it went), or the start.
            request_failed(ctx, arguments.request_id, arguments.step or START_STEP, error,
                           crashed=crashed, arguments=arguments, inline="step" not in (job.kwargs or {}))
        else:
            standalone_failed(ctx, job, arguments, error)
    except Exception:
        logger.exception("could not report the failure of job %s (%s)", job.id, error)


def _without_redis(ctx: Context, request_id: str, step: str, error: str, arguments: JobArguments) -> None:
    """Report from the job's own arguments when the request record cannot be read."""
    progress = ctx.progress(arguments.channel, arguments.thread_ts)
    progress.fail(step, error)
    target_name = arguments.target or "?"
    escalate(
        ctx.pager(), progress, key=dedup_key(request_id), target=target_name, version=arguments.version,
        step=step, error=error, contacts=_contacts(ctx, target_name),
        details={"request_id": request_id},
    )
    progress.post(messages.outcome_failed(request_id, target_name, step, error, False), broadcast=True)


def _contacts(ctx: Context, target_name: str) -> tuple[str, ...]:
    """Who is paged about a target known only by the name a job was given (an unknown one: the escalation list)."""
    target = ctx.settings.targets.get(target_name)
    return ctx.settings.contacts_for(target) if target else ctx.settings.escalation


def request_failed(ctx: Context, request_id: str, step: str, error: str, *, crashed: bool = False,
                   arguments: JobArguments | None = None, inline: bool = False) -> None:
    try:
        request = ctx.store().get(request_id)
    except redis.RedisError:
        _without_redis(ctx, request_id, step, error, arguments or JobArguments())
        return
    if request is None:
        logger.error("job for unknown request %s failed at %s: %s", request_id, step, error)
        return
    if request.status not in STARTED:
        # Rejected, cancelled, expired or already finished: never rewritten, never paged.
        logger.warning("job for request %s (%s) failed at %s: %s", request_id, request.status.value, step, error)
        return
    progress = ctx.progress(request.channel, request.thread_ts)
    state = PipelineState()
    try:
        state = ctx.load_state(request_id)
    except Exception as exc:  # Redis gone, or a state no one can read: the failure is reported all the same
        logger.warning("could not read the state of %s: %s", request_id, type(exc).__name__)
    if inline and state.current_step:
        step = state.current_step
    info = steps.STEPS.get(step)
    progress.fail(step, error)
    left_on = bool(info and info.leaves_maintenance_on) and state.maintenance_ran
    try:  # bookkeeping in Redis; if Redis fails now, the thread and the page still go out
        ctx.store().set_status(request_id, RequestStatus.FAILED, finished_at=time.time(),
                               outcome=f"{steps.label(step)} failed: {error}")
        ctx.save_state(request_id, paged=True, failed_step=step, error=error)
    except redis.RedisError as exc:
        logger.warning("could not record the failure of %s in Redis: %s", request_id, type(exc).__name__)
    target = ctx.target(request.target)
    if info is not None and info.recorded:  # unless the step recorded its own failure (the engine does, when it can)
        try:
            with ctx.connect(target) as conn:
                if not migration_history.has_failure(conn, request_id, step):
                    migration_history.record(conn, operation=step, status="failed", executed_by=request.requester,
                                   approved_by=request.approver, request_id=request_id,
                                   version=request.to_version, error_message=error)
        except Exception as exc:
            logger.warning("could not record the failed %s in history: %s", step, type(exc).__name__)
    escalate(
        ctx.pager(), progress, key=dedup_key(request_id), target=target.name, version=request.to_version,
        step=step, error=error, contacts=ctx.settings.contacts_for(target),
        details={"request_id": request_id, "requested_by": request.requester, "approved_by": request.approver,
                 "maintenance_left_on": left_on},
    )
    progress.post(messages.outcome_failed(request_id, target.name, step, error, left_on), broadcast=True)
    try:
        ctx.store().clear_plans(target.name)  # the target may have changed: no earlier plan is known to hold
    except redis.RedisError as exc:
        logger.warning("could not clear the plans of %s: %s", target.name, type(exc).__name__)


def standalone_failed(ctx: Context, job: Job, arguments: JobArguments, error: str) -> None:
    step = _job_step(job)
    progress = ctx.progress(arguments.channel, arguments.thread_ts)
    progress.fail(step, error)
    if job.func_name in PAGING_JOBS and arguments.target:
        key = dedup_key(f"{step}-{arguments.target}-{arguments.thread_ts or job.id}")
        escalate(ctx.pager(), progress, key=key, target=arguments.target, version=None, step=step,
                 error=error, contacts=_contacts(ctx, arguments.target))


def on_exception(job: Job, exc_type: Any, exc_value: Any, tb: Any) -> bool:
    """The worker's exception handler: every job that raises, whoever enqueued it (the bot enqueues
    without callbacks). Also called by RQ's cleanup for abandoned jobs. Returns True: go on with RQ's
    own handling."""
    if (job.func_name or "").startswith("workers.jobs."):
        on_job_failure(job, job.connection, exc_type, exc_value, tb)
    return True
