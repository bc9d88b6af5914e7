"""Every line the workers write into a Slack thread, the log or a page: one place for the wording.

Functions take data and return text (Slack mrkdwn). Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from core import steps
from workers.checks import Check, CheckKind

if TYPE_CHECKING:  # types only: the modules that build these results import this one
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
    return (
        f"{FAILED} Request {request_id} refused: the database changed since the dry run. "
        "Run a new dry-run and ask for approval again."
    )


def start_too_late(request_id: str, waited_s: float, bound_s: int) -> str:
    return (
        f"{FAILED} Request {request_id} refused: approved {seconds(waited_s)} ago, longer than the "
        f"{seconds(bound_s)} allowed before it must start. Run a new dry-run and ask for approval again."
    )


def not_approved(request_id: str, status: str) -> str:
    return f"{FAILED} Request {request_id} cannot run: it is {status}, not approved."


def request_missing(request_id: str) -> str:
    return f"request {request_id} does not exist (expired or never created); start again with a dry-run"


def duplicate_delivery(request_id: str, step: str) -> str:
    return f"request {request_id}: step {step} already ran; this duplicate delivery did nothing"


def no_backup() -> str:
    return "no verified backup for this request, so nothing was rolled back (no backup, no rollback)"


def snapshot_of_droplet(droplet_id: int | str) -> str:
    return f"DigitalOcean snapshot of droplet {droplet_id}"


def no_managed_backup(database_id: str) -> str:
    return f"managed database {database_id} has no backup; take one before rolling back"


def backup_figures(backup: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "path": f"`{backup.get('path')}`",
        "size": human_bytes(backup.get("size_bytes")),
        "sha256": f"`{backup.get('sha256')}`",
        "format": backup.get("format"),
        "verified": "yes" if backup.get("verified") else "NO",
    }


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


CHECK_MIGRATIONS = "migration status"
CHECK_ROW_COUNTS = "row counts"
CHECK_HEALTH = "health check"
CHECK_SMOKE = "smoke test"
CHECK_CONNECTIONS = "connections"


def row_count_check(table: str) -> str:
    """A row count's check name, as failure lists say it (`checks failed: row count users`)."""
    return f"row count {table}"


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


NO_EXPECTED_STATUS = "no expected status given"
NO_CRITICAL_TABLES = "no critical tables configured"
NO_HEALTH_URL = "no health_url configured"
NO_SMOKE_COMMAND = "no smoke_command configured"
NO_EARLIER_COUNT = "no earlier count to compare"
NO_MIGRATIONS_TABLE = "schema_migrations does not exist on this database"


def migrations_as_expected(expected: int, matching: int, mismatches: Sequence[str], unknown: Sequence[str]) -> str:
    text = f"{matching} of {expected} as expected"
    if mismatches:
        text += ": " + "; ".join(mismatches)
    if unknown:
        text += f" (not on disk: {', '.join(unknown)})"
    return text


def migration_mismatch(version: str, actual: str, expected: str) -> str:
    return f"{version}: {actual} (expected {expected})"


def migrations_healthy(total: int, problems: Sequence[str]) -> str:
    if not problems:
        return f"{total} migration(s), none failed, running or drifted"
    return f"{len(problems)} problem(s) among {total} migration(s): " + "; ".join(problems)


def migration_problem(version: str, status: str, drift: bool) -> str:
    issues = [status] if status in ("failed", "running") else []
    if drift:
        issues.append("its file changed since it was applied (drift)")
    return f"{version} {' and '.join(issues)}"


def row_count(after: int | None, before: int | None, table: str) -> str:
    if after is None:
        return f"table {table} does not exist"
    if before is None:
        return f"{after} rows, {check_skipped(NO_EARLIER_COUNT)}"
    if before == after:
        return f"{after} rows ({before} before)"
    return f"{after} rows ({before} before, {after - before:+d})"


def row_count_missing_table(table: str) -> str:
    return f"table {table} does not exist; check the target's critical_tables"


