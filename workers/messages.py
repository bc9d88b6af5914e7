"""Every line the workers write into a Slack thread, the log or a page: one place for the wording.

Functions take data and return text (Slack mrkdwn). Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from core import steps
from workers.checks import Check, CheckKind

if TYPE_CHECKING:  # types only: the modules that build these results import this one
    from core.config import Target
    from workers.backup import BackupResult
    from workers.engine.reports import DryRunReport, RunReport, StatementResult
    from workers.restore import RestoreResult

# Emoji prefixes keep a busy incident thread scannable.
STARTED = ":hourglass_flowing_sand:"
DONE = ":white_check_mark:"
FAILED = ":x:"
SKIPPED = ":fast_forward:"
WARNING = ":warning:"
PAGE = ":rotating_light:"


def _figures(figures: Mapping[str, Any] | str | None) -> str:
    """A step's figures after its finished line: `key value` pairs, or one sentence as it is."""
    if not figures:
        return ""
    if isinstance(figures, str):
        return " — " + figures
    return " — " + ", ".join(f"{key} {value}" for key, value in figures.items() if value is not None)


def human_bytes(size: int | float | None) -> str:
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"


def seconds(value: float | None) -> str:
    """The one duration formatter of the workers: `340ms` below a second, `4.2s`, then `3m05s`."""
    if value is None:
        return "?"
    if value < 1:
        return f"{max(value, 0) * 1000:.0f}ms"
    if value < 60:
        return f"{value:.1f}s"
    minutes, secs = divmod(int(value), 60)
    return f"{minutes}m{secs:02d}s"


# --- progress lines -------------------------------------------------------------------------------


def step_started(step: str, detail: str = "") -> str:
    return f"{STARTED} *{step}* started" + (f": {detail}" if detail else "")


def step_finished(step: str, figures: Mapping[str, Any] | str | None = None, duration_s: float | None = None) -> str:
    took = f" in {seconds(duration_s)}" if duration_s is not None else ""
    return f"{DONE} *{step}* finished{took}{_figures(figures)}"


def step_failed(step: str, error: str, duration_s: float | None = None) -> str:
    took = f" after {seconds(duration_s)}" if duration_s is not None else ""
    return f"{FAILED} *{step}* failed{took}: {error}"


def step_skipped(step: str, why: str) -> str:
    return f"{SKIPPED} *{step}* skipped: {why}"


def still_running(step: str, elapsed_s: float, detail: str = "") -> str:
    return f"{STARTED} *{step}* still running ({seconds(elapsed_s)})" + (f": {detail}" if detail else "")


# --- the execute pipeline -------------------------------------------------------------------------

def step_name(step: str) -> str:
    return steps.label(step)


def pipeline_queued(request_id: str, target: str, to_version: str | None, labels: Sequence[str]) -> str:
    return f"{STARTED} Request {request_id}: rolling back *{target}* to {to_version or 'the plan'}: {' → '.join(labels)}"


def restore_queued(request_id: str, target: str, backup: str, into: str, labels: Sequence[str]) -> str:
    where = f"*{target}*" if into == "target" else f"a scratch database beside *{target}*"
    return f"{STARTED} Request {request_id}: restoring `{backup}` into {where}: {' → '.join(labels)}"


def refused(request_id: str, reason: str) -> str:
    return f"{FAILED} Request {request_id} refused: {reason}"


def plan_changed(request_id: str) -> str:
    return (f"{FAILED} Request {request_id} refused: the database changed since the dry run. "
            "Run a new dry-run and ask for approval again.")


def start_too_late(request_id: str, waited_s: float, bound_s: int) -> str:
    return (f"{FAILED} Request {request_id} refused: approved {seconds(waited_s)} ago, longer than the "
            f"{seconds(bound_s)} allowed before it must start. Run a new dry-run and ask for approval again.")


def not_approved(request_id: str, status: str) -> str:
    return f"{FAILED} Request {request_id} cannot run: it is {status}, not approved."


def duplicate_delivery(request_id: str, step: str) -> str:
    return f"request {request_id}: step {step} already ran; this duplicate delivery did nothing"


def snapshot_of_droplet(droplet_id: int | str) -> str:
    return f"DigitalOcean snapshot of droplet {droplet_id}"


