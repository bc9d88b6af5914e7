"""`/rollback snapshot-restore <snapshot>`: the target's droplet restored from one of its snapshots
(core/kinds.py SNAPSHOT_RESTORE; playbook Method 3B, in place): backup → maintenance on → restore action
followed to its end → verify (the applied versions the card promised) → maintenance off."""

from __future__ import annotations

from core.config import Target
from core.jsontypes import JsonObject
from core.requests import Request
from workers import recovery, recovery_messages
from workers.context import Context
from workers.progress import Progress
from workers.verbs import Promise, Refusal


def start_check(ctx: Context, request: Request, target: Target, progress: Progress) -> Refusal | None:
    return recovery.recheck(request, lambda: recovery.snapshot_preview(ctx, target, str(request.params.get("snapshot"))))


STEPS = {"snapshot_restore": recovery.snapshot_restore}


def promised(ctx: Context, request: Request, target: Target, state: JsonObject) -> Promise:
    return recovery.versions_promise(ctx, request, target)


def succeeded(request: Request, target: Target, state: JsonObject, duration_s: float) -> str:
    return recovery_messages.recovery_succeeded(request.id, target.name, "snapshot restore")
