"""Every line the workers write into a Slack thread, the log or a page: one place for the wording.

Functions take data and return text (Slack mrkdwn). Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from core import steps
from core.requests import Request
from workers.postgres.check_results import Check, CheckKind

if TYPE_CHECKING:  # types only: the modules that build these results import this one
    from core.config import Target
    from workers.engine.results import StatementResult
    from workers.postgres.pg_dump import BackupResult

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


# --- the incident record (workers/verbs/report.py) -----------------------------------------------------


# --- step details and figures (what a started/finished line says) ---------------------------------


def dump_of(target: str, why: str = "") -> str:
    return f"pg_dump of {target}" + (f" {why}" if why else "")


BEFORE_ROLLBACK = "before rolling back"
BEFORE_RESTORE = "before restoring over it"
BEFORE_UNDO = "before undoing a rollback"


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


# --- PostgreSQL clients, backups and restores (workers/postgres/pg_dump.py, workers/postgres/pg_restore.py) -------------


def dump_running(target: str, written_bytes: int, elapsed_s: float) -> str:
    return f"pg_dump of {target} running: {human_bytes(written_bytes)} written in {seconds(elapsed_s)}"


def restoring(label: str, into: str, elapsed_s: float) -> str:
    return f"restoring {label} into {into}: {seconds(elapsed_s)}"


INTO_THE_TARGET = "the target"
KEPT_TABLES_LABEL = "the bot's own tables"


# --- DigitalOcean (workers/providers/digitalocean.py) --------------------------------------------------------


def do_snapshot_progress(name: str, droplet_id: Any, status: Any, elapsed_s: float) -> str:
    return f"snapshot {name} of droplet {droplet_id}: {status} after {seconds(elapsed_s)}"


def do_restore_progress(snapshot_id: Any, droplet_id: Any, status: Any, elapsed_s: float) -> str:
    return f"restore of droplet {droplet_id} from snapshot {snapshot_id}: {status} after {seconds(elapsed_s)}"


def do_cluster_progress(name: str, status: Any, elapsed_s: float) -> str:
    return f"new cluster {name}: {status} after {seconds(elapsed_s)}"


# -- backups made by hand (workers/postgres/dump_reader.py) -----------------------------------------------------

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


def dump_format(name: Any) -> str:
    """A backup's format as people say it (workers/postgres/dump_reader.py FORMAT_NAMES)."""
    return FORMAT_NAMES.get(str(name), str(name or "unknown format"))


def watch_page_resolved(request_id: str, ok: bool, detail: str | None) -> str:
    if ok:
        return f"{DONE} {request_id}: everything is healthy again; the page is resolved. Watching on."
    return f"{WARNING} {request_id}: everything is healthy again, but the page could not be resolved ({detail})."


def _page_fate(resolved: bool | None) -> str:
    if resolved is None:
        return ""
    return (" Its page is resolved: the new request's own pipeline and watch page from now on." if resolved
            else " Its page could NOT be resolved: resolve it by hand.")


def watch_superseded(request_id: str, target: str, by_request: str, link: str | None, seen: str,
                     resolved: bool | None) -> str:
    where = f" (<{link}|thread>)" if link else ""
    return (f"{DONE} {request_id}: the watch of *{target}* ended: superseded by {by_request}{where}, which changes "
            f"*{target}* now. Last seen: {seen}.{_page_fate(resolved)}")


def watch_handed_over(request_id: str, old_request: str, link: str | None, seen: str, resolved: bool | None) -> str:
    where = f" (<{link}|thread>)" if link else ""
    return (f":eyes: {request_id}: the watch of {old_request}{where} ended, superseded by this request. Last seen: "
            f"{seen}.{_page_fate(resolved)}")


def watch_superseded_outcome(by_request: str) -> str:
    return f"watch superseded by {by_request}"


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


def preview_changed() -> str:
    return ("the database changed since the preview that was approved (its hash differs); nothing was changed. "
            "Ask again to see the new preview")


def backup_unusable(backup: str) -> str:
    return f"backup {backup} does not exist or does not verify; `/rollback backups` lists the verified ones"


def api_failing(error: str, paged: bool, paging_problem: str) -> str:
    """The check could not finish because the provider's API is failing (5xx, unreachable) after retries."""
    who = ("on-call has been paged (PagerDuty)" if paged
           else f"paging on-call failed too ({paging_problem}): call them yourself")
    return f"the API is failing: {error}; {who}. Meanwhile: {OTHER_OPTIONS}"


def api_refused(error: str) -> str:
    """A 4xx from the provider's API while checking: its answer, so no page; the other options named."""
    return f"{error}. Instead: {OTHER_OPTIONS}"


def not_a_utc_time(text: str) -> str:
    return f"{text[:40]!r} is not a UTC time: write it like 2025-10-20T14:59:00Z"


def waiting_for_database(target: str, waited_s: float) -> str:
    return f"waiting for PostgreSQL of {target} to answer ({seconds(waited_s)})"


def database_did_not_answer(target: str, waited_s: float) -> str:
    return (f"PostgreSQL of {target} did not answer within {seconds(waited_s)} after the recovery; check the "
            "database, then run `/rollback verify`")


def versions_not_as_promised(promised: Sequence[str], found: Sequence[str]) -> str:
    def last(versions: Sequence[str]) -> str:
        return versions[-1] if versions else "none"
    return (f"the database is not where the approval said: applied versions should end at {last(promised)} "
            f"({len(promised)} applied), found {last(found)} ({len(found)} applied)")


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


OTHER_OPTIONS = ("`/rollback restore <backup>` (our own pg_dump backups) or `/rollback recover <backup> <tables>` "
                 "for lost rows")


def backup_waived(actor: str) -> str:
    return f"no backup taken: {actor} ran `run-migrations --no-backup` (break-glass), recorded in migration_history"
