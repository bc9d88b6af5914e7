"""After a verified rollback or restore: the watch window (playbook step 7), run by the workers.

The pipeline's `finish` step starts it when `workers.watch_window_seconds` > 0: the outcome is posted,
the request stays `running` (it holds its target) and one tick job is enqueued. Each tick takes a sample
(health URL and latency, smoke command, the database's connection count and commit/rollback counters),
feeds it to the pure rules of workers/watch.py, posts one compact line per change, pages on a
regression (the request's own dedup key: one incident, however many regressions) and schedules the
next tick with `enqueue_in` (RQ's scheduled-job registry; every worker's watchdog thread moves due jobs
onto the queue, workers/watchdog.py), so no worker is held for the window: a tick takes a second or two. The tick after the window's end closes it: clean,
the page (if any) is resolved and the request is `succeeded`; a signal still failing leaves the page
open and says so. `/rollback watch stop` closes it early, recorded in the thread and in history.
Each tick is claimed once (`watch-<n>`), so a redelivered tick is a no-op.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from datetime import timedelta
from typing import Any

from rq import Queue

from core.config import Target
from core.jsontypes import JsonObject
from core.requests import Request, RequestStatus
from workers import assessment, history, incident_messages
from workers.context import Context
from workers.paging import dedup_key
from workers.progress import Progress
from workers.verify import check_smoke
from workers.watch import Change, Sample, Signal, Thresholds, Watch

TICK_JOB = "workers.jobs.watch_tick"
SMOKE_TIMEOUT_SECONDS = 30.0


def sample(ctx: Context, target: Target) -> Sample:
    health = assessment.probe_health(target.health_url)
    smoke = check_smoke(target.smoke_command, target.name, SMOKE_TIMEOUT_SECONDS) if target.smoke_command else None
    connections = commits = rollbacks = None
    try:
        with ctx.connect(target) as conn:
            row = conn.execute("SELECT numbackends, xact_commit, xact_rollback FROM pg_stat_database"
                               " WHERE datname = current_database()").fetchone()
        if row:
            connections, commits, rollbacks = int(row[0]), int(row[1]), int(row[2])
    except Exception:  # noqa: BLE001 - an unreachable database shows as no figures; health says the rest
        pass
    return Sample(at=time.time(), health_ok=health.ok, health_ms=health.latency_ms,
                  smoke_ok=smoke.passed if smoke is not None else None, connections=connections, commits=commits,
                  rollbacks=rollbacks)


def _restore(saved: JsonObject) -> Watch:
    last = saved.get("last")
    return Watch(Thresholds(), last=Sample(**last) if last else None,
                 failing={Signal(s) for s in saved.get("failing") or ()}, regressed=bool(saved.get("regressed")))


def _save(ctx: Context, request_id: str, watch: Watch, **fields: Any) -> None:
    state = ctx.load_state(request_id).get("watch") or {}
    state.update(fields, last=asdict(watch.last) if watch.last else None, failing=sorted(watch.failing),
                 regressed=watch.regressed)
    ctx.save_state(request_id, watch=state)


def start(ctx: Context, request: Request, target: Target, progress: Progress) -> JsonObject:
    window, interval = ctx.options.watch_window_s, ctx.options.watch_interval_s
    now = time.time()
    ctx.save_state(request.id, watch={"started_at": now, "ends_at": now + window, "ticks": 0, "target": target.name})
    progress.post(incident_messages.watch_started(request.id, target.name, window, interval))
    _enqueue_tick(ctx, request.id, 0, delay=0.0)
    return {"watching": True, "ends_at": now + window}


def _enqueue_tick(ctx: Context, request_id: str, n: int, *, delay: float) -> None:
    queue = Queue(ctx.settings.queue_name, connection=ctx.redis)
    kwargs = {"request_id": request_id, "tick": n}
    job_id = f"{request_id}-watch-{n}"
    if delay <= 0:
        queue.enqueue(TICK_JOB, kwargs=kwargs, job_id=job_id, description=f"{request_id} watch {n}")
    else:
        queue.enqueue_in(timedelta(seconds=delay), TICK_JOB, kwargs=kwargs, job_id=job_id,
                         description=f"{request_id} watch {n}")


def tick(ctx: Context, request_id: str, n: int) -> JsonObject:
    request = ctx.store().get(request_id)
    if request is None or request.status is not RequestStatus.RUNNING:
        return {"request_id": request_id, "watching": False}
    if not ctx.store().claim(request_id, f"watch-{n}"):
        return {"request_id": request_id, "duplicate": True}
    state = ctx.load_state(request_id).get("watch") or {}
    if not state or state.get("stopped"):
        return {"request_id": request_id, "watching": False}
    target = ctx.target(request.target)
    progress = ctx.progress(request.channel, request.thread_ts)
    watch = _restore(state)
    first = watch.last is None
    taken = sample(ctx, target)
    changes = watch.observe(taken)
    if first:  # the baseline every later line compares with
        progress.post(incident_messages.watch_baseline(asdict(taken)))
    for change in changes:
        progress.post(incident_messages.watch_change(change))
    paged = bool(ctx.load_state(request_id).get("paged"))
    regressions = [c for c in changes if c.regression]
    if regressions:
        _page(ctx, request, target, progress, regressions)
        paged = True
    _save(ctx, request_id, watch, ticks=n + 1)
    if time.time() >= float(state.get("ends_at") or 0):
        return finish(ctx, request, target, progress, watch, paged=paged)
    _enqueue_tick(ctx, request_id, n + 1, delay=ctx.options.watch_interval_s)
    return {"request_id": request_id, "tick": n, "changes": [asdict(c) for c in changes]}


def _page(ctx: Context, request: Request, target: Target, progress: Progress, regressions: list[Change]) -> None:
    what = ", ".join(f"{c.signal.value} {c.before} → {c.after}" for c in regressions)
    links = []
    permalink = progress.permalink()
    if permalink:
        links.append({"href": permalink, "text": "Slack incident thread"})
    result = ctx.pager().trigger(dedup_key(request.id), incident_messages.watch_page_summary(target.name, request.id, what),
                                 component=target.name, links=links,
                                 details={"request_id": request.id, "regressions": what})
    ctx.save_state(request.id, paged=True)
    progress.post(incident_messages.watch_paged(request.id, what, result.ok, result.detail))


def finish(ctx: Context, request: Request, target: Target, progress: Progress, watch: Watch, *, paged: bool,
           stopped_by: str | None = None) -> JsonObject:
    """The window's end (or `watch stop`): the page resolved when clean, the request done, recorded."""
    if not ctx.store().claim(request.id, "watch-end"):  # a tick and a stop meeting at the end: one closes it
        return {"request_id": request.id, "duplicate": True}
    clean = watch.clean
    resolved = None
    if paged and clean:
        resolved = ctx.pager().resolve(dedup_key(request.id)).to_dict()
    failing = sorted(s.value for s in watch.failing)
    outcome = incident_messages.watch_outcome(clean, failing, stopped_by)
    ctx.store().set_status(request.id, RequestStatus.SUCCEEDED, finished_at=time.time(),
                           outcome=f"{request.outcome or 'done'}; {outcome}")
    try:
        with ctx.connect(target) as conn:
            history.record(conn, operation="watch", status="stopped" if stopped_by else "completed",
                           executed_by=stopped_by or request.requester, request_id=request.id,
                           details={"clean": clean, "failing": failing, "regressed": watch.regressed,
                                    "page_resolved": bool(resolved and resolved.get("ok"))})
    except Exception:  # noqa: BLE001 - the database may be what is failing: the thread still says it
        pass
    progress.post(incident_messages.watch_ended(request.id, target.name, clean, failing, stopped_by,
                                       resolved=bool(resolved and resolved.get("ok"))), broadcast=True)
    return {"request_id": request.id, "watch": "ended", "clean": clean, "failing": failing}


def stop(ctx: Context, request_id: str, by: str) -> JsonObject:
    """`/rollback watch stop`: the window ends now (the next tick finds the request done)."""
    request = ctx.store().get(request_id)
    state = ctx.load_state(request_id).get("watch") if request else None
    if request is None or not state or request.status is not RequestStatus.RUNNING or state.get("stopped"):
        return {"request_id": request_id, "stopped": False}
    if not ctx.store().claim(request_id, "watch-stop"):
        return {"request_id": request_id, "duplicate": True}
    _save(ctx, request_id, _restore(state), stopped={"by": by, "at": time.time()})
    return finish(ctx, request, ctx.target(request.target), ctx.progress(request.channel, request.thread_ts),
                  _restore(state), paged=bool(ctx.load_state(request_id).get("paged")), stopped_by=by)
