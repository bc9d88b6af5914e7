"""DigitalOcean through pydo: droplet snapshots (playbook Step 2 / Method 3 B) and managed-database backups.

Every failure is a one-line DigitalOceanError; the token never appears in it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pydo
from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError
from azure.core.pipeline.policies import HeadersPolicy

from core import defaults
from core.jobs import JsonObject
from workers import errors, messages
from workers.errors import DigitalOceanError

Heartbeat = Callable[[str], None]
DONE_STATUSES = ("completed", "errored")




class DigitalOcean:
    def __init__(self, token: str, api_url: str | None = None, *, retries: int | None = None) -> None:
        if not token:
            raise DigitalOceanError(errors.do_token_missing())
        self._token = token
        kwargs: JsonObject = {}
        if api_url:
            kwargs["endpoint"] = api_url.rstrip("/")
            if api_url.startswith("http://"):
                # azure-core refuses a bearer token over plain http (a local stand-in): send the header directly.
                kwargs["authentication_policy"] = HeadersPolicy({"Authorization": f"Bearer {token}"})
        if retries is not None:
            kwargs["retry_total"] = retries  # azure-core's retry policy (default: 10 attempts with backoff)
        self.client = pydo.Client(token=token, **kwargs)

    def __repr__(self) -> str:
        return "DigitalOcean(token=***)"

    def _call(self, what: str, call: Callable[[], Any]) -> JsonObject:
        """Run one API call; turn every failure (HTTP error, error body, network) into one line."""
        try:
            body = call()
        except ClientAuthenticationError:
            raise DigitalOceanError(errors.do_token_refused(what)) from None  # the client's error may quote the request
        except HttpResponseError as exc:
            raise DigitalOceanError(errors.do_answered(exc.status_code, what, self._clean(exc.message))) from None  # the client's error may quote the request
        except AzureError as exc:
            raise DigitalOceanError(errors.do_unreachable(what, type(exc).__name__)) from None  # the client's error may quote the request
        if not isinstance(body, dict):
            raise DigitalOceanError(errors.do_unexpected(what))
        # pydo returns 4xx error bodies ({"id": "not_found", "message": ...}) instead of raising.
        if isinstance(body.get("id"), str) and "message" in body:
            raise DigitalOceanError(errors.do_refused(what, self._clean(str(body["message"])), str(body["id"])))
        return body

    def _clean(self, text: str | None) -> str:
        line = (str(text or "error").strip().splitlines() or ["error"])[0]
        return line.replace(self._token, "***")[:200]

    def snapshot_droplet(
        self,
        droplet_id: int,
        name: str,
        heartbeat: Heartbeat | None = None,
        poll_seconds: float = defaults.DO_ACTION_POLL_SECONDS,
        timeout_s: float = defaults.DO_ACTION_TIMEOUT_SECONDS,
    ) -> JsonObject:
        """Snapshot a droplet and wait for the action to finish. Raises when it errors or times out."""
        started = time.monotonic()
        body = self._call(
            errors.do_snapshot_droplet(droplet_id),
            lambda: self.client.droplet_actions.post(droplet_id, {"type": "snapshot", "name": name}),
        )
        action = body.get("action") or {}
        action_id = action.get("id")
        if action_id is None:
            raise DigitalOceanError(errors.do_no_action(droplet_id))
        last_beat = started
        while action.get("status") not in DONE_STATUSES:
            elapsed = time.monotonic() - started
            if elapsed > timeout_s:
                raise DigitalOceanError(errors.do_snapshot_slow(droplet_id, action_id, action.get("status"), timeout_s))
            if heartbeat is not None and time.monotonic() - last_beat >= defaults.PROGRESS_INTERVAL_SECONDS:
                heartbeat(messages.do_snapshot_progress(name, droplet_id, action.get("status"), elapsed))
                last_beat = time.monotonic()
            time.sleep(poll_seconds)
            action = self._call(errors.do_poll_action(action_id), lambda: self.client.actions.get(action_id)).get("action") or {}
        duration = round(time.monotonic() - started, 3)
        if action.get("status") == "errored":
            raise DigitalOceanError(errors.do_snapshot_errored(name, droplet_id, action_id))
        return {
            "action_id": action_id,
            "status": action.get("status"),
            "name": name,
            "droplet_id": droplet_id,
            "started_at": action.get("started_at"),
            "completed_at": action.get("completed_at"),
            "duration_s": duration,
        }

    def list_snapshots(self, droplet_id: int | None = None) -> list[JsonObject]:
        """Droplet snapshots (of one droplet, or all), newest first: id, name, created_at, size_gigabytes."""
        if droplet_id is None:
            body = self._call(errors.DO_LIST_SNAPSHOTS, lambda: self.client.snapshots.list(resource_type="droplet", per_page=200))
        else:
            body = self._call(
                errors.do_list_snapshots_of(droplet_id),
                lambda: self.client.droplets.list_snapshots(droplet_id, per_page=200),
            )
        rows = [
            {
                "id": s.get("id"),
                "name": s.get("name"),
                "created_at": s.get("created_at"),
                "size_gigabytes": s.get("size_gigabytes"),
                "resource_id": s.get("resource_id", droplet_id),
            }
            for s in body.get("snapshots") or []
        ]
        return sorted(rows, key=lambda r: str(r["created_at"] or ""), reverse=True)

    def database_backups(self, database_id: str) -> list[JsonObject]:
        """A managed database cluster's backups, newest first: created_at, size_gigabytes."""
        body = self._call(
            errors.do_list_backups_of(database_id), lambda: self.client.databases.list_backups(database_id)
        )
        rows = [
            {"created_at": b.get("created_at"), "size_gigabytes": b.get("size_gigabytes"), "database_id": database_id}
            for b in body.get("backups") or []
        ]
        return sorted(rows, key=lambda r: str(r["created_at"] or ""), reverse=True)