def health_answered(url: str, status: int) -> str:
    return f"HTTP {status} from {url}"


def health_no_answer(url: str, error: str) -> str:
    return f"{url} did not answer ({error})"


def smoke_exited(returncode: int, output: str) -> str:
    return f"exit {returncode}" + (f": {output}" if output else "")


def command_timed_out(timeout_s: float) -> str:
    return f"did not finish within {seconds(timeout_s)}"


def connections_counted(total: int, active: int) -> str:
    return f"{total} to this database, {active} active"


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


def page_summary(target: str, version: str | None, step: str, error: str) -> str:
    text = f"rollback-bot: {step_name(step)} failed on {target}"
    if version:
        text += f" (rolling back to {version})"
    text += f": {error}"
    return text[:1000]  # PagerDuty truncates summaries at 1024 characters


def page_resolved(request_id: str) -> str:
    return f"{DONE} Request {request_id} completed and verified: the page was resolved."


def paging_not_configured() -> str:
    return "PAGERDUTY_ROUTING_KEY is not set"


def paging_rejected(status: int, body: str) -> str:
    return f"PagerDuty refused the event (HTTP {status}): {body[:200]}"


def paging_gave_up(attempts: int, last: str) -> str:
    return f"PagerDuty did not accept the event after {attempts} attempts ({last})"


def job_crashed(step: str, reason: str) -> str:
    return f"the worker running {step_name(step)} died ({reason}); the transaction in progress was not committed"


def timed_out(detail: str) -> str:
    return f"timeout: the step ran past its time limit and was stopped ({detail or 'RQ job timeout'})"


def abandoned() -> str:
    return "its worker stopped responding (killed or lost)"


# --- wrong-database guard ---------------------------------------------------------------------------


def identity_describe(identity: Mapping[str, Any]) -> str:
    return (
        f"database `{identity.get('dbname')}` on {identity.get('server')} "
        f"(system id {identity.get('system_identifier')})"
    )


def identity_mismatch(target: str, recorded: Mapping[str, Any], current: Mapping[str, Any]) -> str:
    return (
        f"wrong database? target {target} was recorded as {identity_describe(recorded)} but now reaches "
        f"{identity_describe(current)}; write operations are refused until an operator checks "
        f"{target.upper()}_DATABASE_URL and runs `python -m workers confirm-identity {target}`"
    )


def identity_claimed_elsewhere(target: str, other: str, current: Mapping[str, Any]) -> str:
    return (
        f"wrong database? target {target} reaches {identity_describe(current)}, which is registered as "
        f"target {other}; write operations are refused until an operator checks the database URL and runs "
        f"`python -m workers confirm-identity {target}`"
    )


def identity_confirmed(target: str, identity: Mapping[str, Any], by: str) -> str:
    return f"target {target}: identity confirmed by {by} as {identity_describe(identity)}"


# --- jobs --------------------------------------------------------------------------------------------


def unexpected_error(error: BaseException) -> str:
    return f"unexpected error ({type(error).__name__}); see the worker log"


def settings_error(error: str) -> str:
    return f"the worker's configuration is invalid: {error}"


def redis_unavailable(reason: str) -> str:
    return f"Redis is unreachable ({reason}); the request's state could not be read or saved"


def step_done_state_lost(step: str, reason: str) -> str:
    return (
        f"{step_name(step)} itself completed, but Redis is unreachable ({reason}) so the pipeline cannot go on; "
        "check `/rollback status` and finish the remaining steps by hand"
    )


def database_unavailable(target: str, reason: str) -> str:
    return f"target {target}: PostgreSQL is unreachable or stopped answering ({reason})"


def history_line(row: Mapping[str, Any]) -> str:
    who = row.get("executed_by") or "?"
    approved = f", approved by {row.get('approved_by')}" if row.get("approved_by") else ""
    return (
        f"{row.get('executed_at')}  {row.get('operation')} {row.get('version') or ''} "
        f"{row.get('status')} by {who}{approved}"
    ).replace("  ", " ")


