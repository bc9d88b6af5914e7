"""Settings, read once at the edge (the bot's and the worker's entry points) and passed in explicitly.

Two sources:
- a TOML file (`ROLLBACK_CONFIG`, default `./rollback.toml` when present) for policy and per-target
  settings; it never holds a secret;
- the environment for secrets and URLs: `<NAME>_DATABASE_URL` defines target `<name>` (the playbook's
  `PROD_DATABASE_URL` -> `prod`), plus tokens, keys and service URLs.

See `rollback.example.toml` for every key, documented.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import defaults

TARGET_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
DATABASE_URL_ENV = re.compile(r"^([A-Z][A-Z0-9_]*)_DATABASE_URL$")


class ConfigError(ValueError):
    """The configuration is invalid; the message says which key and why."""


@dataclass(frozen=True)
class Hook:
    """A maintenance hook: a shell command, or an HTTP request (POST unless `method` says otherwise)."""

    command: str | None = None
    url: str | None = None
    method: str = "POST"


@dataclass(frozen=True)
class Target:
    name: str
    database_url_env: str
    migrations_dir: str = defaults.MIGRATIONS_DIR
    critical_tables: tuple[str, ...] = ()
    health_url: str | None = None
    smoke_command: str | None = None
    maintenance_on: Hook | None = None
    maintenance_off: Hook | None = None
    # The dry run's stall forecast decides maintenance mode (core/stall_policy.py): required at or above,
    # skipped below; None: the configured hooks run whatever the forecast.
    maintenance_above_stall_s: float | None = None
    skip_maintenance_below_stall_s: float | None = None
    # Once the dry run holds a lock that blocks the application, it executes at most this long more.
    dry_run_budget_ms: int = defaults.DRY_RUN_BUDGET_MS
    do_droplet_id: int | None = None
    do_database_id: str | None = None
    # a Supabase project: `/rollback pitr` (Method 3A); its point-in-time recovery also protects this database
    supabase_project_ref: str | None = None
    escalation: tuple[str, ...] = ()
    # What protects a rollback (docs/workers.md): a full pg_dump, the data-loss escrow, or both. `escrow` alone
    # only where a DigitalOcean snapshot or Supabase PITR also protects the target (checked when loading).
    backup_policy: str = defaults.BACKUP_POLICY

    @property
    def platform_net(self) -> str | None:
        """The provider's own net under this target, if any (shown on the approval card)."""
        if self.do_droplet_id or self.do_database_id:
            return "DigitalOcean snapshot"
        if self.supabase_project_ref:
            return "Supabase PITR"
        return None

    @property
    def full_backup(self) -> bool:
        return self.backup_policy in ("full", "full+escrow")

    @property
    def escrow(self) -> bool:
        return self.backup_policy in ("escrow", "full+escrow")


@dataclass(frozen=True)
class Policy:
    """Who may do what, where, and for how long a request stays valid."""

    channels: tuple[str, ...] = ()
    approvers: tuple[str, ...] = ()
    approver_group: str | None = None
    requesters: tuple[str, ...] = ()  # empty: everyone in the incident channels may ask
    request_ttl_seconds: int = defaults.REQUEST_TTL_SECONDS
    start_within_seconds: int = defaults.START_WITHIN_SECONDS
    plan_ttl_seconds: int = defaults.PLAN_TTL_SECONDS
    backup_check_timeout_seconds: int = defaults.BACKUP_CHECK_TIMEOUT_SECONDS


# --- the workers' settings (owner: workers) ------------------------------------------------------


