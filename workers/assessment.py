"""Step 1 of the playbook, assess, as `/rollback status` shows it beside the migration table.

Within the status's usual second or two: the health URL's answer and latency (bounded by a short
timeout), the sessions that stand in a rollback's way (workers/assess.py, with the tables of the
channel's current plan), INVALID indexes, migrations `failed` or stuck `running` (no live run holds
the migration lock), and any rollback or restore in progress. The sessions are saved as the
channel's current assessment (core/assessments.py): `terminate` may name only those.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
import requests

from core import assessments
from core.config import Target
from core.jsontypes import JsonObject
from workers.assess import Blocker, blockers, invalid_indexes
from workers.engine.sqleffects import qualified
from workers.engine.sqltext import effects
from workers.verify import display_url

# Status answers within a second or two: a health URL that takes longer is reported as slow, not waited for.
HEALTH_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True)
class Health:
    url: str | None  # shown form (scheme, host, path): never a query string or userinfo
    status: int | None = None
    latency_ms: float | None = None
    error: str | None = None  # the exception's class when there was no answer

    @property
    def ok(self) -> bool | None:
        if self.url is None:
            return None
        return self.status is not None and 200 <= self.status < 300

    def to_dict(self) -> JsonObject:
        return {"url": self.url, "status": self.status, "latency_ms": self.latency_ms, "error": self.error,
                "ok": self.ok}


@dataclass(frozen=True)
class Assessment:
    target: str
    health: Health
    sessions: tuple[Blocker, ...] = ()
    invalid_indexes: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()  # versions with status failed
    stuck: tuple[str, ...] = ()  # versions `running` while no run holds the migration lock
    in_progress: tuple[str, ...] = ()  # "RB-XXXXXX rollback (running)", "a migration run (pid 123)"
    plan_tables: tuple[str, ...] = field(default=())

    def to_dict(self) -> JsonObject:
        return {"target": self.target, "health": self.health.to_dict(),
                "sessions": [s.to_dict() for s in self.sessions], "invalid_indexes": list(self.invalid_indexes),
                "failed": list(self.failed), "stuck": list(self.stuck), "in_progress": list(self.in_progress),
                "plan_tables": list(self.plan_tables)}


def probe_health(url: str | None, timeout: float = HEALTH_TIMEOUT_SECONDS) -> Health:
    if not url:
        return Health(None)
    shown = display_url(url)
    started = time.monotonic()
    try:
        response = requests.get(url, timeout=timeout)
    except requests.RequestException as exc:
        return Health(shown, None, round((time.monotonic() - started) * 1000, 1), type(exc).__name__)
    return Health(shown, response.status_code, round((time.monotonic() - started) * 1000, 1))


def plan_tables(plan: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The tables the statements of a saved dry run lock (what a session holding them would block)."""
    if not plan:
        return ()
    inner = plan.get("plan", plan)
    found: dict[str, None] = {}
    for step in inner.get("steps") or ():
        for statement in step.get("statements") or ():
            try:
                relations = effects(str(statement)).relations
            except Exception:  # noqa: BLE001 - a statement the parser refuses names no table here
                continue
            for relation in relations:
                found[qualified(relation)] = None
    return tuple(found)


def migration_problems(report: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(failed versions, versions stuck `running`): running counts as stuck when no run holds the lock."""
    migrations = report.get("migrations") or []
    failed = tuple(str(m["version"]) for m in migrations if m.get("status") == "failed")
    running = tuple(str(m["version"]) for m in migrations if m.get("status") == "running")
    return failed, (() if report.get("lock_holder") else running)


def assess(conn: psycopg.Connection[Any], target: Target, report: Mapping[str, Any], *,
           long_running_s: float, plan: Mapping[str, Any] | None, active: Mapping[str, Any] | None) -> Assessment:
    tables = plan_tables(plan)
    failed, stuck = migration_problems(report)
    in_progress = []
    if active and active.get("status") in ("approved", "running"):
        in_progress.append(f"{active.get('id')} {active.get('kind')} ({active.get('status')})")
    holder = report.get("lock_holder")
    if holder:
        in_progress.append(f"a migration run holds the lock (pid {holder.get('pid')})")
    return Assessment(
        target=target.name, health=probe_health(target.health_url),
        sessions=tuple(blockers(conn, long_running_s=long_running_s, plan_tables=tables)),
        invalid_indexes=tuple(invalid_indexes(conn)), failed=failed, stuck=stuck, in_progress=tuple(in_progress),
        plan_tables=tables,
    )


def save(redis_conn: Any, channel: str, assessment: Assessment, *, prefix: str, ttl_seconds: int) -> None:
    assessments.save(redis_conn, channel, assessment.target, [s.to_dict() for s in assessment.sessions],
                     prefix=prefix, ttl_seconds=ttl_seconds)
