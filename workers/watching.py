"""After a verified change of the live target: the watch window (playbook step 7), run by the workers.

The runner's `finish` step starts it when `workers.watch_window_seconds` > 0 (`Kind.watched` in core/kinds.py
says which kinds are not watched): the request is `succeeded` with its watch's state on it (`opened`, one
write), so the watch holds nothing: the next request on the target is taken at once, and when it starts
(`supersede`, from the start check) it ends this watch as superseded, said in both threads, recorded, and the
watch's open page resolved (the new request's own pipeline and watch page from then on). Then the outcome is
posted and one look is enqueued (`start`). Each look (`watch_tick`) takes a sample (health URL and latency, smoke
command, the database's connection count and commit/rollback counters), feeds it to the pure rules of
workers/watch.py, posts one compact line per change, pages on a regression (the request's own dedup key:
one incident, however many regressions) and schedules the next look with `enqueue_in` (RQ's
scheduled-job registry; every worker's watchdog thread moves due jobs onto the queue, workers/watchdog.py),
so no worker is held for the window. The first look that sees everything healthy again after a regression
resolves its page and says so. The look after the window's end closes it; a signal still failing leaves the
page open and says so. `/rollback watch stop` (or `/rollback cancel` of the request) closes it early,
recorded in the thread and in history. Whoever closes it writes `Request.watch_ended` once.

The watch's state is on the request record (`Request.watch`), so that the bot can see it too. Nothing is
lost when a process dies:
- each look is claimed once (`watch-<n>`), so a redelivered look is a no-op;
- a look that crashes (its work-horse or whole worker killed, or it raised) is reported through
  workers/failures.py like any job: `look_failed` says so in the thread and schedules the next look if the
  dead one had not; `WATCH_MAX_FAILED_LOOKS` failures in a row end the watch as interrupted (paged);
- a look that comes much later than due (no worker ran it) says how long nobody looked;
- every look writes a `deadline`: if no look has happened (or finished) by then, nobody is watching, and
  the bot's expiry sweeper ends the watch as interrupted and pages (bot/lapsed.py), even with no worker left;
- closing is claimed for `WATCH_CLOSE_CLAIM_SECONDS` (`watch-end`): a tick, a stop and the sweeper meeting
  at the end close it once, and a closer that dies half-way leaves it to the sweeper.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from datetime import timedelta
from typing import Any

from rq import Queue

from core import defaults, kinds
from core.config import Target
from core.jobs import WATCH_CLOSE_STEP
from core.jsontypes import JsonObject
from core.requests import Request
from workers import assessment, history, incident_messages
from workers.context import Context
from workers.paging import dedup_key
from workers.progress import Progress
from workers.verify import check_smoke
from workers.watch import Change, Sample, Signal, Thresholds, Watch

TICK_JOB = "workers.jobs.watch_tick"
SMOKE_TIMEOUT_SECONDS = 30.0
LOOK_QUERY_TIMEOUT_MS = 5_000  # the look's one query of pg_stat_database: a database that hangs shows as no figures


def sample(ctx: Context, target: Target) -> Sample:
    health = assessment.probe_health(target.health_url)
    smoke = check_smoke(target.smoke_command, target.name, SMOKE_TIMEOUT_SECONDS) if target.smoke_command else None
    connections = commits = rollbacks = None
    try:
        with ctx.connect(target) as conn:
            conn.execute("SELECT set_config('statement_timeout', %s, false)", (str(LOOK_QUERY_TIMEOUT_MS),))
            row = conn.execute("SELECT numbackends, xact_commit, xact_rollback FROM pg_stat_database"
                               " WHERE datname = current_database()").fetchone()
        if row:
            connections, commits, rollbacks = int(row[0]), int(row[1]), int(row[2])
    except Exception:  # noqa: BLE001 - an unreachable database shows as no figures; health says the rest
        pass
    return Sample(at=time.time(), health_ok=health.ok, health_ms=health.latency_ms,
                  smoke_ok=smoke.passed if smoke is not None else None, connections=connections, commits=commits,
                  rollbacks=rollbacks)


def look_budget(ctx: Context, target: Target) -> float:
    """The longest one look may take: its health probe, smoke command and database query."""
    return (assessment.HEALTH_TIMEOUT_SECONDS + (SMOKE_TIMEOUT_SECONDS if target.smoke_command else 0.0)
            + ctx.options.connect_timeout_s + LOOK_QUERY_TIMEOUT_MS / 1000)


def late_after(ctx: Context) -> float:
    """A look later than this past its time was not merely waiting for the watchdog to release it."""
    return max(ctx.options.watch_interval_s, ctx.options.watchdog_interval_s) + ctx.options.watchdog_interval_s


def _restore(saved: JsonObject) -> Watch:
    last = saved.get("last")
    return Watch(Thresholds(), last=Sample(**last) if last else None,
                 failing={Signal(s) for s in saved.get("failing") or ()}, regressed=bool(saved.get("regressed")))


def _write(ctx: Context, request_id: str, state: JsonObject, **fields: Any) -> JsonObject:
    """The watch's state, on the request record (the bot's sweeper reads its deadline)."""
    state.update(fields)
    ctx.store().update(request_id, watch=state)
    return state


def _observed(watch: Watch) -> JsonObject:
    return {"last": asdict(watch.last) if watch.last else None, "failing": sorted(watch.failing),
            "regressed": watch.regressed}


def opened(ctx: Context, request: Request, target: Target) -> JsonObject:
    """The watch's first state, for the record that marks the request `succeeded` (one write: no moment in which
    it is done and unwatched); the target's watched request is named before, so the next request finds it."""
    window, interval = ctx.options.watch_window_s, ctx.options.watch_interval_s
    now = time.time()
    ctx.store().watch_target(request.id, target.name)
    return {"started_at": now, "ends_at": now + window, "interval": interval, "target": target.name,
            "looks": 0, "seen_at": now, "failed_looks": 0, "unwatched_s": 0.0, "page_open": False}