@dataclass(frozen=True)
class WorkerSettings:
    """Worker-only knobs (docs/workers.md). Environment names end in their unit; the older names
    without it (ROLLBACK_PROGRESS_INTERVAL, ...) are still read."""

    progress_interval_s: float = defaults.PROGRESS_INTERVAL_SECONDS
    watchdog_interval_s: float = defaults.WORKER_WATCHDOG_INTERVAL_SECONDS
    lease_ttl_s: int = defaults.LEASE_TTL_SECONDS
    # One connect timeout for every connection the workers open to a target (jobs and the engine).
    connect_timeout_s: int = defaults.CONNECT_TIMEOUT_SECONDS
    job_timeout_s: int = defaults.JOB_TIMEOUT_SECONDS
    restore_jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    # How a restore into the target runs (workers/postgres/pg_restore.py METHODS) and where a swap renames from.
    restore_method: str = defaults.RESTORE_METHOD
    maintenance_database: str = defaults.MAINTENANCE_DATABASE
    pg_dump: str = "pg_dump"
    pg_restore: str = "pg_restore"
    psql: str = "psql"
    # Step 1, assess: an active session older than this is named as long-running.
    long_running_s: float = defaults.LONG_RUNNING_SECONDS
    # After a verified rollback or restore: how long the workers keep watching, and how often they look.
    watch_window_s: float = defaults.WATCH_WINDOW_SECONDS
    watch_interval_s: float = defaults.WATCH_INTERVAL_SECONDS
    # A look this late (or this long unfinished) means nobody is watching (the bot's sweeper ends the watch).
    watch_grace_s: float = defaults.WATCH_GRACE_SECONDS
    # The recovery paths (issue 10): how long a point-in-time recovery or a droplet restore is
    # followed before the thread says so and someone is paged, and how often it is polled.
    pitr_timeout_s: float = defaults.PITR_RESTORE_TIMEOUT_SECONDS
    pitr_poll_s: float = defaults.PITR_POLL_SECONDS
    do_action_timeout_s: float = defaults.DO_ACTION_TIMEOUT_SECONDS
    do_poll_s: float = defaults.DO_ACTION_POLL_SECONDS
    database_wait_s: float = defaults.DATABASE_WAIT_SECONDS


def _number(env: Mapping[str, str], names: tuple[str, ...], default: float) -> float:
    for name in names:
        value = env.get(name)
        if value:
            try:
                return float(value)
            except ValueError as err:
                raise ConfigError(f"{name} must be a number of seconds") from err
    return default


def _restore_method(value: Any) -> str:
    method = str(value or defaults.RESTORE_METHOD)
    if method not in ("auto", "swap", "transaction"):
        raise ConfigError(f"workers.restore_method must be auto, swap or transaction, not {method!r}")
    return method


def _worker_settings(env: Mapping[str, str], raw: Mapping[str, Any]) -> WorkerSettings:
    watchdog = _number(env, ("ROLLBACK_WATCHDOG_INTERVAL_SECONDS", "ROLLBACK_WATCHDOG_INTERVAL"),
                       defaults.WORKER_WATCHDOG_INTERVAL_SECONDS)
    jobs = env.get("ROLLBACK_RESTORE_JOBS") or raw.get("restore_jobs")
    return WorkerSettings(
        progress_interval_s=_number(env, ("ROLLBACK_PROGRESS_INTERVAL_SECONDS", "ROLLBACK_PROGRESS_INTERVAL"),
                                    defaults.PROGRESS_INTERVAL_SECONDS),
        watchdog_interval_s=watchdog,
        # A lease outlives a few missed renewals, and a dead job is found within a few watchdog rounds.
        lease_ttl_s=max(2, int(min(defaults.LEASE_TTL_SECONDS, watchdog * 3))),
        connect_timeout_s=int(_number(env, ("ROLLBACK_CONNECT_TIMEOUT_SECONDS", "ROLLBACK_CONNECT_TIMEOUT"),
                                      defaults.CONNECT_TIMEOUT_SECONDS)),
        job_timeout_s=int(_number(env, ("ROLLBACK_JOB_TIMEOUT_SECONDS", "ROLLBACK_JOB_TIMEOUT"),
                                  defaults.JOB_TIMEOUT_SECONDS)),
        restore_jobs=max(1, int(jobs)) if jobs else max(1, os.cpu_count() or 1),
        restore_method=_restore_method(env.get("ROLLBACK_RESTORE_METHOD") or raw.get("restore_method")),
        maintenance_database=str(raw.get("maintenance_database") or defaults.MAINTENANCE_DATABASE),
        pg_dump=env.get("PG_DUMP") or "pg_dump",
        pg_restore=env.get("PG_RESTORE") or "pg_restore",
        psql=env.get("PSQL") or "psql",
        long_running_s=_number(env, ("ROLLBACK_LONG_RUNNING_SECONDS",),
                               float(raw.get("long_running_seconds", defaults.LONG_RUNNING_SECONDS))),
        watch_window_s=_number(env, ("ROLLBACK_WATCH_WINDOW_SECONDS",),
                               float(raw.get("watch_window_seconds", defaults.WATCH_WINDOW_SECONDS))),
        watch_interval_s=_number(env, ("ROLLBACK_WATCH_INTERVAL_SECONDS",),
                                 float(raw.get("watch_interval_seconds", defaults.WATCH_INTERVAL_SECONDS))),
        watch_grace_s=_number(env, ("ROLLBACK_WATCH_GRACE_SECONDS",),
                              float(raw.get("watch_grace_seconds", defaults.WATCH_GRACE_SECONDS))),
        pitr_timeout_s=_number(env, ("ROLLBACK_PITR_TIMEOUT_SECONDS",), defaults.PITR_RESTORE_TIMEOUT_SECONDS),
        pitr_poll_s=_number(env, ("ROLLBACK_PITR_POLL_SECONDS",), defaults.PITR_POLL_SECONDS),
        do_action_timeout_s=_number(env, ("ROLLBACK_DO_ACTION_TIMEOUT_SECONDS",), defaults.DO_ACTION_TIMEOUT_SECONDS),
        do_poll_s=_number(env, ("ROLLBACK_DO_POLL_SECONDS",), defaults.DO_ACTION_POLL_SECONDS),
        database_wait_s=_number(env, ("ROLLBACK_DATABASE_WAIT_SECONDS",), defaults.DATABASE_WAIT_SECONDS),
    )


