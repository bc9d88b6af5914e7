"""Is a worker listening on the queue? Judged by the freshness of each worker's heartbeat.

RQ lists a worker until its key expires (420 s by default), so a SIGKILLed worker looked alive for
minutes. At every heartbeat RQ sets the worker key's expiry to the interval until its next heartbeat
plus a fixed 60 s margin; the key's remaining TTL plus the heartbeat's age gives back that promise.
A worker whose last heartbeat is older than the interval it promised (plus a grace) is dead.
"""

from __future__ import annotations

from datetime import UTC, datetime

from rq import Queue, Worker
from rq.worker import BaseWorker

# rq/worker/base.py: `heartbeat()` and `maintain_heartbeats()` both expire the key at interval + 60 s.
RQ_HEARTBEAT_MARGIN_SECONDS = 60


def heartbeat_fresh(age_seconds: float, expires_in_seconds: float, grace_seconds: float) -> bool:
    """Pure: a heartbeat `age_seconds` old, on a key that expires in `expires_in_seconds`."""
    promised_interval = age_seconds + expires_in_seconds - RQ_HEARTBEAT_MARGIN_SECONDS
    return age_seconds <= max(promised_interval, 0.0) + grace_seconds


def _age(worker: BaseWorker, now: datetime) -> float | None:
    beat = worker.last_heartbeat
    if beat is None:
        return None
    if beat.tzinfo is None:  # RQ stores UTC without an offset
        beat = beat.replace(tzinfo=UTC)
    return max((now - beat).total_seconds(), 0.0)


def listening_workers(queue: Queue, grace_seconds: float, now: datetime | None = None) -> list[BaseWorker]:
    """The workers on `queue` whose heartbeat is fresh."""
    now = now or datetime.now(UTC)
    alive = []
    for worker in Worker.all(queue=queue):
        age = _age(worker, now)
        expires_in_ms = int(queue.connection.pttl(worker.key))
        if age is not None and expires_in_ms > 0 and heartbeat_fresh(age, expires_in_ms / 1000, grace_seconds):
            alive.append(worker)
    return alive
