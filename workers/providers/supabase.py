"""Supabase point-in-time recovery (playbook Method 3, option A) through the Management API.

`requests` with our own bounded retries of a GET: a 5xx, a 429 or a dropped connection is retried with
doubling backoff, a 4xx never (it is the API's answer: PITR off, a point outside the window, a bad
token). A POST starts a recovery and is sent once, never retried: when its answer is lost, the project's
status says whether it started (`restore_pitr`). Every failure is one line that names what to do, and
never contains the access token.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests

from core import defaults
from core.jsontypes import JsonObject
from workers.messages import OTHER_OPTIONS
from workers.runtime.errors import ServiceUnavailable, WorkerError

DEFAULT_API_URL = "https://api.supabase.com"
HEALTHY = "ACTIVE_HEALTHY"
RESTORING = "RESTORING"
# A project in one of these will not become healthy by waiting: stop polling and page.
FAILED_STATUSES = frozenset({"RESTORE_FAILED", "INIT_FAILED", "REMOVED", "INACTIVE", "PAUSE_FAILED"})
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})

Heartbeat = Callable[[str], None]


def _when(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class SupabaseError(WorkerError):
    """A Supabase call failed or was refused; `str()` is one line saying what to do."""


class SupabaseRefused(SupabaseError):
    """The API answered 4xx: final, never retried."""

    def __init__(self, what: str, status: int, message: str) -> None:
        super().__init__(f"Supabase refused {what} (HTTP {status}: {message}); nothing was changed")
        self.what, self.status, self.api_message = what, status, message


class SupabaseUnavailable(SupabaseError, ServiceUnavailable):
    """5xx, 429 or no connection, after our retries."""

    def __init__(self, what: str, attempts: int, last: str) -> None:
        super().__init__(f"Supabase did not answer {what} after {attempts} attempts ({last}); "
                         f"check https://status.supabase.com, then try again")
        self.what, self.attempts, self.last = what, attempts, last


class SupabaseNoAnswer(SupabaseError, ServiceUnavailable):
    """A POST's answer was lost (5xx, 429, timeout, dropped connection): it may have been acted on."""

    def __init__(self, what: str, last: str) -> None:
        super().__init__(f"Supabase gave no answer to {what} ({last}); sent once, not resent")
        self.what, self.last = what, last


class RestoreNotStarted(SupabaseError, ServiceUnavailable):
    """The answer to restore-pitr was lost and the project shows no recovery (or could not be read)."""

    def __init__(self, lost: SupabaseNoAnswer, ref: str, status: str | None) -> None:
        found = (f"project {ref} is {status}: nothing was started; check the Supabase dashboard, then ask again"
                 if status else f"whether project {ref} started recovering is unknown: check the Supabase "
                 "dashboard (Database → Backups) before asking again")
        super().__init__(f"{lost}, and {found}")
        self.lost, self.ref, self.status = lost, ref, status


class PitrNotEnabled(SupabaseError):
    def __init__(self, ref: str) -> None:
        super().__init__(f"project {ref} has no point-in-time recovery enabled: use {OTHER_OPTIONS}")
        self.ref = ref


class OutsideWindow(SupabaseError):
    def __init__(self, point: int, window: PitrWindow) -> None:
        super().__init__(
            f"{_when(point)} is outside the project's recovery window "
            f"({_when(window.earliest or 0)} to {_when(window.latest or 0)}): pick a moment inside it, or use "
            f"{OTHER_OPTIONS}")
        self.point, self.window = point, window


class RestoreTimedOut(SupabaseError):
    def __init__(self, ref: str, waited_s: float, status: str) -> None:
        super().__init__(f"project {ref} is still {status} after {waited_s:.0f} s of recovery: watch it in the "
                         "Supabase dashboard (Database → Backups); verification has not run")
        self.ref, self.waited_s, self.status = ref, waited_s, status


class RestoreFailed(SupabaseError):
    def __init__(self, ref: str, status: str) -> None:
        super().__init__(f"project {ref} reports {status} after the recovery: open the Supabase dashboard and "
                         "contact Supabase support; verification has not run")
        self.ref, self.status = ref, status


@dataclass(frozen=True)
class PitrWindow:
    enabled: bool
    earliest: int | None = None
    latest: int | None = None

    def contains(self, point: int) -> bool:
        return (self.enabled and self.earliest is not None and self.latest is not None
                and self.earliest <= point <= self.latest)


def recovery_point(applied_at_unix: float, margin_seconds: int) -> int:
    """The moment to go back to: just before the bad migration was applied, minus a margin (whole seconds)."""
    return int(applied_at_unix) - max(margin_seconds, 0)


