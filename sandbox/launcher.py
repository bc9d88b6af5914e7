"""Start the whole product on one machine: example database, Redis, a real worker and the real bot,
with the local Slack stand-in and its channel page (or real Slack, when its credentials are given).

`start_sandbox()` is shared by `python -m sandbox` and the browser test; `Sandbox.close()` stops
everything it started and drops the throwaway data.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psycopg
import redis
from psycopg import sql
from rq import Queue, Worker

from sandbox import messages, scenarios
from sandbox.digitalocean import DEFAULT_DROPLET_ID, DigitalOceanServer
from sandbox.own_keys import delete_queue, forget_sandbox_requests
from sandbox.page import ChannelPage
from sandbox.pagerduty import PagerDutyServer
from sandbox.people import (
    APPROVER_GROUP,
    BOB,
    CAROL,
    INCIDENT_CHANNEL,
    SANDBOX_USERGROUP_HANDLES,
    SANDBOX_USERGROUPS,
    SANDBOX_USERS,
)
from sandbox.services import (
    LocalService,
    die_with_parent,
    ensure_postgres,
    ensure_redis,
    free_port,
    port_open,
)
from sandbox.slack_api import SlackApiServer

REPO_ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS_DIR = REPO_ROOT / "migrations"
SEED_SQL = Path(__file__).resolve().parent / "seed.sql"
# The example app before the bad deploy: the seed data is loaded at this version, then the
# migration the playbook rolls back is applied on top of it.
KNOWN_GOOD_VERSION = "2025_10_20_120001"
SANDBOX_DATABASE = "rollback_sandbox"
SANDBOX_TARGET = "prod"
# On a reused local Redis the sandbox keeps to its own database number, flushed at start and stop.
SANDBOX_REDIS_DB = 12
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 10.0


class SandboxError(RuntimeError):
    """The sandbox could not start; the message says which part and what to do."""


@dataclass
class Sandbox:
    page_url: str | None
    database_url: str
    bot_port: int | None
    redis_url: str
    workdir: Path
    slack: SlackApiServer | None = None
    pagerduty: PagerDutyServer | None = None
    digitalocean: DigitalOceanServer | None = None
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)
    _services: list[LocalService] = field(default_factory=list)
    _admin_url: str = ""
    _database_name: str = ""
    _flush_redis: bool = False
    _keep_workdir: bool = False
    _queue_name: str = ""
    _forget_channel: str | None = None  # the page's channel: its requests are the sandbox's own
    _claim: psycopg.Connection[Any] | None = None  # holds the advisory lock on the example database's name
    # The worker may die (or be killed to rehearse "no worker is listening") without ending the sandbox:
    # it is reported on the page and in the terminal, and restarted from the page.
    _worker_env: dict[str, str] = field(default_factory=dict)
    _worker_stream: IO[bytes] | None = None
    _worker_reported: int | None = None  # pid of the dead worker already reported
    _page: ChannelPage | None = None
    _started: bool = False
    _spawner: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, "sandbox-spawn"))
    _worker_lock: threading.Lock = field(default_factory=threading.Lock)  # two clicks start one worker
    worker_restarts: int = 0

    def forget_own_keys(self) -> None:
        """Remove this sandbox's requests and queue from Redis (a shared one is never flushed)."""
        if not self.redis_url:
            return
        with contextlib.suppress(redis.RedisError):
            conn = redis.Redis.from_url(self.redis_url)
            if self._forget_channel:
                forget_sandbox_requests(conn, channel=self._forget_channel, target=SANDBOX_TARGET,
                                        database_name=self._database_name or SANDBOX_DATABASE)
            if self._queue_name:
                delete_queue(conn, self._queue_name)

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.logs.get(name)
        if path is None or not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def check_running(self) -> list[str]:
        """Raise when the bot (or, while starting, the worker) has exited. A running sandbox survives its
        worker: a dead worker is returned as a one-line note, once."""
        notes = []
        for name, process in self.processes.items():
            if process.poll() is None:
                continue
            if name == "worker" and self._started:
                if self._worker_reported != process.pid:
                    self._worker_reported = process.pid
                    notes.append(messages.worker_stopped(describe_exit(process.returncode)))
                continue
            raise SandboxError(messages.process_exited(name, process.returncode, self.log_tail(name)))
        return notes

    def worker_status(self) -> dict[str, Any]:
        """What the page shows about the worker."""
        process = self.processes.get("worker")
        code = None if process is None else process.poll()
        return {"running": process is not None and code is None,
                "exit": None if code is None else describe_exit(code), "restarts": self.worker_restarts}

    def stop_worker(self) -> dict[str, Any]:
        """Stop the worker as a deploy would (SIGTERM: it finishes its job's step and deregisters)."""
        with self._worker_lock:
            process = self.processes.get("worker")
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=STOP_TIMEOUT_SECONDS)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self._worker_changed()
        return self.worker_status()

    def restart_worker(self) -> dict[str, Any]:
        """Start a new worker with the first one's environment, when none runs."""
        with self._worker_lock:
            process = self.processes.get("worker")
            if self._worker_env and (process is None or process.poll() is not None):
                # Started from a thread that lives as long as the sandbox: the child's die-with-parent signal
                # follows the thread that forked it, and a page request's thread ends with the request.
                self._spawner.submit(_start_process, self, "worker", "workers", self._worker_env,
                                     self._worker_stream, append=True).result()
                self.worker_restarts += 1
                self._watch_worker()
        self._worker_changed()
        return self.worker_status()

    def _watch_worker(self) -> None:
        """Wake the page when the worker exits (the page long-polls on Slack's changes)."""
        process = self.processes["worker"]

        def watch() -> None:
            process.wait()
            self._worker_changed()

        threading.Thread(target=watch, name="sandbox-worker-watch", daemon=True).start()

    def _worker_changed(self) -> None:
        if self._page is not None:
            self._page.changed()

    def close(self) -> None:
        """Stop processes and servers, drop the example database, remove throwaway files. Idempotent."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()
        self._spawner.shutdown(wait=False)
        for server in (self.slack, self.pagerduty, self.digitalocean):
            if server is not None:
                server.stop()
        self.slack = self.pagerduty = self.digitalocean = None
        self.forget_own_keys()
        self._queue_name = ""
        if self._database_name:
            with contextlib.suppress(psycopg.Error), psycopg.connect(self._admin_url, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self._database_name)))
            self._database_name = ""
        if self._flush_redis:
            with contextlib.suppress(redis.RedisError):
                redis.Redis.from_url(self.redis_url).flushdb()
            self._flush_redis = False
        if self._claim is not None:
            with contextlib.suppress(psycopg.Error):
                self._claim.close()
            self._claim = None
        for service in self._services:
            service.close()
        self._services.clear()
        if not self._keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _database_url(admin_url: str, name: str) -> str:
    return psycopg.conninfo.make_conninfo(admin_url, dbname=name)


def create_example_database(admin_url: str, name: str) -> str:
    """A fresh database holding the example app with seed data and both example migrations applied."""
    from workers.engine import Engine  # local: only the launcher's database set-up needs the engine

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = _database_url(admin_url, name)
    with tempfile.TemporaryDirectory(prefix="rollback-sandbox-migrations-") as early:
        # The migrations up to the known-good version, so the seed data predates the bad deploy.
        for version_dir in sorted(MIGRATIONS_DIR.iterdir()):
            if version_dir.is_dir() and version_dir.name[: len(KNOWN_GOOD_VERSION)] <= KNOWN_GOOD_VERSION:
                shutil.copytree(version_dir, Path(early) / version_dir.name)
        Engine(url, early, actor="sandbox").apply()
    with psycopg.connect(url) as conn:
        conn.execute(SEED_SQL.read_bytes())
    Engine(url, MIGRATIONS_DIR, actor="sandbox").apply()
    return url


def play_scenario(name: str, database_url: str, workdir: Path) -> Path:
    """Prepare a playbook scenario on the example database; the migrations folder the target uses."""
    from workers.engine import Engine, EngineError  # local, like create_example_database

    if name not in scenarios.SCENARIOS:
        raise SandboxError(messages.unknown_scenario(name, sorted(scenarios.SCENARIOS)))
    folder = workdir / "migrations"
    shutil.copytree(MIGRATIONS_DIR, folder)
    scenarios.SCENARIOS[name](folder)
    try:  # expected to fail halfway: that is the scenario
        Engine(database_url, folder, actor="sandbox").apply()
    except EngineError:
        pass
    return folder


@dataclass(frozen=True)
class People:
    """Who may do what in the sandbox's config: the page's people, or real Slack ids from the environment."""

    channels: tuple[str, ...] = (INCIDENT_CHANNEL,)
    approvers: tuple[str, ...] = (BOB.id,)
    approver_group: str | None = APPROVER_GROUP
    contacts: tuple[str, ...] = (CAROL.id,)
    target_contacts: tuple[str, ...] = (BOB.id,)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> People:
        """Real Slack: SANDBOX_CHANNELS, SANDBOX_APPROVERS, SANDBOX_CONTACTS (comma-separated Slack ids)."""
        def ids(name: str) -> tuple[str, ...]:
            return tuple(part.strip() for part in env.get(name, "").split(",") if part.strip())

        return cls(channels=ids("SANDBOX_CHANNELS"), approvers=ids("SANDBOX_APPROVERS"), approver_group=None,
                   contacts=ids("SANDBOX_CONTACTS"), target_contacts=())


def _toml_list(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(f'"{v}"' for v in values) + "]"


def write_config(path: Path, *, backup_dir: Path, people: People, health_url: str | None,
                 maintenance_url: str | None, droplet_id: int | None = None,
                 migrations_dir: Path = MIGRATIONS_DIR) -> None:
    """The sandbox's rollback.toml: one target `prod` (the example database) and who may approve."""
    lines = [
        "# Written by the sandbox launcher (sandbox/launcher.py) for this run only.",
        "[bot]",
        f"channels = {_toml_list(people.channels)}",
        f"approvers = {_toml_list(people.approvers)}",
        *([f'approver_group = "{people.approver_group}"'] if people.approver_group else []),
        "",
        "[workers]",
        f'backup_dir = "{backup_dir}"',
        "lock_timeout_ms = 3000",
        "lock_retries = 2",
        "",
        "[escalation]",
        f"contacts = {_toml_list(people.contacts)}",
        "",
        f"[targets.{SANDBOX_TARGET}]",
        f'migrations_dir = "{migrations_dir}"',
        'critical_tables = ["users", "projects"]',
        f"escalation = {_toml_list(people.target_contacts)}",
    ]
    if health_url:
        lines.append(f'health_url = "{health_url}"')
    if droplet_id:
        lines.append(f"do_droplet_id = {droplet_id}")
    if maintenance_url:
        lines.append(f'maintenance_on = {{ url = "{maintenance_url}/on", method = "POST" }}')
        lines.append(f'maintenance_off = {{ url = "{maintenance_url}/off", method = "POST" }}')
    path.write_text("\n".join(lines) + "\n")


