"""The recovery paths of the playbook beyond the rollback (issue 10): their previews and their steps.

- `recover` (scenario 4): lost rows of chosen tables back from a verified backup (workers/recover.py);
- `pitr` (Method 3A): a Supabase project taken back to a point in time (workers/supabase.py);
- `snapshot_restore` (Method 3B): a droplet restored from one of its snapshots (workers/digitalocean.py).

Each has a check job the bot waits for before it creates the request: it refuses in one line what
cannot run, or answers the restore preview the approval card shows (core.jobs.PreviewCheck). The
preview's `digest` hashes what was shown with the database's identity; `recheck` recomputes it when
the approved request starts, and a different one refuses the start, like a changed rollback plan.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from core import defaults, kinds
from core.config import Target, database_url_env_for
from core.jobs import PreviewCheck
from core.jsontypes import JsonObject
from core.requests import Request, RequestKind
from workers import dumpfiles, history, identity, messages, paging, recover, recovery_messages
from workers.backup import take_backup
from workers.context import Context
from workers.digitalocean import DigitalOcean
from workers.errors import ServiceUnavailable, StepFailed, WorkerError
from workers.progress import Progress
from workers.restore import check_backup
from workers.supabase import Supabase, SupabaseRefused, check_point, recovery_point
from workers.verbs import Promise, Refusal

# Bookkeeping tables are not the application's data: never counted as "written since".
OWN_TABLES = frozenset({"schema_migrations", "migration_history", "rollback_target_identity"})
WRITTEN_SINCE_TABLES = 20  # at most this many tables are counted on a card
TIMESTAMP_COLUMNS = ("created_at", "updated_at")


class RecoveryRefused(WorkerError):
    """A recovery cannot be asked for or started as it stands; `str()` says why and what to do instead."""


# --- what every preview holds ------------------------------------------------------------------------


def digest_of(identity_: identity.Identity, facts: Mapping[str, Any]) -> str:
    """The hash an approval binds: the preview's facts and the database's identity."""
    canonical = json.dumps({"identity": identity_.to_dict(), **facts}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def applied_versions(conn: psycopg.Connection[Any]) -> list[tuple[str, float]]:
    """Completed migrations with when they were applied (unix), oldest first; [] before the first one."""
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return []
    rows = conn.execute(
        "SELECT version, extract(epoch FROM applied_at)::float8 FROM schema_migrations"
        " WHERE status = 'completed' AND applied_at IS NOT NULL ORDER BY applied_at, version"
    ).fetchall()
    return [(str(v), float(at)) for v, at in rows]


def written_since(conn: psycopg.Connection[Any], point_unix: float) -> dict[str, int]:
    """Rows of the application's tables created or updated after the point: what going back loses."""
    found = conn.execute(
        "SELECT c.table_schema, c.table_name, array_agg(c.column_name::text ORDER BY c.column_name)"
        " FROM information_schema.columns c JOIN information_schema.tables t"
        "   ON t.table_schema = c.table_schema AND t.table_name = c.table_name AND t.table_type = 'BASE TABLE'"
        " WHERE c.table_schema NOT IN ('pg_catalog', 'information_schema')"
        "   AND c.column_name = ANY(%s) AND c.data_type LIKE 'timestamp%%'"
        " GROUP BY 1, 2 ORDER BY 1, 2",
        (list(TIMESTAMP_COLUMNS),),
    ).fetchall()
    counts: dict[str, int] = {}
    for schema, table, cols in found:
        if table in OWN_TABLES or len(counts) >= WRITTEN_SINCE_TABLES:
            continue
        newest = sql.SQL("greatest({})").format(sql.SQL(", ").join(sql.Identifier(c) for c in cols))
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE {} > to_timestamp(%s)").format(
                sql.Identifier(schema, table), newest), (point_unix,)).fetchone()
        name = table if schema == "public" else f"{schema}.{table}"
        counts[name] = int(row[0]) if row else 0
    return counts