def check_point(ref: str, window: PitrWindow, point: int) -> None:
    """Raises when PITR is off for the project or `point` lies outside its window."""
    if not window.enabled:
        raise PitrNotEnabled(ref)
    if not window.contains(point):
        raise OutsideWindow(point, window)


class Supabase:
    def __init__(
        self, token: str, api_url: str | None = None, *, attempts: int = defaults.SUPABASE_MAX_ATTEMPTS,
        backoff_seconds: float = defaults.SUPABASE_BACKOFF_SECONDS,
        timeout_seconds: float = defaults.HTTP_TIMEOUT_SECONDS, sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not token:
            raise SupabaseError("SUPABASE_ACCESS_TOKEN is not set: the worker needs it for point-in-time recovery")
        self._session = requests.Session()
        self._session.headers.update({"Authorization": f"Bearer {token}", "Accept": "application/json"})
        self.api_url = (api_url or DEFAULT_API_URL).rstrip("/")
        self.attempts = max(attempts, 1)
        self.backoff_seconds = backoff_seconds
        self.timeout_seconds = timeout_seconds
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"Supabase(api_url={self.api_url!r}, token=***)"

    def _request(self, method: str, path: str, what: str, body: JsonObject | None = None) -> Any:
        last = ""
        attempts = self.attempts if method == "GET" else 1  # a POST starts something: never resent
        for attempt in range(attempts):
            if attempt:
                self._sleep(self.backoff_seconds * 2 ** (attempt - 1))
            try:
                response = self._session.request(method, self.api_url + path, json=body, timeout=self.timeout_seconds)
            except requests.RequestException as exc:
                last = type(exc).__name__
                continue
            if response.status_code in RETRIED_STATUSES:
                last = f"HTTP {response.status_code}"
                continue
            if 400 <= response.status_code < 500:
                raise SupabaseRefused(what, response.status_code, _message(response))
            if response.status_code >= 300:
                raise SupabaseRefused(what, response.status_code, _message(response))
            try:
                return response.json() if response.content else None
            except ValueError:
                raise SupabaseError(f"Supabase answered {what} with something that is not JSON") from None
        if method != "GET":
            raise SupabaseNoAnswer(what, last)
        raise SupabaseUnavailable(what, attempts, last)

    def project_status(self, ref: str) -> str:
        body = self._request("GET", f"/v1/projects/{ref}", f"the status of project {ref}")
        return str((body or {}).get("status") or "UNKNOWN")

    def pitr_window(self, ref: str) -> PitrWindow:
        body = self._request("GET", f"/v1/projects/{ref}/database/backups", f"the backups of project {ref}") or {}
        data = body.get("physical_backup_data") or {}
        earliest, latest = data.get("earliest_physical_backup_date_unix"), data.get("latest_physical_backup_date_unix")
        return PitrWindow(
            enabled=bool(body.get("pitr_enabled")),
            earliest=int(earliest) if isinstance(earliest, int | float) and earliest > 0 else None,
            latest=int(latest) if isinstance(latest, int | float) and latest > 0 else None,
        )

    def restore_pitr(self, ref: str, point: int) -> None:
        """Ask for the recovery, once. When the answer is lost, a project that was not RESTORING before
        and is now has started it (followed by `wait_healthy` as if the answer had come); else one line."""
        before = self.project_status(ref)
        try:
            self._request("POST", f"/v1/projects/{ref}/database/backups/restore-pitr",
                          f"point-in-time recovery of project {ref}", {"recovery_time_target_unix": int(point)})
        except SupabaseNoAnswer as lost:
            try:
                now: str | None = self.project_status(ref)
            except SupabaseError:
                now = None
            if now == RESTORING and before != RESTORING:
                return
            raise RestoreNotStarted(lost, ref, now) from None

    def wait_healthy(
        self, ref: str, *, timeout_seconds: float, poll_seconds: float, heartbeat: Heartbeat | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> float:
        """Follow the project until it is healthy again; returns the seconds waited. Raises
        RestoreTimedOut past `timeout_seconds`, RestoreFailed on a status that will not heal."""
        started = clock()
        while True:
            status = self.project_status(ref)
            waited = clock() - started
            if status == HEALTHY:
                return waited
            if status in FAILED_STATUSES:
                raise RestoreFailed(ref, status)
            if waited >= timeout_seconds:
                raise RestoreTimedOut(ref, waited, status)
            if heartbeat is not None:
                heartbeat(f"project {ref} is {status} ({waited:.0f} s)")
            self._sleep(min(poll_seconds, max(timeout_seconds - waited, 0.0)) or poll_seconds)


def _message(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason or "no message"
    message = body.get("message") if isinstance(body, dict) else None
    return str(message or response.reason or "no message").splitlines()[0][:200]