def backup_figures(backup: BackupResult) -> dict[str, Any]:
    return {"path": f"`{backup.path}`", "size": human_bytes(backup.size_bytes), "sha256": f"`{backup.sha256}`",
            "format": backup.format, "verified": "yes" if backup.verified else "NO"}


def statements_lines(statements: Iterable[StatementResult]) -> str:
    """The statements a rollback ran (or a dry run tried), one per line, as a code block."""
    lines: list[str] = []
    for statement in statements:
        sql_text = " ".join(statement.sql.split())
        rows = statement.rowcount
        effect = f"  -- {statement.tag}" + (f" ({rows} rows)" if rows not in (None, -1) else "") if statement.tag else ""
        lines.append(f"{statement.version}: {sql_text}{effect}".lstrip(": "))
    if not lines:
        return ""
    return "```\n" + "\n".join(lines) + "\n```"


# --- verification checks ------------------------------------------------------------------------
# verify.py builds each check's `detail` with these, so the figures read as sentences, never as reprs.


def check_label(check: Check) -> str:
    """What a check is about: the table for a row count, else its name."""
    return check.subject or check.name if check.kind is CheckKind.ROW_COUNT else check.name


def check_line(check: Check) -> str:
    mark = SKIPPED if check.skipped else DONE if check.passed else FAILED
    detail = f": {check.detail}" if check.detail else ""
    return f"{mark} {check_label(check)}{detail}"


def checks_block(checks: Iterable[Check]) -> str:
    return "\n".join(check_line(c) for c in checks)


def checks_summary(checks: Iterable[Check]) -> str:
    """`5 passed, 1 skipped, 0 failed`: a skipped check is never counted as passed."""
    listed = list(checks)
    skipped = sum(1 for c in listed if c.skipped)
    passed = sum(1 for c in listed if c.passed and not c.skipped)
    return f"{passed} passed, {skipped} skipped, {len(listed) - passed - skipped} failed"


def check_skipped(reason: str) -> str:
    return f"skipped, {reason}"


NO_EARLIER_COUNT = "no earlier count to compare"


def command_timed_out(timeout_s: float) -> str:
    return f"did not finish within {seconds(timeout_s)}"


def baseline_from(request_id: str | None, when: str | None) -> str:
    """Where a standalone verification's row-count baseline comes from."""
    if not request_id:
        return f"row counts: {NO_EARLIER_COUNT} (no rollback of this target with counts taken before it is recorded)"
    return f"row counts compared with those taken before rollback {request_id} ({when or 'time unknown'})"


def verification_failed(failed: Sequence[str]) -> str:
    return f"checks failed: {', '.join(failed)}"


def outcome_succeeded(request_id: str, target: str, to_version: str | None, requester: str,
                      approver: str | None, duration_s: float | None) -> str:
    by = f"requested by <@{requester}>" + (f", approved by <@{approver}>" if approver else "")
    return (
        f"{DONE} Request {request_id}: *{target}* rolled back to {to_version or 'the planned version'} "
        f"and verified in {seconds(duration_s)} ({by}). Maintenance mode is off."
    )


def outcome_failed(request_id: str, target: str, step: str, error: str, maintenance_left_on: bool) -> str:
    maint = (f" Maintenance mode was left ON: once the database is checked, turn it off with "
             f"`/rollback maintenance off {target}`." if maintenance_left_on else "")
    return f"{FAILED} Request {request_id}: *{target}* — {step_name(step)} failed: {error}.{maint}"


# --- escalation -------------------------------------------------------------------------------------


def escalation_mention(contacts: Sequence[str], step: str, paged: bool, page_detail: str) -> str:
    who = " ".join(_mention(c) for c in contacts) or "(no escalation contacts configured)"
    page = "PagerDuty paged" if paged else f"PagerDuty NOT paged: {page_detail}"
    return f"{PAGE} {who} — {step_name(step)} failed and needs a human. {page}."


def _mention(contact: str) -> str:
    if contact.startswith(("S", "subteam")):
        return f"<!subteam^{contact}>"
    return f"<@{contact}>"


def page_resolved(request_id: str) -> str:
    return f"{DONE} Request {request_id} completed and verified: the page was resolved."


