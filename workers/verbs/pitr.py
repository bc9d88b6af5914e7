"""`/rollback pitr`: a Supabase point-in-time recovery (core/kinds.py PITR; playbook Method 3A): backup →
maintenance on → restore-pitr followed to healthy → verify (the applied versions the card promised) →
maintenance off."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core import defaults
from core.config import Target
from core.prechecks import Preview, PreviewCheck
from core.requests import Request, RequestKind
from workers import messages
from workers.messages import seconds
from workers.postgres import identity, migration_history
from workers.providers.supabase import Supabase, SupabaseRefused, check_point, recovery_point
from workers.runtime import previews
from workers.runtime.context import Context
from workers.runtime.pipeline_state import PipelineState, PitrStepResult
from workers.runtime.previews import (
    RecoveryRefused,
    _guarded_identity,
    _point_facts,
    applied_versions,
    digest_of,
    parse_utc,
    wait_for_database,
    written_since,
)
from workers.runtime.progress import Progress
from workers.verbs import Promise, Refusal


@dataclass(frozen=True)
class PitrParams:
    """What the approval bound (the preview's `params`), read once from `request.params`."""

    point_unix: Any  # the recovery point
    bad_version: str | None  # the migration it goes back before (None: an explicit time)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> PitrParams:
        return cls(point_unix=params.get("point_unix"), bad_version=params.get("bad_version"))


def start_check(ctx: Context, request: Request, target: Target, progress: Progress) -> Refusal | None:
    point = PitrParams.from_params(request.params).point_unix
    return previews.recheck(request, lambda: pitr_preview(ctx, target, before=None, at=previews.utc_text(point)))


def not_supabase(target: str) -> str:
    return (f"target {target} is not a Supabase project (no `supabase_project_ref` in rollback.toml): use "
            "`/rollback restore <backup>`, `/rollback recover <backup> <tables>` or `/rollback snapshot-restore`")


def version_not_applied(version: str) -> str:
    return f"migration {version} was never applied here, so there is no moment before it; `/rollback status` lists them"


def no_migration_applied() -> str:
    return "no migration was applied here, so there is no moment before one: name a UTC time instead"


def _utc(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def pitr_of(ref: str, point: float) -> str:
    return f"project {ref} back to {_utc(point)}"


def pitr_figures(point: float, waited_s: float, versions: Sequence[str]) -> dict[str, Any]:
    return {"point": _utc(point), "healthy after": seconds(waited_s),
            "version": versions[-1] if versions else "none"}


def supabase(ctx: Context) -> Supabase:
    return Supabase(ctx.settings.supabase_access_token or "", ctx.settings.supabase_api_url)


def _project_ref(target: Target) -> str:
    if not target.supabase_project_ref:
        raise RecoveryRefused(not_supabase(target.name))
    return target.supabase_project_ref


def choose_point(versions: Sequence[tuple[str, float]], *, before: str | None, at: str | None,
                 margin_seconds: int) -> tuple[int, str | None]:
    """The recovery point (unix) and the migration it goes back before: an explicit UTC time, else just
    before `before` (a version) was applied, else just before the newest applied migration, minus the margin."""
    if at:
        return int(parse_utc(at)), None
    applied = dict(versions)
    if before:
        if before not in applied:
            raise RecoveryRefused(version_not_applied(before))
        return recovery_point(applied[before], margin_seconds), before
    if not versions:
        raise RecoveryRefused(no_migration_applied())
    newest, applied_at = max(versions, key=lambda pair: (pair[1], pair[0]))
    return recovery_point(applied_at, margin_seconds), newest


def pitr_preview(ctx: Context, target: Target, *, before: str | None, at: str | None) -> PreviewCheck:
    ref = _project_ref(target)
    with ctx.connect(target) as conn:
        found = _guarded_identity(ctx, conn, target)
        point, bad = choose_point(applied_versions(conn), before=before, at=at,
                                  margin_seconds=defaults.PITR_MARGIN_SECONDS)
        facts = _point_facts(conn, point)
        lost = written_since(conn, point)
    try:
        window = supabase(ctx).pitr_window(ref)  # a 5xx: retried, then ServiceUnavailable (paged by the check)
    except SupabaseRefused as exc:
        raise RecoveryRefused(messages.api_refused(str(exc))) from exc
    check_point(ref, window, point)  # PITR off, outside the window: refused naming the other options
    preview = Preview(kind=RequestKind.PITR.value, target=target.name, project_ref=ref, point_unix=point,
                      bad_version=bad, lost_seconds=round(time.time() - point), written_since=lost,
                      versions_before=tuple(facts["versions_before"]), versions_after=tuple(facts["versions_after"]))
    digest = digest_of(found, {"kind": "pitr", "ref": ref, "point": point, **facts})
    return PreviewCheck(ok=True, digest=digest, preview=preview, params={
        "point_unix": point, "bad_version": bad, "versions_after": facts["versions_after"]})


def pitr(ctx: Context, request: Request, target: Target, progress: Progress) -> PitrStepResult:
    """restore-pitr, followed to healthy (bounded: past it, the failure report pages), then the database
    must answer and be the same one (the wrong-database guard)."""
    ref = _project_ref(target)
    point = int(request.params["point_unix"])
    client = supabase(ctx)
    check_point(ref, client.pitr_window(ref), point)  # the window moves on: still inside it?
    started = progress.start("pitr", pitr_of(ref, point))
    try:
        client.restore_pitr(ref, point)
        with progress.heartbeat("pitr") as beat:
            waited = client.wait_healthy(ref, timeout_seconds=ctx.options.pitr_timeout_s,
                                         poll_seconds=ctx.options.pitr_poll_s, heartbeat=beat)
            wait_for_database(ctx, target, beat)
    finally:
        ctx.store().clear_plans(target.name)
    with ctx.connect(target) as conn:
        identity.guard(conn, ctx.redis, target.name, by=request.requester)
        versions = [v for v, _ in applied_versions(conn)]
        migration_history.record(conn, operation="pitr", status="completed", executed_by=request.requester,
                       approved_by=request.approver, request_id=request.id, version=PitrParams.from_params(request.params).bad_version,
                       duration_ms=int(waited * 1000), details={"project_ref": ref, "point_unix": point})
    progress.finish("pitr", started, pitr_figures(point, waited, versions))
    return PitrStepResult(ref, point, round(waited, 3), versions)


STEPS = {"pitr": pitr}


def promised(ctx: Context, request: Request, target: Target, state: PipelineState) -> Promise:
    return previews.versions_promise(ctx, request, target)


def succeeded(request: Request, target: Target, state: PipelineState, duration_s: float) -> str:
    return messages.recovery_succeeded(request.id, target.name, "point-in-time recovery")
