"""After a verified change of the live target: the watch window (playbook step 7), run by the workers.

The runner's `finish` step starts it when `workers.watch_window_seconds` > 0 (`Kind.watched` in core/kinds.py
says which kinds are not watched): the request is `succeeded` with its watch's state on it (`opened`, one
write), so the watch holds nothing: the next request on the target is taken at once, and when it starts
(`supersede`, from the start check) it ends this watch as superseded, said in both threads, recorded, and the
watch's open page resolved (the new request's own pipeline and watch page from then on). Then the outcome is
posted and one look is enqueued (`start`). Each look (`watch_tick`) takes a sample (health URL and latency, smoke
command, the database's connection count and commit/rollback counters), feeds it to the pure rules of
workers/verbs/watch.py, posts one compact line per change, pages on a regression (the request's own dedup key:
one incident, however many regressions) and schedules the next look with `enqueue_in` (RQ's
scheduled-job registry; every worker's watchdog thread moves due jobs onto the queue, workers/runtime/watchdog.py),
so no worker is held for the window. The first look that sees everything healthy again after a regression
resolves its page and says so. The look after the window's end closes it; a signal still failing leaves the
page open and says so. `/rollback watch stop` (or `/rollback cancel` of the request) closes it early,
recorded in the thread and in history. Whoever closes it writes `Request.watch_ended` once.

The watch's state is on the request record (`Request.watch`), so that the bot can see it too. Nothing is
lost when a process dies:
- each look is claimed once (`watch-<n>`), so a redelivered look is a no-op;
- a look that crashes (its work-horse or whole worker killed, or it raised) is reported through
  workers/runtime/failures.py like any job: `look_failed` says so in the thread and schedules the next look if the
  dead one had not; `WATCH_MAX_FAILED_LOOKS` failures in a row end the watch as interrupted (paged);
- a look that comes much later than due (no worker ran it) says how long nobody looked;
- every look writes a `deadline`: if no look has happened (or finished) by then, nobody is watching, and
  the bot's expiry sweeper ends the watch as interrupted and pages (bot/lapsed.py), even with no worker left;
- closing is claimed for `WATCH_CLOSE_CLAIM_SECONDS` (`watch-end`): a tick, a stop and the sweeper meeting
  at the end close it once, and a closer that dies half-way leaves it to the sweeper.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import timedelta
from enum import StrEnum
from typing import Any

from rq import Queue

from core import defaults, kinds
from core.config import Target
from core.jsontypes import JsonObject
from core.requests import WATCH_CLOSE_STEP, Request
from workers import messages
from workers.messages import DONE, FAILED, PAGE, WARNING, contacts_mention
from workers.postgres import migration_history
from workers.postgres.checks import check_smoke
from workers.runtime.context import Context
from workers.runtime.escalation import dedup_key
from workers.runtime.progress import Progress
from workers.verbs import status as status_verb

TICK_JOB = "workers.jobs.watch_tick"
SMOKE_TIMEOUT_SECONDS = 30.0
LOOK_QUERY_TIMEOUT_MS = 5_000  # the look's one query of pg_stat_database: a database that hangs shows as no figures


def sample(ctx: Context, target: Target) -> Sample:
    health = status_verb.probe_health(target.health_url)
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
    return (status_verb.HEALTH_TIMEOUT_SECONDS + (SMOKE_TIMEOUT_SECONDS if target.smoke_command else 0.0)
            + ctx.options.connect_timeout_s + LOOK_QUERY_TIMEOUT_MS / 1000)


def late_after(ctx: Context) -> float:
    """A look later than this past its time was not merely waiting for the watchdog to release it."""
    return max(ctx.options.watch_interval_s, ctx.options.watchdog_interval_s) + ctx.options.watchdog_interval_s


def _restore(saved: WatchState) -> Watch:
    return Watch(Thresholds(), last=saved.last, failing={Signal(s) for s in saved.failing}, regressed=saved.regressed)


def _write(ctx: Context, request_id: str, state: WatchState, **changed: Any) -> WatchState:
    """The watch's state, on the request record (the bot's sweeper reads its deadline)."""
    for name, value in changed.items():
        setattr(state, name, value)
    ctx.store().update(request_id, watch=state.to_dict())
    return state


def _observed(watch: Watch) -> dict[str, Any]:
    return {"last": watch.last, "failing": sorted(watch.failing), "regressed": watch.regressed}


def opened(ctx: Context, request: Request, target: Target) -> WatchState:
    """The watch's first state, for the record that marks the request `succeeded` (one write: no moment in which
    it is done and unwatched); the target's watched request is named before, so the next request finds it."""
    window, interval = ctx.options.watch_window_s, ctx.options.watch_interval_s
    now = time.time()
    ctx.store().watch_target(request.id, target.name)
    return WatchState(started_at=now, ends_at=now + window, interval=interval, target=target.name, seen_at=now,
                      page_open=False)