def history_line(row: Mapping[str, Any]) -> str:
    who = row.get("executed_by") or "?"
    approved = f", approved by {row.get('approved_by')}" if row.get("approved_by") else ""
    return (
        f"{row.get('executed_at')}  {row.get('operation')} {row.get('version') or ''} "
        f"{row.get('status')} by {who}{approved}"
    ).replace("  ", " ")


# --- the incident record (workers/report.py) -----------------------------------------------------


def report_uploaded(path: str) -> str:
    return f"{DONE} Incident record written to `{path}` and attached to this thread."


# --- renderings of read-only results ---------------------------------------------------------------


def status_text(target: str, report: Mapping[str, Any], identity: Mapping[str, Any] | None,
                active: Mapping[str, Any] | None) -> str:
    server = report.get("server") or {}
    lines = [
        f"*{target}*: database `{server.get('dbname')}` on {server.get('host')}:{server.get('port')} "
        f"as {server.get('user')} (PostgreSQL {server.get('server_version')}) — current version "
        f"*{report.get('current_version') or 'none'}*"
    ]
    if identity and not identity.get("ok"):
        lines.append(f"{WARNING} {identity.get('message')}")
    rows = []
    for m in report.get("migrations") or []:
        flags = " ".join(
            flag for flag, on in (("DRIFT", m.get("drift")), ("no-down", not m.get("has_down")),
                                  ("missing-file", m.get("missing_file"))) if on
        )
        rows.append(f"{m.get('version')}  {m.get('status'):<11} {m.get('name')} {flags}".rstrip())
    if rows:
        lines.append("```\n" + "\n".join(rows) + "\n```")
    for warning in report.get("warnings") or []:
        lines.append(f"{WARNING} {warning}")
    if report.get("lock_holder"):
        lines.append(f"{WARNING} a migration run holds the lock: {report.get('lock_holder')}")
    if active:
        lines.append(f"{STARTED} request {active.get('id')} ({active.get('status')}) by <@{active.get('requester')}>")
    return "\n".join(lines)


def dry_run_text(target: str, report: DryRunReport) -> str:
    plan = report.plan
    if not plan.versions:
        return f"{DONE} *{target}*: nothing to roll back to {plan.to}: it is the current version."
    lines = [
        f"*Dry run* on *{target}*: revert {len(plan.versions)} migration(s) to *{plan.to}* "
        f"(plan `{plan.hash[:12]}`, nothing was changed)"
    ]
    for step in plan.steps:
        mode = "" if step.transactional else " (runs outside a transaction)"
        lines.append(f"*{step.version}* {step.name}{mode}\n```\n{step.sql.strip()}\n```")
    effects = statements_lines(report.statements)
    if effects:
        lines.append("Statement effects (in a transaction that was rolled back):\n" + effects)
    lines += [f"{WARNING} {warning}" for warning in report.warnings]
    if report.forecast is not None and report.forecast.lines:
        lines.append("Lock impact of the real run (the app waits this long, plus up to the lock timeout):")
        lines += [f"• {line}" for line in report.forecast.lines]
    lines.append("Run `/rollback execute` to ask for approval of exactly this plan.")
    return "\n".join(lines)


def backups_text(target: str, local: Sequence[Mapping[str, Any]], snapshots: Sequence[Mapping[str, Any]],
                 managed: Sequence[Mapping[str, Any]], notes: Sequence[str]) -> str:
    lines = [f"*Backups of {target}*: {len(local)} local"]
    for b in local[:20]:
        mark = DONE if b.get("verified") else WARNING
        lines.append(
            f"{mark} `{b.get('name')}` {human_bytes(b.get('size_bytes'))}, {seconds(b.get('age_seconds'))} old, "
            f"sha256 `{str(b.get('sha256') or '?')[:16]}`"
        )
    for s in snapshots[:10]:
        lines.append(f"DigitalOcean snapshot `{s.get('name')}` ({s.get('created_at')})")
    for d in managed[:10]:
        lines.append(f"Managed database backup {d.get('created_at')} ({d.get('size_gigabytes')} GB)")
    lines += [f"{WARNING} {n}" for n in notes]
    return "\n".join(lines)


