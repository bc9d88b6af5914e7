"""The sandbox's own state in a Redis it shares (a `REDIS_URL` the user gave): found and removed.

A sandbox run leaves request records behind in Redis. On a Redis the sandbox does not own, the next
run would find the example target still held by a request from a dead run (blocking `execute` for the
active lock's lifetime, with a link to a thread that no longer exists). So at start and stop the
sandbox removes what is provably its own, and nothing else:

- requests made in its page's channel (`C_INCIDENT`: no real Slack channel id has an underscore),
  with their claims, pipeline state and sweeper entries, and the target's active lock when one of
  those requests holds it;
- the channel's current plans;
- the target's recorded identity when it names the sandbox's own example database;
- the run's RQ queue (its name is unique to the run).
"""

from __future__ import annotations

import json
from typing import Any

import redis
from rq import Queue
from rq.job import Job

# The key prefix the bot and the workers use (core.requests.RequestStore's default, workers.runtime.context.KEY_PREFIX).
PREFIX = "rollback"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def forget_sandbox_requests(conn: redis.Redis, *, channel: str, target: str, database_name: str,
                            prefix: str = PREFIX) -> int:
    """Delete the sandbox channel's requests and what hangs off them; returns how many requests went."""
    channel_key = f"{prefix}:channel:{channel}"
    ids = [_text(i) for i in conn.zrange(channel_key, 0, -1)]
    active_key = f"{prefix}:active:{target}"
    holder = conn.get(active_key)
    if holder is not None and _text(holder) in ids:
        conn.delete(active_key)
    for request_id in ids:
        conn.delete(f"{prefix}:request:{request_id}", f"{prefix}:pipeline:{request_id}")
        claims = list(conn.scan_iter(match=f"{prefix}:claim:{request_id}:*"))
        if claims:
            conn.delete(*claims)
    if ids:
        conn.zrem(f"{prefix}:open", *ids)
    plans = list(conn.scan_iter(match=f"{prefix}:plan:{channel}:*"))
    conn.delete(channel_key, *plans)
    identity_key = f"{prefix}:identity:{target}"
    recorded = conn.get(identity_key)
    if recorded is not None:
        try:
            ours = json.loads(_text(recorded)).get("dbname") == database_name
        except (ValueError, AttributeError):
            ours = False
        if ours:
            conn.delete(identity_key)
    return len(ids)


def delete_queue(conn: redis.Redis, queue_name: str) -> None:
    """The run's queue, its registries and their jobs (the name is unique to the run, so all are its own)."""
    queue = Queue(queue_name, connection=conn)
    registries = [queue.started_job_registry, queue.finished_job_registry, queue.failed_job_registry,
                  queue.deferred_job_registry, queue.scheduled_job_registry, queue.canceled_job_registry]
    for registry in registries:
        for job in Job.fetch_many(registry.get_job_ids(cleanup=False), connection=conn):
            if job is not None:
                job.delete(remove_from_queue=False)
        conn.delete(registry.key)
    queue.delete(delete_jobs=True)
