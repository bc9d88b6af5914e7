"""The frame every RQ job runs in: the process's context, the lease its heartbeat keeps, and a failure answered
in the thread (`read_only`) or reported, paged and raised (`changing`).
"""

from __future__ import annotations

from collections.abc import Callable

from rq import get_current_job

from core.jsontypes import JsonObject
from workers.runtime import failures
from workers.runtime.context import Context, context
from workers.runtime.errors import describe
from workers.runtime.progress import Progress


def job_id() -> str | None:
    job = get_current_job()
    return job.id if job else None


def read_only(step: str, channel: str | None, thread_ts: str | None,
               work: Callable[[Context, Progress], JsonObject]) -> JsonObject:
    ctx = context()
    progress = ctx.progress(channel, thread_ts)
    with ctx.lease(job_id()):
        try:
            return {"ok": True, **work(ctx, progress)}
        except Exception as exc:
            error = describe(exc, ctx.secrets())
            progress.fail(step, error)
            return {"ok": False, "error": error}


def changing(work: Callable[[Context], JsonObject]) -> JsonObject:
    ctx = context()
    with ctx.lease(job_id()):
        try:
            return {"ok": True, **work(ctx)}
        except Exception as exc:
            # Report here, in the job's own process: if Redis is gone, RQ cannot even record the
            # failure to run its callbacks. (The later callback finds the report already made.)
            job = get_current_job()
            if job is not None:
                failures.report(job, describe(exc, ctx.secrets()), crashed=failures.is_crash(exc))
            raise
