"""Every line the workers write into a Slack thread, the log or a page: one place for the wording.

Functions take data and return text (Slack mrkdwn). Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from core import steps
from core.requests import Request
from workers.checks import Check, CheckKind

if TYPE_CHECKING:  # types only: the modules that build these results import this one
    from workers.backup import BackupResult
    from workers.engine.reports import RunReport, StatementResult

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


def code(value: object) -> str:
    return f"`{value}`"


def request_queued(request: Request, what: str, labels: Sequence[str], into: str = "target") -> str:
    """The first line of an approved request's run: what it does (its kind's words) and its steps."""
    where = "" if into == "target" else " (into a new scratch database beside it; the target is left alone)"
    return f"{STARTED} Request {request.id}: {what}{where}: {' → '.join(labels)}"


AS_APPROVED = "the result is what the approval promised"


def promise_not_kept(mismatches: Sequence[str]) -> str:
    return f"the result is not what the approval promised: {'; '.join(mismatches)}"


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
    who = contacts_mention(contacts)
    page = "PagerDuty paged" if paged else f"PagerDuty NOT paged: {page_detail}"
    return f"{PAGE} {who} — {step_name(step)} failed and needs a human. {page}."


def contacts_mention(contacts: Sequence[str]) -> str:
    return " ".join(_mention(c) for c in contacts) or "(no escalation contacts configured)"


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


# -- backups made by hand (workers/dumpfiles.py) -----------------------------------------------------

FORMAT_NAMES = {"plain": "plain SQL", "plain-gzip": "plain SQL, gzipped", "custom": "custom-format archive",
                "directory": "directory-format archive", "tar": "tar-format archive"}
# How each kind was verified, for the card and the docs (docs/backups.md).
VERIFIED_BY = {
    "plain": "read whole: pg_dump's header and closing line, every COPY block closed with whole rows",
    "plain-gzip": "read whole: gzip stream intact to its end, pg_dump's header and closing line, every COPY "
                  "block closed with whole rows",
    "custom": "read whole by pg_restore, every COPY block closed with whole rows",
    "directory": "read whole by pg_restore, every COPY block closed with whole rows",
    "tar": "read whole by pg_restore, every COPY block closed with whole rows",
}
