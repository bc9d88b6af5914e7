"""The wrong-database guard (playbook scenario 3: "Migration applied to wrong database").

A target's identity is (PostgreSQL system identifier, database name, server address). It is recorded
the first time the target is used, in two places, because each catches what the other cannot:

- in Redis, under `<prefix>:identity:<target>` — outside the database, so a *different* database
  behind the same target name (an edited PROD_DATABASE_URL pointing at staging) is noticed: that
  other database knows nothing of the record;
- in the target database, table `rollback_target_identity` (one row per target name that uses it) —
  so a database already registered under another target name is noticed even when Redis was flushed.

A mismatch refuses every write operation (`guard`) until an operator re-confirms with
`python -m workers confirm-identity <target>` (`confirm`), which is also recorded in migration_history.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import psycopg
import redis
from psycopg import sql

from core.jsontypes import JsonObject
from workers.runtime.errors import WorkerError

TABLE = "rollback_target_identity"


def identity_describe(identity: Mapping[str, Any]) -> str:
    return (
        f"database `{identity.get('dbname')}` on {identity.get('server')} "
        f"(system id {identity.get('system_identifier')})"
    )


def identity_mismatch(target: str, recorded: Mapping[str, Any], current: Mapping[str, Any]) -> str:
    return (
        f"wrong database? target {target} was recorded as {identity_describe(recorded)} but now reaches "
        f"{identity_describe(current)}; write operations are refused until an operator checks "
        f"{target.upper()}_DATABASE_URL and runs `python -m workers confirm-identity {target}`"
    )


def identity_claimed_elsewhere(target: str, other: str, current: Mapping[str, Any]) -> str:
    return (
        f"wrong database? target {target} reaches {identity_describe(current)}, which is registered as "
        f"target {other}; write operations are refused until an operator checks the database URL and runs "
        f"`python -m workers confirm-identity {target}`"
    )


def identity_confirmed(target: str, identity: Mapping[str, Any], by: str) -> str:
    return f"target {target}: identity confirmed by {by} as {identity_describe(identity)}"


class IdentityMismatch(WorkerError):
    """The target name now reaches a different database; `str()` says what to do."""


@dataclass(frozen=True)
class Identity:
    system_identifier: str
    dbname: str
    server: str

    def to_dict(self) -> JsonObject:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: JsonObject) -> Identity:
        return cls(str(data["system_identifier"]), str(data["dbname"]), str(data["server"]))


@dataclass(frozen=True)
class IdentityCheck:
    """The outcome of comparing the database reached with what was recorded for the target."""

    target: str
    current: Identity
    recorded: Identity | None
    state: str  # "new" (nothing recorded yet), "match", "mismatch", "claimed" (registered as another target)
    other_target: str | None = None

    @property
    def ok(self) -> bool:
        return self.state in ("new", "match")

    def message(self) -> str:
        if self.state == "claimed":
            return identity_claimed_elsewhere(self.target, self.other_target or "?", self.current.to_dict())
        if self.state == "mismatch" and self.recorded is not None:
            return identity_mismatch(self.target, self.recorded.to_dict(), self.current.to_dict())
        return identity_describe(self.current.to_dict())

    def to_dict(self) -> JsonObject:
        return {
            "target": self.target,
            "state": self.state,
            "ok": self.ok,
            "current": self.current.to_dict(),
            "recorded": self.recorded.to_dict() if self.recorded else None,
            "other_target": self.other_target,
            "message": self.message(),
        }


def redis_key(target: str, prefix: str = "rollback") -> str:
    return f"{prefix}:identity:{target}"


def read_identity(conn: psycopg.Connection[Any]) -> Identity:
    """The identity of the database behind `conn` (address as the server sees itself, else as dialled)."""
    row = conn.execute(
        "SELECT (SELECT system_identifier FROM pg_control_system())::text, current_database(),"
        " host(inet_server_addr()), inet_server_port()"
    ).fetchone()
    assert row is not None
    system_identifier, dbname, host, port = row
    if not host:  # a Unix socket: the server has no address of its own to report
        host = conn.info.host
        port = port or conn.info.port
    return Identity(str(system_identifier), str(dbname), f"{host}:{port}")


def _registered_targets(conn: psycopg.Connection[Any]) -> list[str] | None:
    """Target names recorded in the database itself; None when the table does not exist yet."""
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (TABLE,)).fetchone()
    if not exists or not exists[0]:
        return None
    query = sql.SQL("SELECT target FROM {} ORDER BY target").format(sql.Identifier(TABLE))
    return [str(r[0]) for r in conn.execute(query).fetchall()]


def _recorded(redis_conn: redis.Redis, target: str, prefix: str) -> Identity | None:
    raw = redis_conn.get(redis_key(target, prefix))
    if raw is None:
        return None
    return Identity.from_dict(json.loads(raw))


def check(conn: psycopg.Connection[Any], redis_conn: redis.Redis, target: str, prefix: str = "rollback") -> IdentityCheck:
    """Compare without writing anything."""
    current = read_identity(conn)
    recorded = _recorded(redis_conn, target, prefix)
    if recorded is not None and recorded != current:
        return IdentityCheck(target, current, recorded, "mismatch")
    registered = _registered_targets(conn) or []
    if registered and target not in registered:
        return IdentityCheck(target, current, recorded, "claimed", other_target=registered[0])
    return IdentityCheck(target, current, recorded, "match" if recorded is not None else "new")


def record(
    conn: psycopg.Connection[Any], redis_conn: redis.Redis, target: str, identity: Identity, by: str,
    prefix: str = "rollback",
) -> None:
    """Record `identity` for `target` in Redis and in the database (its own committed statement)."""
    value = {**identity.to_dict(), "recorded_at": time.time(), "recorded_by": by}
    redis_conn.set(redis_key(target, prefix), json.dumps(value))
    with conn.transaction():
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (target text PRIMARY KEY, system_identifier text NOT NULL,"
                " dbname text NOT NULL, server text NOT NULL, recorded_by text, recorded_at timestamptz"
                " NOT NULL DEFAULT now())"
            ).format(sql.Identifier(TABLE))
        )
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (target, system_identifier, dbname, server, recorded_by) VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT (target) DO UPDATE SET system_identifier = EXCLUDED.system_identifier,"
                " dbname = EXCLUDED.dbname, server = EXCLUDED.server, recorded_by = EXCLUDED.recorded_by,"
                " recorded_at = now()"
            ).format(sql.Identifier(TABLE)),
            (target, identity.system_identifier, identity.dbname, identity.server, by),
        )


def guard(
    conn: psycopg.Connection[Any], redis_conn: redis.Redis, target: str, by: str, prefix: str = "rollback"
) -> IdentityCheck:
    """Before a write: record the identity on first use; raise IdentityMismatch on a different one."""
    result = check(conn, redis_conn, target, prefix)
    if not result.ok:
        raise IdentityMismatch(result.message())
    registered = _registered_targets(conn)
    if result.state == "new" or not registered or target not in registered:
        record(conn, redis_conn, target, result.current, by, prefix)
    return result


def observe(conn: psycopg.Connection[Any], redis_conn: redis.Redis, target: str, prefix: str = "rollback") -> IdentityCheck:
    """For read-only operations (status): compare, and remember the identity in Redis on first use only."""
    result = check(conn, redis_conn, target, prefix)
    if result.state == "new":
        value = {**result.current.to_dict(), "recorded_at": time.time(), "recorded_by": "status"}
        redis_conn.set(redis_key(target, prefix), json.dumps(value), nx=True)
    return result


def confirm(
    conn: psycopg.Connection[Any], redis_conn: redis.Redis, target: str, by: str, prefix: str = "rollback"
) -> Identity:
    """An operator's re-confirmation: the database reached now is the right one for `target`."""
    current = read_identity(conn)
    record(conn, redis_conn, target, current, by, prefix)
    return current
