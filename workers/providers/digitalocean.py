"""DigitalOcean through pydo: droplet snapshots (playbook Step 2 / Method 3 B) and managed-database backups.

Every failure is a one-line DigitalOceanError (DigitalOceanUnavailable when the API failed on its side or
could not be reached); the token never appears in it.

Sent once: a POST here starts something (a snapshot, a restore, a new cluster), so it is never retried
(`IdempotentOnlyRetry`); when its answer is lost, what it started is looked up and followed instead (`_send_once`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pydo
from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError
from azure.core.pipeline.policies import HeadersPolicy, RetryPolicy

from core import defaults
from core.jsontypes import JsonObject
from workers import messages
from workers.runtime import errors
from workers.runtime.errors import DigitalOceanError, DigitalOceanNoAnswer, DigitalOceanUnavailable

Heartbeat = Callable[[str], None]
DONE_STATUSES = ("completed", "errored")


def on_their_side(status: int | None) -> bool:
    """A 5xx or 429 (after pydo's own retries of a GET: azure-core's, 3 for a status, with backoff; a POST is
    never retried) is DigitalOcean failing, paged when it stops a check; any other 4xx is its answer to what
    was asked."""
    return status is not None and (status >= 500 or status == 429)


class IdempotentOnlyRetry(RetryPolicy):
    """azure-core's retry policy (GET, HEAD, PUT, DELETE...), minus its retries of a POST or PATCH (after a 500, 503 or 504, or a Retry-After):
    a POST here starts a snapshot, a restore or a cluster, and a resent one was a second action (or a 422
    "already in progress" reported as a failure while the first one ran)."""

    def is_retry(self, settings: dict[str, Any], response: Any) -> bool:
        if response.http_request.method.upper() not in settings["methods"]:
            return False
        return bool(super().is_retry(settings, response))


class DigitalOcean:
    def __init__(self, token: str, api_url: str | None = None, *, retries: int | None = None,
                 read_timeout_s: float | None = None) -> None:
        if not token:
            raise DigitalOceanError(errors.do_token_missing())
        self._token = token
        kwargs: JsonObject = {}
        if api_url:
            kwargs["endpoint"] = api_url.rstrip("/")
            if api_url.startswith("http://"):
                # azure-core refuses a bearer token over plain http (a local stand-in): send the header directly.
                kwargs["authentication_policy"] = HeadersPolicy({"Authorization": f"Bearer {token}"})
        # azure-core's retry policy (default: 10 attempts with backoff), never for a POST
        kwargs["retry_policy"] = IdempotentOnlyRetry(**({"retry_total": retries} if retries is not None else {}))
        if read_timeout_s is not None:
            kwargs["read_timeout"] = read_timeout_s  # azure-core's transport waits 300 s for an answer
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
            failed = (DigitalOceanNoAnswer if (exc.status_code or 0) >= 500
                      else DigitalOceanUnavailable if on_their_side(exc.status_code) else DigitalOceanError)
            message = str(exc.message or "").removeprefix("(None) ")  # azure-core's "(code)" when the body has none
            raise failed(errors.do_answered(exc.status_code, what, self._clean(message))) from None  # the client's error may quote the request
        except AzureError as exc:
            raise DigitalOceanNoAnswer(errors.do_unreachable(what, type(exc).__name__)) from None  # the client's error may quote the request
        if not isinstance(body, dict):
            raise DigitalOceanError(errors.do_unexpected(what))
        # pydo returns 4xx error bodies ({"id": "not_found", "message": ...}) instead of raising.
        if isinstance(body.get("id"), str) and "message" in body:
            raise DigitalOceanError(errors.do_refused(what, self._clean(str(body["message"])), str(body["id"])))
        return body

    def _send_once(self, what: str, send: Callable[[], Any], started: Callable[[], JsonObject | None]) -> JsonObject:
        """A POST that starts something, sent once. When its answer is lost (a 5xx, a timeout, a dropped
        connection) it may have been acted on all the same: `started` looks for what it started (the
        answer it would have had), and nothing found is one line, never a second POST."""
        try:
            return self._call(what, send)
        except DigitalOceanNoAnswer as lost:
            try:
                found = started()
            except DigitalOceanError as lookup:
                raise DigitalOceanUnavailable(errors.do_sent_once_lookup_failed(str(lost), str(lookup))) from None
            if found is None:
                raise DigitalOceanUnavailable(errors.do_sent_once_nothing_started(str(lost))) from None
            return found

    def _droplet_actions(self, droplet_id: int) -> list[JsonObject]:
        """The droplet's actions, newest first (the first 200)."""
        body = self._call(errors.do_list_actions_of(droplet_id),
                          lambda: self.client.droplet_actions.list(droplet_id, per_page=200))
        return list(body.get("actions") or [])

    def _start_droplet_action(self, what: str, droplet_id: int, action: JsonObject) -> JsonObject:
        """POST one droplet action, sent once; when its answer is lost, the action of its type that was not
        there before the send (any status: an errored one is followed to its error) is the one it started."""
        before = {a.get("id") for a in self._droplet_actions(droplet_id)}

        def started() -> JsonObject | None:
            new = [a for a in self._droplet_actions(droplet_id)
                   if a.get("type") == action["type"] and a.get("id") not in before]
            return {"action": new[0]} if new else None

        return self._send_once(what, lambda: self.client.droplet_actions.post(droplet_id, action), started)

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
        body = self._start_droplet_action(errors.do_snapshot_droplet(droplet_id), droplet_id,
                                          {"type": "snapshot", "name": name})
        action = self._follow_action(
            body, droplet_id, heartbeat=heartbeat, poll_seconds=poll_seconds, timeout_s=timeout_s,
            beat=lambda status, elapsed: messages.do_snapshot_progress(name, droplet_id, status, elapsed),
            slow=lambda action_id, status: errors.do_snapshot_slow(droplet_id, action_id, status, timeout_s),
            errored=lambda action_id: errors.do_snapshot_errored(name, droplet_id, action_id),
        )
        return {
            "action_id": action.get("id"),
            "status": action.get("status"),
            "name": name,
            "droplet_id": droplet_id,
            "started_at": action.get("started_at"),
            "completed_at": action.get("completed_at"),
            "duration_s": round(time.monotonic() - started, 3),
        }

    def _follow_action(
        self, body: JsonObject, droplet_id: int, *, heartbeat: Heartbeat | None, poll_seconds: float,
        timeout_s: float, beat: Callable[[Any, float], str], slow: Callable[[Any, Any], str],
        errored: Callable[[Any], str],
    ) -> JsonObject:
        """Poll a droplet action (the one loop for snapshots and restores) until it completes; raises
        past `timeout_s` or when it errors."""
        started = time.monotonic()
        action = body.get("action") or {}
        action_id = action.get("id")
        if action_id is None:
            raise DigitalOceanError(errors.do_no_action(droplet_id))
        last_beat = started
        while action.get("status") not in DONE_STATUSES:
            elapsed = time.monotonic() - started
            if elapsed > timeout_s:
                raise DigitalOceanError(slow(action_id, action.get("status")))
            if heartbeat is not None and time.monotonic() - last_beat >= defaults.PROGRESS_INTERVAL_SECONDS:
                heartbeat(beat(action.get("status"), elapsed))
                last_beat = time.monotonic()
            time.sleep(poll_seconds)
            action = self._call(errors.do_poll_action(action_id), lambda: self.client.actions.get(action_id)).get("action") or {}
        if action.get("status") == "errored":
            raise DigitalOceanError(errored(action_id))
        return action

    def snapshot(self, snapshot_id: str) -> JsonObject:
        """One snapshot by id: id, name, created_at, resource_id, resource_type. Raises (one line) when
        DigitalOcean does not know it."""
        wire_id: Any = snapshot_id  # pydo's stub types the id as a mapping; the API takes the id itself
        body = self._call(errors.do_get_snapshot(snapshot_id), lambda: self.client.snapshots.get(wire_id))
        found = body.get("snapshot") or {}
        return {"id": str(found.get("id")), "name": found.get("name"), "created_at": found.get("created_at"),
                "resource_id": str(found.get("resource_id")), "resource_type": found.get("resource_type"),
                "size_gigabytes": found.get("size_gigabytes")}

    def restore_droplet(
        self, droplet_id: int, snapshot_id: str, heartbeat: Heartbeat | None = None,
        poll_seconds: float = defaults.DO_ACTION_POLL_SECONDS, timeout_s: float = defaults.DO_ACTION_TIMEOUT_SECONDS,
    ) -> JsonObject:
        """Restore a droplet from one of its snapshots (a `restore` droplet action) and wait for it."""
        started = time.monotonic()
        body = self._start_droplet_action(errors.do_restore_droplet(droplet_id, snapshot_id), droplet_id,
                                          {"type": "restore", "image": int(snapshot_id)})
        action = self._follow_action(
            body, droplet_id, heartbeat=heartbeat, poll_seconds=poll_seconds, timeout_s=timeout_s,
            beat=lambda status, elapsed: messages.do_restore_progress(snapshot_id, droplet_id, status, elapsed),
            slow=lambda action_id, status: errors.do_restore_slow(droplet_id, action_id, status, timeout_s),
            errored=lambda action_id: errors.do_restore_errored(snapshot_id, droplet_id, action_id),
        )
        return {"action_id": action.get("id"), "status": action.get("status"), "snapshot": snapshot_id,
                "droplet_id": droplet_id, "completed_at": action.get("completed_at"),
                "duration_s": round(time.monotonic() - started, 3)}

    def restore_cluster(
        self, database_id: str, new_name: str, backup_created_at: str | None, heartbeat: Heartbeat | None = None,
        poll_seconds: float = defaults.DO_ACTION_POLL_SECONDS, timeout_s: float = defaults.DO_ACTION_TIMEOUT_SECONDS,
    ) -> JsonObject:
        """A new managed cluster from a backup of `database_id` (pydo `databases.create` with
        `backup_restore`), followed until it is online. Returns its id, name, host, port, database, user
        and whether it requires TLS, never its password or URI."""
        started = time.monotonic()
        source = self._call(errors.do_get_cluster(database_id), lambda: self.client.databases.get_cluster(database_id))
        cluster = source.get("database") or {}
        restore: JsonObject = {"database_name": cluster.get("name")}
        if backup_created_at:
            restore["backup_created_at"] = backup_created_at
        spec = {"name": new_name, "engine": cluster.get("engine") or "pg", "version": cluster.get("version"),
                "region": cluster.get("region"), "size": cluster.get("size"),
                "num_nodes": cluster.get("num_nodes") or 1, "backup_restore": restore}
        before = {c.get("id") for c in self._clusters_named(new_name)}

        def created_by_the_send() -> JsonObject | None:  # cluster names are unique: the new one by that name
            new = [c for c in self._clusters_named(new_name) if c.get("id") not in before]
            return {"database": new[0]} if new else None

        created = self._send_once(errors.do_create_cluster(new_name),
                                  lambda: self.client.databases.create_cluster(spec), created_by_the_send)
        new = created.get("database") or {}
        new_id = str(new.get("id") or "")
        if not new_id:
            raise DigitalOceanError(errors.do_unexpected(errors.do_create_cluster(new_name)))
        new = _wait_until(
            new, lambda c: c.get("status") == "online",
            lambda: self._call(errors.do_get_cluster(new_id),
                               lambda: self.client.databases.get_cluster(new_id)).get("database") or {},
            slow=lambda c: errors.do_cluster_slow(new_name, c.get("status"), timeout_s),
            progress=lambda c, elapsed: messages.do_cluster_progress(new_name, c.get("status"), elapsed),
            started=started, heartbeat=heartbeat, poll_seconds=poll_seconds, timeout_s=timeout_s)
        connection = new.get("connection") or {}
        return {"id": new_id, "name": new.get("name"), "status": new.get("status"), "host": connection.get("host"),
                "port": connection.get("port"), "database": connection.get("database"), "user": connection.get("user"),
                "ssl": connection.get("ssl"),
                "backup_created_at": backup_created_at, "duration_s": round(time.monotonic() - started, 3)}

    def droplet(self, droplet_id: int) -> JsonObject:
        """One droplet: id, name, status, size, region, its snapshot image's id and its public IPv4."""
        body = self._call(errors.do_get_droplet(droplet_id), lambda: self.client.droplets.get(droplet_id))
        return _droplet_facts(body.get("droplet") or {})

    def create_droplet_from_snapshot(
        self, name: str, snapshot_id: str, size: str, region: str, heartbeat: Heartbeat | None = None,
        poll_seconds: float = defaults.DO_ACTION_POLL_SECONDS, timeout_s: float = defaults.DO_ACTION_TIMEOUT_SECONDS,
    ) -> JsonObject:
        """A new droplet from a snapshot (the playbook's `doctl compute droplet create --image --wait`), sent
        once, followed until active with a public IPv4. A lost answer is looked up by the droplet's name: the
        droplet by that name that was not there before the send."""
        started = time.monotonic()
        spec: JsonObject = {"name": name, "size": size, "region": region, "image": int(snapshot_id)}
        before = {d.get("id") for d in self._droplets_named(name)}

        def created_by_the_send() -> JsonObject | None:
            new = [d for d in self._droplets_named(name) if d.get("id") not in before]
            return {"droplet": new[0]} if new else None

        created = self._send_once(errors.do_create_droplet(name, snapshot_id),
                                  lambda: self.client.droplets.create(spec), created_by_the_send)
        new = _droplet_facts(created.get("droplet") or {})
        if new["id"] is None:
            raise DigitalOceanError(errors.do_unexpected(errors.do_create_droplet(name, snapshot_id)))
        new_id = int(new["id"])
        new = _wait_until(
            new, lambda d: d.get("status") == "active" and bool(d.get("ip")), lambda: self.droplet(new_id),
            slow=lambda d: errors.do_droplet_slow(name, d.get("status"), timeout_s),
            progress=lambda d, elapsed: messages.do_droplet_progress(name, d.get("status"), elapsed),
            started=started, heartbeat=heartbeat, poll_seconds=poll_seconds, timeout_s=timeout_s)
        return {**new, "duration_s": round(time.monotonic() - started, 3)}

    def _droplets_named(self, name: str) -> list[JsonObject]:
        body = self._call(errors.do_list_droplets_named(name),
                          lambda: self.client.droplets.list(name=name, per_page=200))
        return [d for d in body.get("droplets") or [] if d.get("name") == name]

    def _clusters_named(self, name: str) -> list[JsonObject]:
        body = self._call(errors.DO_LIST_CLUSTERS, lambda: self.client.databases.list_clusters())
        return [c for c in body.get("databases") or [] if c.get("name") == name]

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


