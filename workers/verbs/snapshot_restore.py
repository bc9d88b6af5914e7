"""`/rollback snapshot-restore <snapshot>`: the target's droplet restored from one of its snapshots
(core/kinds.py SNAPSHOT_RESTORE; playbook Method 3B, in place): backup → maintenance on → restore action
followed to its end → verify (the applied versions the card promised) → maintenance off."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from core.config import Target
from core.jsontypes import JsonObject
from core.prechecks import Preview, PreviewCheck
from core.requests import Request, RequestKind
from workers import messages
from workers.messages import seconds
from workers.postgres import identity, migration_history
from workers.providers.shapes import RestoreAction, Snapshot
from workers.runtime import previews
from workers.runtime.context import Context
from workers.runtime.errors import ServiceUnavailable, WorkerError
from workers.runtime.pipeline_state import PipelineState, SnapshotRestoreStepResult
from workers.runtime.previews import (
    RecoveryRefused,
    _guarded_identity,
    _iso_unix,
    _point_facts,
    applied_versions,
    digest_of,
    digitalocean,
    wait_for_database,
    written_since,
)
from workers.runtime.progress import Progress
from workers.verbs import Promise, Refusal


def snapshot_param(params: Mapping[str, Any]) -> str:
    """The snapshot the approval named (the preview's `params`)."""
    return str(params.get("snapshot"))


def start_check(ctx: Context, request: Request, target: Target, progress: Progress) -> Refusal | None:
    return previews.recheck(request, lambda: snapshot_preview(ctx, target, snapshot_param(request.params)))


def no_droplet(target: str) -> str:
    return (f"target {target} names no droplet (`do_droplet_id` in rollback.toml), so it cannot be restored from "
            "a snapshot: use `/rollback restore <backup>` or `/rollback recover <backup> <tables>`")


def unknown_snapshot(snapshot_id: str, reason: str) -> str:
    return f"snapshot {snapshot_id} cannot be used ({reason}); `/rollback backups` lists the droplet's snapshots"


def snapshot_of_other_droplet(snapshot_id: str, other: Any, droplet_id: Any) -> str:
    return (f"snapshot {snapshot_id} is of droplet {other}, not of this target's droplet {droplet_id}; "
            "`/rollback backups` lists the right ones")


def snapshot_restore_of(snapshot_id: str, droplet_id: Any) -> str:
    return f"droplet {droplet_id} from snapshot {snapshot_id}"


def snapshot_restore_figures(action: RestoreAction, waited_s: float, versions: Sequence[str]) -> dict[str, Any]:
    return {"action": action.action_id, "database answered after": seconds(waited_s),
            "version": versions[-1] if versions else "none"}


def _snapshot_of(ctx: Context, target: Target, snapshot_id: str) -> Snapshot:
    if not target.do_droplet_id:
        raise RecoveryRefused(no_droplet(target.name))
    try:
        snapshot = Snapshot.from_dict(digitalocean(ctx).snapshot(snapshot_id))
    except ServiceUnavailable:
        raise  # DigitalOcean failing is not an unknown snapshot: paged by the check
    except WorkerError as exc:
        raise RecoveryRefused(unknown_snapshot(snapshot_id, str(exc))) from exc
    if snapshot.resource_id != str(target.do_droplet_id):
        raise RecoveryRefused(snapshot_of_other_droplet(snapshot_id, snapshot.resource_id, target.do_droplet_id))
    return snapshot


def snapshot_preview(ctx: Context, target: Target, snapshot_id: str) -> PreviewCheck:
    snapshot = _snapshot_of(ctx, target, snapshot_id)
    taken = _iso_unix(snapshot.created_at)
    with ctx.connect(target) as conn:
        found = _guarded_identity(ctx, conn, target)
        facts: JsonObject = (_point_facts(conn, int(taken)) if taken else
                             {"versions_before": [v for v, _ in applied_versions(conn)], "versions_after": None})
        lost = written_since(conn, taken) if taken else {}
    before, after = facts["versions_before"], facts["versions_after"]
    preview = Preview(kind=RequestKind.SNAPSHOT_RESTORE.value, target=target.name, snapshot=snapshot_id,
                      snapshot_name=snapshot.name, droplet_id=target.do_droplet_id,
                      point_unix=int(taken) if taken else None,
                      lost_seconds=round(time.time() - taken) if taken else None, written_since=lost,
                      versions_before=tuple(before),
                      versions_after=tuple(after) if after is not None else None)
    digest = digest_of(found, {"kind": "snapshot_restore", "snapshot": snapshot_id,
                               "created_at": snapshot.created_at, **facts})
    return PreviewCheck(ok=True, digest=digest, preview=preview,
                        params={"snapshot": snapshot_id, "versions_after": facts["versions_after"]})


def snapshot_restore(ctx: Context, request: Request, target: Target, progress: Progress) -> SnapshotRestoreStepResult:
    """The droplet's restore action, followed (bounded); then the database must answer and be the same one."""
    snapshot_id = str(request.params["snapshot"])
    assert target.do_droplet_id is not None
    started = progress.start("snapshot_restore", snapshot_restore_of(snapshot_id, target.do_droplet_id))
    try:
        with progress.heartbeat("snapshot_restore") as beat:
            action = RestoreAction.from_dict(digitalocean(ctx).restore_droplet(
                target.do_droplet_id, snapshot_id, heartbeat=beat, poll_seconds=ctx.options.do_poll_s,
                timeout_s=ctx.options.do_action_timeout_s))
            waited = wait_for_database(ctx, target, beat)
    finally:
        ctx.store().clear_plans(target.name)
    with ctx.connect(target) as conn:
        identity.guard(conn, ctx.redis, target.name, by=request.requester)
        versions = [v for v, _ in applied_versions(conn)]
        migration_history.record(conn, operation="snapshot_restore", status="completed", executed_by=request.requester,
                       approved_by=request.approver, request_id=request.id,
                       duration_ms=action.duration_ms,
                       details={"snapshot": snapshot_id, "droplet_id": target.do_droplet_id,
                                "action_id": action.action_id})
    progress.finish("snapshot_restore", started, snapshot_restore_figures(action, waited, versions))
    return SnapshotRestoreStepResult(action.to_dict(), versions)


STEPS = {"snapshot_restore": snapshot_restore}


def promised(ctx: Context, request: Request, target: Target, state: PipelineState) -> Promise:
    return previews.versions_promise(ctx, request, target)


def succeeded(request: Request, target: Target, state: PipelineState, duration_s: float) -> str:
    return messages.recovery_succeeded(request.id, target.name, "snapshot restore")