def _guarded_identity(ctx: Context, conn: psycopg.Connection[Any], target: Target) -> identity.Identity:
    """The database's identity, refusing when the target now reaches another database."""
    checked = identity.check(conn, ctx.redis, target.name)
    if not checked.ok:
        raise RecoveryRefused(checked.message())
    return checked.current


# --- recover: lost rows of chosen tables -------------------------------------------------------------


def _archive(ctx: Context, target: Target, backup: str) -> tuple[Path, Mapping[str, Any]]:
    """The backup's archive and manifest, when it exists and verifies (checksum, `pg_restore --list`)."""
    checked = check_backup(backup, backup_dir=ctx.settings.backup_dir, target=target.name,
                           pg_restore=ctx.options.pg_restore)
    if not checked.ok or not checked.backup:
        raise RecoveryRefused(checked.error or recovery_messages.backup_unusable(backup))
    return Path(str(checked.backup["path"])), checked.backup


def _session(ctx: Context, target: Target, archive: Path, tables: Sequence[str],
             beat: Callable[[str], None] | None = None) -> Any:
    conninfo = ctx.conninfo(target)
    return recover.recovery_session(
        conninfo, archive, tables, jobs=ctx.options.restore_jobs, pg_restore=ctx.options.pg_restore,
        run=recover.client_runner(conninfo, beat, ctx.options.progress_interval_s),
        lock_timeout_ms=ctx.settings.lock_timeout_ms, statement_timeout_ms=ctx.settings.statement_timeout_ms,
        psql=ctx.options.psql, heartbeat=beat,
    )


def recover_preview(ctx: Context, target: Target, backup: str, tables: Sequence[str], overwrite: bool) -> PreviewCheck:
    """Restore the tables into a scratch database, compare by primary key, try the inserts (rolled back)."""
    names = [str(recover.parse_table(t)) for t in tables]  # InvalidTableName before anything runs
    archive, manifest = _archive(ctx, target, backup)
    with ctx.connect(target) as conn:
        found = _guarded_identity(ctx, conn, target)
        versions = [v for v, _ in applied_versions(conn)]
    with _session(ctx, target, archive, names) as session:
        shown = recover.preview(session, archive.name, overwrite, time.monotonic())
    preview: JsonObject = {
        "kind": RequestKind.RECOVER.value, "target": target.name, "backup": archive.name, "overwrite": overwrite,
        "versions_before": versions, "versions_after": versions,
        "tables": [{"table": t.table, "live_rows": t.live_rows, "restored_rows": t.restored_rows,
                    "missing": t.missing, "differing": t.differing, "only_live": t.only_live,
                    "missing_sample": list(t.missing_sample), "differing_sample": list(t.differing_sample),
                    "only_live_sample": list(t.only_live_sample)} for t in shown.tables],
        "created_at": manifest.get("created_at"),
        "file": dumpfiles.read(archive, pg_restore=ctx.options.pg_restore).summary(),
    }
    digest = digest_of(found, {"kind": "recover", "recovery": shown.digest})
    return PreviewCheck(ok=True, digest=digest, preview=preview,
                        params={"tables": names, "overwrite": overwrite, "recovery_digest": shown.digest})


def table_backup(ctx: Context, request: Request, target: Target, progress: Progress) -> JsonObject:
    """A fresh, verified backup of just the tables about to change (pg_dump -t): no backup, no change."""
    tables = [recover.parse_table(t) for t in request.params.get("tables") or []]
    with ctx.connect(target) as conn:
        identity.guard(conn, ctx.redis, target.name, by=request.requester)
    started = progress.start("table_backup", messages.dump_of(", ".join(str(t) for t in tables), recovery_messages.BEFORE_RECOVERY))
    with progress.heartbeat("table_backup") as beat:
        backup = take_backup(
            ctx.conninfo(target), target=target.name, reason=f"pre-recover-{request.id}",
            backup_dir=ctx.settings.backup_dir, heartbeat=beat, pg_dump=ctx.options.pg_dump,
            pg_restore=ctx.options.pg_restore, progress_interval=ctx.options.progress_interval_s,
            tables=[(t.schema, t.name) for t in tables],
        )
    if not backup.verified:
        raise StepFailed(recovery_messages.no_table_backup())
    with ctx.connect(target) as conn:
        history.record(conn, operation="backup", status="completed", executed_by=request.requester,
                       approved_by=request.approver, request_id=request.id,
                       duration_ms=int(backup.duration_s * 1000), details=backup.to_dict())
    progress.finish("table_backup", started, messages.backup_figures(backup))
    return {"table_backup": backup.to_dict()}