# --- end of the workers' settings -----------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    targets: Mapping[str, Target]
    policy: Policy = field(default_factory=Policy)
    escalation: tuple[str, ...] = ()
    backup_dir: str = defaults.BACKUP_DIR
    lock_timeout_ms: int = defaults.LOCK_TIMEOUT_MS
    lock_retries: int = defaults.LOCK_RETRIES
    statement_timeout_ms: int = defaults.STATEMENT_TIMEOUT_MS
    escrow_retention_days: float = defaults.ESCROW_RETENTION_DAYS
    redis_url: str = defaults.REDIS_URL
    queue_name: str = defaults.QUEUE_NAME
    slack_api_url: str | None = None
    slack_bot_token: str | None = field(default=None, repr=False)
    pagerduty_routing_key: str | None = field(default=None, repr=False)
    pagerduty_events_url: str = defaults.PAGERDUTY_EVENTS_URL
    digitalocean_token: str | None = field(default=None, repr=False)
    digitalocean_api_url: str | None = None
    supabase_access_token: str | None = field(default=None, repr=False)
    supabase_api_url: str | None = None
    workers: WorkerSettings = field(default_factory=WorkerSettings)
    # the bot (python -m bot): how Slack reaches it, and its web server
    slack_signing_secret: str | None = field(default=None, repr=False)
    slack_app_token: str | None = field(default=None, repr=False)
    web_host: str = defaults.WEB_HOST
    web_port: int = defaults.WEB_PORT
    web_processes: int = defaults.WEB_PROCESSES
    web_threads: int = defaults.WEB_THREADS
    web_listener_threads: int = defaults.WEB_LISTENER_THREADS
    web_backlog: int = defaults.WEB_BACKLOG
    web_graceful_timeout_seconds: float = defaults.WEB_GRACEFUL_TIMEOUT_SECONDS
    sweep_interval_seconds: float = defaults.EXPIRY_SWEEP_INTERVAL_SECONDS
    worker_heartbeat_grace_seconds: float = defaults.WORKER_HEARTBEAT_GRACE_SECONDS
    env: Mapping[str, str] = field(default_factory=dict, repr=False)

    def target(self, name: str) -> Target:
        try:
            return self.targets[name]
        except KeyError as err:
            raise ConfigError(f"unknown target {name!r}; known: {', '.join(sorted(self.targets)) or 'none'}") from err

    def database_url(self, target: Target) -> str:
        """The target's DSN, from the environment. Only workers call this; it is never logged."""
        url = self.env.get(target.database_url_env)
        if not url:
            raise ConfigError(f"target {target.name!r}: {target.database_url_env} is not set")
        return url

    def contacts_for(self, target: Target) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*target.escalation, *self.escalation)))


