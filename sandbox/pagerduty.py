"""A local stand-in for the PagerDuty Events API v2 (`POST /v2/enqueue`).

Validates events as PagerDuty does, records the accepted ones, keeps one incident per `dedup_key`,
and can be told to fail the next requests with 429 or 5xx so that retry behaviour can be tested.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sandbox.http_stub import JsonHttpServer, JsonRequest

EVENT_ACTIONS = ("trigger", "acknowledge", "resolve")
SEVERITIES = ("critical", "error", "warning", "info")
T = TypeVar("T")


@dataclass
class Incident:
    dedup_key: str
    summary: str
    status: str  # triggered / acknowledged / resolved
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def open(self) -> bool:
        return self.status != "resolved"


def validate_event(event: Any) -> list[str]:
    """PagerDuty's checks on an event, as a list of problems (empty when valid)."""
    if not isinstance(event, dict):
        return ["Event object must be a JSON object."]
    errors = []
    if not event.get("routing_key"):
        errors.append("'routing_key' is missing or blank.")
    action = event.get("event_action")
    if action not in EVENT_ACTIONS:
        errors.append("'event_action' must be one of trigger, acknowledge or resolve.")
    if action == "trigger":
        payload = event.get("payload")
        if not isinstance(payload, dict):
            errors.append("'payload' is missing or not an object.")
        else:
            for key in ("summary", "source", "severity"):
                if not payload.get(key):
                    errors.append(f"'payload.{key}' is missing or blank.")
            if payload.get("severity") and payload["severity"] not in SEVERITIES:
                errors.append("'payload.severity' must be one of critical, error, warning or info.")
            if len(str(payload.get("summary") or "")) > 1024:
                errors.append("'payload.summary' is longer than 1024 characters.")
    elif action in ("acknowledge", "resolve") and not event.get("dedup_key"):
        errors.append(f"'dedup_key' is required to {action} an event.")
    return errors


class PagerDutyServer(JsonHttpServer):
    """`url` is the full events URL for `PAGERDUTY_EVENTS_URL`."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host=host, port=port)
        self.events: list[dict[str, Any]] = []  # accepted events, in order
        self.attempts = 0  # every POST to /v2/enqueue, failed ones included
        self._incidents: dict[str, Incident] = {}
        self._failures: list[int] = []

    @property
    def url(self) -> str:
        return f"{self.root_url}/v2/enqueue"

    def fail_next(self, count: int = 1, status: int = 429) -> None:
        """Answer the next `count` requests with `status` (429 or a 5xx) before accepting again."""
        with self.lock:
            self._failures.extend([status] * count)

    def incidents(self) -> dict[str, Incident]:
        with self.lock:
            return dict(self._incidents)

    def open_incidents(self) -> list[Incident]:
        return [i for i in self.incidents().values() if i.open]

    def wait_for(self, predicate: Callable[[], T], timeout: float = 10.0) -> T:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {timeout}s; PagerDuty events: {self.events!r}")
            time.sleep(0.05)

    def route(self, request: JsonRequest) -> tuple[int, Any]:
        if request.path != "/v2/enqueue" or request.verb != "POST":
            return 404, {"status": "not found", "message": "Only POST /v2/enqueue is served here."}
        with self.lock:
            self.attempts += 1
            if self._failures:
                status = self._failures.pop(0)
                if status == 429:
                    return 429, {"status": "throttle event",
                                 "message": "Requests for this service are arriving too quickly. Please retry later."}
                return status, {"status": "error", "message": "Internal server error."}
        try:
            event = request.json()
        except ValueError:
            return 400, {"status": "invalid event", "message": "Event object is invalid", "errors": ["Malformed JSON."]}
        errors = validate_event(event)
        if errors:
            return 400, {"status": "invalid event", "message": "Event object is invalid", "errors": errors}
        with self.lock:
            dedup_key = str(event.get("dedup_key") or uuid.uuid4().hex)
            self.events.append({**event, "dedup_key": dedup_key})
            self._record(dedup_key, event)
        return 202, {"status": "success", "message": "Event processed", "dedup_key": dedup_key}

    def _record(self, dedup_key: str, event: dict[str, Any]) -> None:
        incident = self._incidents.get(dedup_key)
        action = event["event_action"]
        if action == "trigger":
            if incident is None or not incident.open:
                incident = Incident(dedup_key, event["payload"]["summary"], "triggered")
                self._incidents[dedup_key] = incident
        elif incident is not None and incident.open:
            incident.status = "acknowledged" if action == "acknowledge" else "resolved"
        if incident is not None:
            incident.events.append(event)
