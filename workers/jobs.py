"""The RQ job functions, referenced by dotted path (core/prechecks.py). Thin: context, lease, hand off.

All take keyword arguments and return JSON-able dicts. Read-only jobs (status, dry_run, backups,
history, report) answer an expected failure in the thread and return `{"ok": False, "error": ...}`;
jobs that change or check a target (execute and its steps, backup, verify, restore, maintenance)
raise instead, so the failure callback (workers.runtime.failures) reports it, marks the request failed and
pages. `check_backup` posts nothing: the bot asks it before creating a restore request.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from core.jsontypes import JsonObject
from core.prechecks import PreviewCheck
from core.requests import RequestKind
from workers.runtime import approved_requests, previews
from workers.runtime.context import Context, context
from workers.runtime.errors import ServiceUnavailable, describe
from workers.runtime.job_frame import changing, job_id, read_only
from workers.verbs import backup as backup_verb
from workers.verbs import backups as backups_verb
from workers.verbs import cluster_restore, new_droplet, pitr, recover, repair, snapshot_restore, undo, watch
from workers.verbs import diff as diff_verb
from workers.verbs import dry_run as dry_run_verb
from workers.verbs import escrow as escrow_verb
from workers.verbs import history as history_verb
from workers.verbs import maintenance as maintenance_verb
from workers.verbs import report as report_verb
from workers.verbs import restore as restore_verb
from workers.verbs import status as status_verb
from workers.verbs import verify as verify_verb


def status(*, target: str, channel: str | None = None, thread_ts: str | None = None, **_: Any) -> JsonObject:
    return read_only("status", channel, thread_ts, lambda ctx, p: status_verb.status(ctx, p, target, channel))


def dry_run(*, target: str, version: str, channel: str | None = None, thread_ts: str | None = None,
            requester: str = "unknown", **_: Any) -> JsonObject:
    return read_only("dry_run", channel, thread_ts,
                      lambda ctx, p: dry_run_verb.dry_run(ctx, p, target, version, requester, channel))


def diff(*, target: str, other: str | None = None, channel: str | None = None, thread_ts: str | None = None,
         **_: Any) -> JsonObject:
    """`/rollback diff <target> <target>`: versions and schemas of two targets compared, in the thread."""
    return read_only("diff", channel, thread_ts, lambda ctx, p: diff_verb.diff(ctx, p, target, other))


def backups(*, target: str, channel: str | None = None, thread_ts: str | None = None, **_: Any) -> JsonObject:
    return read_only("backups", channel, thread_ts, lambda ctx, p: backups_verb.backups(ctx, p, target))


def history(*, target: str, channel: str | None = None, thread_ts: str | None = None, **_: Any) -> JsonObject:
    return read_only("history", channel, thread_ts, lambda ctx, p: history_verb.history_of(ctx, p, target))


def report(*, channel: str, thread_ts: str, requester: str = "unknown", **_: Any) -> JsonObject:
    return read_only("report", channel, thread_ts,
                      lambda ctx, p: report_verb.write_report(ctx, p, channel, thread_ts, requester))


def backup(*, target: str, channel: str | None = None, thread_ts: str | None = None, requester: str = "unknown",
           reason: str = "manual", **_: Any) -> JsonObject:
    return changing(lambda ctx: backup_verb.backup(ctx, ctx.progress(channel, thread_ts), target, requester, reason))


def verify(*, target: str, channel: str | None = None, thread_ts: str | None = None, requester: str = "unknown",
           **_: Any) -> JsonObject:
    return changing(lambda ctx: verify_verb.verify(ctx, ctx.progress(channel, thread_ts), target, requester))


def run_request(*, request_id: str, into: str = "target", **_: Any) -> JsonObject:
    """An approved request of any kind (core/kinds.py): its start check, then its steps (workers/runtime/approved_requests.py)."""
    return changing(lambda ctx: approved_requests.run_request(ctx, request_id, into))


def pipeline_step(*, request_id: str, step: str, **_: Any) -> JsonObject:
    return changing(lambda ctx: approved_requests.run_step(ctx, request_id, step))


def plan_repair(*, target: str, version: str, **_: Any) -> JsonObject:
    """The repair's dry run, asked by the bot before it creates the request. Posts nothing; answers
    `{"ok", "error", "text", "hash", "plan"}`."""
    ctx = context()
    with ctx.lease(job_id()):
        return repair.plan(ctx, target, version)


def watch_tick(*, request_id: str, tick: int = 0, **_: Any) -> JsonObject:
    """One look of a request's watch window (workers/verbs/watch.py); schedules the next or closes the window."""
    return changing(lambda ctx: watch.tick(ctx, request_id, tick))


def watch_stop(*, request_id: str, requester: str = "unknown", **_: Any) -> JsonObject:
    """`/rollback watch stop`: the request's watch window ends now, recorded."""
    return changing(lambda ctx: watch.stop(ctx, request_id, requester))


def maintenance(*, target: str, state: str, channel: str | None = None, thread_ts: str | None = None,
                requester: str = "unknown", **_: Any) -> JsonObject:
    """`/rollback maintenance on|off`: the target's hook, a line in the thread, a row in history."""
    return changing(lambda ctx: maintenance_verb.maintenance(ctx, ctx.progress(channel, thread_ts), target, state,
                                                        requester))


def escrow(*, target: str, channel: str | None = None, thread_ts: str | None = None, **_: Any) -> JsonObject:
    return read_only("escrow", channel, thread_ts, lambda ctx, p: escrow_verb.escrow(ctx, p, target))