# --- the incident record (workers/report.py) -----------------------------------------------------

REPORT_SQL_HEADING = "## SQL run"
REPORT_CHECKS_HEADING = "## Checks"
REPORT_TIMELINE_HEADING = "## Timeline"
REPORT_TIMELINE_COLUMNS = "| time | +elapsed | who | message |"
REPORT_FIELDS = {
    "target": "Target",
    "kind": "Kind",
    "requester": "Requested by",
    "approver": "Approved by",
    "versions": "Rolled back",
    "to_version": "To version",
    "plan_hash": "Plan hash",
    "status": "Status",
    "outcome": "Outcome",
    "started": "Started",
    "finished": "Finished",
    "duration": "Duration",
    "backup": "Backup",
    "paged": "Paged",
    "failed_step": "Failed step",
}


def report_title(subject: str) -> str:
    return f"# Incident record: {subject}"


def report_thread(ts: Any) -> str:
    return f"thread {ts if ts else '?'}"


def report_backup(backup: Mapping[str, Any]) -> str:
    verified = "verified" if backup.get("verified") else "NOT verified"
    return f"{backup.get('path')} ({human_bytes(backup.get('size_bytes'))}, sha256 {backup.get('sha256')}, {verified})"


def report_paged(dedup_key: str | None) -> str:
    return f"yes (PagerDuty dedup_key {dedup_key})" if dedup_key else "no"


def report_check(check: Check) -> str:
    mark = "skipped" if check.skipped else "pass" if check.passed else "FAIL"
    text = check.detail.removeprefix(check_skipped(""))  # the mark already says skipped
    return f"- **{mark}** {check_label(check)}" + (f": {text}" if text else "")


def report_generated(by: str, when: str) -> str:
    return f"_Generated by rollback-bot for {by} at {when}._"


def report_uploaded(path: str) -> str:
    return f"{DONE} Incident record written to `{path}` and attached to this thread."


def worker_started(name: str, queue: str) -> str:
    return f"rollback worker {name} listening on queue {queue}"


def confirm_usage() -> str:
    return "usage: python -m workers confirm-identity <target> [--by NAME]"


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
    return {
        "into": f"{result.into} `{result.database}`",
        "backup": f"`{result.backup}`",
        "rows": ", ".join(f"{t} {n}" for t, n in sorted(result.row_counts.items())) or None,
    }


def restore_succeeded(request_id: str, target: str, backup: str, into: str) -> str:
    return f"{DONE} Request {request_id}: `{backup}` restored into {into} *{target}* and its rows counted."


# --- step details and figures (what a started/finished line says) ---------------------------------


def dump_of(target: str, why: str = "") -> str:
    return f"pg_dump of {target}" + (f" {why}" if why else "")


BEFORE_ROLLBACK = "before rolling back"
BEFORE_RESTORE = "before restoring over it"


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


def maintenance_figures(detail: str) -> dict[str, Any]:
    return {"result": detail}


def maintenance_failed(state: str, detail: str) -> str:
    return f"the maintenance_{state} hook failed: {detail}"


def snapshot_figures(snapshot: Mapping[str, Any]) -> dict[str, Any]:
    return {"snapshot": snapshot.get("name")}


def unknown_step(step: str) -> str:
    return f"unknown pipeline step {step!r}"


def restore_without_backup() -> str:
    return "the restore request names no backup; ask again with `/rollback restore <backup>`"


def digitalocean_note(error: BaseException | str) -> str:
    return f"DigitalOcean: {error}"


# --- PostgreSQL clients, backups and restores (workers/backup.py, workers/restore.py) -------------

UNPARSABLE_URL = "an unparsable database URL"
CONNECTION_FAILED = "connection failed"
DATABASE_ERROR = "database error"
NO_OUTPUT = "no output"