def start(ctx: Context, request: Request, target: Target, progress: Progress) -> JsonObject:
    """Announce the watch `opened` wrote on the request and enqueue its first look."""
    current = ctx.store().get(request.id)
    state: JsonObject = dict(current.watch) if current else opened(ctx, request, target)
    window, interval = float(state["ends_at"]) - float(state["started_at"]), float(state["interval"])
    now = time.time()
    progress.post(incident_messages.watch_started(request.id, target.name, window, interval))
    if current is None or not current.watching:  # already ended (superseded by a request that started at once)
        return {"watching": False}
    _schedule(ctx, request.id, state, 0, now, delay=0.0)
    return {"watching": True, "ends_at": now + window}


def _schedule(ctx: Context, request_id: str, state: JsonObject, n: int, now: float, *, delay: float) -> None:
    """Enqueue look `n` (after `delay`), then record it: a process that dies in between leaves the job, and a
    second enqueue of the same look is a no-op by its claim."""
    queue = Queue(ctx.settings.queue_name, connection=ctx.redis)
    kwargs = {"request_id": request_id, "tick": n}
    job_id = f"{request_id}-watch-{n}"
    if delay <= 0:
        queue.enqueue(TICK_JOB, kwargs=kwargs, job_id=job_id, description=f"{request_id} watch {n}")
    else:
        queue.enqueue_in(timedelta(seconds=delay), TICK_JOB, kwargs=kwargs, job_id=job_id,
                         description=f"{request_id} watch {n}")
    due = now + max(delay, 0.0)
    _write(ctx, request_id, state, next=n, due_at=due, deadline=due + late_after(ctx) + ctx.options.watch_grace_s)


def tick(ctx: Context, request_id: str, n: int) -> JsonObject:
    request = ctx.store().get(request_id)
    if request is None or not request.watching:
        return {"request_id": request_id, "watching": False}
    if not ctx.store().claim(request_id, f"watch-{n}"):
        return {"request_id": request_id, "duplicate": True}
    state: JsonObject = dict(request.watch)
    if state.get("stopped"):
        return {"request_id": request_id, "watching": False}
    target = ctx.target(request.target)
    progress = ctx.progress(request.channel, request.thread_ts)
    now = time.time()
    # This look is under way: if it has not finished by then, its process died and nobody is watching.
    _write(ctx, request_id, state, deadline=now + look_budget(ctx, target) + ctx.options.watch_grace_s)
    unseen = now - float(state.get("looked_at") or state.get("started_at") or now)
    interval = float(state.get("interval") or ctx.options.watch_interval_s)
    if n > 0 and unseen > interval + late_after(ctx):  # nobody looked for longer than the schedule explains
        progress.post(incident_messages.watch_gap(unseen, float(state.get("looked_at") or now)))
        state["unwatched_s"] = float(state.get("unwatched_s") or 0.0) + unseen - interval
    watch = _restore(state)
    first = watch.last is None
    taken = sample(ctx, target)
    changes = watch.observe(taken)
    if first:  # the baseline every later line compares with
        progress.post(incident_messages.watch_baseline(asdict(taken)))
    for change in changes:
        progress.post(incident_messages.watch_change(change))
    regressions = [c for c in changes if c.regression]
    if regressions:
        _page(ctx, request, target, progress, regressions)
        state["page_open"] = True
    elif watch.clean and _page_open(ctx, request_id, state):  # healthy again: the regression's page is over
        result = ctx.pager().resolve(dedup_key(request_id))
        progress.post(incident_messages.watch_page_resolved(request_id, result.ok, result.detail))
        state["page_open"] = not result.ok
    done_at = time.time()
    state.update(_observed(watch), looks=n + 1, seen_at=taken.at, looked_at=done_at, failed_looks=0)
    if done_at >= float(state.get("ends_at") or 0):
        _write(ctx, request_id, state)
        return finish(ctx, request, target, progress, watch, paged=_page_open(ctx, request_id, state), state=state)
    _schedule(ctx, request_id, state, n + 1, done_at, delay=interval)
    return {"request_id": request_id, "tick": n, "changes": [asdict(c) for c in changes]}


