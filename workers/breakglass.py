"""`run-migrations --target NAME`: the break-glass path with the bot's own safety nets.

With a target configured in rollback.toml, the command line gets what the workers do before a change:
the wrong-database guard (workers/postgres/identity.py: the identity recorded for the target in Redis and in
the database itself) and a fresh, verified backup (workers/postgres/pg_dump.py) before a real rollback or repair,
recorded in migration_history. `--no-backup` skips the backup, and that is written into history too
(who, why it matters later). Plain `DATABASE_URL` use stays as the playbook has it: none of this.

Redis is asked when it answers; when it does not (the incident may be Redis), the in-database half of
the guard still runs and a notice says the other half could not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import psycopg
import redis

from core import defaults
from core.config import ConfigError, Settings, Target, load_settings
from core.errors import RollbackError
from workers import cli_backup
from workers.postgres import identity
from workers.postgres.pg_dump import BackupResult


class BreakGlassError(RollbackError):
    """The target cannot be used from the command line (unknown, wrong database, no verified backup)."""


@dataclass(frozen=True)
class TargetRun:
    settings: Settings
    target: Target
    conninfo: str


def resolve(name: str, env: Mapping[str, str]) -> TargetRun:
    try:
        settings = load_settings(env)
        target = settings.target(name)
        conninfo = settings.database_url(target)
    except (ConfigError, KeyError, ValueError) as exc:
        raise BreakGlassError(f"--target {name}: {exc}") from None
    return TargetRun(settings, target, conninfo)


def guard(run: TargetRun, actor: str, notice: Callable[[str], None]) -> None:
    """The workers' wrong-database guard, before anything runs against the target."""
    with psycopg.connect(run.conninfo, autocommit=True, connect_timeout=defaults.CONNECT_TIMEOUT_SECONDS) as conn:
        try:
            conn_redis = redis.Redis.from_url(run.settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
            conn_redis.ping()
        except redis.RedisError:
            notice(f"notice: Redis does not answer: only the database's own record of target {run.target.name} "
                   "is checked")
            registered = identity._registered_targets(conn)  # noqa: SLF001 - the in-database half
            if registered and run.target.name not in registered:
                raise BreakGlassError(identity.identity_claimed_elsewhere(
                    run.target.name, registered[0], identity.read_identity(conn).to_dict())) from None
            return
        try:
            identity.guard(conn, conn_redis, run.target.name, by=actor)
        except identity.IdentityMismatch as exc:
            raise BreakGlassError(str(exc)) from None
        finally:
            conn_redis.close()


def backup_first(run: TargetRun, actor: str, operation: str, *, no_backup: bool,
                 out: Callable[[str], None]) -> BackupResult | None:
    """The verified backup before a change (none, recorded, with --no-backup)."""
    return cli_backup.backup_first(run.conninfo, name=run.target.name, reason=f"pre-{operation} (run-migrations)",
                                   backup_dir=run.settings.backup_dir, pg_dump=run.settings.workers.pg_dump,
                                   pg_restore=run.settings.workers.pg_restore, actor=actor, operation=operation,
                                   no_backup=no_backup, out=out)