def database_url_unparsable() -> str:
    return "the database URL cannot be parsed; check the target's *_DATABASE_URL"


def cannot_connect(where: str, error: str, *, hint: bool = False) -> str:
    return f"cannot connect to {where}: {error}" + ("; check the target's database URL" if hint else "")


def version_unreadable(text: str) -> str:
    return f"cannot read a PostgreSQL version from {text.strip()[:80]!r}"


def client_not_found(binary: str) -> str:
    return f"{binary} not found; install the PostgreSQL client matching the server, or set PG_DUMP/PG_RESTORE"


def pg_restore_not_found(binary: str) -> str:
    return f"{binary} not found; install the PostgreSQL client, or set PG_RESTORE"


def cannot_run(binary: str, reason: str, fix: str = "") -> str:
    return f"cannot run {binary}: {reason}" + (f"; {fix}" if fix else "")


CHECK_CLIENT_SETTING = "check the PG_DUMP/PG_RESTORE setting"
INSTALL_PG_RESTORE = "install it or set PG_RESTORE"
INSTALL_PSQL = "install it or set PSQL"


def client_version_failed(binary: str, status: int) -> str:
    return f"{binary} --version failed with status {status}; check the binary"


def pg_dump_too_old(pg_dump: str, dump_version: str, server_version: str, server_major: str) -> str:
    return (
        f"{pg_dump} is version {dump_version} but the server is {server_version}: install the "
        f"PostgreSQL {server_major} client (or newer) and point PG_DUMP at it"
    )


def client_failed(what: str, status: int, line: str) -> str:
    return f"{what} failed (exit {status}): {line}"


def archive_unreadable(name: str, line: str) -> str:
    return f"{name} is not a readable archive: {line}"


def archive_empty(name: str) -> str:
    return f"{name} holds no entries; take a new backup"


def backup_missing(name: str) -> str:
    return f"backup {name} does not exist; list backups to pick another"


def backup_untrusted(name: str) -> str:
    return f"backup {name} has no manifest with a checksum; it cannot be trusted"


def backup_corrupted(name: str, actual: str, expected: str) -> str:
    return (
        f"backup {name} is corrupted: its SHA-256 {actual[:12]}… does not match the manifest's "
        f"{expected[:12]}…; pick another backup"
    )


def backup_dir_not_writable(directory: str, reason: str) -> str:
    return f"backup directory {directory} is not writable ({reason}); fix its permissions or set BACKUP_DIR"


def dump_running(target: str, written_bytes: int, elapsed_s: float) -> str:
    return f"pg_dump of {target} running: {human_bytes(written_bytes)} written in {seconds(elapsed_s)}"


def dump_empty(where: str) -> str:
    return f"pg_dump of {where} wrote an empty archive; check disk space and retry"


def manifest_unwritable(name: str, reason: str) -> str:
    return f"cannot write the manifest for {name}: {reason}"


def backup_outside_dir(name: str, directory: str) -> str:
    return f"{name} is not in the backup directory {directory}; pick one from the list of backups"


def backup_not_in_dir(name: str, directory: str) -> str:
    return f"backup {name} does not exist in {directory}; pick one from the list of backups"


def scratch_name_invalid(name: str) -> str:
    return f"scratch database name {name!r} must be lower-case letters, digits or '_' (at most 63)"


def scratch_exists(name: str) -> str:
    return f"database {name} already exists; choose another scratch name"


def no_createdb(where: str) -> str:
    return f"the target's user may not create databases on {where}; grant CREATEDB"


def cannot_create_database(name: str, where: str, error: str) -> str:
    return f"cannot create database {name} on {where}: {error}"


def rows_uncounted(error: BaseException | str) -> str:
    return f"restored, but counting rows failed: {error}"


def restore_into_invalid(into: str) -> str:
    return f"restore into must be 'target' or 'scratch', not {into!r}"