def start(ctx: Context, request: Request, target: Target, progress: Progress) -> JsonObject:
    """Announce the watch `opened` wrote on the request and enqueue its first look."""
    current = ctx.store().get(request.id)
    state = WatchState.from_dict(current.watch) if current else opened(ctx, request, target)
    window, interval = state.ends_at - state.started_at, state.interval
    now = time.time()
    progress.post(watch_started(request.id, target.name, window, interval))
    if current is None or not current.watching:  # already ended (superseded by a request that started at once)
        return {"watching": False}
    _schedule(ctx, request.id, state, 0, now, delay=0.0)
    return {"watching": True, "ends_at": now + window}


def _schedule(ctx: Context, request_id: str, state: WatchState, n: int, now: float, *, delay: float) -> None:
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
    request = _watched(ctx, request_id)
    if request is None:
        return {"request_id": request_id, "watching": False}
    if not ctx.store().claim(request_id, f"watch-{n}"):
        return {"request_id": request_id, "duplicate": True}
    state = WatchState.from_dict(request.watch)
    if state.stopped:
        return {"request_id": request_id, "watching": False}
    target = ctx.target(request.target)
    progress = ctx.progress(request.channel, request.thread_ts)
    now = time.time()
    # This look is under way: if it has not finished by then, its process died and nobody is watching.
    _write(ctx, request_id, state, deadline=now + look_budget(ctx, target) + ctx.options.watch_grace_s)
    unseen = now - (state.looked_at or state.started_at or now)
    interval = state.interval or ctx.options.watch_interval_s
    if n > 0 and unseen > interval + late_after(ctx):  # nobody looked for longer than the schedule explains
        progress.post(watch_gap(unseen, state.looked_at or now))
        state.unwatched_s += unseen - interval
    watch = _restore(state)
    first = watch.last is None
    taken = sample(ctx, target)
    changes = watch.observe(taken)
    if first:  # the baseline every later line compares with
        progress.post(watch_baseline(taken))
    for change in changes:
        progress.post(watch_change(change))
    regressions = [c for c in changes if c.regression]
    if regressions:
        _page(ctx, request, target, progress, regressions)
        state.page_open = True
    elif watch.clean and _page_open(ctx, request_id, state):  # healthy again: the regression's page is over
        result = ctx.pager().resolve(dedup_key(request_id))
        progress.post(messages.watch_page_resolved(request_id, result.ok, result.detail))
        state.page_open = not result.ok
    done_at = time.time()
    for name, value in {**_observed(watch), "looks": n + 1, "seen_at": taken.at, "looked_at": done_at,
                        "failed_looks": 0}.items():
        setattr(state, name, value)
    if done_at >= state.ends_at:
        _write(ctx, request_id, state)
        return finish(ctx, request, target, progress, watch, paged=_page_open(ctx, request_id, state), state=state)
    _schedule(ctx, request_id, state, n + 1, done_at, delay=interval)
    return {"request_id": request_id, "tick": n, "changes": [asdict(c) for c in changes]}


