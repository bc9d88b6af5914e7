"""Step 1 of the playbook, assess, as `/rollback status` shows it beside the migration table.

Within the status's usual second or two: the health URL's answer and latency (bounded by a short
timeout), the sessions that stand in a rollback's way (workers/postgres/sessions.py, with the tables of the
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
from core.requests import Request, RequestStatus
from workers.engine.results import StatusReport
from workers.engine.sqleffects import qualified
from workers.engine.sqltext import effects
from workers.messages import DONE, FAILED, SKIPPED, STARTED, WARNING
from workers.postgres import identity
from workers.postgres.checks import display_url
from workers.postgres.identity import IdentityCheck
from workers.postgres.schema import invalid_indexes
from workers.postgres.sessions import Blocker, blockers
from workers.runtime.context import KEY_PREFIX, Context
from workers.runtime.progress import Progress

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


def migration_problems(report: StatusReport) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(failed versions, versions stuck `running`): running counts as stuck when no run holds the lock."""
    failed = tuple(m.version for m in report.migrations if m.status == "failed")
    running = tuple(m.version for m in report.migrations if m.status == "running")
    return failed, (() if report.lock_holder else running)


def assess(conn: psycopg.Connection[Any], target: Target, report: StatusReport, *,
           long_running_s: float, plan: Mapping[str, Any] | None, active: Request | None) -> Assessment:
    tables = plan_tables(plan)
    failed, stuck = migration_problems(report)
    in_progress = []
    if active and active.status in (RequestStatus.APPROVED, RequestStatus.RUNNING):
        in_progress.append(f"{active.id} {active.kind.value} ({active.status.value})")
    holder = report.lock_holder
    if holder:
        in_progress.append(f"a migration run holds the lock (pid {holder['pid']})")
    return Assessment(
        target=target.name, health=probe_health(target.health_url),
        sessions=tuple(blockers(conn, long_running_s=long_running_s, plan_tables=tables)),
        invalid_indexes=tuple(invalid_indexes(conn)), failed=failed, stuck=stuck, in_progress=tuple(in_progress),
        plan_tables=tables,
    )


def save(redis_conn: Any, channel: str, assessment: Assessment, *, prefix: str, ttl_seconds: int) -> None:
    assessments.save(redis_conn, channel, assessment.target, [s.to_dict() for s in assessment.sessions],
                     prefix=prefix, ttl_seconds=ttl_seconds)


def status(ctx: Context, progress: Progress, target_name: str, channel: str | None = None) -> JsonObject:
    """The migration table and Step 1's assessment (health, sessions, leftovers, work in progress);
    the sessions become the channel's current assessment, which `terminate` may act on."""
    target = ctx.target(target_name)
    report = ctx.engine(target, "status").status()
    active = ctx.store().active_for_target(target.name)
    plan = ctx.store().current_plan(channel, target.name) if channel else None
    with ctx.connect(target) as conn:
        check = identity.observe(conn, ctx.redis, target.name)
        found = assess(conn, target, report, long_running_s=ctx.options.long_running_s, plan=plan, active=active)
    if channel:
        save(ctx.redis, channel, found, prefix=KEY_PREFIX, ttl_seconds=ctx.settings.policy.plan_ttl_seconds)
    progress.post(status_text(target.name, report, check, active) + "\n" + assessment_text(found))
    return {"target": target.name, "status": report.to_dict(), "identity": check.to_dict(),
            "active_request": active.to_dict() if active else None, "assessment": found.to_dict()}


def status_text(target: str, report: StatusReport, identity: IdentityCheck | None, active: Request | None) -> str:
    server = report.server
    lines = [
        f"*{target}*: database `{server.dbname}` on {server.host}:{server.port} "
        f"as {server.user} (PostgreSQL {server.server_version}) — current version "
        f"*{report.current_version or 'none'}*"
    ]
    if identity and not identity.ok:
        lines.append(f"{WARNING} {identity.message()}")
    rows = []
    for m in report.migrations:
        flags = " ".join(
            flag for flag, on in (("DRIFT", m.drift), ("no-down", not m.has_down), ("missing-file", m.missing_file))
            if on
        )
        rows.append(f"{m.version}  {m.status:<11} {m.name} {flags}".rstrip())
    if rows:
        lines.append("```\n" + "\n".join(rows) + "\n```")
    for warning in report.warnings:
        lines.append(f"{WARNING} {warning}")
    if report.lock_holder:  # as the job's JSON shows it (times in ISO form)
        lines.append(f"{WARNING} a migration run holds the lock: {report.to_dict()['lock_holder']}")
    if active:
        lines.append(f"{STARTED} request {active.id} ({active.status.value}) by <@{active.requester}>")
    return "\n".join(lines)


WHY_WORDS: dict[str, str] = {"long_running": "long-running", "idle_in_transaction": "idle in transaction",
             "waiting_on_lock": "waiting on a lock", "holds_plan_locks": "holds locks the plan needs"}


def _health_line(health: Health) -> str:
    if not health.url:
        return f"{SKIPPED} health: no health_url configured"
    latency = f"{health.latency_ms:.0f} ms" if health.latency_ms is not None else "?"
    if health.status is None:
        return f"{FAILED} health {health.url}: no answer ({health.error}) after {latency}"
    icon = DONE if health.ok else FAILED
    return f"{icon} health {health.url}: HTTP {health.status} in {latency}"


def session_line(session: Blocker) -> str:
    why = ", ".join(WHY_WORDS[w] for w in session.why)
    tables = f" on {', '.join(session.tables)}" if session.tables else ""
    behind = f" (blocked by {', '.join(str(p) for p in session.blocked_by)})" if session.blocked_by else ""
    return (f"pid {session.pid} {session.application or '-'} ({session.user}), "
            f"{session.age_s} s, {why}{tables}{behind}: {session.query}")


def assessment_text(found: Assessment) -> str:
    """Step 1's assessment under the migration table: one line per finding, nothing when all is quiet."""
    lines = [_health_line(found.health)]
    sessions = found.sessions
    if sessions:
        lines.append(f"{WARNING} {len(sessions)} session(s) in a rollback's way "
                     "(`/rollback terminate <pid>` ends one, with a second person's approval):")
        lines.append("```\n" + "\n".join(session_line(s) for s in sessions) + "\n```")
    else:
        lines.append(f"{DONE} no session in a rollback's way")
    for index in found.invalid_indexes:
        lines.append(f"{WARNING} INVALID index {index} (a CREATE INDEX CONCURRENTLY that did not finish)")
    for version in found.failed:
        lines.append(f"{WARNING} migration {version} failed: `/rollback repair {version}` brings it back to a clean state")
    for version in found.stuck:
        lines.append(f"{WARNING} migration {version} is stuck `running` (no run holds the migration lock): "
                     f"`/rollback repair {version}`")
    for what in found.in_progress:
        lines.append(f"{STARTED} in progress: {what}")
    return "\n".join(lines)
