"""`/rollback terminate <pid>`: end one session that stands in a rollback's way (pg_terminate_backend).

Only a session named by the channel's current assessment (core/assessments.py, saved by `status`),
and only after a second person approved. The worker checks again right before it acts: the pid is
still listed, and the live session with that pid started when the listed one did (a pid the server
gave to a new session since is left alone). The outcome is posted in the request's thread and
written to migration_history (operation `terminate`).
"""

from __future__ import annotations

import time
from typing import Any

import psycopg

from core import assessments
from core.config import Target
from core.jsontypes import JsonObject
from core.requests import Request, RequestStatus
from workers import history, incident_messages
from workers.context import KEY_PREFIX, Context
from workers.progress import Progress

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


def terminate_step(ctx: Context, request: Request, target: Target, progress: Progress) -> JsonObject:
    pid = int(request.subject or 0)
    saved = assessments.current(ctx.redis, request.channel, target.name, prefix=KEY_PREFIX)
    session = saved.session(pid) if saved else None
    if session is None:
        return _refuse(ctx, request, progress, pid, incident_messages.NOT_IN_ASSESSMENT)
    with ctx.connect(target) as conn:
        if not still_the_same(conn, pid, session.get("backend_start")):
            return _refuse(ctx, request, progress, pid, incident_messages.SESSION_GONE)
        row = conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()
        ended = bool(row and row[0])
        history.record(conn, operation="terminate", status="completed" if ended else "failed",
                       executed_by=request.requester, approved_by=request.approver, request_id=request.id,
                       details={"pid": pid, **{k: session.get(k) for k in ("application", "user", "state", "query",
                                                                          "why", "tables")}})
    if not ended:
        return _refuse(ctx, request, progress, pid, incident_messages.SESSION_GONE)
    return {"terminated": pid, "session": dict(session)}


def _refuse(ctx: Context, request: Request, progress: Progress, pid: int, why: str) -> JsonObject:
    progress.post(incident_messages.terminate_refused(request.id, pid, why), broadcast=True)
    ctx.store().set_status(request.id, RequestStatus.FAILED, finished_at=time.time(), outcome=why)
    return {"refused": True, "reason": why}