def recover_rows(ctx: Context, request: Request, target: Target, progress: Progress) -> JsonObject:
    """Insert the missing rows (overwrite the differing ones only if asked) in one transaction, parents
    first; the diff is recomputed in that transaction and must be the one approved; counts verified."""
    tables = list(request.params.get("tables") or [])
    overwrite = bool(request.params.get("overwrite"))
    archive, _ = _archive(ctx, target, str(request.backup))
    started = progress.start("recover", recovery_messages.recover_of(archive.name, tables, overwrite))
    with progress.heartbeat("recover") as beat, _session(ctx, target, archive, tables, beat) as session:
        result = recover.apply(session, archive.name, overwrite, str(request.params.get("recovery_digest")),
                               time.monotonic())
    ctx.store().clear_plans(target.name)  # the target's rows changed
    with ctx.connect(target) as conn:
        history.record(conn, operation="recover", status="completed", executed_by=request.requester,
                       approved_by=request.approver, request_id=request.id,
                       duration_ms=int(result.duration_s * 1000),
                       details={"backup": archive.name, "overwrite": overwrite, "inserted": result.inserted,
                                "overwritten": result.overwritten, "counts_before": result.counts_before,
                                "counts_after": result.counts_after})
    progress.finish("recover", started, recovery_messages.recover_figures(result.inserted, result.overwritten,
                                                                 result.counts_before, result.counts_after))
    return {"recover": {"inserted": result.inserted, "overwritten": result.overwritten,
                        "counts_before": result.counts_before, "counts_after": result.counts_after}}


# --- pitr: Supabase point-in-time recovery ------------------------------------------------------------


def supabase(ctx: Context) -> Supabase:
    return Supabase(ctx.settings.supabase_access_token or "", ctx.settings.supabase_api_url)


def _project_ref(target: Target) -> str:
    if not target.supabase_project_ref:
        raise RecoveryRefused(recovery_messages.not_supabase(target.name))
    return target.supabase_project_ref


def parse_utc(text: str) -> float:
    """`2025-10-20T14:59:00Z` (seconds and the Z optional) as unix seconds, read as UTC."""
    cleaned = text.strip().upper().removesuffix("Z").removesuffix("UTC").strip()
    for shape in ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"):
        try:
            return datetime.strptime(cleaned, shape).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
    raise RecoveryRefused(recovery_messages.not_a_utc_time(text))


def choose_point(versions: Sequence[tuple[str, float]], *, before: str | None, at: str | None,
                 margin_seconds: int) -> tuple[int, str | None]:
    """The recovery point (unix) and the migration it goes back before: an explicit UTC time, else just
    before `before` (a version) was applied, else just before the newest applied migration, minus the margin."""
    if at:
        return int(parse_utc(at)), None
    applied = dict(versions)
    if before:
        if before not in applied:
            raise RecoveryRefused(recovery_messages.version_not_applied(before))
        return recovery_point(applied[before], margin_seconds), before
    if not versions:
        raise RecoveryRefused(recovery_messages.no_migration_applied())
    newest, applied_at = max(versions, key=lambda pair: (pair[1], pair[0]))
    return recovery_point(applied_at, margin_seconds), newest