def _droplet_facts(droplet: JsonObject) -> JsonObject:
    """What the workers use of a droplet: never more (no user data, no keys)."""
    v4 = (droplet.get("networks") or {}).get("v4") or []
    public = next((n.get("ip_address") for n in v4 if n.get("type") == "public"), None)
    region = droplet.get("region") or {}
    return {"id": droplet.get("id"), "name": droplet.get("name"), "status": droplet.get("status"),
            "size": droplet.get("size_slug"), "region": region.get("slug") if isinstance(region, dict) else region,
            "image": str((droplet.get("image") or {}).get("id") or "") or None, "ip": public}


def _wait_until(current: JsonObject, ready: Callable[[JsonObject], bool], refresh: Callable[[], JsonObject], *,
                slow: Callable[[JsonObject], str], progress: Callable[[JsonObject, float], str], started: float,
                heartbeat: Heartbeat | None, poll_seconds: float, timeout_s: float) -> JsonObject:
    """Poll a resource DigitalOcean is making (a cluster, a droplet) until `ready`, bounded by `timeout_s` from
    `started`, a heartbeat line every progress interval; past the bound, the `slow` line as the error."""
    last_beat = started
    while not ready(current):
        elapsed = time.monotonic() - started
        if elapsed > timeout_s:
            raise DigitalOceanError(slow(current))
        if heartbeat is not None and time.monotonic() - last_beat >= defaults.PROGRESS_INTERVAL_SECONDS:
            heartbeat(progress(current, elapsed))
            last_beat = time.monotonic()
        time.sleep(poll_seconds)
        current = refresh()
    return current
