"""An approved request run in this process, without Redis, RQ or Slack: the break-glass path of `run-migrations`.

The workers' code runs unchanged (the one runner, workers/runtime/approved_requests.py, and each kind's
workers/verbs/<kind>.py): only the context differs.

- the request record, its step claims and its pipeline state live in memory (`LocalStore`, `LocalContext`);
- "progress" prints each thread line on the terminal instead of posting it;
- the wrong-database guard uses Redis's record when Redis answers, else only the database's own record
  (a notice says so), exactly like `run-migrations --target`;
- no watch window is opened (nobody would run its looks: the playbook's Step 7 is watched by hand).

Break-glass is one person: the request is created approved, requester = approver = `--actor`.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, cast

import redis

from core.config import Settings
from core.jsontypes import JsonObject
from core.kinds import RequestKind
from core.requests import Request, RequestStatus
from workers.runtime.context import Context
from workers.runtime.pipeline_state import PipelineState, StateValue, stored
from workers.runtime.progress import Progress

ID_PREFIX = "BG-"  # a break-glass request, never confused with the bot's RB- ids


class MemoryKeys:
    """The two Redis calls the wrong-database guard makes (`get`, `set`), kept in memory when Redis is down."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        return self.values.get(key)

    def set(self, key: str, value: Any, nx: bool = False, **_: Any) -> bool:
        if nx and key in self.values:
            return False
        self.values[key] = value
        return True


class LocalStore:
    """The RequestStore calls the runner and the kinds' steps make, on one in-memory request."""

    def __init__(self) -> None:
        self.requests: dict[str, Request] = {}
        self.claims: set[tuple[str, str]] = set()

    def add(self, request: Request) -> Request:
        self.requests[request.id] = request
        return request

    def get(self, request_id: str) -> Request | None:
        return self.requests.get(request_id)

    def claim(self, request_id: str, step: str, ttl_seconds: int | None = None) -> bool:
        if (request_id, step) in self.claims:
            return False
        self.claims.add((request_id, step))
        return True

    def update(self, request_id: str, **fields: Any) -> Request:
        self.requests[request_id] = replace(self.requests[request_id], **fields)
        return self.requests[request_id]

    def set_status(self, request_id: str, status: str | RequestStatus, **fields: Any) -> Request:
        return self.update(request_id, status=RequestStatus(status), **fields)

    def clear_plans(self, target: str) -> None:
        """No plan is saved on the break-glass path (the bot's, in Redis, expire on their own)."""

    def watched_for_target(self, target: str) -> Request | None:
        return None


@dataclass
class LocalContext(Context):
    """A worker's context for one command line: everything a request needs, nothing in Redis."""

    out: Callable[[str], None] = print
    notice: Callable[[str], None] = print
    local_store: LocalStore = field(default_factory=LocalStore)
    state: dict[str, JsonObject] = field(default_factory=dict)
    _keys: Any = None

    @classmethod
    def of(cls, settings: Settings, out: Callable[[str], None], notice: Callable[[str], None]) -> LocalContext:
        # No watch window: its looks are RQ jobs, and break-glass has no worker to run them.
        return cls(replace(settings, workers=replace(settings.workers, watch_window_s=0)), out=out, notice=notice)

    @property
    def redis(self) -> redis.Redis:
        """Real Redis for the guard's record when it answers; otherwise keys in memory (said once)."""
        if self._keys is None:
            conn = redis.Redis.from_url(self.settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
            try:
                conn.ping()
                self._keys = conn
            except redis.RedisError:
                self.notice("notice: Redis does not answer: only the database's own record of the target is "
                            "checked by the wrong-database guard")
                self._keys = MemoryKeys()
        return cast(redis.Redis, self._keys)

    def store(self) -> Any:  # the RequestStore calls used on a request, in memory
        return self.local_store

    def progress(self, channel: str | None, thread_ts: str | None) -> Progress:
        return Progress(None, None, None, self.out, interval_s=self.options.progress_interval_s,
                        secrets=self.secrets())

    def save_state(self, request_id: str, **values: StateValue) -> None:
        self.state.setdefault(request_id, {}).update({k: stored(v) for k, v in values.items()})

    def load_state(self, request_id: str) -> PipelineState:
        return PipelineState.from_dict(self.state.get(request_id) or {})

    @contextmanager
    def lease(self, job_id: str | None) -> Iterator[None]:
        yield  # this process is the job: nobody else watches for its death

    def claim_report(self, job_id: str) -> bool:
        return True

    def approved(self, kind: RequestKind, target: str, actor: str, *, digest: str | None,
                 backup: str | None = None, to_version: str | None = None,
                 params: JsonObject | None = None) -> Request:
        """The request break-glass runs: approved at once by the one person who asked (`actor`)."""
        now = time.time()
        request_id = ID_PREFIX + secrets.token_hex(3).upper()
        return self.local_store.add(Request(
            id=request_id, kind=kind, target=target, channel="", thread_ts="", requester=actor,
            status=RequestStatus.APPROVED, created_at=now, expires_at=now, plan_hash=digest, backup=backup,
            to_version=to_version, params=dict(params or {}), approver=actor, decided_by=actor, decided_at=now))