def _strings(value: Any, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ConfigError(f"{key} must be a string or a list of strings")


def _seconds(value: Any, key: str, unit: str = "seconds") -> float | None:
    """An optional number of seconds (or of `unit`), 0 or more."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{key} must be a number of {unit}, 0 or more, not {value!r}")
    return float(value)


def _hook(value: Any, key: str) -> Hook | None:
    if value is None:
        return None
    if isinstance(value, str):
        return Hook(command=value)
    if isinstance(value, dict) and (value.get("command") or value.get("url")):
        return Hook(command=value.get("command"), url=value.get("url"), method=str(value.get("method", "POST")))
    raise ConfigError(f"{key} must be a command string or a table with 'command' or 'url'")


def _env_number(env: Mapping[str, str], name: str, default: float, kind: type[int] | type[float]) -> Any:
    """A positive number from the environment (`default` when unset or empty)."""
    raw = env.get(name) or ""
    if not raw.strip():
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = 0
    if not (math.isfinite(value) and value > 0):
        unit = "seconds" if name.endswith("_SECONDS") else "a whole number"
        raise ConfigError(f"{name} must be a positive number ({unit}), not {raw!r}")
    return value


def database_url_env_for(name: str) -> str:
    """The environment variable a target's database URL is read from unless it names another."""
    return f"{name.upper().replace('-', '_')}_DATABASE_URL"


def _target(name: str, raw: Mapping[str, Any]) -> Target:
    if not TARGET_NAME.match(name):
        raise ConfigError(f"target name {name!r} must be lower-case letters, digits, '-' or '_'")
    key = f"targets.{name}"
    droplet = raw.get("do_droplet_id")
    above = _seconds(raw.get("maintenance_above_stall_s"), f"{key}.maintenance_above_stall_s")
    below = _seconds(raw.get("skip_maintenance_below_stall_s"), f"{key}.skip_maintenance_below_stall_s")
    budget = _seconds(raw.get("dry_run_budget_ms"), f"{key}.dry_run_budget_ms", unit="milliseconds")
    if above is not None and below is not None and below > above:
        raise ConfigError(f"{key}.skip_maintenance_below_stall_s ({below:g}) must not exceed "
                          f"{key}.maintenance_above_stall_s ({above:g})")
    policy = str(raw.get("backup_policy", defaults.BACKUP_POLICY))
    if policy not in defaults.BACKUP_POLICIES:
        raise ConfigError(f"{key}.backup_policy must be one of {', '.join(defaults.BACKUP_POLICIES)}, not {policy!r}")
    if policy == "escrow" and not (droplet or raw.get("do_database_id") or raw.get("supabase_project_ref")):
        raise ConfigError(f"{key}.backup_policy = \"escrow\" needs another net under the target: set do_droplet_id, "
                          "do_database_id or supabase_project_ref, or use \"full+escrow\"")
    return Target(
        name=name,
        database_url_env=str(raw.get("database_url_env", database_url_env_for(name))),
        migrations_dir=str(raw.get("migrations_dir", defaults.MIGRATIONS_DIR)),
        critical_tables=_strings(raw.get("critical_tables"), f"{key}.critical_tables"),
        health_url=raw.get("health_url"),
        smoke_command=raw.get("smoke_command"),
        maintenance_on=_hook(raw.get("maintenance_on"), f"{key}.maintenance_on"),
        maintenance_off=_hook(raw.get("maintenance_off"), f"{key}.maintenance_off"),
        maintenance_above_stall_s=above,
        skip_maintenance_below_stall_s=below,
        dry_run_budget_ms=defaults.DRY_RUN_BUDGET_MS if budget is None else int(budget),
        do_droplet_id=int(droplet) if droplet is not None else None,
        do_database_id=raw.get("do_database_id"),
        escalation=_strings(raw.get("escalation"), f"{key}.escalation"),
        supabase_project_ref=str(raw["supabase_project_ref"]) if raw.get("supabase_project_ref") else None,
        backup_policy=policy,
    )


def _retention(raw: Any) -> float:
    try:
        days = float(raw)
    except (TypeError, ValueError):
        days = -1.0
    if not (math.isfinite(days) and days > 0):
        raise ConfigError(f"workers.escrow_retention_days must be a positive number of days, not {raw!r}")
    return days


def load_settings(env: Mapping[str, str] | None = None, path: str | os.PathLike[str] | None = None) -> Settings:
    """Build Settings from a config file and the environment. Call once, at a process's edge."""
    env = dict(os.environ if env is None else env)
    config_path = Path(path or env.get("ROLLBACK_CONFIG") or defaults.CONFIG_FILE)
    raw: dict[str, Any] = {}
    if config_path.exists():
        with config_path.open("rb") as fh:
            try:
                raw = tomllib.load(fh)
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{config_path}: {exc}") from exc
    elif path or env.get("ROLLBACK_CONFIG"):
        raise ConfigError(f"config file {config_path} does not exist")

    targets: dict[str, Target] = {}
    for name, section in (raw.get("targets") or {}).items():
        targets[name] = _target(name, section)
    for var in env:
        match = DATABASE_URL_ENV.match(var)
        if match:
            name = match.group(1).lower()
            if name not in targets and TARGET_NAME.match(name):
                targets[name] = _target(name, {"database_url_env": var})

    bot = raw.get("bot") or {}
    policy = Policy(
        channels=_strings(bot.get("channels"), "bot.channels"),
        approvers=_strings(bot.get("approvers"), "bot.approvers"),
        approver_group=bot.get("approver_group"),
        requesters=_strings(bot.get("requesters"), "bot.requesters"),
        request_ttl_seconds=int(bot.get("request_ttl_seconds", defaults.REQUEST_TTL_SECONDS)),
        start_within_seconds=int(bot.get("start_within_seconds", defaults.START_WITHIN_SECONDS)),
        plan_ttl_seconds=int(bot.get("plan_ttl_seconds", defaults.PLAN_TTL_SECONDS)),
        backup_check_timeout_seconds=int(bot.get("backup_check_timeout_seconds",
                                                 defaults.BACKUP_CHECK_TIMEOUT_SECONDS)),
    )
    workers = raw.get("workers") or {}
    return Settings(
        targets=targets,
        policy=policy,
        escalation=_strings((raw.get("escalation") or {}).get("contacts"), "escalation.contacts"),
        backup_dir=str(env.get("BACKUP_DIR") or workers.get("backup_dir", defaults.BACKUP_DIR)),
        lock_timeout_ms=int(workers.get("lock_timeout_ms", defaults.LOCK_TIMEOUT_MS)),
        lock_retries=int(workers.get("lock_retries", defaults.LOCK_RETRIES)),
        statement_timeout_ms=int(workers.get("statement_timeout_ms", defaults.STATEMENT_TIMEOUT_MS)),
        escrow_retention_days=_retention(workers.get("escrow_retention_days", defaults.ESCROW_RETENTION_DAYS)),
        redis_url=env.get("REDIS_URL", defaults.REDIS_URL),
        queue_name=env.get("ROLLBACK_QUEUE", defaults.QUEUE_NAME),
        slack_api_url=env.get("SLACK_API_URL") or None,
        slack_bot_token=env.get("SLACK_BOT_TOKEN") or None,
        pagerduty_routing_key=env.get("PAGERDUTY_ROUTING_KEY") or None,
        pagerduty_events_url=env.get("PAGERDUTY_EVENTS_URL", defaults.PAGERDUTY_EVENTS_URL),
        digitalocean_token=env.get("DIGITALOCEAN_TOKEN") or None,
        digitalocean_api_url=env.get("DIGITALOCEAN_API_URL") or None,
        supabase_access_token=env.get("SUPABASE_ACCESS_TOKEN") or None,
        supabase_api_url=env.get("SUPABASE_API_URL") or None,
        workers=_worker_settings(env, workers),
        slack_signing_secret=env.get("SLACK_SIGNING_SECRET") or None,
        slack_app_token=env.get("SLACK_APP_TOKEN") or None,
        web_host=env.get("HOST") or defaults.WEB_HOST,
        web_port=_env_number(env, "PORT", defaults.WEB_PORT, int),
        web_processes=_env_number(env, "ROLLBACK_WEB_PROCESSES", defaults.WEB_PROCESSES, int),
        web_threads=_env_number(env, "ROLLBACK_WEB_THREADS", defaults.WEB_THREADS, int),
        web_listener_threads=_env_number(env, "ROLLBACK_WEB_LISTENER_THREADS", defaults.WEB_LISTENER_THREADS, int),
        web_backlog=_env_number(env, "ROLLBACK_WEB_BACKLOG", defaults.WEB_BACKLOG, int),
        web_graceful_timeout_seconds=_env_number(env, "ROLLBACK_WEB_GRACEFUL_TIMEOUT_SECONDS",
                                                 defaults.WEB_GRACEFUL_TIMEOUT_SECONDS, float),
        sweep_interval_seconds=_env_number(env, "ROLLBACK_SWEEP_INTERVAL_SECONDS",
                                           defaults.EXPIRY_SWEEP_INTERVAL_SECONDS, float),
        worker_heartbeat_grace_seconds=_env_number(env, "ROLLBACK_WORKER_HEARTBEAT_GRACE_SECONDS",
                                                   defaults.WORKER_HEARTBEAT_GRACE_SECONDS, float),
        env=env,
    )