def look_failed(ctx: Context, request_id: str, n: int, error: str) -> JsonObject:
    """Look `n` crashed or raised (reported by workers/failures.py): said in the thread; the next look is
    scheduled if the dead one had not done it; too many failed looks in a row end the watch as interrupted."""
    request = ctx.store().get(request_id)
    if request is None or not request.watching:
        return {"request_id": request_id, "watching": False}
    state: JsonObject = dict(request.watch)
    if state.get("stopped") or int(state.get("next") or 0) > n:  # stopped, or the look had done all its work
        return {"request_id": request_id, "watching": bool(not state.get("stopped"))}
    progress = ctx.progress(request.channel, request.thread_ts)
    failed = int(state.get("failed_looks") or 0) + 1
    state["failed_looks"] = failed
    if failed >= defaults.WATCH_MAX_FAILED_LOOKS:
        return interrupt(ctx, request, progress, state, incident_messages.looks_failed(failed, error))
    interval = float(state.get("interval") or ctx.options.watch_interval_s)
    progress.post(incident_messages.watch_look_failed(n, error, interval))
    _schedule(ctx, request_id, state, n + 1, time.time(), delay=interval)  # it died before scheduling its successor
    return {"request_id": request_id, "look_failed": n, "failed_looks": failed}


def _page_open(ctx: Context, request_id: str, state: JsonObject) -> bool:
    """Whether the watch's page is open (a watch from before `page_open` was kept: whether it paged at all)."""
    if "page_open" in state:
        return bool(state["page_open"])
    return bool(ctx.load_state(request_id).get("paged"))


def _closing(ctx: Context, request: Request) -> Request | None:
    """Claim the watch's end (once: a tick, a stop, a new request and the sweeper may meet there); the request as
    it is now, or None when someone else closes it or it is already over."""
    if not ctx.store().claim(request.id, WATCH_CLOSE_STEP, defaults.WATCH_CLOSE_CLAIM_SECONDS):
        return None
    current = ctx.store().get(request.id)
    return current if current is not None and current.watching else None


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
           state: JsonObject, stopped_by: str | None = None) -> JsonObject:
    """The window's end (or `watch stop`): the page resolved when clean, the watch ended, recorded."""
    if _closing(ctx, request) is None:
        return {"request_id": request.id, "duplicate": True}  # a tick and a stop meeting at the end: one closes it
    clean = watch.clean
    resolved = None
    if paged and clean:
        resolved = ctx.pager().resolve(dedup_key(request.id)).to_dict()
    failing = sorted(s.value for s in watch.failing)
    unwatched = float(state.get("unwatched_s") or 0.0)
    outcome = incident_messages.watch_outcome(clean, failing, stopped_by, unwatched)
    ctx.store().end_watch(request.id, "stopped" if stopped_by else "completed",
                          outcome=f"{request.outcome or 'done'}; {outcome}")
    _record(ctx, target, request, "stopped" if stopped_by else "completed", stopped_by or request.requester,
            {"clean": clean, "failing": failing, "regressed": watch.regressed, "unwatched_s": round(unwatched, 1),
             "page_resolved": bool(resolved and resolved.get("ok"))})
    progress.post(incident_messages.watch_ended(request.id, target.name, clean, failing, stopped_by,
                                                resolved=bool(resolved and resolved.get("ok")), unwatched_s=unwatched),
                  broadcast=True)
    return {"request_id": request.id, "watch": "ended", "clean": clean, "failing": failing}


