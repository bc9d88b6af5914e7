"""Find our jobs whose process died with its worker, and report them without waiting for RQ.

RQ notices a job abandoned by a dead worker only after the job's heartbeat TTL (60 s plus the
monitoring interval) and at the next registry cleanup (every maintenance interval). Our jobs hold a
lease in Redis, renewed every few seconds by the process running them (Context.lease); a job still
"started" whose lease has lapsed is dead. Every `python -m workers` runs this scan in a thread, so
any live worker reports the dead one's job within `lease TTL + scan interval` (docs/workers.md).
"""

from __future__ import annotations

import logging
import threading
import time

import redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.scheduler import RQScheduler

from workers.runtime import errors, failures
from workers.runtime.context import Context

logger = logging.getLogger("workers.runtime.watchdog")


def scan(ctx: Context, connection: redis.Redis) -> list[str]:
    """Report every started job of ours with a lapsed lease; returns their ids."""
    queue = Queue(ctx.settings.queue_name, connection=connection)
    registry = StartedJobRegistry(queue=queue)
    found: list[str] = []
    for job_id in registry.get_job_ids(cleanup=False):
        job = Job.fetch(job_id, connection=connection) if connection.exists(Job.key_for(job_id)) else None
        if job is None or not (job.func_name or "").startswith("workers.jobs."):
            continue
        if job.get_status() != JobStatus.STARTED or job.started_at is None:
            continue
        age = time.time() - job.started_at.timestamp()
        if age < ctx.options.lease_ttl_s or connection.exists(ctx.lease_key(job_id)):
            continue  # just started (lease not yet taken), or alive
        failures.report(job, errors.job_crashed(failures._job_step(job) if not job.kwargs.get("step")
                                                  else job.kwargs["step"], errors.abandoned()), crashed=True)
        found.append(job_id)
    return found


def release_due(ctx: Context, connection: redis.Redis) -> None:
    """Move jobs scheduled with `enqueue_in` (the watch window's looks) onto the queue once due.

    RQ's own scheduler (`with_scheduler=True`) forks a process per worker; this runs its one step in
    the watchdog's thread instead, under the same per-queue lock, so any live worker releases them
    within a watchdog interval."""
    scheduler = RQScheduler([Queue(ctx.settings.queue_name, connection=connection)], connection=connection,
                            interval=max(1, int(ctx.options.watchdog_interval_s)))
    if scheduler.acquire_locks():
        try:
            scheduler.enqueue_scheduled_jobs()
        finally:
            scheduler.release_locks()


def start(ctx: Context) -> threading.Event:
    """Run `scan` every watchdog interval in a daemon thread; set the returned event to stop it."""
    stop = threading.Event()
    connection = redis.Redis.from_url(ctx.settings.redis_url, socket_timeout=5, socket_connect_timeout=5)

    def loop() -> None:
        while not stop.wait(ctx.options.watchdog_interval_s):
            try:
                scan(ctx, connection)
                release_due(ctx, connection)
            except Exception as exc:  # Redis away: try again next round
                logger.warning("watchdog scan failed: %s", type(exc).__name__)

    threading.Thread(target=loop, name="rollback-watchdog", daemon=True).start()
    return stop
