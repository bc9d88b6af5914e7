"""Restore into the target by swapping databases: parallel and still all or nothing.

A restore inside one transaction cannot use `pg_restore --jobs` (parallel jobs cannot share a
transaction). Instead the archive is restored with `--jobs` into a new database beside the target,
the target's database-level settings (owner, grants, per-role settings) and the bot's own tables
(history, identity, with every row up to the switch) are copied onto it, and then, in ONE
transaction on a third (maintenance) database, the target is renamed away and the new database
takes its name. Until that commit the target is untouched; after it the replaced database is kept
under its new name for an instant undo (rename back) until an operator drops it.

The rename needs the target to have no other sessions. New connections are refused while the
switch waits (ALLOW_CONNECTIONS false); sessions still there are ended when the caller says the
application is in maintenance (`end_sessions`), otherwise waited for, at most `wait_ms`, and
SessionsStayed tells the caller to fall back to the in-transaction restore.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg import conninfo as pg_conninfo
from psycopg import sql

from workers.postgres.pg_dump import connect
from workers.runtime import errors
from workers.runtime.errors import RestoreError

NAME_LIMIT = 63  # PostgreSQL's identifier length
DATABASE_PRIVILEGES = {p: sql.SQL(p) for p in ("CONNECT", "CREATE", "TEMPORARY")}


class SessionsStayed(RestoreError):
    """Other sessions stayed on the target until the wait ran out: nothing was switched."""

    def __init__(self, database: str, sessions: list[str], waited_ms: int) -> None:
        super().__init__(errors.sessions_stayed(database, sessions, waited_ms))
        self.database, self.sessions = database, sessions


def side_name(database: str, role: str, now: datetime) -> str:
    """`<database>_<role>_<UTC time>_<random>`, cut to fit PostgreSQL's 63 characters."""
    tail = f"_{role}_{now.strftime('%Y%m%d%H%M%S')}_{secrets.token_hex(2)}"
    return database[: NAME_LIMIT - len(tail)] + tail


def with_dbname(conninfo: str, name: str) -> str:
    return pg_conninfo.make_conninfo(conninfo, dbname=name)


def cannot_swap(conn: psycopg.Connection[Any]) -> str | None:
    """Why this role cannot create and rename the target database (None: it can)."""
    row = conn.execute(
        "SELECT r.rolsuper, r.rolcreatedb, pg_has_role(d.datdba, 'MEMBER') FROM pg_roles r, pg_database d "
        "WHERE r.rolname = current_user AND d.datname = current_database()"
    ).fetchone()
    if row is None:
        return errors.swap_unknown_role()
    superuser, createdb, owns = row
    if superuser or (createdb and owns):
        return None
    return errors.swap_not_allowed(createdb=bool(createdb), owns=bool(owns))


def copy_database_settings(conn: psycopg.Connection[Any], source: str, dest: str) -> None:
    """Owner, grants and `ALTER DATABASE ... SET` of `source`, onto `dest` (autocommit connection)."""
    owner, acl = conn.execute(
        "SELECT pg_get_userbyid(datdba), datacl IS NOT NULL FROM pg_database WHERE datname = %s", (source,)
    ).fetchone() or (None, False)
    if owner:
        conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(dest), sql.Identifier(owner)))
    if acl:  # explicit grants: start from none, as the source did, then grant each one
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(dest)))
        for grantee, privilege, grantable in conn.execute(
            "SELECT CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END, a.privilege_type, "
            "a.is_grantable FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = %s", (source,)
        ).fetchall():
            to = sql.SQL("PUBLIC") if grantee is None else sql.Identifier(grantee)
            conn.execute(sql.SQL("GRANT {} ON DATABASE {} TO {}{}").format(
                DATABASE_PRIVILEGES[privilege], sql.Identifier(dest), to,
                sql.SQL(" WITH GRANT OPTION" if grantable else "")))
    for role, config in conn.execute(
        "SELECT CASE WHEN s.setrole = 0 THEN NULL ELSE pg_get_userbyid(s.setrole) END, s.setconfig "
        "FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = %s", (source,)
    ).fetchall():
        for item in config or ():
            name, _, value = str(item).partition("=")
            if role is None:
                statement = sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                    sql.Identifier(dest), sql.Identifier(name), sql.Literal(value))
            else:
                statement = sql.SQL("ALTER ROLE {} IN DATABASE {} SET {} = {}").format(
                    sql.Identifier(role), sql.Identifier(dest), sql.Identifier(name), sql.Literal(value))
            conn.execute(statement)


def _others(conn: psycopg.Connection[Any], database: str, keep: Collection[int]) -> list[tuple[int, str]]:
    return [(int(pid), str(app or "?")) for pid, app in conn.execute(
        "SELECT pid, application_name FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid() "
        "AND pid <> ALL(%s)", (database, list(keep)))]


@contextmanager
def connections_refused(conn: psycopg.Connection[Any], database: str) -> Iterator[None]:
    """No new session may connect to `database` inside the block; allowed again after it."""
    conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(database)))
    try:
        yield
    finally:
        conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(sql.Identifier(database)))


def empty(conn: psycopg.Connection[Any], database: str, *, end_sessions: bool, wait_ms: int,
          keep: Collection[int] = ()) -> None:
    """Wait until `database` has no session but `keep` (ending them first when `end_sessions`)."""
    deadline = time.monotonic() + wait_ms / 1000
    if end_sessions:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE datname = %s AND pid <> pg_backend_pid() AND pid <> ALL(%s)", (database, list(keep)))
    while True:
        others = _others(conn, database, keep)
        if not others:
            return
        if time.monotonic() >= deadline:
            raise SessionsStayed(database, [f"{app} (pid {pid})" for pid, app in others], wait_ms)
        time.sleep(0.05)  # polling pg_stat_activity: PostgreSQL has no event for "a session ended"


def switch(conn: psycopg.Connection[Any], target: str, replacement: str, replaced: str) -> None:
    """In one transaction: `target` becomes `replaced`, `replacement` becomes `target`."""
    with conn.transaction():
        conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(target), sql.Identifier(replaced)))
        conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(replacement),
                                                                      sql.Identifier(target)))
    # The replaced database stays readable (connections_refused re-allows the target's *name*).
    conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(sql.Identifier(replaced)))


def maintenance_connection(conninfo: str, maintenance_database: str) -> psycopg.Connection[Any]:
    """An autocommit connection to the server's maintenance database (not the target: a database
    cannot be renamed by a session connected to it)."""
    return connect(with_dbname(conninfo, maintenance_database))
