"""Paging through PagerDuty Events API v2: the client both processes use (the workers page a failed step or a
regression; the bot pages a watch window no worker finished, when no worker is left to do it).

One incident per rollback request: the `dedup_key` is derived from the request id, so a retried job
or a second failure of the same request updates the open incident instead of opening another, and
the request's later success resolves it. 429 and 5xx are retried with bounded backoff; a 400 means
the event itself is wrong and is never retried.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import requests

from core import defaults
from core.jsontypes import JsonObject

logger = logging.getLogger("rollback.paging")

SOURCE = "rollback-bot"


def paging_not_configured() -> str:
    return "PAGERDUTY_ROUTING_KEY is not set"


def paging_rejected(status: int, body: str) -> str:
    return f"PagerDuty refused the event (HTTP {status}): {body[:200]}"


def paging_gave_up(attempts: int, last: str) -> str:
    return f"PagerDuty did not accept the event after {attempts} attempts ({last})"


def dedup_key(request_id: str) -> str:
    """Stable per request: every trigger and the resolve of one request meet one incident."""
    return f"rollback-bot/{request_id}"


@dataclass(frozen=True)
class PageResult:
    ok: bool
    action: str
    dedup_key: str
    attempts: int = 0
    status: int | None = None
    detail: str = ""
    skipped: bool = False

    def to_dict(self) -> JsonObject:
        return asdict(self)


@dataclass
class Pager:
    routing_key: str | None
    events_url: str = defaults.PAGERDUTY_EVENTS_URL
    timeout_s: float = defaults.HTTP_TIMEOUT_SECONDS
    max_attempts: int = defaults.PAGERDUTY_MAX_ATTEMPTS
    backoff_s: float = defaults.PAGERDUTY_BACKOFF_SECONDS
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def trigger(
        self,
        key: str,
        summary: str,
        *,
        severity: str = "critical",
        component: str | None = None,
        links: Sequence[Mapping[str, str]] = (),
        details: Mapping[str, Any] | None = None,
    ) -> PageResult:
        payload: JsonObject = {"summary": summary, "source": SOURCE, "severity": severity}
        if component:
            payload["component"] = component
        if details:
            payload["custom_details"] = dict(details)
        event: JsonObject = {"event_action": "trigger", "dedup_key": key, "payload": payload}
        if links:
            event["links"] = [dict(link) for link in links]
        return self._send(event)

    def resolve(self, key: str) -> PageResult:
        return self._send({"event_action": "resolve", "dedup_key": key})

    def _send(self, event: JsonObject) -> PageResult:
        action, key = event["event_action"], event["dedup_key"]
        if not self.routing_key:
            return PageResult(False, action, key, skipped=True, detail=paging_not_configured())
        event = {"routing_key": self.routing_key, **event}
        last = ""
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = requests.post(self.events_url, json=event, timeout=self.timeout_s)
            except requests.RequestException as exc:
                last = type(exc).__name__
            else:
                if response.status_code in (200, 201, 202):
                    return PageResult(True, action, key, attempt, response.status_code)
                if response.status_code != 429 and response.status_code < 500:
                    detail = paging_rejected(response.status_code, response.text)
                    logger.error(detail)
                    return PageResult(False, action, key, attempt, response.status_code, detail)
                last = f"HTTP {response.status_code}"
            if attempt < self.max_attempts:
                self.sleep(self.backoff_s * 2 ** (attempt - 1))
        detail = paging_gave_up(self.max_attempts, last)
        logger.error(detail)
        return PageResult(False, action, key, self.max_attempts, None, detail)


def pager_from(settings: Any) -> Pager:
    return Pager(routing_key=settings.pagerduty_routing_key, events_url=settings.pagerduty_events_url)