def look_failed(ctx: Context, request_id: str, n: int, error: str) -> JsonObject:
    """Look `n` crashed or raised (reported by workers/runtime/failures.py): said in the thread; the next look is
    scheduled if the dead one had not done it; too many failed looks in a row end the watch as interrupted."""
    request = _watched(ctx, request_id)
    if request is None:
        return {"request_id": request_id, "watching": False}
    state = WatchState.from_dict(request.watch)
    if state.stopped or (state.next or 0) > n:  # stopped, or the look had done all its work
        return {"request_id": request_id, "watching": not state.stopped}
    progress = ctx.progress(request.channel, request.thread_ts)
    failed = state.failed_looks + 1
    state.failed_looks = failed
    if failed >= defaults.WATCH_MAX_FAILED_LOOKS:
        return interrupt(ctx, request, progress, state, looks_failed(failed, error))
    interval = state.interval or ctx.options.watch_interval_s
    progress.post(watch_look_failed(n, error, interval))
    _schedule(ctx, request_id, state, n + 1, time.time(), delay=interval)  # it died before scheduling its successor
    return {"request_id": request_id, "look_failed": n, "failed_looks": failed}


def _page_open(ctx: Context, request_id: str, state: WatchState) -> bool:
    """Whether the watch's page is open (a watch from before `page_open` was kept: whether it paged at all)."""
    if state.page_open is not None:
        return state.page_open
    return ctx.load_state(request_id).paged


def _closing(ctx: Context, request: Request) -> Request | None:
    """Claim the watch's end (once: a tick, a stop, a new request and the sweeper may meet there); the request as
    it is now, or None when someone else closes it or it is already over."""
    if not ctx.store().claim(request.id, WATCH_CLOSE_STEP, defaults.WATCH_CLOSE_CLAIM_SECONDS):
        return None
    return _watched(ctx, request.id)


def _watched(ctx: Context, request_id: str) -> Request | None:
    """The request as it is now while its watch is open; None once it is gone or its watch is over."""
    request = ctx.store().get(request_id)
    return request if request is not None and request.watching else None


def _page(ctx: Context, request: Request, target: Target, progress: Progress, regressions: list[Change]) -> None:
    what = ", ".join(f"{c.signal.value} {c.before} → {c.after}" for c in regressions)
    links = []
    permalink = progress.permalink()
    if permalink:
        links.append({"href": permalink, "text": "Slack incident thread"})
    result = ctx.pager().trigger(dedup_key(request.id), watch_page_summary(target.name, request.id, what),
                                 component=target.name, links=links,
                                 details={"request_id": request.id, "regressions": what})
    ctx.save_state(request.id, paged=True)
    progress.post(watch_paged(request.id, what, result.ok, result.detail))


def finish(ctx: Context, request: Request, target: Target, progress: Progress, watch: Watch, *, paged: bool,
           state: WatchState, stopped_by: str | None = None) -> JsonObject:
    """The window's end (or `watch stop`): the page resolved when clean, the watch ended, recorded."""
    if _closing(ctx, request) is None:
        return {"request_id": request.id, "duplicate": True}  # a tick and a stop meeting at the end: one closes it
    clean = watch.clean
    resolved = None
    if paged and clean:
        resolved = ctx.pager().resolve(dedup_key(request.id))
    failing = sorted(s.value for s in watch.failing)
    unwatched = state.unwatched_s
    outcome = watch_outcome(clean, failing, stopped_by, unwatched)
    ctx.store().end_watch(request.id, "stopped" if stopped_by else "completed",
                          outcome=f"{request.outcome or 'done'}; {outcome}")
    _record(ctx, target, request, "stopped" if stopped_by else "completed", stopped_by or request.requester,
            {"clean": clean, "failing": failing, "regressed": watch.regressed, "unwatched_s": round(unwatched, 1),
             "page_resolved": bool(resolved and resolved.ok)})
    progress.post(watch_ended(request.id, target.name, clean, failing, stopped_by,
                                                resolved=bool(resolved and resolved.ok), unwatched_s=unwatched),
                  broadcast=True)
    return {"request_id": request.id, "watch": "ended", "clean": clean, "failing": failing}


