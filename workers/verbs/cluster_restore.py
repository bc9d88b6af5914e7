"""`/rollback cluster-restore`: a new managed DigitalOcean cluster from a backup of the target's (core/kinds.py
CLUSTER_RESTORE; playbook Method 3B). The target is left as it is; the thread says how to add the new cluster
as a target and switch to it. Not watched: the application does not use the new cluster yet."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.config import Target, database_url_env_for
from core.prechecks import Preview, PreviewCheck
from core.requests import Request, RequestKind
from workers import messages
from workers.engine.redact import MASK
from workers.postgres import migration_history
from workers.providers.shapes import ClusterBackup, NewCluster
from workers.runtime import previews
from workers.runtime.context import Context
from workers.runtime.pipeline_state import NewClusterStepResult, PipelineState
from workers.runtime.previews import (
    RecoveryRefused,
    _guarded_identity,
    _iso_unix,
    applied_versions,
    digest_of,
    digitalocean,
    parse_utc,
)
from workers.runtime.progress import Progress
from workers.verbs import Promise, Refusal


@dataclass(frozen=True)
class ClusterRestoreParams:
    """What the approval bound (the preview's `params`), read once from `request.params`."""

    new_name: Any = None
    backup_created_at: str | None = None  # None: the newest backup

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> ClusterRestoreParams:
        return cls(new_name=params.get("new_name"),
                   backup_created_at=str(params.get("backup_created_at") or "") or None)


def start_check(ctx: Context, request: Request, target: Target, progress: Progress) -> Refusal | None:
    return previews.recheck(request, lambda: previews.same_backup(cluster_preview(ctx, target, None), request))


NEW_CLUSTER_OUTCOME = "new cluster ready; not watched (the application does not use it yet)"


def no_managed_cluster(target: str) -> str:
    return (f"target {target} names no managed cluster (`do_database_id` in rollback.toml): use "
            "`/rollback snapshot-restore` for a droplet, or `/rollback restore <backup>`")


def no_cluster_backup(database_id: str, point: str | None) -> str:
    when = f" taken before {point}" if point else ""
    return f"managed cluster {database_id} has no backup{when}; the DigitalOcean console lists them"


def new_cluster_of(name: str, database_id: str) -> str:
    return f"{name} from the backup of cluster {database_id}"


def new_cluster_figures(created: NewCluster) -> dict[str, Any]:
    return {"cluster": created.name, "host": created.host, "backup": created.backup_created_at}


def cluster_switch(target: str, created: NewCluster) -> str:
    return (f":information_source: New cluster *{created.name}* is online: host `{created.host}`, "
            f"port {created.port}, database `{created.database}`, user `{created.user}` (its "
            f"password is in the DigitalOcean console, never here). Target *{target}* was not changed. *To switch*: "
            f"point the application's database URL and {database_url_env_for(target)} at it, restart the workers, "
            f"then run `python -m workers confirm-identity {target}` (until then the wrong-database guard refuses "
            f"writes to {target}: its database changed).")


PASSWORD_PLACEHOLDER = MASK  # what the thread shows in place of any password anyway


def cluster_as_target(new_target: str, toml: str, url_env: str, url: str) -> str:
    """How to verify the new cluster before switching: the target's section and its URL, exactly."""
    return (f":mag: *To verify it first*, make it target *{new_target}*: add this to rollback.toml (the bot's "
            f"and the workers'),\n```{toml}```\nset this in the workers' environment, with the password from the "
            f"DigitalOcean console in place of `{PASSWORD_PLACEHOLDER}`,\n```{url_env}={url}```\nrestart the bot "
            f"and the workers, then run `/rollback verify {new_target}`.")


def cluster_not_as_promised(field: str, promised: object, found: object) -> str:
    return f"the new cluster's {field} is {found!r}, the approval named {promised!r}"


def cluster_preview(ctx: Context, target: Target, point: str | None) -> PreviewCheck:
    if not target.do_database_id:
        raise RecoveryRefused(no_managed_cluster(target.name))
    backups = [ClusterBackup.from_dict(b) for b in digitalocean(ctx).database_backups(target.do_database_id)]
    limit = parse_utc(point) if point else None  # backups: newest first
    chosen = next((b for b in backups if limit is None or (_iso_unix(b.created_at) or 0) <= limit), None)
    if chosen is None:
        raise RecoveryRefused(no_cluster_backup(target.do_database_id, point))
    created = str(chosen.created_at)
    taken = _iso_unix(created)
    stamp = datetime.fromtimestamp(taken or time.time(), UTC).strftime("%Y%m%d%H%M")
    new_name = f"{target.name}-restored-{stamp}"
    with ctx.connect(target) as conn:
        found = _guarded_identity(ctx, conn, target)
        versions = [v for v, _ in applied_versions(conn)]
    preview = Preview(kind=RequestKind.CLUSTER_RESTORE.value, target=target.name, database_id=target.do_database_id,
                      backup_created_at=created, new_name=new_name, versions_before=tuple(versions))
    digest = digest_of(found, {"kind": "cluster_restore", "database_id": target.do_database_id, "backup": created})
    return PreviewCheck(ok=True, digest=digest, preview=preview,
                        params={"backup_created_at": created, "new_name": new_name})


def new_cluster(ctx: Context, request: Request, target: Target, progress: Progress) -> NewClusterStepResult:
    """The new cluster, followed until online (bounded); the thread gets its host and what to switch,
    never a password or a URI."""
    assert target.do_database_id is not None
    params = ClusterRestoreParams.from_params(request.params)
    new_name = str(request.params["new_name"])
    started = progress.start("new_cluster", new_cluster_of(new_name, target.do_database_id))
    with progress.heartbeat("new_cluster") as beat:
        created = NewCluster.from_dict(digitalocean(ctx).restore_cluster(
            target.do_database_id, new_name, params.backup_created_at,
            heartbeat=beat, poll_seconds=ctx.options.do_poll_s, timeout_s=ctx.options.do_action_timeout_s))
    with ctx.connect(target) as conn:
        migration_history.record(conn, operation="cluster_restore", status="completed", executed_by=request.requester,
                       approved_by=request.approver, request_id=request.id,
                       duration_ms=created.duration_ms, details=created.facts)
    progress.finish("new_cluster", started, new_cluster_figures(created))
    new_target = restored_target_name(target.name)
    progress.post(cluster_switch(target.name, created))
    progress.post(cluster_as_target(
        new_target, restored_target_toml(target, new_target, created), database_url_env_for(new_target),
        cluster_url_template(created)))
    return NewClusterStepResult(created.to_dict(), new_target)


RESTORED_SUFFIX = "-restored"


def restored_target_name(name: str) -> str:
    """The target name the thread suggests for a cluster restored from `name`'s backup (a valid name:
    at most 40 characters)."""
    return name[:40 - len(RESTORED_SUFFIX)] + RESTORED_SUFFIX


def _toml_string(text: str) -> str:
    return json.dumps(text)  # a JSON string is a TOML basic string


def restored_target_toml(target: Target, new_target: str, created: NewCluster) -> str:
    """The rollback.toml section that makes the new cluster a target: the same migrations and critical
    tables as the target it was restored from, its own cluster id; never the live application's health
    URL, smoke test or maintenance hooks, which act on what the application uses now."""
    lines = [f"[targets.{new_target}]",
             f"database_url_env = {_toml_string(database_url_env_for(new_target))}",
             f"migrations_dir = {_toml_string(target.migrations_dir)}"]
    if target.critical_tables:
        lines.append(f"critical_tables = [{', '.join(_toml_string(t) for t in target.critical_tables)}]")
    if created.id:
        lines.append(f"do_database_id = {_toml_string(str(created.id))}")
    return "\n".join(lines)


def cluster_url_template(created: NewCluster) -> str:
    """The new cluster's database URL with the password left for the operator to fill in from the
    DigitalOcean console (the API's answer holds it; it never leaves the worker)."""
    url = f"postgresql://{created.user}:{PASSWORD_PLACEHOLDER}@{created.host}:{created.port}/{created.database}"
    return url + ("?sslmode=require" if created.ssl else "")


STEPS = {"new_cluster": new_cluster}


def promised(ctx: Context, request: Request, target: Target, state: PipelineState) -> Promise:
    """The new cluster is the one the card named, made from the backup it named."""
    created = NewCluster.from_dict(state.new_cluster.created if state.new_cluster else {})
    params = ClusterRestoreParams.from_params(request.params)
    # (field, what the approval named, what the step made)
    compared = (("name", params.new_name, created.name), ("backup_created_at", params.backup_created_at,
                                                          created.backup_created_at))
    return Promise(mismatches=tuple(cluster_not_as_promised(k, v, made) for k, v, made in compared
                                    if v and made != v))


def succeeded(request: Request, target: Target, state: PipelineState, duration_s: float) -> str:
    new_target = state.new_cluster.new_target if state.new_cluster else None
    return messages.recovery_succeeded(request.id, target.name, "restore into a new managed cluster",
                                                new_target, watched=False)
