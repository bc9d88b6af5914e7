"""Thread lines of the recovery paths (issue 10): recover, PITR, snapshot and cluster restores.

Functions take data and return text (Slack mrkdwn). Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from core.config import database_url_env_for
from workers.engine.redact import MASK
from workers.messages import DONE, seconds
from workers.supabase import OTHER_OPTIONS

# --- the recovery paths (workers/recovery.py) -----------------------------------------------------

BEFORE_RECOVERY = "before the table recovery"


def recovery_succeeded(request_id: str, target: str, what: str, unverified: str | None = None, *,
                       watched: bool = True) -> str:
    """`unverified`: the target name the result becomes once added (a new cluster, not checked by the request);
    `watched`: whether the watch window follows (not for a new cluster the application does not use yet)."""
    unwatched = (" Not watched: the application does not use the new cluster yet; once it is switched over, watch "
                 "it yourself." if not watched else "")
    if unverified:
        return (f"{DONE} Request {request_id}: {what} of *{target}* done; the new cluster is not verified yet: add "
                f"it as target *{unverified}* as above and run `/rollback verify {unverified}`.{unwatched}")
    if not watched:
        return f"{DONE} Request {request_id}: {what} of *{target}* done.{unwatched}"
    return f"{DONE} Request {request_id}: {what} of *{target}* done and verified."


NEW_CLUSTER_OUTCOME = "new cluster ready; not watched (the application does not use it yet)"


def preview_changed() -> str:
    return ("the database changed since the preview that was approved (its hash differs); nothing was changed. "
            "Ask again to see the new preview")


def backup_unusable(backup: str) -> str:
    return f"backup {backup} does not exist or does not verify; `/rollback backups` lists the verified ones"


def no_table_backup() -> str:
    return "no verified backup of the tables, so nothing was recovered (no backup, no change)"


def recover_of(backup: str, tables: Sequence[str], overwrite: bool) -> str:
    mode = "missing rows inserted, differing rows overwritten" if overwrite else "missing rows inserted"
    return f"{', '.join(tables)} from `{backup}` ({mode}, one transaction)"


def recover_figures(inserted: Mapping[str, int], overwritten: Mapping[str, int], before: Mapping[str, int],
                    after: Mapping[str, int]) -> dict[str, Any]:
    return {
        "inserted": ", ".join(f"{t} {n}" for t, n in inserted.items()) or "0",
        "overwritten": ", ".join(f"{t} {n}" for t, n in overwritten.items() if n) or None,
        "rows": ", ".join(f"{t} {before[t]} → {after.get(t)}" for t in before) or None,
    }


def api_failing(error: str, paged: bool, paging_problem: str) -> str:
    """The check could not finish because the provider's API is failing (5xx, unreachable) after retries."""
    who = ("on-call has been paged (PagerDuty)" if paged
           else f"paging on-call failed too ({paging_problem}): call them yourself")
    return f"the API is failing: {error}; {who}. Meanwhile: {OTHER_OPTIONS}"


def api_refused(error: str) -> str:
    """A 4xx from the provider's API while checking: its answer, so no page; the other options named."""
    return f"{error}. Instead: {OTHER_OPTIONS}"


def not_supabase(target: str) -> str:
    return (f"target {target} is not a Supabase project (no `supabase_project_ref` in rollback.toml): use "
            "`/rollback restore <backup>`, `/rollback recover <backup> <tables>` or `/rollback snapshot-restore`")


def not_a_utc_time(text: str) -> str:
    return f"{text[:40]!r} is not a UTC time: write it like 2025-10-20T14:59:00Z"


def version_not_applied(version: str) -> str:
    return f"migration {version} was never applied here, so there is no moment before it; `/rollback status` lists them"


def no_migration_applied() -> str:
    return "no migration was applied here, so there is no moment before one: name a UTC time instead"


def waiting_for_database(target: str, waited_s: float) -> str:
    return f"waiting for PostgreSQL of {target} to answer ({seconds(waited_s)})"


def database_did_not_answer(target: str, waited_s: float) -> str:
    return (f"PostgreSQL of {target} did not answer within {seconds(waited_s)} after the recovery; check the "
            "database, then run `/rollback verify`")


def _utc(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def pitr_of(ref: str, point: float) -> str:
    return f"project {ref} back to {_utc(point)}"


def pitr_figures(point: float, waited_s: float, versions: Sequence[str]) -> dict[str, Any]:
    return {"point": _utc(point), "healthy after": seconds(waited_s),
            "version": versions[-1] if versions else "none"}


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


def snapshot_restore_figures(action: Mapping[str, Any], waited_s: float, versions: Sequence[str]) -> dict[str, Any]:
    return {"action": action.get("action_id"), "database answered after": seconds(waited_s),
            "version": versions[-1] if versions else "none"}


def no_managed_cluster(target: str) -> str:
    return (f"target {target} names no managed cluster (`do_database_id` in rollback.toml): use "
            "`/rollback snapshot-restore` for a droplet, or `/rollback restore <backup>`")


def no_cluster_backup(database_id: str, point: str | None) -> str:
    when = f" taken before {point}" if point else ""
    return f"managed cluster {database_id} has no backup{when}; the DigitalOcean console lists them"


def new_cluster_of(name: str, database_id: str) -> str:
    return f"{name} from the backup of cluster {database_id}"


def new_cluster_figures(created: Mapping[str, Any]) -> dict[str, Any]:
    return {"cluster": created.get("name"), "host": created.get("host"), "backup": created.get("backup_created_at")}


def cluster_switch(target: str, created: Mapping[str, Any]) -> str:
    return (f":information_source: New cluster *{created.get('name')}* is online: host `{created.get('host')}`, "
            f"port {created.get('port')}, database `{created.get('database')}`, user `{created.get('user')}` (its "
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


# --- what the approval promised, not kept (workers/verbs/: the verification fails on it) ------------------


def versions_not_as_promised(promised: Sequence[str], found: Sequence[str]) -> str:
    def last(versions: Sequence[str]) -> str:
        return versions[-1] if versions else "none"
    return (f"the database is not where the approval said: applied versions should end at {last(promised)} "
            f"({len(promised)} applied), found {last(found)} ({len(found)} applied)")


def rows_not_put_back(table: str, before: int, inserted: int, after: int) -> str:
    return f"{table} should have {before} + {inserted} rows after the recovery, has {after}"


def cluster_not_as_promised(field: str, promised: object, found: object) -> str:
    return f"the new cluster's {field} is {found!r}, the approval named {promised!r}"
