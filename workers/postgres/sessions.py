"""Step 1 of the playbook, assess: which sessions stand in a rollback's way, and what a failed
migration left behind. Reads only catalog views (pg_stat_activity, pg_locks, pg_index); changes nothing.

A session matters to a rollback when it runs longer than a threshold, sits idle inside a transaction
(holding its locks and its snapshot), waits on a lock, or holds a lock on a table the current plan
touches. Each is shown with pid, application, user, age and the first line of its query, with string
literals masked: a query text can carry a password (`ALTER ROLE ... PASSWORD '...'`) or personal data.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import psycopg

from core.jsontypes import JsonObject

QUERY_CHARS = 120
# '...' (with '' inside), E'...' and $tag$...$tag$ literals: replaced by a mask before a query is shown.
_LITERAL = re.compile(r"(?:[Ee]'(?:[^'\\]|\\.|'')*'|'(?:[^']|'')*'|\$(?P<tag>[A-Za-z_]*)\$.*?\$(?P=tag)\$)", re.S)


class Why(StrEnum):
    LONG_RUNNING = "long_running"
    IDLE_IN_TRANSACTION = "idle_in_transaction"
    WAITING_ON_LOCK = "waiting_on_lock"
    HOLDS_PLAN_LOCKS = "holds_plan_locks"


@dataclass(frozen=True)
class Blocker:
    pid: int
    application: str
    user: str
    state: str
    age_s: float  # since the transaction began (the query, outside a transaction)
    query: str  # first line, literals masked
    why: tuple[Why, ...]
    tables: tuple[str, ...] = ()  # plan tables it holds locks on
    blocked_by: tuple[int, ...] = ()
    backend_start: float | None = None  # epoch: with the pid, tells this session from a later one reusing the pid

    def to_dict(self) -> JsonObject:
        return {"pid": self.pid, "application": self.application, "user": self.user, "state": self.state,
                "age_s": self.age_s, "query": self.query, "why": [w.value for w in self.why],
                "tables": list(self.tables), "blocked_by": list(self.blocked_by), "backend_start": self.backend_start}


def masked_first_line(query: str | None) -> str:
    """The query's first non-empty line with every string literal masked, at most QUERY_CHARS long."""
    text = _LITERAL.sub("'…'", query or "")
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line if len(line) <= QUERY_CHARS else line[: QUERY_CHARS - 1] + "…"


_SESSIONS = """
SELECT a.pid, coalesce(a.application_name, ''), coalesce(a.usename, ''), coalesce(a.state, ''),
       extract(epoch FROM now() - coalesce(a.xact_start, a.query_start))::float8,
       a.query, a.wait_event_type = 'Lock',
       coalesce((SELECT array_agg(DISTINCT n.nspname || '.' || c.relname ORDER BY n.nspname || '.' || c.relname)
                 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE l.pid = a.pid AND l.granted AND (n.nspname || '.' || c.relname) = ANY(%(tables)s)), '{}'),
       pg_blocking_pids(a.pid), extract(epoch FROM a.backend_start)::float8
FROM pg_stat_activity a
WHERE a.datname = current_database() AND a.pid <> pg_backend_pid() AND a.backend_type = 'client backend'
ORDER BY a.xact_start NULLS LAST, a.pid
"""


def blockers(conn: psycopg.Connection[Any], *, long_running_s: float, plan_tables: Collection[str] = ()) -> list[Blocker]:
    """The sessions of this database that matter to a rollback (see the module docstring)."""
    tables = sorted(t if "." in t else f"public.{t}" for t in plan_tables)
    found = []
    for pid, app, user, state, age, query, waiting, held, blocked_by, started in conn.execute(_SESSIONS, {"tables": tables}):
        why = []
        active = state not in ("idle", "")
        if active and age is not None and age >= long_running_s:
            why.append(Why.LONG_RUNNING)
        if state.startswith("idle in transaction"):
            why.append(Why.IDLE_IN_TRANSACTION)
        if waiting:
            why.append(Why.WAITING_ON_LOCK)
        if held:
            why.append(Why.HOLDS_PLAN_LOCKS)
        if why:
            found.append(Blocker(pid=int(pid), application=str(app), user=str(user), state=str(state),
                                 age_s=round(float(age or 0.0), 1), query=masked_first_line(query), why=tuple(why),
                                 tables=tuple(held), blocked_by=tuple(int(p) for p in blocked_by or ()),
                                 backend_start=float(started) if started is not None else None))
    return found


def is_listed(pid: int, assessment: Collection[Blocker]) -> bool:
    """`terminate` acts only on a session the current assessment named."""
    return any(b.pid == pid for b in assessment)


# The same session: the pid and its start time (backend_start, epoch seconds) both match.
_SAME_SESSION = """
SELECT 1 FROM pg_stat_activity
WHERE pid = %s AND datname = current_database() AND backend_type = 'client backend'
  AND abs(extract(epoch FROM backend_start) - %s) < 0.001
"""


def still_the_same(conn: psycopg.Connection[Any], pid: int, backend_start: float | None) -> bool:
    if backend_start is None:
        return False
    return conn.execute(_SAME_SESSION, (pid, backend_start)).fetchone() is not None