def check_undo(*, target: str, request_id: str, **_: Any) -> JsonObject:
    """The undo's dry run, answered to the bot before it creates the undo request (like check_backup)."""
    ctx = context()
    with ctx.lease(job_id()):
        try:
            return undo.check_undo(ctx, target, request_id)
        except Exception as exc:  # every failure is an answer the bot shows, never a crash it waits on
            return {"ok": False, "error": describe(exc, ctx.secrets())}


def check_backup(*, target: str, backup: str, **_: Any) -> JsonObject:
    """Whether `backup` may be restored into `target` (exists, checksum, `pg_restore --list`), asked by
    the bot before it creates a restore request. Posts nothing; answers
    `{"ok", "error", "newest": [names, newest first], "backup": manifest | None}`."""
    ctx = context()
    with ctx.lease(job_id()):
        try:
            checked = restore_verb.inspect_backup(ctx, ctx.target(target), backup)
            if not checked.ok or not checked.backup:
                return checked.to_dict()
            try:  # the restore preview the card shows and the request binds (issue 10)
                digest, preview = restore_verb.restore_preview(ctx, ctx.target(target),
                                                               Path(str(checked.backup["path"])), checked.backup)
            except Exception as exc:
                return replace(checked, preview_error=describe(exc, ctx.secrets())).to_dict()
            return replace(checked, digest=digest, preview=preview).to_dict()
        except Exception as exc:
            return {"ok": False, "error": describe(exc, ctx.secrets()), "newest": [], "backup": None}


# --- the recovery paths (issue 10): a check the bot waits for, then the approved request's job ------


def _check(kind: RequestKind, target: str, channel: str | None, work: Callable[[Context], PreviewCheck]) -> JsonObject:
    """A recovery verb's check: posts nothing, answers core.prechecks.PreviewCheck (a refusal is one line).
    The provider's API failing (after its retries) is also paged: nobody else would hear of it."""
    ctx = context()
    with ctx.lease(job_id()):
        try:
            return work(ctx).to_dict()
        except ServiceUnavailable as exc:
            error = previews.unavailable_during_check(ctx, kind, target, channel, describe(exc, ctx.secrets()))
            return PreviewCheck(ok=False, error=error).to_dict()
        except Exception as exc:
            return PreviewCheck(ok=False, error=describe(exc, ctx.secrets())).to_dict()


def check_recover(*, target: str, tables: str, backup: str | None = None, overwrite: bool = False,
                  version: str | None = None, channel: str | None = None, **_: Any) -> JsonObject:
    """`/rollback recover`: the backup (none named: the newest taken before `version`, or the newest migration,
    was applied) verifies, every table has a primary key, is in the backup and is live; the per-table diff
    (restored into a scratch database, always dropped)."""
    names = [t for t in tables.split(",") if t]
    return _check(RequestKind.RECOVER, target, channel,
                  lambda ctx: recover.recover_preview(ctx, ctx.target(target), backup, names, bool(overwrite),
                                                      before=version))


def check_pitr(*, target: str, version: str | None = None, point: str | None = None, channel: str | None = None,
               **_: Any) -> JsonObject:
    """`/rollback pitr`: the recovery point (before `version`, at `point`, or before the newest migration)
    inside the project's PITR window; what is lost after it."""
    return _check(RequestKind.PITR, target, channel,
                  lambda ctx: pitr.pitr_preview(ctx, ctx.target(target), before=version, at=point))


def check_snapshot(*, target: str, snapshot: str, channel: str | None = None, **_: Any) -> JsonObject:
    """`/rollback snapshot-restore`: the snapshot exists and is of the target's droplet; what is lost."""
    return _check(RequestKind.SNAPSHOT_RESTORE, target, channel,
                  lambda ctx: snapshot_restore.snapshot_preview(ctx, ctx.target(target), snapshot))


def check_cluster(*, target: str, point: str | None = None, channel: str | None = None, **_: Any) -> JsonObject:
    """`/rollback cluster-restore`: the managed cluster's newest backup (before `point` when given)."""
    return _check(RequestKind.CLUSTER_RESTORE, target, channel,
                  lambda ctx: cluster_restore.cluster_preview(ctx, ctx.target(target), point))


def check_new_droplet(*, target: str, snapshot: str, new_name: str | None = None, channel: str | None = None,
                      **_: Any) -> JsonObject:
    """`/rollback snapshot-restore --new-droplet`: the snapshot is a droplet's; that droplet's size and region."""
    return _check(RequestKind.NEW_DROPLET, target, channel,
                  lambda ctx: new_droplet.droplet_preview(ctx, ctx.target(target), snapshot, new_name))


def __getattr__(name: str) -> Callable[..., JsonObject]:
    """`workers.jobs.<verb>` for a verb without a function here: the `job` of workers/verbs/<verb>.py (and
    `workers.jobs.check_<kind>`: the `check` of workers/verbs/<kind>.py), so a new verb is its module and its record
    in bot/verbs.py. RQ resolves a dotted path with getattr, which this answers (PEP 562)."""
    verb, attribute = (name.removeprefix("check_"), "check") if name.startswith("check_") else (name, "job")
    try:
        module = importlib.import_module(f"workers.verbs.{verb}")
    except ModuleNotFoundError as exc:
        raise AttributeError(f"module 'workers.jobs' has no job {name!r}") from exc
    if not hasattr(module, attribute):
        raise AttributeError(f"module 'workers.jobs' has no job {name!r}")
    job: Callable[..., JsonObject] = getattr(module, attribute)
    return job
