"""`/rollback pitr`: a Supabase point-in-time recovery (core/kinds.py PITR; playbook Method 3A): backup →
maintenance on → restore-pitr followed to healthy → verify (the applied versions the card promised) →
maintenance off."""

from __future__ import annotations

from core.config import Target
from core.jsontypes import JsonObject
from core.requests import Request
from workers import recovery, recovery_messages
from workers.context import Context
from workers.progress import Progress
from workers.verbs import Promise, Refusal


def start_check(ctx: Context, request: Request, target: Target, progress: Progress) -> Refusal | None:
    return recovery.recheck(request, lambda: recovery.pitr_preview(
        ctx, target, before=None, at=recovery.utc_text(request.params.get("point_unix"))))


STEPS = {"pitr": recovery.pitr}


def promised(ctx: Context, request: Request, target: Target, state: JsonObject) -> Promise:
    return recovery.versions_promise(ctx, request, target)


def succeeded(request: Request, target: Target, state: JsonObject, duration_s: float) -> str:
    return recovery_messages.recovery_succeeded(request.id, target.name, "point-in-time recovery")