def interrupt(ctx: Context, request: Request, progress: Progress, state: WatchState, reason: str) -> JsonObject:
    """The watch cannot go on (its looks keep failing): ended truthfully, what was last seen, and paged, since
    nobody watches the rest of the window. The request is done (its change succeeded and was verified)."""
    if _closing(ctx, request) is None:
        return {"request_id": request.id, "duplicate": True}
    target = ctx.target(request.target)
    seen = watch_seen(state.last, state.failing)
    links = []
    permalink = progress.permalink()
    if permalink:
        links.append({"href": permalink, "text": "Slack incident thread"})
    # Paged first and the record made final last: a closer that dies half-way leaves it to the bot's sweeper.
    result = ctx.pager().trigger(dedup_key(request.id), watch_interrupted_summary(target.name, request.id, reason),
                                 component=target.name, links=links,
                                 details={"request_id": request.id, "reason": reason, "last_seen": seen})
    ctx.save_state(request.id, paged=True)
    progress.post(watch_interrupted(request.id, target.name, reason, seen,
                                                      state.seen_at,
                                                      ctx.settings.contacts_for(target), result.ok, result.detail),
                  broadcast=True)
    _record(ctx, target, request, "interrupted", request.requester,
            {"reason": reason, "last_seen": seen, "failing": list(state.failing), "paged": result.ok})
    ctx.store().end_watch(request.id, "interrupted",
                          outcome=f"{request.outcome or 'done'}; {watch_interrupted_outcome(reason)}")
    return {"request_id": request.id, "watch": "interrupted", "reason": reason}


def _record(ctx: Context, target: Target, request: Request, status: str, by: str, details: JsonObject) -> None:
    try:
        with ctx.connect(target) as conn:
            migration_history.record(conn, operation="watch", status=status, executed_by=by, request_id=request.id,
                           details=details)
    except Exception:  # noqa: BLE001 - the database may be what is failing: the thread still says it
        pass


def stop(ctx: Context, request_id: str, by: str) -> JsonObject:
    """`/rollback watch stop` (or `cancel` of the request): the window ends now (the next tick finds it over)."""
    request = _watched(ctx, request_id)
    if request is None:
        return {"request_id": request_id, "stopped": False}
    state = WatchState.from_dict(request.watch)
    if state.stopped:
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
    state = WatchState.from_dict(old.watch)
    target = ctx.target(old.target)
    old_progress = ctx.progress(old.channel, old.thread_ts)
    resolved = None
    if _page_open(ctx, old.id, state):
        resolved = ctx.pager().resolve(dedup_key(old.id))
    seen = watch_seen(state.last, state.failing)
    old_progress.post(messages.watch_superseded(old.id, target.name, request.id, progress.permalink(), seen,
                                                         resolved.ok if resolved else None),
                      broadcast=True)
    progress.post(messages.watch_handed_over(request.id, old.id, old_progress.permalink(), seen,
                                                      resolved.ok if resolved else None))
    _record(ctx, target, old, "superseded", request.requester,
            {"by_request": request.id, "last_seen": seen, "failing": list(state.failing),
             "page_resolved": bool(resolved and resolved.ok)})
    ctx.store().end_watch(old.id, "superseded",
                          outcome=f"{old.outcome or 'done'}; {messages.watch_superseded_outcome(request.id)}")
    return {"request_id": old.id, "watch": "superseded", "by": request.id}


WATCH_WORDS = {"health": "health", "smoke": "smoke test", "error_rate": "error rate", "connections": "connections"}


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


def watch_started(request_id: str, target: str, window: float, interval: float) -> str:
    return (f":eyes: {request_id}: watching *{target}* for {_minutes(window)} (every {interval:g} s): health, "
            "smoke test, connections, error rate. One line per change; `/rollback watch stop` ends it early, and so does "
            "the next request on the target when it starts.")


def watch_change(change: Any) -> str:
    icon = FAILED if change.regression else (DONE if change.after in ("ok",) else WARNING)
    return f"{icon} watch: {WATCH_WORDS.get(change.signal.value, change.signal.value)} {change.before} → {change.after}"


def watch_page_summary(target: str, request_id: str, what: str) -> str:
    return f"rollback-bot: {target} regressed after {request_id}: {what}"


def watch_paged(request_id: str, what: str, ok: bool, detail: str | None) -> str:
    if ok:
        return f"{PAGE} {request_id}: paged on-call (same incident as the request): {what}"
    return f"{WARNING} {request_id}: could not page on-call ({detail}): {what}"


def _unwatched(seconds_: float) -> str:
    return f" ({seconds_:.0f} s unwatched)" if seconds_ >= 1 else ""