def _point_facts(conn: psycopg.Connection[Any], point: int) -> JsonObject:
    versions = applied_versions(conn)
    return {"versions_before": [v for v, _ in versions],
            "versions_after": [v for v, at in versions if at < point]}


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
        raise RecoveryRefused(recovery_messages.api_refused(str(exc))) from exc
    check_point(ref, window, point)  # PITR off, outside the window: refused naming the other options
    preview: JsonObject = {"kind": RequestKind.PITR.value, "target": target.name, "project_ref": ref,
                           "point_unix": point, "bad_version": bad, "lost_seconds": round(time.time() - point),
                           "written_since": lost, **facts}
    digest = digest_of(found, {"kind": "pitr", "ref": ref, "point": point, **facts})
    return PreviewCheck(ok=True, digest=digest, preview=preview, params={
        "point_unix": point, "bad_version": bad, "versions_after": facts["versions_after"]})


def wait_for_database(ctx: Context, target: Target, beat: Callable[[str], None] | None = None) -> float:
    """After the database was replaced: wait (bounded) until PostgreSQL answers again; seconds waited."""
    started = time.monotonic()
    while True:
        try:
            with ctx.connect(target) as conn:
                conn.execute("SELECT 1")
            return time.monotonic() - started
        except psycopg.OperationalError as exc:
            waited = time.monotonic() - started
            if waited >= ctx.options.database_wait_s:
                raise StepFailed(recovery_messages.database_did_not_answer(target.name, waited)) from exc
            if beat is not None:
                beat(recovery_messages.waiting_for_database(target.name, waited))
            time.sleep(min(1.0, ctx.options.pitr_poll_s))


def pitr(ctx: Context, request: Request, target: Target, progress: Progress) -> JsonObject:
    """restore-pitr, followed to healthy (bounded: past it, the failure report pages), then the database
    must answer and be the same one (the wrong-database guard)."""
    ref = _project_ref(target)
    point = int(request.params["point_unix"])
    client = supabase(ctx)
    check_point(ref, client.pitr_window(ref), point)  # the window moves on: still inside it?
    started = progress.start("pitr", recovery_messages.pitr_of(ref, point))
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
        history.record(conn, operation="pitr", status="completed", executed_by=request.requester,
                       approved_by=request.approver, request_id=request.id, version=request.params.get("bad_version"),
                       duration_ms=int(waited * 1000), details={"project_ref": ref, "point_unix": point})
    progress.finish("pitr", started, recovery_messages.pitr_figures(point, waited, versions))
    return {"pitr": {"project_ref": ref, "point_unix": point, "waited_s": round(waited, 3), "versions": versions}}


# --- snapshot_restore: a droplet from its snapshot ----------------------------------------------------


def digitalocean(ctx: Context) -> DigitalOcean:
    return DigitalOcean(ctx.settings.digitalocean_token or "", ctx.settings.digitalocean_api_url)


def _snapshot_of(ctx: Context, target: Target, snapshot_id: str) -> JsonObject:
    if not target.do_droplet_id:
        raise RecoveryRefused(recovery_messages.no_droplet(target.name))
    try:
        snapshot = digitalocean(ctx).snapshot(snapshot_id)
    except ServiceUnavailable:
        raise  # DigitalOcean failing is not an unknown snapshot: paged by the check
    except WorkerError as exc:
        raise RecoveryRefused(recovery_messages.unknown_snapshot(snapshot_id, str(exc))) from exc
    if snapshot.get("resource_id") != str(target.do_droplet_id):
        raise RecoveryRefused(recovery_messages.snapshot_of_other_droplet(snapshot_id, snapshot.get("resource_id"),
                                                                 target.do_droplet_id))
    return snapshot