def history_text(target: str, rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return f"*{target}*: migration_history is empty."
    return f"*History of {target}* (newest first)\n```\n" + "\n".join(history_line(r) for r in rows[:30]) + "\n```"


def restore_figures(result: RestoreResult) -> dict[str, Any]:
    return {"into": f"{result.into} `{result.database}`", "backup": f"`{result.backup}`",
            "method": restore_method(result),
            "rows": ", ".join(f"{t} {n}" for t, n in sorted(result.row_counts.items())) or None}


def restore_method(result: RestoreResult) -> str | None:
    if result.method == "swap":
        return (f"pg_restore -j{result.jobs} into a new database, switched in at once; the replaced database "
                f"is kept as `{result.replaced_database}` (rename it back to undo; drop it when satisfied)")
    why = f" ({result.method_note})" if result.method_note else ""
    return f"in one transaction on the target, serially{why}" if result.method == "transaction" else None


def restore_succeeded(request_id: str, target: str, backup: str, into: str) -> str:
    return f"{DONE} Request {request_id}: `{backup}` restored into {into} *{target}* and its rows counted."


# --- step details and figures (what a started/finished line says) ---------------------------------


def dump_of(target: str, why: str = "") -> str:
    return f"pg_dump of {target}" + (f" {why}" if why else "")


BEFORE_ROLLBACK = "before rolling back"
BEFORE_RESTORE = "before restoring over it"
BEFORE_UNDO = "before undoing a rollback"


def restore_of(backup: str, into: str, target: str) -> str:
    return f"`{backup}` into {into} {target}"


def rollback_of(versions: Sequence[str], to_version: str | None) -> str:
    return f"{', '.join(versions)} → {to_version}"


def rollback_figures(run: RunReport) -> dict[str, Any]:
    return {
        "reverted": ", ".join(run.versions) or "nothing",
        "statements": len(run.statements),
        "already done": "yes" if run.already_done else None,
    }


def _approx_seconds(ms: float) -> str:
    return "<0.1 s" if ms < 100 else (f"≈{ms / 1000:.0f} s" if ms >= 10_000 else f"≈{ms / 1000:.1f} s")


def maintenance_skipped_by_forecast(stall_ms: float, threshold_s: float) -> str:
    return (f"skipped by the target's policy: the dry run forecast the application blocked "
            f"{_approx_seconds(stall_ms)}, under {threshold_s:g} s")


def maintenance_required_without_hook(stall_ms: float, threshold_s: float) -> str:
    return (f"maintenance mode is required by the target's policy (forecast stall {_approx_seconds(stall_ms)}, "
            f"at least {threshold_s:g} s) but no maintenance_on hook is configured; nothing was changed")


def maintenance_figures(detail: str) -> dict[str, Any]:
    return {"result": detail}


def snapshot_figures(snapshot: Mapping[str, Any]) -> dict[str, Any]:
    return {"snapshot": snapshot.get("name")}


def digitalocean_note(error: BaseException | str) -> str:
    return f"DigitalOcean: {error}"


# --- PostgreSQL clients, backups and restores (workers/backup.py, workers/restore.py) -------------


def dump_running(target: str, written_bytes: int, elapsed_s: float) -> str:
    return f"pg_dump of {target} running: {human_bytes(written_bytes)} written in {seconds(elapsed_s)}"


def restoring(label: str, into: str, elapsed_s: float) -> str:
    return f"restoring {label} into {into}: {seconds(elapsed_s)}"


INTO_THE_TARGET = "the target"
KEPT_TABLES_LABEL = "the bot's own tables"


# --- DigitalOcean (workers/digitalocean.py) --------------------------------------------------------


def do_snapshot_progress(name: str, droplet_id: Any, status: Any, elapsed_s: float) -> str:
    return f"snapshot {name} of droplet {droplet_id}: {status} after {seconds(elapsed_s)}"


def do_restore_progress(snapshot_id: Any, droplet_id: Any, status: Any, elapsed_s: float) -> str:
    return f"restore of droplet {droplet_id} from snapshot {snapshot_id}: {status} after {seconds(elapsed_s)}"


def do_cluster_progress(name: str, status: Any, elapsed_s: float) -> str:
    return f"new cluster {name}: {status} after {seconds(elapsed_s)}"


# --- the recovery paths (workers/recovery.py) -----------------------------------------------------

BEFORE_RECOVERY = "before the table recovery"


def recovery_queued(request_id: str, target: str, what: str, labels: Sequence[str]) -> str:
    return f"{STARTED} Request {request_id}: {what} of *{target}*: {' → '.join(labels)}"


def recovery_succeeded(request_id: str, target: str, what: str) -> str:
    return f"{DONE} Request {request_id}: {what} of *{target}* done and verified."


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
            "password is in the DigitalOcean console, never here). To switch: point the application's database "
            f"URL (and {target.upper()}_DATABASE_URL) at it. To verify it first: add it as a target "
            f"(`[targets.{target}-restored]` with `{target.upper()}_RESTORED_DATABASE_URL`) and run "
            f"`/rollback verify {target}-restored`. Target *{target}* was not changed.")