def watch_outcome(clean: bool, failing: Sequence[str], stopped_by: str | None, unwatched_s: float = 0.0) -> str:
    how = f"watch stopped early by {stopped_by}" if stopped_by else "watch window ended"
    state = ", clean" if clean else f" with {', '.join(failing)} failing"
    return f"{how}{state}{_unwatched(unwatched_s)}"


def watch_ended(request_id: str, target: str, clean: bool, failing: Sequence[str], stopped_by: str | None, *,
                resolved: bool, unwatched_s: float = 0.0) -> str:
    how = f"stopped early by <@{stopped_by}>" if stopped_by else "ended"
    gaps = f" Nobody looked for {unwatched_s:.0f} s of it (see above)." if unwatched_s >= 1 else ""
    if clean:
        page = " The page is resolved." if resolved else ""
        return f"{DONE} {request_id}: the watch of *{target}* {how}, clean; the request is done.{page}{gaps}"
    return (f"{WARNING} {request_id}: the watch of *{target}* {how} with {', '.join(failing)} failing; the page "
            f"stays open for on-call.{gaps}")


def _utc_clock(unix: float) -> str:
    return time.strftime("%H:%M:%S UTC", time.gmtime(unix))


def watch_gap(unseen_s: float, since: float) -> str:
    return (f"{WARNING} watch: no look for {unseen_s:.0f} s (since {_utc_clock(since)}): no worker ran the watch in "
            "that time; watching on")


def watch_look_failed(n: int, error: str, interval: float) -> str:
    return f"{WARNING} watch: look {n + 1} did not finish ({error}); watching on, next look in {interval:g} s"


def looks_failed(count: int, error: str) -> str:
    return f"{count} looks in a row did not finish (last: {error})"


def watch_seen(last: Sample | None, failing: Sequence[str]) -> str:
    """What the last look saw, for the line that says the watch stopped before its end."""
    if not last:
        return "nothing (no look finished)"
    seen = _sample_text(last)
    return f"{seen}; failing: {', '.join(failing)}" if failing else seen


def watch_interrupted_summary(target: str, request_id: str, reason: str) -> str:
    return f"rollback-bot: the watch of {target} after {request_id} was interrupted, nobody watches it: {reason}"[:1000]


def watch_interrupted(request_id: str, target: str, reason: str, seen: str, seen_at: float, contacts: Sequence[str],
                      paged: bool, page_detail: str) -> str:
    page = "PagerDuty paged" if paged else f"PagerDuty NOT paged: {page_detail}"
    when = f" at {_utc_clock(seen_at)}" if seen_at else ""
    return (f"{PAGE} {request_id}: watch interrupted: {reason}. Last seen{when}: {seen}. Nobody watches the rest of "
            f"the window on *{target}*; the request is done. {contacts_mention(contacts)} — "
            f"{page}.")


def watch_interrupted_outcome(reason: str) -> str:
    return f"watch interrupted: {reason}"


def _sample_text(sample: Sample) -> str:
    health = _ok(sample.health_ok)
    if sample.health_ms is not None and sample.health_ok is not None:
        health += f" ({sample.health_ms:.0f} ms)"
    smoke = _ok(sample.smoke_ok)
    connections = sample.connections
    return f"health {health}, smoke test {smoke}, connections {connections if connections is not None else 'n/a'}"


def watch_baseline(sample: Sample) -> str:
    return f":eyes: watch, first look: {_sample_text(sample)}"


class Signal(StrEnum):
    HEALTH = "health"
    SMOKE = "smoke"
    ERROR_RATE = "error_rate"
    CONNECTIONS = "connections"


@dataclass(frozen=True)
class Sample:
    at: float  # seconds (monotonic or epoch, as long as one watch uses one)
    health_ok: bool | None = None  # None: no health URL configured
    health_ms: float | None = None
    smoke_ok: bool | None = None  # None: no smoke command configured
    connections: int | None = None
    commits: int | None = None  # pg_stat_database.xact_commit, cumulative
    rollbacks: int | None = None  # pg_stat_database.xact_rollback, cumulative


