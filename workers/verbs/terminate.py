"""`/rollback terminate <pid>`: one session the channel's assessment named, ended (core/kinds.py TERMINATE).

It runs beside the target's request (it changes no schema): the session a pending rollback waits behind.
"""

from __future__ import annotations

from typing import Any

from core.config import Target
from core.jsontypes import JsonObject
from core.requests import Request
from workers import incident_messages, sessions
from workers.context import Context
from workers.progress import Progress
from workers.verbs import Promise, Refusal


def start_check(ctx: Context, request: Request, target: Target, progress: Progress) -> Refusal | None:
    return None  # the session is checked inside the step, just before it is ended (it may end by itself)


STEPS = {"terminate": sessions.terminate_step}


def promised(ctx: Context, request: Request, target: Target, state: JsonObject) -> Promise:
    """The session is gone (the pid no longer names that session)."""
    ended: dict[str, Any] = state.get("terminate") or {}
    session = ended.get("session") or {}
    with ctx.connect(target) as conn:
        alive = sessions.still_the_same(conn, int(request.subject or 0), session.get("backend_start"))
    return Promise(mismatches=(incident_messages.session_still_there(request.subject),) if alive else ())


def succeeded(request: Request, target: Target, state: JsonObject, duration_s: float) -> str:
    session = (state.get("terminate") or {}).get("session") or {"pid": request.subject}
    return incident_messages.terminated(request.id, session, request.requester, request.approver)