def _redis_for_sandbox(url: str | None) -> tuple[LocalService, str, bool]:
    """(service, URL to use, whether to flush it): a given URL is used as is and never flushed."""
    service = ensure_redis(url)
    if url:
        return service, service.url, False
    base = service.url.rsplit("/", 1)[0]
    return service, f"{base}/{SANDBOX_REDIS_DB}", True


def describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return messages.killed_by(signal.Signals(-code).name)
    return messages.exit_status(code)


def _start_process(sandbox: Sandbox, name: str, module: str, env: Mapping[str, str], stream: IO[bytes] | None,
                   *, append: bool = False) -> None:
    log_path = sandbox.workdir / f"{name}.log"
    sandbox.logs[name] = log_path
    output: IO[bytes] | int
    if stream is None:
        output = log_path.open("ab" if append else "wb")
    else:
        output = stream
    sandbox.processes[name] = subprocess.Popen(
        [sys.executable, "-m", module], cwd=REPO_ROOT, env=dict(env), stdout=output, stderr=subprocess.STDOUT,
        preexec_fn=die_with_parent,
    )


def _wait(sandbox: Sandbox, what: str, ready: object, timeout: float = START_TIMEOUT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not ready():  # type: ignore[operator]
        sandbox.check_running()
        if time.monotonic() > deadline:
            raise SandboxError(messages.not_ready(what, timeout, sandbox.workdir))
        time.sleep(0.2)


def _page_server(port: int) -> SlackApiServer:
    """The Slack stand-in and the page, bound to `port` (not yet serving)."""
    try:
        return SlackApiServer(token=f"xoxb-sandbox-{secrets.token_hex(8)}", users=SANDBOX_USERS,
                              usergroups=SANDBOX_USERGROUPS, port=port)
    except OSError as err:
        raise SandboxError(messages.page_port_busy(port, err.strerror)) from None


def _claim_database(admin_url: str, name: str) -> psycopg.Connection[Any]:
    """Hold a session lock for the example database's name while the sandbox runs, so that a second
    sandbox on the same server refuses to start instead of dropping the first one's database."""
    conn = psycopg.connect(admin_url, autocommit=True)
    row = conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (f"rollback-sandbox:{name}",)).fetchone()
    if not (row and row[0]):
        conn.close()
        raise SandboxError(messages.another_sandbox(name))
    return conn


