"""What every job needs, built once per worker process from the settings: clients, stores, conninfo.

The worker's entry point loads the settings (core.config.load_settings, the one reader of the
environment) before forking, so each work-horse inherits the cached context.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
import redis
from psycopg import conninfo as pg_conninfo

from core import defaults
from core.config import ConfigError, Settings, Target, WorkerSettings, load_settings
from core.requests import Request, RequestStore
from workers.engine import Engine
from workers.engine.redact import password_of
from workers.runtime.escalation import Pager, pager_from
from workers.runtime.pipeline_state import PipelineState, StateValue, stored
from workers.runtime.progress import Progress, make_client

logger = logging.getLogger("workers")

KEY_PREFIX = "rollback"
URL_USERINFO_PASSWORD = re.compile(r"//[^/@\s:]*:([^@\s]+)@")


@dataclass
class Context:
    settings: Settings
    _redis: redis.Redis | None = field(default=None, repr=False)
    _redis_pid: int = field(default=0, repr=False)

    @property
    def options(self) -> WorkerSettings:
        """The worker-only settings (core.config.WorkerSettings)."""
        return self.settings.workers

    @property
    def redis(self) -> redis.Redis:
        if self._redis is None or self._redis_pid != os.getpid():  # never share a socket across fork
            self._redis_pid = os.getpid()
            # Socket timeouts: a Redis that goes away mid-job fails the call instead of hanging it.
            self._redis = redis.Redis.from_url(
                self.settings.redis_url, socket_timeout=defaults.HTTP_TIMEOUT_SECONDS,
                socket_connect_timeout=defaults.HTTP_TIMEOUT_SECONDS,
            )
        return self._redis

    def store(self) -> RequestStore:
        return RequestStore(self.redis, prefix=KEY_PREFIX)

    def pager(self) -> Pager:
        return pager_from(self.settings)

    def progress(self, channel: str | None, thread_ts: str | None) -> Progress:
        client = make_client(self.settings.slack_bot_token, self.settings.slack_api_url) if channel else None
        return Progress(client, channel, thread_ts, logger.info, interval_s=self.options.progress_interval_s,
                        secrets=self.secrets())

    def secrets(self) -> list[str]:
        """Every secret this process holds (tokens, each target's database password): what no line
        posted or logged may contain, whatever error text happened to echo it."""
        found = [self.settings.slack_bot_token, self.settings.pagerduty_routing_key, self.settings.digitalocean_token,
                 self.settings.supabase_access_token]
        for target in self.settings.targets.values():
            try:
                url = self.settings.database_url(target)
            except ConfigError:
                continue
            # A malformed URL has no parsable password, yet an error may quote it whole.
            found += [password_of(url), *URL_USERINFO_PASSWORD.findall(url)]
        return [secret for secret in found if secret]

    def target(self, name: str) -> Target:
        return self.settings.target(name)

    def conninfo(self, target: Target) -> str:
        """The target's DSN with a connect timeout and TCP keepalives: a server that vanishes mid-job
        is noticed within seconds instead of leaving the job hanging on a dead socket."""
        return pg_conninfo.make_conninfo(
            self.settings.database_url(target),
            connect_timeout=self.options.connect_timeout_s,
            keepalives=1, keepalives_idle=5, keepalives_interval=2, keepalives_count=3,
            application_name=defaults.WORKER_APPLICATION_NAME,
        )

    def engine(self, target: Target, actor: str, *, request: Request | None = None,
               log: Callable[[str], None] | None = None, escrow_required: bool = False) -> Engine:
        """The engine on a target, with the workers' lock and statement bounds and connect timeout;
        with a request, its runs are recorded as that request's (approver, request id)."""
        return Engine(
            self.conninfo(target), target.migrations_dir, actor=actor,
            approved_by=request.approver if request else None, request_id=request.id if request else None,
            lock_timeout_ms=self.settings.lock_timeout_ms, lock_retries=self.settings.lock_retries,
            statement_timeout_ms=self.settings.statement_timeout_ms, dry_run_budget_ms=target.dry_run_budget_ms,
            connect_timeout_s=self.options.connect_timeout_s, log=log,
            escrow=target.escrow, escrow_required=escrow_required,
        )

    def connect(self, target: Target) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self.conninfo(target), autocommit=True)
        conn.execute("SELECT set_config('statement_timeout', %s, false)", (str(self.settings.statement_timeout_ms),))
        return conn

    # per-request pipeline state: what one step hands the next (backup, baseline counts, reports)
    def state_key(self, request_id: str) -> str:
        return f"{KEY_PREFIX}:pipeline:{request_id}"

    def save_state(self, request_id: str, **values: StateValue) -> None:
        """Keep a step's result (by its step name) or a fact of the run (workers/runtime/pipeline_state.py)."""
        key = self.state_key(request_id)
        self.redis.hset(key, mapping={k: json.dumps(stored(v), default=str) for k, v in values.items()})
        self.redis.expire(key, defaults.REQUEST_RECORD_TTL_SECONDS)

    def load_state(self, request_id: str) -> PipelineState:
        raw = self.redis.hgetall(self.state_key(request_id))
        return PipelineState.from_dict({(k.decode() if isinstance(k, bytes) else k): json.loads(v)
                                        for k, v in raw.items()})

    # leases: proof that the process running a job is alive
    def lease_key(self, job_id: str) -> str:
        return f"{KEY_PREFIX}:lease:{job_id}"

    @contextmanager
    def lease(self, job_id: str | None) -> Iterator[None]:
        if not job_id:
            yield
            return
        stop = threading.Event()
        key, ttl = self.lease_key(job_id), self.options.lease_ttl_s
        conn = redis.Redis.from_url(self.settings.redis_url, socket_timeout=2, socket_connect_timeout=2)

        def renew() -> None:
            while True:
                try:
                    conn.set(key, str(os.getpid()), ex=ttl)
                except redis.RedisError:
                    logger.warning("could not renew the lease of job %s", job_id)
                if stop.wait(ttl / 3):
                    return

        thread = threading.Thread(target=renew, name=f"lease-{job_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=3)
            try:
                conn.delete(key)
            except redis.RedisError:
                pass
            conn.close()

    def claim_report(self, job_id: str) -> bool:
        """Only one of the failure paths (callback, killed-horse handler, watchdog) reports a job."""
        return bool(self.redis.set(f"{KEY_PREFIX}:reported:{job_id}", str(time.time()), nx=True,
                                   ex=defaults.REQUEST_RECORD_TTL_SECONDS))


@functools.cache
def context() -> Context:
    """The process's context, from the environment, built once (before the fork in `python -m workers`)."""
    return Context(load_settings())