# --- Step 1, assess (workers/assessment.py) and terminate (workers/sessions.py) -------------------

WHY_WORDS = {"long_running": "long-running", "idle_in_transaction": "idle in transaction",
             "waiting_on_lock": "waiting on a lock", "holds_plan_locks": "holds locks the plan needs"}


def _health_line(health: Mapping[str, Any]) -> str:
    if not health.get("url"):
        return f"{SKIPPED} health: no health_url configured"
    latency = f"{health.get('latency_ms'):.0f} ms" if health.get("latency_ms") is not None else "?"
    if health.get("status") is None:
        return f"{FAILED} health {health.get('url')}: no answer ({health.get('error')}) after {latency}"
    icon = DONE if health.get("ok") else FAILED
    return f"{icon} health {health.get('url')}: HTTP {health.get('status')} in {latency}"


def session_line(session: Mapping[str, Any]) -> str:
    why = ", ".join(WHY_WORDS.get(w, w) for w in session.get("why") or ())
    tables = f" on {', '.join(session.get('tables') or ())}" if session.get("tables") else ""
    behind = f" (blocked by {', '.join(str(p) for p in session['blocked_by'])})" if session.get("blocked_by") else ""
    return (f"pid {session.get('pid')} {session.get('application') or '-'} ({session.get('user')}), "
            f"{session.get('age_s')} s, {why}{tables}{behind}: {session.get('query')}")


def assessment_text(found: Mapping[str, Any]) -> str:
    """Step 1's assessment under the migration table: one line per finding, nothing when all is quiet."""
    lines = [_health_line(found.get("health") or {})]
    sessions = found.get("sessions") or []
    if sessions:
        lines.append(f"{WARNING} {len(sessions)} session(s) in a rollback's way "
                     "(`/rollback terminate <pid>` ends one, with a second person's approval):")
        lines.append("```\n" + "\n".join(session_line(s) for s in sessions) + "\n```")
    else:
        lines.append(f"{DONE} no session in a rollback's way")
    for index in found.get("invalid_indexes") or ():
        lines.append(f"{WARNING} INVALID index {index} (a CREATE INDEX CONCURRENTLY that did not finish)")
    for version in found.get("failed") or ():
        lines.append(f"{WARNING} migration {version} failed: `/rollback repair {version}` brings it back to a clean state")
    for version in found.get("stuck") or ():
        lines.append(f"{WARNING} migration {version} is stuck `running` (no run holds the migration lock): "
                     f"`/rollback repair {version}`")
    for what in found.get("in_progress") or ():
        lines.append(f"{STARTED} in progress: {what}")
    return "\n".join(lines)


def terminated(request_id: str, session: Mapping[str, Any], by: str, approver: str | None) -> str:
    return (f"{DONE} {request_id}: session pid {session.get('pid')} ({session.get('application') or '-'}, "
            f"{session.get('user')}) terminated, requested by <@{by}>, approved by <@{approver}>.")


def terminate_refused(request_id: str, pid: int, why: str) -> str:
    return f"{FAILED} {request_id}: session pid {pid} was not terminated: {why}"


NOT_IN_ASSESSMENT = "it is not in this channel's current assessment; run `/rollback status` first"
SESSION_GONE = "it has ended already (or the pid now belongs to another session)"


# --- scenario 3, the wrong database (workers/target_diff.py) -------------------------------------


def diff_needs_two(target: str) -> str:
    return f"diff compares two different targets: name a second one beside {target}"