@dataclass
class WatchState:
    """The watch's state on the request record (`Request.watch`, JSON in Redis: `to_dict` / `from_dict`): its
    schedule, what the last look saw, and `deadline`, which the bot's sweeper reads (bot/expiry.py)."""

    started_at: float = 0.0
    ends_at: float = 0.0
    interval: float = 0.0
    target: str = ""
    looks: int = 0
    seen_at: float = 0.0  # when the last look's sample was taken
    failed_looks: int = 0  # in a row
    unwatched_s: float = 0.0  # time nobody looked, beyond the schedule
    page_open: bool | None = None  # None: a watch from before it was kept
    next: int | None = None  # the look scheduled next
    due_at: float | None = None
    deadline: float | None = None
    looked_at: float | None = None
    stopped: dict[str, Any] | None = None  # `watch stop`: by whom, when
    last: Sample | None = None
    failing: list[str] = field(default_factory=list)
    regressed: bool = False

    def to_dict(self) -> JsonObject:
        return {name: value for name, value in asdict(self).items() if value is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WatchState:
        known = ({f.name for f in fields(cls)} - {"last"}) & data.keys()
        state = cls(**{name: data[name] for name in known if data[name] is not None})
        if isinstance(data.get("last"), Mapping):
            state.last = Sample(**data["last"])
        return state


@dataclass(frozen=True)
class Thresholds:
    # Share of transactions rolled back between two samples above which the app is failing.
    max_error_rate: float = 0.05
    # Ignore error rates measured over fewer transactions than this (a quiet minute is not a signal).
    min_transactions: int = 20
    # A change of the connection count by this factor either way is reported (not paged: it may be a deploy).
    connections_factor: float = 2.0


@dataclass(frozen=True)
class Change:
    signal: Signal
    before: str
    after: str
    regression: bool  # True: worse (pages); False: recovered or merely different (a line only)


def error_rate(previous: Sample, current: Sample, min_transactions: int) -> float | None:
    """Rolled-back share of the transactions between two samples; None when there were too few."""
    if None in (previous.commits, previous.rollbacks, current.commits, current.rollbacks):
        return None
    commits = int(current.commits or 0) - int(previous.commits or 0)
    rollbacks = int(current.rollbacks or 0) - int(previous.rollbacks or 0)
    total = commits + rollbacks
    if total < min_transactions or total <= 0:
        return None
    return rollbacks / total


def _ok(value: bool | None) -> str:
    return "n/a" if value is None else ("ok" if value else "failing")


@dataclass
class Watch:
    thresholds: Thresholds = field(default_factory=Thresholds)
    last: Sample | None = None
    failing: set[Signal] = field(default_factory=set)  # signals in regression right now
    regressed: bool = False  # anything regressed at any time in the window

    def observe(self, sample: Sample) -> list[Change]:
        changes: list[Change] = []
        previous, self.last = self.last, sample
        if previous is None:
            for signal, ok in ((Signal.HEALTH, sample.health_ok), (Signal.SMOKE, sample.smoke_ok)):
                if ok is False:  # failing from the first look: a regression to report at once
                    changes.append(self._flip(signal, "n/a", "failing", regressed=True))
            return changes
        for signal, before, after in ((Signal.HEALTH, previous.health_ok, sample.health_ok),
                                      (Signal.SMOKE, previous.smoke_ok, sample.smoke_ok)):
            if after is None or before == after:
                continue
            changes.append(self._flip(signal, _ok(before), _ok(after), regressed=after is False))
        rate = error_rate(previous, sample, self.thresholds.min_transactions)
        if rate is not None:
            high = rate > self.thresholds.max_error_rate
            if high != (Signal.ERROR_RATE in self.failing):
                changes.append(self._flip(Signal.ERROR_RATE, "normal" if high else "high", f"{rate:.1%}", regressed=high))
        if previous.connections and sample.connections is not None:
            factor = self.thresholds.connections_factor
            if sample.connections >= previous.connections * factor or sample.connections * factor <= previous.connections:
                changes.append(Change(Signal.CONNECTIONS, str(previous.connections), str(sample.connections), False))
        return changes

    def _flip(self, signal: Signal, before: str, after: str, *, regressed: bool) -> Change:
        if regressed:
            self.failing.add(signal)
            self.regressed = True
        else:
            self.failing.discard(signal)
        return Change(signal, before, after, regressed)

    @property
    def clean(self) -> bool:
        """Nothing is failing now (the page, if any, can be resolved when the window ends)."""
        return not self.failing
