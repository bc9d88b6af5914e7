"""A local stand-in for the part of the Supabase Management API (v1) that point-in-time recovery uses.

Served, with a bearer token required: `GET /v1/projects/{ref}` (status), `GET /v1/projects/{ref}/database/backups`
(`pitr_enabled` and the window `physical_backup_data.{earliest,latest}_physical_backup_date_unix`) and
`POST /v1/projects/{ref}/database/backups/restore-pitr` (`{"recovery_time_target_unix": N}`). After a
restore the project reports `RESTORING` for `polls_until_healthy` status reads, then `ACTIVE_HEALTHY`.

`on_restore(ref, unix_time)`, when set, is called when a restore is accepted, so a test can make the
database really go back (e.g. load a dump taken at that moment). `fail_next` queues status codes that
the next requests answer with (a 503 to exercise retries), `fail_restores` the same for restore-pitr
calls only, and `stuck = True` keeps a restoring project
from ever becoming healthy (a poll that must time out). `posts` counts the POSTs per path and
`post_faults` loses the next POSTs' answers, after acting or not (sandbox/http_stub.py): a lost
answer is looked up in the project's status (`RESTORING`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sandbox.http_stub import JsonHttpServer, JsonRequest

DEFAULT_REF = "abcdefghijklmnopqrst"
HEALTHY = "ACTIVE_HEALTHY"
RESTORING = "RESTORING"
PITR_WINDOW_SECONDS = 7 * 24 * 3600


@dataclass
class Project:
    ref: str
    name: str
    pitr_enabled: bool = True
    earliest_unix: int = field(default_factory=lambda: int(time.time()) - PITR_WINDOW_SECONDS)
    latest_unix: int | None = None  # None: "now", as a project streaming its WAL reports
    status: str = HEALTHY
    polls_left: int = 0

    def to_api(self) -> dict[str, Any]:
        return {"id": self.ref, "ref": self.ref, "name": self.name, "organization_id": "org-sandbox",
                "region": "ap-southeast-1", "created_at": "2025-01-01T00:00:00Z", "status": self.status}


class SupabaseServer(JsonHttpServer):
    """`url` is the Management API base URL for `SUPABASE_API_URL` (the real one is https://api.supabase.com)."""

    def __init__(self, *, token: str = "sbp_test_token", projects: dict[str, str] | None = None,
                 polls_until_healthy: int = 2, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host=host, port=port)
        self.token = token
        self.projects = {ref: Project(ref, name) for ref, name in (projects or {DEFAULT_REF: "app-prod"}).items()}
        self.polls_until_healthy = polls_until_healthy
        self.restores: list[tuple[str, int]] = []
        self.requests: list[tuple[str, str]] = []
        self.fail_next: list[int] = []
        self.fail_restores: list[int] = []  # status codes the next restore-pitr calls answer with
        self.stuck = False
        self.on_restore: Callable[[str, int], None] | None = None

    @property
    def url(self) -> str:
        return self.root_url

    def route(self, request: JsonRequest) -> tuple[int, Any]:
        with self.lock:
            self.requests.append((request.verb, request.path))
            if request.headers.get("Authorization") != f"Bearer {self.token}":
                return 401, {"message": "Unauthorized"}
            if self.fail_next:
                return self.fail_next.pop(0), {"message": "Service temporarily unavailable"}
            for pattern, verb, handler in (
                (r"/v1/projects/([a-z0-9]+)", "GET", self._project),
                (r"/v1/projects/([a-z0-9]+)/database/backups", "GET", self._backups),
                (r"/v1/projects/([a-z0-9]+)/database/backups/restore-pitr", "POST", self._restore_pitr),
            ):
                match = re.fullmatch(pattern, request.path)
                if match and verb == request.verb:
                    project = self.projects.get(match.group(1))
                    if project is None:
                        return 404, {"message": "Project not found"}
                    return handler(request, project)
            return 404, {"message": "Cannot " + request.verb + " " + request.path}

    def _project(self, request: JsonRequest, project: Project) -> tuple[int, Any]:
        if project.status == RESTORING and not self.stuck:
            project.polls_left -= 1
            if project.polls_left <= 0:
                project.status = HEALTHY
        return 200, project.to_api()

    def _backups(self, request: JsonRequest, project: Project) -> tuple[int, Any]:
        window = None
        if project.pitr_enabled:
            window = {"earliest_physical_backup_date_unix": project.earliest_unix,
                      "latest_physical_backup_date_unix": project.latest_unix or int(time.time())}
        return 200, {"region": "ap-southeast-1", "walg_enabled": True, "pitr_enabled": project.pitr_enabled,
                     "backups": [], "physical_backup_data": window}

    def _restore_pitr(self, request: JsonRequest, project: Project) -> tuple[int, Any]:
        body = request.json()
        target = body.get("recovery_time_target_unix") if isinstance(body, dict) else None
        if isinstance(target, str) and target.isdigit():
            target = int(target)
        if not isinstance(target, int) or isinstance(target, bool):
            return 400, {"message": "recovery_time_target_unix must be a number"}
        if not project.pitr_enabled:
            return 400, {"message": "Point in time recovery is not enabled for this project"}
        latest = project.latest_unix or int(time.time())
        if not project.earliest_unix <= target <= latest:
            return 400, {"message": "recovery_time_target_unix is outside the available PITR window"}
        if self.fail_restores:
            return self.fail_restores.pop(0), {"message": "Service temporarily unavailable"}
        if project.status != HEALTHY:
            return 409, {"message": f"Project is {project.status}"}
        self.restores.append((project.ref, target))
        if self.on_restore is not None:
            self.on_restore(project.ref, target)
        project.status = RESTORING
        project.polls_left = self.polls_until_healthy
        return 201, {}
