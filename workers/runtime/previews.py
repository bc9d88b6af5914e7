"""The recovery paths of the playbook beyond the rollback (issue 10): their previews and their steps.

- `recover` (scenario 4): lost rows of chosen tables back from a verified backup (workers/postgres/row_merge.py);
- `pitr` (Method 3A): a Supabase project taken back to a point in time (workers/providers/supabase.py);
- `snapshot_restore` (Method 3B): a droplet restored from one of its snapshots (workers/providers/digitalocean.py).

Each has a check job the bot waits for before it creates the request: it refuses in one line what
cannot run, or answers the restore preview the approval card shows (core.prechecks.PreviewCheck). The
preview's `digest` hashes what was shown with the database's identity; `recheck` recomputes it when
the approved request starts, and a different one refuses the start, like a changed rollback plan.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from core import kinds
from core.config import Target
from core.jsontypes import JsonObject
from core.prechecks import PreviewCheck
from core.requests import Request, RequestKind
from workers import messages
from workers.postgres import identity
from workers.providers.digitalocean import DigitalOcean
from workers.runtime import escalation
from workers.runtime.context import Context
from workers.runtime.errors import ServiceUnavailable, StepFailed, WorkerError
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


def has_migrations_table(conn: psycopg.Connection[Any]) -> bool:
    """Whether the database has a schema_migrations table yet (none before the first migration)."""
    row = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    return bool(row and row[0])


def applied_versions(conn: psycopg.Connection[Any]) -> list[tuple[str, float]]:
    """Completed migrations with when they were applied (unix), oldest first; [] before the first one."""
    if not has_migrations_table(conn):
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


# --- pitr: Supabase point-in-time recovery ------------------------------------------------------------


def parse_utc(text: str) -> float:
    """`2025-10-20T14:59:00Z` (seconds and the Z optional) as unix seconds, read as UTC."""
    cleaned = text.strip().upper().removesuffix("Z").removesuffix("UTC").strip()
    for shape in ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"):
        try:
            return datetime.strptime(cleaned, shape).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
    raise RecoveryRefused(messages.not_a_utc_time(text))


def _point_facts(conn: psycopg.Connection[Any], point: int) -> JsonObject:
    versions = applied_versions(conn)
    return {"versions_before": [v for v, _ in versions],
            "versions_after": [v for v, at in versions if at < point]}


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
                raise StepFailed(messages.database_did_not_answer(target.name, waited)) from exc
            if beat is not None:
                beat(messages.waiting_for_database(target.name, waited))
            time.sleep(min(1.0, ctx.options.pitr_poll_s))


# --- snapshot_restore: a droplet from its snapshot ----------------------------------------------------


def digitalocean(ctx: Context) -> DigitalOcean:
    return DigitalOcean(ctx.settings.digitalocean_token or "", ctx.settings.digitalocean_api_url)


def _iso_unix(text: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


# --- cluster_restore: a new managed cluster from a backup ------------------------------------------


# --- a provider's API failing during a check: the one line for whoever asked, a page for on-call -----


def unavailable_during_check(ctx: Context, kind: RequestKind, target: str, channel: str | None, error: str) -> str:
    """Supabase or DigitalOcean failed on its side (after the client's retries) while a recovery was being
    checked: nothing is requested, on-call is paged (one incident per target and kind, however often it is
    asked again), and the answer says both. `error` is already one redacted line."""
    result = ctx.pager().trigger(
        escalation.check_key(target, kind.value),
        escalation.check_page_summary(kinds.of(kind).name, target, error),
        component=target, details={"target": target, "recovery": kind.value, "channel": channel, "error": error})
    return messages.api_failing(error, result.ok, result.detail)


# --- the start check: is the preview that was approved still the one the database gives? ----------


def same_backup(check: PreviewCheck, request: Request) -> PreviewCheck:
    """At start the chosen backup must still exist, whatever is newest now; its preview recomputed."""
    if check.preview and check.preview.backup_created_at == request.params.get("backup_created_at"):
        return check
    return PreviewCheck(ok=False, error=messages.preview_changed())


def utc_text(point: Any) -> str | None:
    if point is None:
        return None
    return datetime.fromtimestamp(int(point), UTC).strftime("%Y-%m-%dT%H:%M:%S")


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
        return Refusal(messages.refused(request.id, current.error or messages.preview_changed()),
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
    return Promise(health_only=True, mismatches=(messages.versions_not_as_promised(list(promised), found),))


# --- restore: the preview of a whole-backup restore ---------------------------------------------------
