"""`/rollback cluster-restore`: a new managed DigitalOcean cluster from a backup of the target's (core/kinds.py
CLUSTER_RESTORE; playbook Method 3B). The target is left as it is; the thread says how to add the new cluster
as a target and switch to it. Not watched: the application does not use the new cluster yet."""

from __future__ import annotations

from core.config import Target
from core.jsontypes import JsonObject
from core.requests import Request
from workers import recovery, recovery_messages
from workers.context import Context
from workers.progress import Progress
from workers.verbs import Promise, Refusal


def start_check(ctx: Context, request: Request, target: Target, progress: Progress) -> Refusal | None:
    return recovery.recheck(request, lambda: recovery.same_backup(recovery.cluster_preview(ctx, target, None), request))


STEPS = {"new_cluster": recovery.new_cluster}


def promised(ctx: Context, request: Request, target: Target, state: JsonObject) -> Promise:
    """The new cluster is the one the card named, made from the backup it named."""
    created = (state.get("new_cluster") or {}).get("new_cluster") or {}
    wanted = {"name": request.params.get("new_name"), "backup_created_at": request.params.get("backup_created_at")}
    wrong = tuple(recovery_messages.cluster_not_as_promised(k, v, created.get(k))
                  for k, v in wanted.items() if v and created.get(k) != v)
    return Promise(mismatches=wrong)


def succeeded(request: Request, target: Target, state: JsonObject, duration_s: float) -> str:
    new_target = (state.get("new_cluster") or {}).get("new_target")
    return recovery_messages.recovery_succeeded(request.id, target.name, "restore into a new managed cluster",
                                                str(new_target) if new_target else None, watched=False)