def snapshot_preview(ctx: Context, target: Target, snapshot_id: str) -> PreviewCheck:
    snapshot = _snapshot_of(ctx, target, snapshot_id)
    taken = _iso_unix(snapshot.get("created_at"))
    with ctx.connect(target) as conn:
        found = _guarded_identity(ctx, conn, target)
        facts = _point_facts(conn, int(taken)) if taken else {"versions_before": [v for v, _ in applied_versions(conn)],
                                                                  "versions_after": None}
        lost = written_since(conn, taken) if taken else {}
    preview: JsonObject = {"kind": RequestKind.SNAPSHOT_RESTORE.value, "target": target.name, "snapshot": snapshot_id,
                           "snapshot_name": snapshot.get("name"), "droplet_id": target.do_droplet_id,
                           "point_unix": int(taken) if taken else None,
                           "lost_seconds": round(time.time() - taken) if taken else None,
                           "written_since": lost, **facts}
    digest = digest_of(found, {"kind": "snapshot_restore", "snapshot": snapshot_id,
                               "created_at": snapshot.get("created_at"), **facts})
    return PreviewCheck(ok=True, digest=digest, preview=preview,
                        params={"snapshot": snapshot_id, "versions_after": facts["versions_after"]})


def _iso_unix(text: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def snapshot_restore(ctx: Context, request: Request, target: Target, progress: Progress) -> JsonObject:
    """The droplet's restore action, followed (bounded); then the database must answer and be the same one."""
    snapshot_id = str(request.params["snapshot"])
    assert target.do_droplet_id is not None
    started = progress.start("snapshot_restore", recovery_messages.snapshot_restore_of(snapshot_id, target.do_droplet_id))
    try:
        with progress.heartbeat("snapshot_restore") as beat:
            action = digitalocean(ctx).restore_droplet(
                target.do_droplet_id, snapshot_id, heartbeat=beat, poll_seconds=ctx.options.do_poll_s,
                timeout_s=ctx.options.do_action_timeout_s)
            waited = wait_for_database(ctx, target, beat)
    finally:
        ctx.store().clear_plans(target.name)
    with ctx.connect(target) as conn:
        identity.guard(conn, ctx.redis, target.name, by=request.requester)
        versions = [v for v, _ in applied_versions(conn)]
        history.record(conn, operation="snapshot_restore", status="completed", executed_by=request.requester,
                       approved_by=request.approver, request_id=request.id,
                       duration_ms=int(float(action.get("duration_s") or 0) * 1000),
                       details={"snapshot": snapshot_id, "droplet_id": target.do_droplet_id,
                                "action_id": action.get("action_id")})
    progress.finish("snapshot_restore", started, recovery_messages.snapshot_restore_figures(action, waited, versions))
    return {"snapshot_restore": {**action, "versions": versions}}


# --- cluster_restore: a new managed cluster from a backup ------------------------------------------


def cluster_preview(ctx: Context, target: Target, point: str | None) -> PreviewCheck:
    if not target.do_database_id:
        raise RecoveryRefused(recovery_messages.no_managed_cluster(target.name))
    backups = digitalocean(ctx).database_backups(target.do_database_id)  # newest first
    limit = parse_utc(point) if point else None
    chosen = next((b for b in backups if limit is None or (_iso_unix(b.get("created_at")) or 0) <= limit), None)
    if chosen is None:
        raise RecoveryRefused(recovery_messages.no_cluster_backup(target.do_database_id, point))
    created = str(chosen.get("created_at"))
    taken = _iso_unix(created)
    stamp = datetime.fromtimestamp(taken or time.time(), UTC).strftime("%Y%m%d%H%M")
    new_name = f"{target.name}-restored-{stamp}"
    with ctx.connect(target) as conn:
        found = _guarded_identity(ctx, conn, target)
        versions = [v for v, _ in applied_versions(conn)]
    preview: JsonObject = {"kind": RequestKind.CLUSTER_RESTORE.value, "target": target.name,
                           "database_id": target.do_database_id, "backup_created_at": created, "new_name": new_name,
                           "versions_before": versions, "versions_after": None, "point_unix": None}
    digest = digest_of(found, {"kind": "cluster_restore", "database_id": target.do_database_id, "backup": created})
    return PreviewCheck(ok=True, digest=digest, preview=preview,
                        params={"backup_created_at": created, "new_name": new_name})


def new_cluster(ctx: Context, request: Request, target: Target, progress: Progress) -> JsonObject:
    """The new cluster, followed until online (bounded); the thread gets its host and what to switch,
    never a password or a URI."""
    assert target.do_database_id is not None
    new_name = str(request.params["new_name"])
    started = progress.start("new_cluster", recovery_messages.new_cluster_of(new_name, target.do_database_id))
    with progress.heartbeat("new_cluster") as beat:
        created = digitalocean(ctx).restore_cluster(
            target.do_database_id, new_name, str(request.params.get("backup_created_at") or "") or None,
            heartbeat=beat, poll_seconds=ctx.options.do_poll_s, timeout_s=ctx.options.do_action_timeout_s)
    with ctx.connect(target) as conn:
        history.record(conn, operation="cluster_restore", status="completed", executed_by=request.requester,
                       approved_by=request.approver, request_id=request.id,
                       duration_ms=int(float(created.get("duration_s") or 0) * 1000),
                       details={k: created.get(k) for k in ("id", "name", "host", "port", "database",
                                                            "backup_created_at")})
    progress.finish("new_cluster", started, recovery_messages.new_cluster_figures(created))
    new_target = restored_target_name(target.name)
    progress.post(recovery_messages.cluster_switch(target.name, created))
    progress.post(recovery_messages.cluster_as_target(
        new_target, restored_target_toml(target, new_target, created), database_url_env_for(new_target),
        cluster_url_template(created)))
    return {"new_cluster": created, "new_target": new_target}


RESTORED_SUFFIX = "-restored"


def restored_target_name(name: str) -> str:
    """The target name the thread suggests for a cluster restored from `name`'s backup (a valid name:
    at most 40 characters)."""
    return name[:40 - len(RESTORED_SUFFIX)] + RESTORED_SUFFIX


def _toml_string(text: str) -> str:
    return json.dumps(text)  # a JSON string is a TOML basic string


def restored_target_toml(target: Target, new_target: str, created: Mapping[str, Any]) -> str:
    """The rollback.toml section that makes the new cluster a target: the same migrations and critical
    tables as the target it was restored from, its own cluster id; never the live application's health
    URL, smoke test or maintenance hooks, which act on what the application uses now."""
    lines = [f"[targets.{new_target}]",
             f"database_url_env = {_toml_string(database_url_env_for(new_target))}",
             f"migrations_dir = {_toml_string(target.migrations_dir)}"]
    if target.critical_tables:
        lines.append(f"critical_tables = [{', '.join(_toml_string(t) for t in target.critical_tables)}]")
    if created.get("id"):
        lines.append(f"do_database_id = {_toml_string(str(created['id']))}")
    return "\n".join(lines)


def cluster_url_template(created: Mapping[str, Any]) -> str:
    """The new cluster's database URL with the password left for the operator to fill in from the
    DigitalOcean console (the API's answer holds it; it never leaves the worker)."""
    url = (f"postgresql://{created.get('user')}:{recovery_messages.PASSWORD_PLACEHOLDER}@{created.get('host')}:"
           f"{created.get('port')}/{created.get('database')}")
    return url + ("?sslmode=require" if created.get("ssl") else "")


# --- a provider's API failing during a check: the one line for whoever asked, a page for on-call -----


def unavailable_during_check(ctx: Context, kind: RequestKind, target: str, channel: str | None, error: str) -> str:
    """Supabase or DigitalOcean failed on its side (after the client's retries) while a recovery was being
    checked: nothing is requested, on-call is paged (one incident per target and kind, however often it is
    asked again), and the answer says both. `error` is already one redacted line."""
    result = ctx.pager().trigger(
        paging.check_key(target, kind.value),
        paging.check_page_summary(kinds.of(kind).name, target, error),
        component=target, details={"target": target, "recovery": kind.value, "channel": channel, "error": error})
    return recovery_messages.api_failing(error, result.ok, result.detail)


# --- the start check: is the preview that was approved still the one the database gives? ----------


def same_backup(check: PreviewCheck, request: Request) -> PreviewCheck:
    """At start the chosen backup must still exist, whatever is newest now; its preview recomputed."""
    if check.preview and check.preview.get("backup_created_at") == request.params.get("backup_created_at"):
        return check
    return PreviewCheck(ok=False, error=recovery_messages.preview_changed())


def utc_text(point: Any) -> str | None:
    if point is None:
        return None
    return datetime.fromtimestamp(int(point), UTC).strftime("%Y-%m-%dT%H:%M:%S")


def recheck_restore(ctx: Context, request: Request, target: Target, archive: Path,
                    manifest: Mapping[str, Any]) -> str | None:
    """A whole-backup restore bound to a preview: None when it still holds, else the refusal."""
    if not request.plan_hash:
        return None  # asked for before restores had previews
    try:
        current = restore_preview(ctx, target, archive, manifest)
    except (WorkerError, psycopg.Error) as exc:
        return str(exc)
    return None if current["digest"] == request.plan_hash else recovery_messages.preview_changed()


def recheck(request: Request, preview_now: Callable[[], PreviewCheck]) -> Refusal | None:
    """None when the preview the request was approved on still holds (`preview_now` recomputes it); else the
    refusal. A provider's API failing raises: the approved request fails, reported and paged."""
    try:
        current = preview_now()
    except ServiceUnavailable:
        raise
    except WorkerError as exc:
        return Refusal(messages.refused(request.id, str(exc)), "preview changed")
    if current.digest != request.plan_hash:
        return Refusal(messages.refused(request.id, current.error or recovery_messages.preview_changed()),
                       "preview changed")
    return None


def versions_promise(ctx: Context, request: Request, target: Target) -> Promise:
    """A whole-database recovery promised the applied versions of the moment it goes back to (`versions_after`
    on its card): the database must now have exactly those (a restore that restored nothing fails here)."""
    promised = request.params.get("versions_after")
    if promised is None:  # the card could not say (a snapshot without a date): migration health only
        return Promise(health_only=True)
    with ctx.connect(target) as conn:
        found = [v for v, _ in applied_versions(conn)]
    if found == list(promised):
        return Promise(health_only=True)
    return Promise(health_only=True, mismatches=(recovery_messages.versions_not_as_promised(list(promised), found),))


# --- restore: the preview of a whole-backup restore ---------------------------------------------------


def restore_preview(ctx: Context, target: Target, archive: Path, manifest: Mapping[str, Any]) -> JsonObject:
    """What restoring `archive` into the target changes, from one whole read of the file
    (workers/dumpfiles.py, ours or made by hand): versions now and in the file, the file's tables and
    rows, the critical tables' rows live and in the file, and what was written since it was taken (lost)."""
    contents = dumpfiles.read(archive, pg_restore=ctx.options.pg_restore)
    after = list(contents.versions)
    taken = _iso_unix(manifest.get("created_at"))
    with ctx.connect(target) as conn:
        found = _guarded_identity(ctx, conn, target)
        before = [v for v, _ in applied_versions(conn)]
        tables = []
        for table in target.critical_tables:
            qualified = table if "." in table else f"public.{table}"
            schema, _, name = qualified.partition(".")
            live = None
            exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (qualified,)).fetchone()
            if exists and exists[0]:  # a bad migration may have dropped it
                row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, name))).fetchone()
                live = int(row[0]) if row else 0
            tables.append({"table": table, "live_rows": live, "restored_rows": contents.tables.get(qualified) or 0})
        lost = written_since(conn, taken) if taken else {}
    preview: JsonObject = {
        "kind": RequestKind.RESTORE.value, "target": target.name, "backup": archive.name,
        "versions_before": before, "versions_after": after, "tables": tables, "file": contents.summary(),
        "point_unix": int(taken) if taken else None, "lost_seconds": round(time.time() - taken) if taken else None,
        "written_since": lost,
    }
    digest = digest_of(found, {"kind": "restore", "sha256": manifest.get("sha256") or contents.sha256,
                               "versions_before": before, "versions_after": after})
    return {"digest": digest, "preview": preview}
