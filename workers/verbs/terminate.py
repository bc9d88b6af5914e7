"""`/rollback terminate <pid>`: one session the channel's assessment named, ended (core/kinds.py TERMINATE).

It runs beside the target's request (it changes no schema): the session a pending rollback waits behind.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from core import assessments
from core.config import Target
from core.requests import Request, RequestStatus
from workers.messages import DONE, FAILED
from workers.postgres import migration_history
from workers.postgres import sessions as postgres_sessions
from workers.postgres.sessions import still_the_same
from workers.runtime.context import KEY_PREFIX, Context
from workers.runtime.pipeline_state import PipelineState, StepRefused, TerminateStepResult
from workers.runtime.progress import Progress
from workers.verbs import Promise, Refusal


def start_check(ctx: Context, request: Request, target: Target, progress: Progress) -> Refusal | None:
    return None  # the session is checked inside the step, just before it is ended (it may end by itself)


def terminated(request_id: str, session: Mapping[str, Any], by: str, approver: str | None) -> str:
    return (f"{DONE} {request_id}: session pid {session.get('pid')} ({session.get('application') or '-'}, "
            f"{session.get('user')}) terminated, requested by <@{by}>, approved by <@{approver}>.")


def terminate_refused(request_id: str, pid: int, why: str) -> str:
    return f"{FAILED} {request_id}: session pid {pid} was not terminated: {why}"


def session_still_there(pid: object) -> str:
    return f"session pid {pid} is still there after pg_terminate_backend"


NOT_IN_ASSESSMENT = "it is not in this channel's current assessment; run `/rollback status` first"


SESSION_GONE = "it has ended already (or the pid now belongs to another session)"


def terminate_step(ctx: Context, request: Request, target: Target, progress: Progress) -> TerminateStepResult | StepRefused:
    pid = int(request.subject or 0)
    session = _assessed(ctx, request, target)
    if session is None:
        return _refuse(ctx, request, progress, pid, NOT_IN_ASSESSMENT)
    with ctx.connect(target) as conn:
        if not still_the_same(conn, pid, session.get("backend_start")):
            return _refuse(ctx, request, progress, pid, SESSION_GONE)
        row = conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()
        ended = bool(row and row[0])
        migration_history.record(conn, operation="terminate", status="completed" if ended else "failed",
                       executed_by=request.requester, approved_by=request.approver, request_id=request.id,
                       details={"pid": pid, **{k: session.get(k) for k in ("application", "user", "state", "query",
                                                                          "why", "tables")}})
    if not ended:
        return _refuse(ctx, request, progress, pid, SESSION_GONE)
    return TerminateStepResult(pid, dict(session))


def _refuse(ctx: Context, request: Request, progress: Progress, pid: int, why: str) -> StepRefused:
    progress.post(terminate_refused(request.id, pid, why), broadcast=True)
    ctx.store().set_status(request.id, RequestStatus.FAILED, finished_at=time.time(), outcome=why)
    return StepRefused(why)


STEPS = {"terminate": terminate_step}


def promised(ctx: Context, request: Request, target: Target, state: PipelineState) -> Promise:
    """The session the card named is gone (its pid no longer names that session). The session is the one the
    channel's assessment named, not only what the step reported: a step that reported nothing proves nothing."""
    reported = state.terminate.session if isinstance(state.terminate, TerminateStepResult) else None
    session = reported or _assessed(ctx, request, target) or {}
    with ctx.connect(target) as conn:
        alive = postgres_sessions.still_the_same(conn, int(request.subject or 0), session.get("backend_start"))
    return Promise(mismatches=(session_still_there(request.subject),) if alive else ())


def _assessed(ctx: Context, request: Request, target: Target) -> Mapping[str, Any] | None:
    saved = assessments.current(ctx.redis, request.channel, target.name, prefix=KEY_PREFIX)
    return saved.session(int(request.subject or 0)) if saved else None


def succeeded(request: Request, target: Target, state: PipelineState, duration_s: float) -> str:
    ended = state.terminate
    session = ended.session if isinstance(ended, TerminateStepResult) and ended.session else {"pid": request.subject}
    return terminated(request.id, session, request.requester, request.approver)