def nothing_restored(error: BaseException | str) -> str:
    return f"{error}; nothing was restored"


def backup_of_other_target(name: str, backup_target: Any, target: str) -> str:
    return f"backup {name} was taken from {backup_target!r}, not {target!r}; restore it into a scratch database"


def pg_restore_into(name: str) -> str:
    return f"pg_restore into {name}"


def restoring(label: str, into: str, elapsed_s: float) -> str:
    return f"restoring {label} into {into}: {seconds(elapsed_s)}"


INTO_THE_TARGET = "the target"


def restore_rolled_back(where: str, line: str) -> str:
    return f"restore into {where} failed and was rolled back, the target is unchanged: {line}"


def restore_unreadable(where: str, label: str, line: str) -> str:
    return restore_rolled_back(where, f"pg_restore could not read {label}: {line}")


# --- maintenance hooks (workers/maintenance.py) ----------------------------------------------------


def maintenance_state_invalid(state: str) -> str:
    return f"maintenance state must be 'on' or 'off', not {state!r}"


def no_maintenance_hook(state: str, target: str) -> str:
    return f"no maintenance_{state} hook configured for {target}"


def hook_exited(returncode: int, output: str) -> str:
    return f"command exited {returncode}" + (f": {output}" if output else "")


def hook_timed_out(timeout_s: float) -> str:
    return f"command {command_timed_out(timeout_s)}"


def hook_call_failed(method: str, url: str, error: str) -> str:
    return f"{method.upper()} {url} failed: {error}"


def hook_answered(method: str, url: str, status: int) -> str:
    return f"{method.upper()} {url} answered {status}"


# --- DigitalOcean (workers/digitalocean.py) --------------------------------------------------------


def do_token_missing() -> str:
    return "DIGITALOCEAN_TOKEN is not set; set it to use snapshots and managed backups"


def do_token_refused(what: str) -> str:
    return f"DigitalOcean refused the token while trying to {what}; check DIGITALOCEAN_TOKEN"


def do_answered(status: Any, what: str, message: str) -> str:
    return f"DigitalOcean answered {status} while trying to {what}: {message}"


def do_unreachable(what: str, error: str) -> str:
    return f"DigitalOcean could not be reached while trying to {what}: {error}"


def do_unexpected(what: str) -> str:
    return f"DigitalOcean gave an unexpected answer while trying to {what}"


def do_refused(what: str, message: str, error_id: str) -> str:
    return f"DigitalOcean could not {what}: {message} ({error_id})"


def do_no_action(droplet_id: Any) -> str:
    return f"DigitalOcean started no snapshot action for droplet {droplet_id}"


def do_snapshot_slow(droplet_id: Any, action_id: Any, status: Any, timeout_s: float) -> str:
    return (
        f"snapshot of droplet {droplet_id} (action {action_id}) still {status} after "
        f"{seconds(timeout_s)}; check it in the DigitalOcean console"
    )


def do_snapshot_progress(name: str, droplet_id: Any, status: Any, elapsed_s: float) -> str:
    return f"snapshot {name} of droplet {droplet_id}: {status} after {seconds(elapsed_s)}"


def do_snapshot_errored(name: str, droplet_id: Any, action_id: Any) -> str:
    return f"snapshot {name} of droplet {droplet_id} failed (action {action_id} errored); check the droplet"


# what a DigitalOcean call was trying to do, for its error line
def do_snapshot_droplet(droplet_id: Any) -> str:
    return f"snapshot droplet {droplet_id}"


def do_poll_action(action_id: Any) -> str:
    return f"poll action {action_id}"


DO_LIST_SNAPSHOTS = "list snapshots"


def do_list_snapshots_of(droplet_id: Any) -> str:
    return f"list snapshots of droplet {droplet_id}"


def do_list_backups_of(database_id: Any) -> str:
    return f"list backups of database {database_id}"


def report_file_title(request_id: str | None) -> str:
    return f"Incident record {request_id or ''}".strip()