# Scenario 4: the users the bad deploy deletes (their projects go by cascade).
LOST_USER_IDS = (11, 20)


def lose_rows(database_url: str) -> int:
    """The example app's bad deploy of scenario 4: rows deleted by mistake; how many users went."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        cursor = conn.execute("DELETE FROM users WHERE id BETWEEN %s AND %s", LOST_USER_IDS)
        return cursor.rowcount


def start_sandbox(
    *,
    database_url: str | None = None,
    redis_url: str | None = None,
    page_port: int = 0,
    bot_port: int | None = None,
    database_name: str = SANDBOX_DATABASE,
    env: Mapping[str, str] | None = None,
    real_slack: bool = False,
    stream_logs: IO[bytes] | None = None,
    scenario: str | None = None,
) -> Sandbox:
    """Bring up database, Redis, worker and bot (and the Slack stand-ins unless `real_slack`).

    `database_url`: a PostgreSQL superuser URL to create the example database on (default: the local
    server, or a throwaway one). `redis_url`: used as given (default: the local one, on its own db number).
    `env`: the environment the bot and worker inherit (default: this process's).
    """
    base_env = {k: v for k, v in (os.environ if env is None else env).items()}
    # The ports first: a busy one must stop this run before it touches any database or Redis.
    slack = None if real_slack else _page_server(page_port)
    if bot_port and port_open("127.0.0.1", bot_port):
        if slack is not None:
            slack.stop()
        raise SandboxError(messages.bot_port_busy(bot_port))
    workdir = Path(tempfile.mkdtemp(prefix="rollback-sandbox-"))
    sandbox = Sandbox(page_url=None, database_url="", bot_port=None, redis_url="", workdir=workdir, slack=slack)
    try:
        postgres = ensure_postgres(database_url)
        sandbox._services.append(postgres)
        sandbox._admin_url = postgres.url
        sandbox._claim = _claim_database(postgres.url, database_name)
        redis_service, redis_to_use, flush = _redis_for_sandbox(redis_url)
        sandbox._services.append(redis_service)
        sandbox.redis_url, sandbox._flush_redis = redis_to_use, flush
        if flush:
            redis.Redis.from_url(redis_to_use).flushdb()
        sandbox._database_name = database_name
        if not real_slack:  # a previous run's requests on a shared Redis would still hold the target
            sandbox._forget_channel = INCIDENT_CHANNEL
            sandbox.forget_own_keys()
        sandbox.database_url = create_example_database(postgres.url, database_name)
        migrations_dir = MIGRATIONS_DIR
        if scenario is not None:  # a prepared incident on top of the example app (sandbox/scenarios.py)
            migrations_dir = play_scenario(scenario, sandbox.database_url, workdir)
        queue_name = sandbox._queue_name = f"sandbox-{uuid.uuid4().hex[:8]}"
        common = {
            **base_env,
            "PYTHONUNBUFFERED": "1",
            "REDIS_URL": redis_to_use,
            "ROLLBACK_QUEUE": queue_name,
            "ROLLBACK_CONFIG": str(workdir / "rollback.toml"),
        }
        for var in [v for v in common if v.endswith("_DATABASE_URL")]:
            del common[var]  # only the sandbox's own target is reachable
        health_url = maintenance_url = None
        if real_slack:
            bot_env = dict(common)
        else:
            assert sandbox.slack is not None
            page = ChannelPage(sandbox.slack, channel=INCIDENT_CHANNEL, people=SANDBOX_USERS,
                               group_handles=SANDBOX_USERGROUP_HANDLES)
            sandbox.slack.start()
            sandbox.pagerduty = PagerDutyServer().start()
            sandbox.digitalocean = DigitalOceanServer(token=f"do-sandbox-{secrets.token_hex(8)}").start()
            sandbox.page_url = sandbox.slack.url + "/"
            health_url, maintenance_url = page.health_url, page.maintenance_url
            page.lose_rows = functools.partial(lose_rows, sandbox.database_url)
            signing_secret = secrets.token_hex(16)
            for var in ("SLACK_APP_TOKEN", "DIGITALOCEAN_TOKEN", "DIGITALOCEAN_API_URL"):
                common.pop(var, None)
            common.update({
                "SLACK_BOT_TOKEN": sandbox.slack.token,
                "SLACK_API_URL": sandbox.slack.api_url,
                "PAGERDUTY_EVENTS_URL": sandbox.pagerduty.url,
                "PAGERDUTY_ROUTING_KEY": "sandbox" + "0" * 25,
                "DIGITALOCEAN_TOKEN": sandbox.digitalocean.token,
                "DIGITALOCEAN_API_URL": sandbox.digitalocean.url,
            })
            bot_env = {**common, "SLACK_SIGNING_SECRET": signing_secret}
        people = People.from_env(base_env) if real_slack else People()
        write_config(workdir / "rollback.toml", backup_dir=workdir / "backups", people=people,
                     health_url=health_url, maintenance_url=maintenance_url,
                     droplet_id=None if real_slack else DEFAULT_DROPLET_ID, migrations_dir=migrations_dir)
        worker_env = {**common, "PROD_DATABASE_URL": sandbox.database_url, "BACKUP_DIR": str(workdir / "backups")}
        for var in ("SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN"):
            worker_env.pop(var, None)
        sandbox._worker_env, sandbox._worker_stream = worker_env, stream_logs
        _start_process(sandbox, "worker", "workers", worker_env, stream_logs)
        connection = redis.Redis.from_url(redis_to_use)
        queue = Queue(queue_name, connection=connection)
        _wait(sandbox, "worker", lambda: Worker.all(connection=connection, queue=queue))
        port = sandbox.bot_port = bot_port or free_port()
        _start_process(sandbox, "bot", "bot", {**bot_env, "PORT": str(port)}, stream_logs)
        if not real_slack:
            _wait(sandbox, "bot", lambda: port_open("127.0.0.1", port))
            page.connect(f"http://127.0.0.1:{port}/slack/events", signing_secret)
            page.worker = sandbox
            sandbox._page = page
        sandbox._started = True
        sandbox._watch_worker()
        return sandbox
    except BaseException:
        sandbox.close()
        raise
