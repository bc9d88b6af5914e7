"""The expiry sweeper: a daemon thread in `python -m bot` that ends due requests (bot/expiry.py says
which) and has them announced, so that no expired request keeps its buttons until the next click, and
ends a watch window nobody finished (bot/lapsed.py), so that no request stays `running` for ever."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from bot import expiry, messages
from bot.expiry import Due
from core.kinds import START_STEP
from core.requests import Request, RequestStatus, RequestStore

log = logging.getLogger("rollback.bot")


class ExpirySweeper:
    def __init__(
        self,
        store: RequestStore,
        announce: Callable[[Request], None],
        *,
        start_within_seconds: float,
        clock: Callable[[], float],
        close_watch: Callable[[Request], Request] | None = None,
    ) -> None:
        self.store = store
        self.announce = announce
        self.start_within_seconds = start_within_seconds
        self.clock = clock
        self.close_watch = close_watch

    def sweep(self) -> list[Request]:
        """One pass: every due request is marked expired (atomically) and announced, every lapsed watch
        ended; returns them."""
        ended = []
        for request in self.store.open_requests():
            try:
                current = self.settle(request)
            except Exception as err:  # one request's trouble (Slack away) does not hold up the others
                log.error("expiry sweep of %s failed: %s: %s", request.id, type(err).__name__, err)
                continue
            if current is not None:
                ended.append(current)
        return ended

    def settle(self, request: Request) -> Request | None:
        verdict = expiry.due(request, self.clock(), self.start_within_seconds)
        if verdict is Due.WATCH_LAPSED:
            current = self.close_watch(request) if self.close_watch else request
            ended = not current.watching
        else:
            current = self.end(request, verdict) if verdict else request
            ended = current.status is RequestStatus.EXPIRED
            if ended:
                self.announce(current)
        if not expiry.watched(current):
            self.store.forget(current.id)
        return current if ended else None

    def end(self, request: Request, verdict: Due) -> Request:
        now = self.clock()
        if verdict is Due.UNANSWERED:
            # the same atomic script as a click: pending past expires_at becomes expired, never approved
            return self.store.expire_if_due(request.id, now=now)
        # Claim the worker's start step: from now on a late job finds it taken and runs nothing;
        # if the worker claimed it first, it owns the request (it refuses a late start itself).
        if not self.store.claim(request.id, START_STEP):
            return request
        return self.store.set_status(request.id, RequestStatus.EXPIRED, finished_at=now,
                                     outcome=messages.not_started_outcome(self.start_within_seconds))

    def start(self, interval_seconds: float, *, busy: threading.Lock | None = None) -> Sweeping:
        """Sweep every `interval_seconds` in a daemon thread, each pass holding `busy` when given (the
        web server forks only while no pass runs); `stop()` the returned handle to end it."""
        stop = threading.Event()
        busy = busy or threading.Lock()

        def loop() -> None:
            while not stop.wait(interval_seconds):
                with busy:
                    try:
                        self.sweep()
                    except Exception as err:  # Redis or Slack away for a moment: the next pass retries
                        log.error("expiry sweep failed: %s: %s", type(err).__name__, err)

        thread = threading.Thread(target=loop, name="expiry-sweeper", daemon=True)
        thread.start()
        return Sweeping(thread, stop)


class Sweeping:
    """A running sweeper thread."""

    def __init__(self, thread: threading.Thread, stop: threading.Event) -> None:
        self.thread = thread
        self.stop_event = stop

    def stop(self, timeout: float | None = None) -> bool:
        """Ask the thread to stop, let a pass under way finish (up to `timeout`); True once it has ended."""
        self.stop_event.set()
        self.thread.join(timeout)
        return not self.thread.is_alive()
