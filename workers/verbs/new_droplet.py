"""`/rollback snapshot-restore <snapshot> --new-droplet [name]`: a NEW droplet from any snapshot of the account,
the playbook's Method 3B as written (`doctl compute droplet create restored-db --image <snapshot> --size
--region --wait`; core/kinds.py NEW_DROPLET). The source droplet's size and region; the name given, else
`<target>-restored-<time asked>`. The target and its droplet are left as they are (not watched: the application
does not use the new droplet yet); the thread says the new droplet's IP and the exact switch: the config line
and the DNS record."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from core.config import Target
from core.jsontypes import JsonObject
from core.prechecks import Preview, PreviewCheck
from core.requests import Request, RequestKind
from workers import messages
from workers.engine.redact import MASK
from workers.postgres import migration_history
from workers.providers.digitalocean import DigitalOcean
from workers.providers.shapes import Droplet, Snapshot
from workers.runtime import previews
from workers.runtime.context import Context
from workers.runtime.errors import ServiceUnavailable, WorkerError
from workers.runtime.pipeline_state import PipelineState
from workers.runtime.previews import (
    RecoveryRefused,
    _guarded_identity,
    applied_versions,
    digest_of,
    digitalocean,
)
from workers.runtime.progress import Progress
from workers.verbs import Promise, Refusal
from workers.verbs.snapshot_restore import unknown_snapshot

POSTGRES_PORT = 5432  # the playbook's: what the new droplet's PostgreSQL listens on unless the URL says otherwise


@dataclass(frozen=True)
class NewDropletParams:
    """What the approval bound (the preview's `params`), read once from `request.params`."""

    snapshot: str
    new_name: str | None
    size: Any = None
    region: Any = None
    old_ip: Any = None  # the source droplet's IP, for the DNS line

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> NewDropletParams:
        return cls(snapshot=str(params.get("snapshot")), new_name=str(params.get("new_name") or "") or None,
                   size=params.get("size"), region=params.get("region"), old_ip=params.get("old_ip"))


def start_check(ctx: Context, request: Request, target: Target, progress: Progress) -> Refusal | None:
    params = NewDropletParams.from_params(request.params)
    return previews.recheck(request, lambda: droplet_preview(ctx, target, params.snapshot, params.new_name))


# -- words -----------------------------------------------------------------------------------------------


def not_a_droplet_snapshot(snapshot_id: str, kind: Any) -> str:
    return f"snapshot {snapshot_id} is of a {kind}, not of a droplet; `/rollback backups` lists droplet snapshots"


def source_droplet_gone(snapshot_id: str, droplet_id: Any, reason: str) -> str:
    return (f"snapshot {snapshot_id}'s droplet {droplet_id} cannot be read ({reason}), so its size and region are "
            "unknown; create the droplet in the DigitalOcean console")


def new_droplet_of(name: str, snapshot_id: str, size: Any, region: Any) -> str:
    return f"{name} from snapshot {snapshot_id} (size {size}, region {region})"


def new_droplet_figures(created: Droplet) -> dict[str, Any]:
    return {"droplet": created.id, "status": created.status, "IP": created.ip}


def droplet_switch(target: str, created: Droplet, config_line: str, dns_line: str) -> str:
    return (f":information_source: New droplet *{created.name}* (id {created.id}) is active at IP "
            f"`{created.ip}`. Target *{target}* and its droplet were not changed. *To switch*, once its "
            f"database looks right:\n• config: ```{config_line}``` (the password from your secret store in place of "
            f"`{MASK}`), then restart the application and the workers\n• DNS: {dns_line}\nThen run "
            f"`python -m workers confirm-identity {target}` (until then the wrong-database guard refuses writes to "
            f"{target}: its database changed).")


def dns_record(host: str | None, old_ip: Any, new_ip: Any) -> str:
    if host and not _is_ip(host):
        return f"change the A record of `{host}` from `{old_ip or 'the old droplet'}` to `{new_ip}`"
    return (f"the database URL names an IP, no DNS name: change any A record that points at "
            f"`{old_ip or 'the old droplet'}` to `{new_ip}`")


def droplet_not_as_promised(field: str, promised: object, found: object) -> str:
    return f"the new droplet's {field} is {found!r}, the approval named {promised!r}"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


# -- the preview the card shows --------------------------------------------------------------------------


def default_name(target: str, asked_at: float) -> str:
    """`<target>-restored-<UTC minute asked>`, like the playbook's `restored-db` (a droplet name: a hostname)."""
    return f"{target}-restored-{datetime.fromtimestamp(asked_at, UTC).strftime('%Y%m%d%H%M')}".replace("_", "-")


def _snapshot(do: DigitalOcean, snapshot_id: str) -> Snapshot:
    try:
        snapshot = Snapshot.from_dict(do.snapshot(snapshot_id))
    except ServiceUnavailable:
        raise  # DigitalOcean failing is not an unknown snapshot: paged by the check
    except WorkerError as exc:
        raise RecoveryRefused(unknown_snapshot(snapshot_id, str(exc))) from exc
    if snapshot.resource_type != "droplet":
        raise RecoveryRefused(not_a_droplet_snapshot(snapshot_id, snapshot.resource_type))
    return snapshot


def _source(do: DigitalOcean, snapshot_id: str, droplet_id: Any) -> Droplet:
    try:
        return Droplet.from_dict(do.droplet(int(droplet_id)))
    except ServiceUnavailable:
        raise
    except (WorkerError, ValueError) as exc:
        raise RecoveryRefused(source_droplet_gone(snapshot_id, droplet_id, str(exc))) from exc


def droplet_preview(ctx: Context, target: Target, snapshot_id: str, new_name: str | None) -> PreviewCheck:
    """Any droplet snapshot of the account (the target needs no droplet of its own); the source droplet's size
    and region; the name. The digest binds them with the target's identity."""
    do = digitalocean(ctx)
    snapshot = _snapshot(do, snapshot_id)
    source = _source(do, snapshot_id, snapshot.resource_id)
    name = new_name or default_name(target.name, time.time())
    with ctx.connect(target) as conn:
        found = _guarded_identity(ctx, conn, target)
        versions = [v for v, _ in applied_versions(conn)]
    facts: JsonObject = {"snapshot": snapshot_id, "snapshot_name": snapshot.name,
                         "taken_at": snapshot.created_at, "source_droplet": source.id,
                         "size": source.size, "region": source.region, "new_name": name}
    preview = Preview(kind=RequestKind.NEW_DROPLET.value, target=target.name, versions_before=tuple(versions),
                      snapshot=snapshot_id, snapshot_name=snapshot.name, taken_at=snapshot.created_at,
                      source_droplet=source.id, size=source.size, region=source.region, new_name=name)
    return PreviewCheck(ok=True, digest=digest_of(found, {"kind": "new_droplet", **facts}), preview=preview,
                        params={**facts, "old_ip": source.ip})


# -- the step --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _UrlParts:
    """What the switch lines use of the target's database URL: never its password."""

    host: str | None
    port: Any
    user: str
    dbname: str

    @classmethod
    def of(cls, ctx: Context, target: Target) -> _UrlParts:
        parts = {k: v for k, v in psycopg.conninfo.conninfo_to_dict(ctx.settings.database_url(target)).items() if v}
        return cls(host=str(parts["host"]) if "host" in parts else None, port=parts.get("port", POSTGRES_PORT),
                   user=str(parts.get("user", "postgres")), dbname=str(parts.get("dbname", "")))


def config_line(ctx: Context, target: Target, ip: Any) -> str:
    """The target's DATABASE_URL with the new droplet's IP, its password masked (never read out of the URL)."""
    url = _UrlParts.of(ctx, target)
    return f"DATABASE_URL=postgresql://{url.user}:{MASK}@{ip}:{url.port}/{url.dbname}"


@dataclass(frozen=True)
class NewDropletResult:
    """The *New droplet* step: DigitalOcean's answer for the droplet made (id, name, size, region, ip)."""

    created: Droplet

    def to_dict(self) -> JsonObject:
        return {"new_droplet": self.created.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NewDropletResult:
        created = data["new_droplet"] if "new_droplet" in data else None
        return cls(Droplet.from_dict(created if isinstance(created, Mapping) else {}))


def new_droplet(ctx: Context, request: Request, target: Target, progress: Progress) -> NewDropletResult:
    """The new droplet, followed until active with an IP (bounded); the thread gets the IP and the switch."""
    params = NewDropletParams.from_params(request.params)
    name, snapshot_id = str(request.params["new_name"]), params.snapshot
    started = progress.start("new_droplet", new_droplet_of(name, snapshot_id, params.size, params.region))
    with progress.heartbeat("new_droplet") as beat:
        created = Droplet.from_dict(digitalocean(ctx).create_droplet_from_snapshot(
            name, snapshot_id, str(params.size), str(params.region), heartbeat=beat,
            poll_seconds=ctx.options.do_poll_s, timeout_s=ctx.options.do_action_timeout_s))
    with ctx.connect(target) as conn:
        migration_history.record(conn, operation="new_droplet", status="completed", executed_by=request.requester,
                                 approved_by=request.approver, request_id=request.id,
                                 duration_ms=int(float(created.duration_s or 0) * 1000),
                                 details={"snapshot": snapshot_id, **created.facts})
    progress.finish("new_droplet", started, new_droplet_figures(created))
    progress.post(droplet_switch(target.name, created, config_line(ctx, target, created.ip),
                                 dns_record(_UrlParts.of(ctx, target).host, params.old_ip, created.ip)))
    return NewDropletResult(created)


STEPS = {"new_droplet": new_droplet}


def promised(ctx: Context, request: Request, target: Target, state: PipelineState) -> Promise:
    """The droplet exists, is active, was made from the snapshot the card named, with the name it named: read
    back from DigitalOcean now, not from what the creation answered."""
    made = state.result("new_droplet", NewDropletResult.from_dict)
    if made is None or made.created.id is None:
        return Promise(mismatches=(droplet_not_as_promised("id", "a new droplet", None),))
    found = Droplet.from_dict(digitalocean(ctx).droplet(int(made.created.id)))
    params = NewDropletParams.from_params(request.params)
    # (field, what the approval named, what DigitalOcean says now)
    compared = (("name", params.new_name, found.name), ("status", "active", found.status),
                ("image", params.snapshot, found.image))
    return Promise(mismatches=tuple(droplet_not_as_promised(k, v, now) for k, v, now in compared if now != v))


def succeeded(request: Request, target: Target, state: PipelineState, duration_s: float) -> str:
    return messages.recovery_succeeded(request.id, target.name, "restore into a new droplet", watched=False,
                                       new="droplet")