def _stray_line(stray: Any, unknown_on_its_target: bool) -> str:
    back_to = stray.roll_back_to or "before the first migration"
    line = (f"{WARNING} {stray.version} is applied on *{stray.on}* but not on *{stray.missing_on}*: "
            f"to take it off {stray.on}, `/rollback dry-run {stray.roll_back_to} {stray.on}` then `/rollback execute "
            f"{stray.on}` (rolls {stray.on} back to {back_to})")
    if stray.also_reverts:
        line += f"; that also reverts {', '.join(stray.also_reverts)}"
    if unknown_on_its_target:
        line += (f". {stray.on}'s migrations folder does not know {stray.version}: its down script is in the "
                 f"folder it came from (copy it there first)")
    return line


def diff_text(result: Any) -> str:
    """A schema_diff.Comparison: stray versions with their way back, unknown versions, table differences."""
    if result.same:
        return f"{DONE} *{result.a}* and *{result.b}*: same applied versions and the same schema, table by table."
    lines = [f"*Diff* of *{result.a}* and *{result.b}*:"]
    for stray in result.stray:
        lines.append(_stray_line(stray, stray.version in result.unknown.get(stray.on, ())))
    for target, versions in result.unknown.items():
        if versions:
            lines.append(f"{WARNING} *{target}* has version(s) its migrations folder does not know: "
                         f"{', '.join(versions)} (applied from another target's folder?)")
    for table in result.tables:
        if table.only_in:
            lines.append(f"• table {table.table}: only on {table.only_in}")
        else:
            lines.append(f"• table {table.table}: " + "; ".join(table.details))
    return "\n".join(lines)


# --- scenario 1: repair (workers/repairing.py) -----------------------------------------------------

BEFORE_REPAIR = "before repairing a migration"


def repair_of(version: str, target: str) -> str:
    return f"migration {version} on {target}"


def repair_reason(request_id: str, requester: str, approver: str | None) -> str:
    return f"/rollback repair {request_id}: requested by {requester}, approved by {approver}"


def repaired(request_id: str, version: str, target: str, new_status: str) -> str:
    after = ("the next apply retries it" if new_status == "pending"
             else "it is rolled_back; a rollback past it goes through again")
    return f"{DONE} {request_id}: migration {version} on *{target}* repaired ({new_status}): {after}."


# --- the watch window (workers/watching.py) --------------------------------------------------------

WATCH_WORDS = {"health": "health", "smoke": "smoke test", "error_rate": "error rate", "connections": "connections"}


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


def watch_started(request_id: str, target: str, window: float, interval: float) -> str:
    return (f":eyes: {request_id}: watching *{target}* for {_minutes(window)} (every {interval:g} s): health, "
            "smoke test, connections, error rate. One line per change; `/rollback watch stop` ends it early.")


def watch_change(change: Any) -> str:
    icon = FAILED if change.regression else (DONE if change.after in ("ok",) else WARNING)
    return f"{icon} watch: {WATCH_WORDS.get(change.signal.value, change.signal.value)} {change.before} → {change.after}"


def watch_page_summary(target: str, request_id: str, what: str) -> str:
    return f"rollback-bot: {target} regressed after {request_id}: {what}"


def watch_paged(request_id: str, what: str, ok: bool, detail: str | None) -> str:
    if ok:
        return f"{PAGE} {request_id}: paged on-call (same incident as the request): {what}"
    return f"{WARNING} {request_id}: could not page on-call ({detail}): {what}"


def watch_outcome(clean: bool, failing: Sequence[str], stopped_by: str | None) -> str:
    how = f"watch stopped early by {stopped_by}" if stopped_by else "watch window ended"
    return f"{how}, clean" if clean else f"{how} with {', '.join(failing)} failing"


def watch_ended(request_id: str, target: str, clean: bool, failing: Sequence[str], stopped_by: str | None, *,
                resolved: bool) -> str:
    how = f"stopped early by <@{stopped_by}>" if stopped_by else "ended"
    if clean:
        page = " The page is resolved." if resolved else ""
        return f"{DONE} {request_id}: the watch of *{target}* {how}, clean; the request is done.{page}"
    return (f"{WARNING} {request_id}: the watch of *{target}* {how} with {', '.join(failing)} failing; the page "
            "stays open for on-call.")