def interrupt(ctx: Context, request: Request, progress: Progress, state: JsonObject, reason: str) -> JsonObject:
    """The watch cannot go on (its looks keep failing): ended truthfully, what was last seen, and paged, since
    nobody watches the rest of the window. The request is done (its change succeeded and was verified)."""
    if _closing(ctx, request) is None:
        return {"request_id": request.id, "duplicate": True}
    target = ctx.target(request.target)
    seen = incident_messages.watch_seen(state.get("last") or {}, state.get("failing") or ())
    links = []
    permalink = progress.permalink()
    if permalink:
        links.append({"href": permalink, "text": "Slack incident thread"})
    # Paged first and the record made final last: a closer that dies half-way leaves it to the bot's sweeper.
    result = ctx.pager().trigger(dedup_key(request.id), incident_messages.watch_interrupted_summary(target.name, request.id, reason),
                                 component=target.name, links=links,
                                 details={"request_id": request.id, "reason": reason, "last_seen": seen})
    ctx.save_state(request.id, paged=True)
    progress.post(incident_messages.watch_interrupted(request.id, target.name, reason, seen,
                                                      float(state.get("seen_at") or 0.0),
                                                      ctx.settings.contacts_for(target), result.ok, result.detail),
                  broadcast=True)
    _record(ctx, target, request, "interrupted", request.requester,
            {"reason": reason, "last_seen": seen, "failing": list(state.get("failing") or ()), "paged": result.ok})
    ctx.store().end_watch(request.id, "interrupted",
                          outcome=f"{request.outcome or 'done'}; {incident_messages.watch_interrupted_outcome(reason)}")
    return {"request_id": request.id, "watch": "interrupted", "reason": reason}


def _record(ctx: Context, target: Target, request: Request, status: str, by: str, details: JsonObject) -> None:
    try:
        with ctx.connect(target) as conn:
            history.record(conn, operation="watch", status=status, executed_by=by, request_id=request.id,
                           details=details)
    except Exception:  # noqa: BLE001 - the database may be what is failing: the thread still says it
        pass


def stop(ctx: Context, request_id: str, by: str) -> JsonObject:
    """`/rollback watch stop` (or `cancel` of the request): the window ends now (the next tick finds it over)."""
    request = ctx.store().get(request_id)
    state: JsonObject = dict(request.watch) if request else {}
    if request is None or not request.watching or state.get("stopped"):
        return {"request_id": request_id, "stopped": False}
    if not ctx.store().claim(request_id, "watch-stop"):
        return {"request_id": request_id, "duplicate": True}
    _write(ctx, request_id, state, stopped={"by": by, "at": time.time()})
    return finish(ctx, request, ctx.target(request.target), ctx.progress(request.channel, request.thread_ts),
                  _restore(state), paged=_page_open(ctx, request_id, state), state=state, stopped_by=by)


def supersede(ctx: Context, request: Request, progress: Progress) -> JsonObject | None:
    """`request` (approved, starting now) holds the target: the watch running on it ends as superseded, said in
    both threads and recorded; its open page is resolved, since the new request's own pipeline and watch page
    from now on (a page left open would stay open with nobody to close it)."""
    if kinds.of(request.kind).beside_target:
        return None  # a terminate changes no schema: the watch goes on
    watched = ctx.store().watched_for_target(request.target)
    if watched is None or watched.id == request.id:
        return None
    old = _closing(ctx, watched)
    if old is None:
        return None
    state: JsonObject = dict(old.watch)
    target = ctx.target(old.target)
    old_progress = ctx.progress(old.channel, old.thread_ts)
    resolved = None
    if _page_open(ctx, old.id, state):
        resolved = ctx.pager().resolve(dedup_key(old.id))
    seen = incident_messages.watch_seen(state.get("last") or {}, state.get("failing") or ())
    old_progress.post(incident_messages.watch_superseded(old.id, target.name, request.id, progress.permalink(), seen,
                                                         resolved.ok if resolved else None),
                      broadcast=True)
    progress.post(incident_messages.watch_handed_over(request.id, old.id, old_progress.permalink(), seen,
                                                      resolved.ok if resolved else None))
    _record(ctx, target, old, "superseded", request.requester,
            {"by_request": request.id, "last_seen": seen, "failing": list(state.get("failing") or ()),
             "page_resolved": bool(resolved and resolved.ok)})
    ctx.store().end_watch(old.id, "superseded",
                          outcome=f"{old.outcome or 'done'}; {incident_messages.watch_superseded_outcome(request.id)}")
    return {"request_id": old.id, "watch": "superseded", "by": request.id}
