"""A local stand-in for the part of the DigitalOcean API v2 the workers use through `pydo`.

`pydo.Client(token=..., endpoint=server.url)` talks to it (pydo passes `endpoint` to its generated
client as the base URL). Served: droplet snapshot actions and their polling, a droplet's actions (newest
first), droplet and global snapshot lists and one snapshot, a droplet, a droplet restored from a snapshot
(a `restore` action), managed database clusters (one, or all) and their backups, and a new cluster created
from a backup (`backup_restore`), which reports `creating` for `polls_until_complete` reads, then `online`;
a new droplet from a snapshot (POST /v2/droplets with an `image`), which reports `new` for
`polls_until_complete` reads of it, then `active` with a public IPv4 (a documentation address, 203.0.113.x),
and the droplets created there listed by name (GET /v2/droplets?name=).
A bearer token is required. `posts` counts the POSTs per path and `post_faults` loses the next POSTs'
answers, after acting or not (sandbox/http_stub.py).
`on_droplet_restore(droplet_id, snapshot)`, when set, runs when a restore action completes, so a test
can make the droplet's database really go back; `stuck_restores = True` keeps restore actions in-progress,
and `fail_next` queues status codes the next requests answer with (a 503 to exercise failing calls).
`on_cluster_restore(name, backup_created_at)`, when set, runs when a cluster is created from a backup and
may return connection fields (host, port, user, password, database, ssl) that the new cluster reports, so
a test can make it a real database.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sandbox.http_stub import JsonHttpServer, JsonRequest

DEFAULT_DROPLET_ID = 4242
DEFAULT_DATABASE_ID = "9cc10173-e9ea-4176-9dbc-a4cee4c4ff30"
REGION = {"slug": "nyc3", "name": "New York 3", "available": True, "features": [], "sizes": []}

NOT_FOUND = {"id": "not_found", "message": "The resource you were accessing could not be found."}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Action:
    id: int
    droplet_id: int
    type: str
    snapshot_name: str | None
    polls_left: int
    image: int | None = None  # a restore action's snapshot id
    status: str = "in-progress"
    started_at: str = field(default_factory=_now)
    completed_at: str | None = None

    def to_api(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "type": self.type, "started_at": self.started_at,
                "completed_at": self.completed_at, "resource_id": self.droplet_id, "resource_type": "droplet",
                "region": REGION, "region_slug": "nyc3"}


class DigitalOceanServer(JsonHttpServer):
    """`url` is the endpoint for `pydo.Client(endpoint=...)` and `DIGITALOCEAN_API_URL`."""

    def __init__(
        self,
        *,
        token: str = "do-test-token",
        droplets: Mapping[int, str] | None = None,
        databases: Mapping[str, str] | None = None,
        polls_until_complete: int = 1,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port)
        self.token = token
        self.droplets = dict(droplets or {DEFAULT_DROPLET_ID: "app-prod-1"})
        self.databases = dict(databases or {DEFAULT_DATABASE_ID: "db-prod"})
        self.polls_until_complete = polls_until_complete
        self.fail_snapshots = False  # set True: snapshot actions end "errored"
        self.fail_restores = False  # set True: restore actions end "errored"
        self.stuck_restores = False  # set True: restore actions never leave "in-progress" (a poll that must time out)
        self.fail_next: list[int] = []  # status codes the next requests answer with (a 503: DigitalOcean failing)
        self.on_droplet_restore: Callable[[int, dict[str, Any]], None] | None = None
        self.on_cluster_restore: Callable[[str, str], Mapping[str, Any] | None] | None = None
        self.clusters: dict[str, dict[str, Any]] = {
            uuid: _cluster(uuid, name, "online") for uuid, name in self.databases.items()
        }
        self.cluster_polls: dict[str, int] = {}
        self.new_droplets: dict[int, dict[str, Any]] = {}  # droplets created from a snapshot, by id
        self.droplet_polls: dict[int, int] = {}
        self.actions: dict[int, Action] = {}
        self.snapshots: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str]] = []
        self._ids = itertools.count(1000)
        yesterday = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.database_backups: dict[str, list[dict[str, Any]]] = {
            uuid: [{"created_at": yesterday, "size_gigabytes": 0.25}] for uuid in self.databases
        }

    @property
    def url(self) -> str:
        return self.root_url

    def route(self, request: JsonRequest) -> tuple[int, Any]:
        with self.lock:
            self.requests.append((request.verb, request.path))
            if request.headers.get("Authorization") != f"Bearer {self.token}":
                return 401, {"id": "unauthorized", "message": "Unable to authenticate you."}
            if self.fail_next:
                return self.fail_next.pop(0), {"id": "service_unavailable", "message": "Service temporarily unavailable"}
            for pattern, verb, handler in self._routes():
                match = re.fullmatch(pattern, request.path)
                if match and verb == request.verb:
                    return handler(request, *match.groups())  # type: ignore[operator]
            return 404, NOT_FOUND

    def _routes(self) -> list[tuple[str, str, object]]:
        return [
            (r"/v2/droplets/(\d+)/actions", "POST", self._droplet_action),
            (r"/v2/droplets/(\d+)/actions", "GET", self._droplet_actions),
            (r"/v2/actions/(\d+)", "GET", self._action),
            (r"/v2/droplets/(\d+)/snapshots", "GET", self._droplet_snapshots),
            (r"/v2/droplets/(\d+)", "GET", self._droplet),
            (r"/v2/droplets", "POST", self._create_droplet),
            (r"/v2/droplets", "GET", self._list_droplets),
            (r"/v2/snapshots", "GET", self._snapshots),
            (r"/v2/snapshots/(\d+)", "GET", self._snapshot),
            (r"/v2/databases/([0-9a-f-]+)/backups", "GET", self._database_backups),
            (r"/v2/databases/([0-9a-f-]+)", "GET", self._cluster),
            (r"/v2/databases", "POST", self._create_cluster),
            (r"/v2/databases", "GET", self._clusters),
        ]

    def _droplet_action(self, request: JsonRequest, droplet_id: str) -> tuple[int, Any]:
        if int(droplet_id) not in self.droplets:
            return 404, NOT_FOUND
        body = request.json() or {}
        if body.get("type") == "restore":
            image = body.get("image")
            if not any(str(s["id"]) == str(image) and s["resource_id"] == droplet_id for s in self.snapshots):
                return 422, {"id": "unprocessable_entity",
                             "message": "You specified an invalid image for Droplet restore."}
            action = Action(next(self._ids), int(droplet_id), "restore", None, self.polls_until_complete,
                            image=int(str(image)))
            self.actions[action.id] = action
            return 201, {"action": action.to_api()}
        if body.get("type") != "snapshot":
            return 422, {"id": "unprocessable_entity", "message": "Only snapshot and restore actions are served here."}
        action = Action(next(self._ids), int(droplet_id), "snapshot", body.get("name") or f"snapshot-{_now()}",
                        self.polls_until_complete)
        self.actions[action.id] = action
        return 201, {"action": action.to_api()}

    def _droplet_actions(self, request: JsonRequest, droplet_id: str) -> tuple[int, Any]:
        if int(droplet_id) not in self.droplets:
            return 404, NOT_FOUND
        mine = sorted((a for a in self.actions.values() if a.droplet_id == int(droplet_id)), key=lambda a: -a.id)
        return 200, {"actions": [a.to_api() for a in mine], "links": {}, "meta": {"total": len(mine)}}

    def _action(self, request: JsonRequest, action_id: str) -> tuple[int, Any]:
        action = self.actions.get(int(action_id))
        if action is None:
            return 404, NOT_FOUND
        if action.status == "in-progress" and not (action.type == "restore" and self.stuck_restores):
            action.polls_left -= 1
            if action.polls_left <= 0:
                self._finish(action)
        return 200, {"action": action.to_api()}

    def _finish(self, action: Action) -> None:
        action.completed_at = _now()
        if action.type == "restore":
            action.status = "errored" if self.fail_restores else "completed"
            snapshot = next(s for s in self.snapshots if str(s["id"]) == str(action.image))
            if action.status == "completed" and self.on_droplet_restore is not None:
                self.on_droplet_restore(action.droplet_id, snapshot)
            return
        if self.fail_snapshots:
            action.status = "errored"
            return
        action.status = "completed"
        self.snapshots.append({
            "id": str(next(self._ids)), "name": action.snapshot_name, "created_at": action.completed_at,
            "regions": ["nyc3"], "resource_id": str(action.droplet_id), "resource_type": "droplet",
            "min_disk_size": 25, "size_gigabytes": 1.5, "tags": [],
        })

    def _droplet_snapshots(self, request: JsonRequest, droplet_id: str) -> tuple[int, Any]:
        if int(droplet_id) not in self.droplets:
            return 404, NOT_FOUND
        mine = [
            {**s, "id": int(s["id"]), "type": "snapshot", "distribution": "Ubuntu", "public": False}
            for s in self.snapshots if s["resource_id"] == droplet_id
        ]
        return 200, {"snapshots": mine, "links": {}, "meta": {"total": len(mine)}}

    def _snapshots(self, request: JsonRequest) -> tuple[int, Any]:
        return 200, {"snapshots": list(self.snapshots), "links": {}, "meta": {"total": len(self.snapshots)}}

    def _snapshot(self, request: JsonRequest, snapshot_id: str) -> tuple[int, Any]:
        found = next((s for s in self.snapshots if str(s["id"]) == snapshot_id), None)
        if found is None:
            return 404, NOT_FOUND
        return 200, {"snapshot": {**found, "id": str(found["id"])}}

    def add_snapshot(self, droplet_id: int, name: str, created_at: str | None = None) -> str:
        """A snapshot of `droplet_id` taken earlier (outside any action, at `created_at`, default now); its id."""
        snapshot_id = str(next(self._ids))
        with self.lock:
            self.snapshots.append({
                "id": snapshot_id, "name": name, "created_at": created_at or _now(), "regions": ["nyc3"],
                "resource_id": str(droplet_id), "resource_type": "droplet", "min_disk_size": 25,
                "size_gigabytes": 1.5, "tags": [],
            })
        return snapshot_id

    def _droplet(self, request: JsonRequest, droplet_id: str) -> tuple[int, Any]:
        created = self.new_droplets.get(int(droplet_id))
        if created is not None:
            if created["status"] == "new":
                self.droplet_polls[created["id"]] -= 1
                if self.droplet_polls[created["id"]] <= 0:
                    created.update(status="active", networks=_networks(f"203.0.113.{created['id'] % 250 + 2}"))
            return 200, {"droplet": created}
        name = self.droplets.get(int(droplet_id))
        if name is None:
            return 404, NOT_FOUND
        snapshot_ids = [int(s["id"]) for s in self.snapshots if s["resource_id"] == droplet_id]
        return 200, {"droplet": {
            "id": int(droplet_id), "name": name, "memory": 2048, "vcpus": 2, "disk": 50, "locked": False,
            "status": "active", "created_at": "2025-01-01T00:00:00Z", "region": REGION, "size_slug": "s-2vcpu-2gb",
            "snapshot_ids": snapshot_ids, "backup_ids": [], "features": [], "tags": [],
            "image": {"id": 1, "name": "Ubuntu 24.04", "distribution": "Ubuntu"}, "networks": _networks("203.0.113.1"),
        }}

    def _create_droplet(self, request: JsonRequest) -> tuple[int, Any]:
        body = request.json() or {}
        snapshot = next((s for s in self.snapshots if str(s["id"]) == str(body.get("image"))), None)
        if not body.get("name") or not body.get("size") or not body.get("region"):
            return 422, {"id": "unprocessable_entity", "message": "name, size and region are required"}
        if snapshot is None:
            return 422, {"id": "unprocessable_entity", "message": "You specified an invalid image for Droplet creation."}
        new_id = next(self._ids)
        self.new_droplets[new_id] = {
            "id": new_id, "name": str(body["name"]), "memory": 2048, "vcpus": 2, "disk": 50, "locked": False,
            "status": "new", "created_at": _now(), "region": {**REGION, "slug": body["region"]},
            "size_slug": body["size"], "snapshot_ids": [], "backup_ids": [], "features": [], "tags": [],
            "image": {"id": int(snapshot["id"]), "name": snapshot["name"], "type": "snapshot"},
            "networks": {"v4": [], "v6": []},
        }
        self.droplet_polls[new_id] = self.polls_until_complete
        return 202, {"droplet": self.new_droplets[new_id], "links": {"actions": []}}

    def _list_droplets(self, request: JsonRequest) -> tuple[int, Any]:
        name = request.query.get("name")
        found = [d for d in self.new_droplets.values() if name is None or d["name"] == name]
        return 200, {"droplets": found, "links": {}, "meta": {"total": len(found)}}

    def droplets_named(self, name: str) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(d) for d in self.new_droplets.values() if d["name"] == name]

    def _database_backups(self, request: JsonRequest, database_id: str) -> tuple[int, Any]:
        if database_id not in self.databases:
            return 404, NOT_FOUND
        return 200, {"backups": list(self.database_backups.get(database_id, []))}

    def _cluster(self, request: JsonRequest, database_id: str) -> tuple[int, Any]:
        cluster = self.clusters.get(database_id)
        if cluster is None:
            return 404, NOT_FOUND
        if cluster["status"] == "creating":
            self.cluster_polls[database_id] = self.cluster_polls.get(database_id, 0) - 1
            if self.cluster_polls[database_id] <= 0:
                cluster["status"] = "online"
        return 200, {"database": cluster}

    def _clusters(self, request: JsonRequest) -> tuple[int, Any]:
        return 200, {"databases": list(self.clusters.values())}

    def clusters_named(self, name: str) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(c) for c in self.clusters.values() if c["name"] == name]

    def _create_cluster(self, request: JsonRequest) -> tuple[int, Any]:
        body = request.json() or {}
        restore = body.get("backup_restore") or {}
        source = next((c for c in self.clusters.values() if c["name"] == restore.get("database_name")), None)
        if not body.get("name") or source is None:
            return 422, {"id": "unprocessable_entity", "message": "backup_restore.database_name is not a cluster"}
        created = str(restore.get("backup_created_at") or "")
        if created and created not in {b["created_at"] for b in self.database_backups.get(source["id"], [])}:
            return 422, {"id": "unprocessable_entity", "message": "No backup exists at backup_created_at"}
        uuid = f"{next(self._ids):08d}-0000-4000-8000-000000000000"
        self.clusters[uuid] = _cluster(uuid, str(body["name"]), "creating")
        if self.on_cluster_restore is not None:  # e.g. a real local database restored from the backup
            where = self.on_cluster_restore(str(body["name"]), created)
            self.clusters[uuid]["connection"].update(where or {})
        self.cluster_polls[uuid] = self.polls_until_complete
        return 201, {"database": self.clusters[uuid]}


def _cluster(uuid: str, name: str, status: str) -> dict[str, Any]:
    host = f"{name}-do-user-1.db.ondigitalocean.com"
    return {
        "id": uuid, "name": name, "engine": "pg", "version": "16", "region": "nyc3", "size": "db-s-1vcpu-1gb",
        "num_nodes": 1, "status": status, "created_at": _now(), "db_names": ["defaultdb"],
        "connection": {"protocol": "postgresql", "host": host, "port": 25060, "user": "doadmin",
                       "password": "stand-in-password", "database": "defaultdb", "ssl": True,
                       "uri": f"postgresql://doadmin:stand-in-password@{host}:25060/defaultdb?sslmode=require"},
    }


def _networks(ip: str) -> dict[str, Any]:
    return {"v4": [{"ip_address": ip, "netmask": "255.255.255.0", "gateway": "203.0.113.254", "type": "public"}],
            "v6": []}
