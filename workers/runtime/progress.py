"""Step progress into the incident thread (slack_sdk WebClient) and into the log.

Slack is a reporting channel, never a dependency: a failed post is logged and the job carries on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from slack_sdk import WebClient

from core import defaults
from core.jsontypes import JsonObject
from workers import messages
from workers.engine.redact import redact

logger = logging.getLogger("workers.runtime.progress")

LogFunction = Callable[[str], None]


def make_client(token: str | None, api_url: str | None, timeout: int = defaults.HTTP_TIMEOUT_SECONDS) -> WebClient:
    """A Web API client; `api_url` points it at another Slack API base URL (tests, the sandbox)."""
    base = api_url or "https://slack.com/api/"
    if not base.endswith("/"):
        base += "/"
    return WebClient(token=token, base_url=base, timeout=timeout)


class Progress:
    """Posts step lines into one thread. Without a channel it only logs."""

    def __init__(
        self,
        client: WebClient | None,
        channel: str | None,
        thread_ts: str | None,
        log: LogFunction | None = None,
        *,
        interval_s: float = defaults.PROGRESS_INTERVAL_SECONDS,
        secrets: Sequence[str] = (),
    ) -> None:
        self.client = client
        self.channel = channel
        self.thread_ts = thread_ts
        self.log = log or logger.info
        self.interval_s = interval_s
        self.secrets = tuple(secrets)
        self._lock = threading.Lock()
        self._permalink: str | None = None

    @property
    def enabled(self) -> bool:
        return self.client is not None and bool(self.channel)

    def post(self, text: str, *, broadcast: bool = False) -> str | None:
        """Post one line into the thread (and the log); returns the message ts, or None if it failed.

        The last line of defence for secrets: whatever an error echoed, no password or token is posted."""
        text = redact(text, self.secrets)
        self.log(text)
        if not self.enabled:
            return None
        assert self.client is not None
        kwargs: JsonObject = {"channel": self.channel, "text": text}
        if self.thread_ts:
            kwargs["thread_ts"] = self.thread_ts
            if broadcast:
                kwargs["reply_broadcast"] = True
        try:
            with self._lock:  # a heartbeat thread and the job may post at once
                response = self.client.chat_postMessage(**kwargs)
            return str(response.get("ts") or "") or None
        except Exception as exc:  # Slack trouble never breaks the job (SlackApiError, timeouts, refused)
            logger.warning("could not post to Slack channel %s: %s", self.channel, type(exc).__name__)
            return None

    def start(self, step: str, detail: str = "") -> float:
        self.post(messages.step_started(messages.step_name(step), detail))
        return time.monotonic()

    def finish(self, step: str, started: float | None = None, figures: Mapping[str, Any] | str | None = None) -> None:
        duration = time.monotonic() - started if started is not None else None
        self.post(messages.step_finished(messages.step_name(step), figures, duration))

    def fail(self, step: str, error: str, started: float | None = None) -> None:
        duration = time.monotonic() - started if started is not None else None
        self.post(messages.step_failed(messages.step_name(step), error, duration))

    def skip(self, step: str, why: str) -> None:
        self.post(messages.step_skipped(messages.step_name(step), why))

    def permalink(self) -> str | None:
        """A link to the thread (chat.getPermalink), for pages and reports; None when unavailable."""
        if self._permalink or not self.enabled or not self.thread_ts:
            return self._permalink
        assert self.client is not None and self.channel
        try:
            response = self.client.chat_getPermalink(channel=self.channel, message_ts=self.thread_ts)
            self._permalink = str(response.get("permalink") or "") or None
        except Exception as exc:
            logger.warning("could not get a permalink for the thread: %s", type(exc).__name__)
        return self._permalink

    @contextmanager
    def heartbeat(self, step: str) -> Iterator[Heartbeat]:
        """While the block runs, post "still running" at least every `interval_s` seconds.

        The yielded Heartbeat is also a callable for steps that report their own progress
        (`take_backup(..., heartbeat=beat)`): their detail goes into the next line, rate-limited.
        """
        beat = Heartbeat(self, step)
        beat.start()
        try:
            yield beat
        finally:
            beat.stop()


class Heartbeat:
    """A background thread posting a progress line for one long step."""

    def __init__(self, progress: Progress, step: str) -> None:
        self.progress = progress
        self.step = step
        self.started = time.monotonic()
        self.last_posted = self.started
        self.detail = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{step}", daemon=True)

    def __call__(self, detail: str = "") -> None:
        """A step's own progress report: remembered, and posted if the interval has passed."""
        if detail:
            self.detail = detail
        if time.monotonic() - self.last_posted >= self.progress.interval_s:
            self._post()

    def _post(self) -> None:
        self.last_posted = time.monotonic()
        elapsed = self.last_posted - self.started
        self.progress.post(messages.still_running(messages.step_name(self.step), elapsed, self.detail))

    def _run(self) -> None:
        while not self._stop.wait(timeout=max(0.05, self.progress.interval_s / 4)):
            if time.monotonic() - self.last_posted >= self.progress.interval_s:
                self._post()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