def watch_baseline(sample: Mapping[str, Any]) -> str:
    health = "n/a" if sample.get("health_ok") is None else ("ok" if sample["health_ok"] else "failing")
    if sample.get("health_ms") is not None and sample.get("health_ok") is not None:
        health += f" ({sample['health_ms']:.0f} ms)"
    smoke = "n/a" if sample.get("smoke_ok") is None else ("ok" if sample["smoke_ok"] else "failing")
    connections = sample.get("connections")
    return (f":eyes: watch, first look: health {health}, smoke test {smoke}, "
            f"connections {connections if connections is not None else 'n/a'}")
# --- data-loss escrow and undo ----------------------------------------------------------------------


NOT_ESCROWED = "not escrowed:"  # how the dry run's warnings name a statement whose data escrow cannot hold


def not_escrowed_count(warnings: Sequence[str]) -> int:
    return sum(1 for w in warnings if str(w).startswith(NOT_ESCROWED))


def safety_net(target: Target, not_escrowed: int) -> str:
    """Which net is under a rollback of this target: shown on the plan and the approval card."""
    net = []
    if target.full_backup or not_escrowed:
        net.append("full backup (pg_dump)")
    if target.escrow:
        net.append("data-loss escrow (undo with `/rollback undo`)")
    if target.platform_net:
        net.append(target.platform_net)
    text = " + ".join(net)
    if not_escrowed and not target.full_backup:
        text += f"; the full backup is mandatory: {not_escrowed} statement(s) not escrowed"
    return text


def backup_skipped_for_escrow(target: str, net: str | None) -> str:
    return (f"no pg_dump of {target}: its backup policy is `escrow`, every destroyed value is escrowed in the "
            f"rollback's transaction, and {net or 'the provider'} also protects it")


def escrow_figures(escrow: Mapping[str, Any] | None) -> dict[str, Any]:
    if not escrow:
        return {"escrow": "off (backup policy full)"}
    return {"escrow": f"{len(escrow['held'])} table(s), {escrow['rows']} row(s), {human_bytes(escrow['bytes'])}",
            "escrow id": f"`{escrow['request_id']}`",
            "not escrowed": len(escrow["not_escrowed"]) or None}


def escrow_list(target: str, held: Sequence[Mapping[str, Any]], retention_days: float,
                purged: Sequence[tuple[str, int]]) -> str:
    lines = [f"*Escrow* on *{target}* (kept {retention_days:g} days):"]
    lines += [f"• purged {r} ({n} table(s)): older than the retention period" for r, n in purged]
    if not held:
        lines.append("nothing held")
    for h in held:
        state = " — undone" if h.get("undone_at") else (
            f" — {len(h['not_escrowed'])} statement(s) not escrowed" if h["not_escrowed"] else "")
        lines.append(f"• `{h['request_id']}`: {', '.join(h['tables']) or 'no table'}; {h['rows']} row(s), "
                     f"{human_bytes(h['bytes'])}, {h['age']} old{state}")
    return "\n".join(lines)


def undo_of(undoes: str | None, versions: Sequence[str]) -> str:
    return f"of rollback {undoes}: re-apply {', '.join(versions)} and put the escrow back"


def undo_figures(report: Mapping[str, Any]) -> dict[str, Any]:
    return {"re-applied": ", ".join(report.get("versions") or []) or "nothing",
            "put back": "; ".join(f"{r['relation']} ({r['kind']}) {r['rows']} row(s)"
                                  for r in report.get("restored") or []) or "nothing",
            "already done": "yes" if report.get("already_done") else None}


def undo_succeeded(request_id: str, target: str, undoes: str | None, requester: str, approver: str | None,
                   duration_s: float | None) -> str:
    by = f"requested by <@{requester}>" + (f", approved by <@{approver}>" if approver else "")
    return (f"{DONE} Request {request_id}: rollback {undoes} of *{target}* undone and verified in "
            f"{seconds(duration_s)} ({by}). Maintenance mode is off.")


def escrow_purge_skipped(reason: str) -> str:
    return f"escrow purge skipped this time ({reason}); it runs again with the next rollback or /rollback escrow"
