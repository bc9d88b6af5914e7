"""Every word the bot says, and its Block Kit. Small functions returning text or blocks; no I/O.

Nothing here ever receives a secret: the bot knows target names, versions, request ids and user ids,
never a DSN or a token.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

from bot import verbs
from bot.approval import Refusal
from bot.plans import PlanSummary
from bot.verbs import Argument, Verb
from core import kinds
from core.jsontypes import JsonObject
from core.prechecks import BackupCheck, BackupFacts, Preview, RestoredRelation, TablePreview
from core.requests import Request, RequestStatus
from core.stall_policy import MaintenanceChoice, MaintenanceDecision

APPROVE_ACTION = "rollback_approve"
REJECT_ACTION = "rollback_reject"
DECISION_BLOCK = "rollback_decision"
HELP_TITLE = "*Roll back a migration, with a second person's approval:*"
NEWEST_BACKUPS_SHOWN = 5

# `&` not already starting one of the three entities Slack uses: Slack delivers command text with
# `&`, `<` and `>` already escaped, so escaping must not escape an escape a second time.
_BARE_AMPERSAND = re.compile(r"&(?!(?:amp|lt|gt);)")


def escape(text: object) -> str:
    """Text shown as it is in Slack mrkdwn: `&`, `<` and `>` escaped, so that user input and placeholders
    such as `<version>` never turn into links, mentions or broken formatting. Idempotent."""
    return _BARE_AMPERSAND.sub("&amp;", str(text)).replace("<", "&lt;").replace(">", "&gt;")


def code(text: object) -> str:
    """Inline code, escaped (Slack shows the entities inside backticks as the characters)."""
    return f"`{escape(text)}`"


def mention(user: str | None) -> str:
    return f"<@{user}>" if user else "someone"


def clock(ts: float | None) -> str:
    if ts is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def duration(seconds: float) -> str:
    """A short age: `40 s`, `12 min`, `2 h 5 min`."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


def usage(verb: Verb) -> str:
    return f"Usage: {code(verbs.usage(verb))}"


def _targets(targets: Sequence[str]) -> str:
    return ", ".join(code(t) for t in targets)


# -- bad input (one line each) ----------------------------------------------------------------------


def unknown_verb(word: str, suggestion: str | None) -> str:
    hint = f" Did you mean {code(suggestion)}? {usage(verbs.verb(suggestion))}." if suggestion else " Try `/rollback help`."
    return f"Unknown command {code(word)}.{hint}"


def unexpected_argument(verb: Verb, word: str) -> str:
    return f"{code(verb.name)} does not take {code(word)}. {usage(verb)}."


def not_an_argument(verb: Verb, argument: Argument, word: str) -> str:
    """`nonsense` is not a migration version: versions look like 2025_10_20_120001 (...). Usage: ..."""
    return f"{code(word)} is not a {argument.what}: {escape(argument.hint)}. {usage(verb)}."


def unknown_version(version: str, known: Sequence[str]) -> str:
    recent = ", ".join(code(v) for v in list(known)[-4:]) or "none"
    return (f"Unknown version {code(version)}: no such migration. Recent versions: {recent}. "
            f"{usage(verbs.verb('dry-run'))}.")


def unknown_target(word: str, targets: Sequence[str], suggestion: str | None) -> str:
    hint = f" Did you mean {code(suggestion)}?" if suggestion else ""
    known = _targets(targets) or "none configured"
    return f"Unknown target {code(word)}.{hint} Targets: {known}."


def missing_argument(verb: Verb, argument: Argument) -> str:
    return f"{code(verb.name)} needs a {argument.name.replace('_', ' ')} ({escape(argument.hint)}). {usage(verb)}."


def no_targets() -> str:
    return (f"No target is configured: list one under {code('[targets.<name>]')} in the config file "
            "(`ROLLBACK_CONFIG`), with its `database_url_env` set for the workers.")


def target_required(verb: Verb, targets: Sequence[str]) -> str:
    bare = verbs.usage(verb).replace(" [target]", "")
    return f"Several targets are configured; say which one: {code(bare + ' <target>')} with one of {_targets(targets)}."


# Slack takes no slash command inside a thread: there the bot is mentioned (bot/invocations.py).
IN_A_THREAD = ("In an incident thread, mention the bot instead, with the same words (`@rollback-bot status`): "
               "everything is answered in that thread.")


MAIN_PATH_TITLE = "*Main path* (assess, plan, run):"


def help_text() -> str:
    """One short line per verb, by the playbook's steps (the main path first); from the verb table, everything
    escaped, so no placeholder becomes a link."""
    lines = [HELP_TITLE]
    for group, listed in verbs.grouped():
        if not listed:
            continue
        if group is not None:
            lines.append(f"*{group.value}*")
        elif listed[0].name in verbs.MAIN_PATH:
            lines.append(MAIN_PATH_TITLE)
        lines += [f"{code(verb.name)} {escape(verb.help)}" for verb in listed]
    return "\n".join([*lines, IN_A_THREAD])


def verb_help(asked: str) -> str:
    """`/rollback help <verb>`: its usage, what it does, an example; an unknown verb is one line."""
    verb = verbs.topic(asked)
    if verb is None:
        suggestion = verbs.closest(asked.split()[0], [v.word for v in verbs.VERBS])
        hint = f" Did you mean {code(suggestion)}?" if suggestion else ""
        return f"No verb {code(asked)}.{hint} `/rollback help` lists them."
    step = f" (playbook step: {verb.group.value})" if verb.group else ""
    return "\n".join([f"{usage(verb)}{step}", escape(verb.details[:1].upper() + verb.details[1:]) + ".",
                      f"Example: {code(verb.example)}", IN_A_THREAD])


def mention_first() -> str:
    """To a person who mentioned the bot other than at the start of the message."""
    return ("To ask rollback-bot, start the message with its mention and say what after it, as after `/rollback`: "
            "`@rollback-bot status`, `@rollback-bot help`.")


# -- refusals ---------------------------------------------------------------------------------------

_REFUSALS = {
    Refusal.CHANNEL_NOT_ALLOWED: "rollback-bot only takes requests in the incident channels",
    Refusal.REQUESTER_NOT_ALLOWED: "you are not in the list of people who may ask for rollbacks",
    Refusal.SELF_APPROVAL: "you cannot approve your own request: a second person must approve",
    Refusal.NOT_APPROVER: "you are not an approver",
    Refusal.WRONG_CHANNEL: "approve in the channel where the request was made",
    Refusal.EXPIRED: "the request expired; ask again",
    Refusal.ALREADY_DECIDED: "the request was already decided",
    Refusal.NOT_ALLOWED_TO_CANCEL: "only the requester or an approver may cancel it",
    Refusal.NOT_ALLOWED_MAINTENANCE: "only the requester of the target's latest request or an approver may switch "
                                     "its maintenance",
}


def refusal(reason: Refusal, request: Request | None = None) -> str:
    text = _REFUSALS[reason]
    if reason is Refusal.EXPIRED and request is not None:  # what to ask again depends on its kind
        text = f"request {request.id} expired; {kinds.of(request.kind).ask_again}"
    elif reason is Refusal.ALREADY_DECIDED and request is not None:
        by = f" by {mention(request.decided_by)}" if request.decided_by else ""
        text = f"request {request.id} is already {request.status.value}{by}"
    elif reason is Refusal.NOT_ALLOWED_MAINTENANCE and request is not None:
        text += f" ({request.id} of {code(request.target)} was requested by {mention(request.requester)})"
    return f"Refused: {text}."


def refusal_line(user: str, action: str, request_id: str, reason: Refusal, request: Request | None = None) -> str:
    """The thread's record of a refused click."""
    return f":no_entry: {mention(user)} tried to {action} {request_id}. {refusal(reason, request)}"


def unknown_request(request_id: str) -> str:
    return f"Request {code(request_id)} does not exist (or is older than its retention)."


# The break-glass path is the command line by nature (no Slack, no worker, no Redis): it is named, and
# docs/bot.md gives its commands; the Slack answer itself gives no command-line flags.
_BREAK_GLASS = "the break-glass path without Slack, `run-migrations` with the target's database URL (docs/bot.md)"


def no_worker(queue: str) -> str:
    return (
        f":warning: No worker is listening on queue {code(queue)}, so nothing was queued. "
        f"Start one (`python -m workers`), or use {_BREAK_GLASS}."
    )


def no_plan(target: str) -> str:
    return (
        f"No current dry-run for {code(target)} in this channel (none yet, used by an earlier request, cleared by "
        f"a change to the target, or expired). Run a dry run first: {code(f'/rollback dry-run <version> {target}')}, "
        f"then {code(f'/rollback execute {target}')}."
    )


def empty_plan(target: str) -> str:
    return (f"The current dry-run for {code(target)} reverts nothing. "
            f"Run {code(f'/rollback dry-run <version> {target}')} again.")


def _until_free(active: Request) -> str:
    """What frees the target: only a pending request can be cancelled; an approved or running one is under
    way (its watch, once its change is done, holds nothing), so it is waited for."""
    if active.status is RequestStatus.PENDING:
        return f"approve that one, or `/rollback cancel {active.id}`"
    return "wait for it: its outcome follows in its thread"


def target_busy(active: Request, permalink: str | None) -> str:
    where = f" <{permalink}|thread>" if permalink else ""
    if kinds.of(active.kind).beside_target:  # runs beside the target's request: busy only for its own subject
        return (f"Session pid {code(active.subject or '?')} on {code(active.target)} already has terminate request "
                f"{active.id} ({active.status.value}) started by {mention(active.requester)}{where}. One per session: "
                f"{_until_free(active)}.")
    return (
        f"{code(active.target)} already has {active.kind.value} request {active.id} ({active.status.value}) "
        f"started by {mention(active.requester)}{where}. One at a time: {_until_free(active)}."
    )


def nothing_to_cancel() -> str:
    return "Nothing to cancel: this channel has no pending request."


def nothing_to_report() -> str:
    return "No request in this channel to report on. Use `/rollback report RB-XXXXXX`."


def queue_unreachable() -> str:
    return (
        ":warning: rollback-bot cannot reach Redis (its queue and request records), so nothing was recorded or "
        f"queued. Use {_BREAK_GLASS}."
    )


def not_queued(request_id: str) -> str:
    return f":x: {request_id} was approved but could not be queued for the workers; nothing ran. Ask again."


def internal_error() -> str:
    return "Something went wrong on rollback-bot's side; nothing was changed. The details are in the bot's log."


# -- restore: the backup is checked before anything is requested ------------------------------------


def _newest(check: BackupCheck) -> str:
    names = check.newest[:NEWEST_BACKUPS_SHOWN]
    return f"Newest verified backups: {', '.join(code(n) for n in names)}." if names else "There is no verified backup."


def backup_refused(target: str, backup: str, check: BackupCheck) -> str:
    why = escape(check.error) if check.error else "it does not exist or does not verify"
    return (f"Refused: backup {code(backup)} of {code(target)} cannot be restored: {why}. {_newest(check)} "
            "Nothing was requested.")


def backup_check_failed(target: str, backup: str) -> str:
    return (f"Refused: the workers could not check backup {code(backup)} of {code(target)} (the check failed; "
            "its error is in the worker's log). Nothing was requested.")


def backup_check_timed_out(target: str, backup: str, seconds: float) -> str:
    return (f"Refused: no worker answered the check of backup {code(backup)} of {code(target)} within "
            f"{int(seconds)} s (`[bot] backup_check_timeout_seconds`). Nothing was requested; try again.")


def _size(size_bytes: Any) -> str:
    try:
        size = float(size_bytes)
    except (TypeError, ValueError):
        return ""
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""


def restore_summary(target: str, backup: str, manifest: Mapping[str, Any] | None) -> str:
    """What a restore request restores, as verified when it was asked for (kept on the request)."""
    known = BackupFacts.from_dict(manifest or {})
    facts = []
    if known.created_at:
        facts.append(f"taken {known.created_at}")
    if size := _size(known.size_bytes):
        facts.append(size)
    if known.sha256:
        facts.append(f"sha256 {known.sha256[:12]}")
    detail = f" ({', '.join(escape(f) for f in facts)})" if facts else ""
    if known.verified_by:  # a dump made by hand: no checksum of ours to check
        return f"restore {backup}{detail} into {target}; not ours, {escape(known.verified_by)} when asked"
    return f"restore {backup}{detail} into {target}; checksum and `pg_restore --list` verified when asked"


# -- maintenance ----------------------------------------------------------------------------------------


def maintenance_line(target: str, state: str, user: str) -> str:
    icon = ":construction:" if state == "on" else ":white_check_mark:"
    return (f"{icon} {mention(user)} switches maintenance *{escape(state)}* for {code(target)} "
            f"(`/rollback maintenance {escape(state)}`); the outcome follows in this thread.")


def maintenance_while_running(active: Request) -> str:
    return (f"Refused: {active.kind.value} request {active.id} of {code(active.target)} is {active.status.value}; "
            "its pipeline switches maintenance itself. Try again once it has finished.")


# -- root messages and thread lines ------------------------------------------------------------------


def read_root(verb: str, targets: Sequence[str], user: str) -> str:
    return f":mag: *{escape(verb)}* of {_targets(targets)} requested by {mention(user)}; the answer follows in this thread."


def dry_run_root(target: str, version: str, user: str) -> str:
    return (
        f":clipboard: *dry-run* of a rollback of {code(target)} to {code(version)} requested by {mention(user)}. "
        "The plan follows in this thread; it becomes this channel's current plan."
    )


def backup_root(target: str, user: str) -> str:
    return f":floppy_disk: *backup* of {code(target)} requested by {mention(user)}; progress follows in this thread."


def thread_root(verb: str, targets: Sequence[str], version: str | None, user: str) -> str:
    """The root message of a verb answered in a thread (its own wording where it has one)."""
    if verb == "dry-run" and version is not None:
        return dry_run_root(targets[0], version, user)
    if verb == "backup":
        return backup_root(targets[0], user)
    return read_root(verb, targets, user)


def job_reason(verb: str, user: str) -> str:
    """The `reason` a job records (the backup's manifest)."""
    return f"manual {verb} requested by {user}"


def _plan_lines(plan: PlanSummary) -> list[str]:
    lines = [f"Target {code(plan.target)}: revert {len(plan.versions)} migration(s) to {code(plan.to_version or 'nothing')}:"]
    lines += [f"• {code(v)}" for v in plan.versions]
    # Statements whose data escrow cannot hold are always named (they make the full backup mandatory).
    held_back = [w for w in plan.warnings if w.startswith("not escrowed:")]
    for warning in [*held_back, *[w for w in plan.warnings if w not in held_back][:5]]:
        lines.append(f":warning: {escape(warning)}")
    lines += forecast_lines(plan.forecast)
    if plan.maintenance is not None and (note := maintenance_policy_line(plan.maintenance)):
        lines.append(note)
    if plan.net:
        lines.append(f":shield: Safety net: {escape(plan.net)}")
    if plan.hash:
        lines.append(f"Plan hash `{plan.hash[:12]}`; the worker re-plans and refuses if the database changed.")
    return lines


# Slack refuses a section longer than 3000 characters: the suggested script is cut well before that.
SUGGESTION_MAX_CHARS = 1200


def forecast_lines(forecast: Sequence[str]) -> list[str]:
    """The dry run's lock-impact lines; a suggested order's statements (after its first line) as code."""
    if not forecast:
        return []
    lines = [":hourglass_flowing_sand: *Lock impact* of the real run (the app waits this long, plus up to the "
             "lock timeout):"]
    for line in forecast[:8]:
        head, _, script = line.partition("\n")
        lines.append(f"• {escape(head)}")
        if script:
            shown = script if len(script) <= SUGGESTION_MAX_CHARS else script[:SUGGESTION_MAX_CHARS] + "\n…"
            lines.append(f"```{shown.replace('```', '` ` `')}```")
    return lines


def _approx_seconds(ms: float) -> str:
    return "<0.1 s" if ms < 100 else (f"≈{ms / 1000:.0f} s" if ms >= 10_000 else f"≈{ms / 1000:.1f} s")


def maintenance_policy_line(decision: MaintenanceDecision) -> str:
    """What the target's stall policy makes of the forecast, on the card ('' when it changes nothing)."""
    if decision.stall_ms is None or decision.threshold_s is None:
        return ""
    forecast = _approx_seconds(decision.stall_ms)
    if decision.choice is MaintenanceChoice.REQUIRED:
        return (f":construction: Maintenance mode is *required* by this target's policy: the forecast stall "
                f"{forecast} is at least {decision.threshold_s:g} s.")
    if decision.choice is MaintenanceChoice.SKIP:
        return (f":fast_forward: Maintenance mode will be *skipped* by this target's policy: the forecast stall "
                f"{forecast} is under {decision.threshold_s:g} s.")
    return ""


def maintenance_required_without_hook(target: str, decision: MaintenanceDecision) -> str:
    stall = _approx_seconds(decision.stall_ms or 0.0)
    return (f"Refused: the dry run forecasts the application blocked {stall}, and {code(target)}'s policy requires "
            f"maintenance mode from {decision.threshold_s or 0:g} s, but {code(target)} has no `maintenance_on` hook. "
            "Configure one, or make the down script lighter (see the dry run's suggestion), then dry-run again.")


def plan_age_line(request: Request) -> str:
    """How old the dry run is that the request was made from (it is used up by this request)."""
    if request.plan_saved_at is None:
        return ""
    age = duration(request.created_at - request.plan_saved_at)
    return f":stopwatch: Dry run of {clock(request.plan_saved_at)}, {age} old when this request was made."

def _decision_buttons(request: Request, confirm_text: str) -> JsonObject:
    return {
        "type": "actions",
        "block_id": DECISION_BLOCK,
        "elements": [
            {
                "type": "button",
                "action_id": APPROVE_ACTION,
                "text": {"type": "plain_text", "text": "Approve"},
                "style": "danger",
                "value": request.id,
                "confirm": {
                    "title": {"type": "plain_text", "text": f"Approve {request.id}?"},
                    "text": {"type": "mrkdwn", "text": confirm_text},
                    "confirm": {"type": "plain_text", "text": "Approve and run"},
                    "deny": {"type": "plain_text", "text": "Back"},
                },
            },
            {
                "type": "button",
                "action_id": REJECT_ACTION,
                "text": {"type": "plain_text", "text": "Reject"},
                "value": request.id,
            },
        ],
    }


def undo_summary(target: str, rollback_id: str, versions: Sequence[str], restored: Sequence[RestoredRelation]) -> str:
    """What an undo does, as its dry run measured it (kept on the request, shown on the card)."""
    back = "; ".join(f"{r.relation} ({r.kind}) {r.rows} row(s)" for r in restored) or "nothing"
    return (f"undo rollback {rollback_id} of {target}: re-apply {', '.join(versions) or 'nothing'}, "
            f"then put back {back} (measured by a dry run, rolled back)")


def undo_check_unanswered(target: str, rollback_id: str) -> str:
    return (f"Refused: no worker answered the undo dry run of {code(rollback_id)} on {code(target)} in time "
            "(`[bot] backup_check_timeout_seconds`), or it failed (see the worker's log). Nothing was requested.")


def undo_refused(target: str, rollback_id: str, error: str | None) -> str:
    why = escape(error) if error else "its dry run failed"
    return f"Refused: rollback {code(rollback_id)} of {code(target)} cannot be undone: {why}. Nothing was requested."


def _request_header(request: Request) -> str:
    what = kinds.words(kinds.of(request.kind).what, request, code)
    return (
        f":rotating_light: *{request.id}*: {what} requested by {mention(request.requester)}. "
        f"Needs a second person's approval before {clock(request.expires_at)}."
    )


def team_told(request: Request, contacts: Sequence[str]) -> str:
    """The card's first thread line: the target's contacts called in as soon as a change is asked for."""
    what = kinds.words(kinds.of(request.kind).what, request, code)
    who = " ".join(_contact(c) for c in contacts)
    return (f":loudspeaker: {who}: {mention(request.requester)} asks for {what} ({request.id}); it waits for a "
            "second person's approval. The run, its steps and its outcome follow in this thread.")


def card_details(request: Request) -> list[str]:
    """A request's card below its header, by its kind's words (core/kinds.py)."""
    kind = kinds.of(request.kind)
    lines = []
    if request.summary:
        lines.append(kind.card_summary.format(summary=request.summary, escaped=escape(request.summary)))
    if kind.card_note:
        lines.append(kinds.words(kind.card_note, request, code))
    if request.params.get("preview_text"):  # rendered (and escaped) when the request was made
        lines.append(str(request.params["preview_text"]))
    return lines


def request_text(request: Request, plan: PlanSummary | None = None) -> str:
    lines = [_request_header(request)]
    if plan is not None:
        lines += _plan_lines(plan)
        if age := plan_age_line(request):
            lines.append(age)
        lines += _source_lines(request)
    else:
        lines += card_details(request)
    return "\n".join(lines)


def request_blocks(request: Request, plan: PlanSummary | None = None) -> list[JsonObject]:
    confirm = kinds.words(kinds.of(request.kind).confirm, request, code)
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": request_text(request, plan)}},
        _decision_buttons(request, confirm),
    ]


_DECISION_ICONS = {RequestStatus.APPROVED: ":white_check_mark:", RequestStatus.REJECTED: ":x:",
                   RequestStatus.CANCELLED: ":heavy_minus_sign:", RequestStatus.EXPIRED: ":hourglass:"}


def decision_line(request: Request) -> str:
    by = f" by {mention(request.decided_by)}" if request.decided_by else ""
    if request.status is RequestStatus.EXPIRED:
        if request.approver:  # approved, but no worker started it within the bound
            return (
                f":hourglass: *Expired* at {clock(request.finished_at)}: approved{by} at {clock(request.decided_at)} "
                f"but no worker started it in time ({escape(request.outcome)}); nothing ran — {kinds.of(request.kind).ask_again}."
            )
        return f":hourglass: *Expired* at {clock(request.expires_at)} — nobody approved; {kinds.of(request.kind).ask_again}."
    if request.status not in _DECISION_ICONS:  # running / succeeded / failed: it was approved
        return (f"{_DECISION_ICONS[RequestStatus.APPROVED]} *Approved*{by} at {clock(request.decided_at)}; "
                f"now {request.status.value}.")
    return (f"{_DECISION_ICONS[request.status]} *{request.status.value.capitalize()}*{by} "
            f"at {clock(request.decided_at)}.")


def not_started_outcome(bound_seconds: float) -> str:
    return f"not started within {int(bound_seconds)} s of the approval"


def expired_thread_line(request: Request) -> str:
    return f"{request.id}: {decision_line(request)}"


def decided_blocks(request: Request, plan: PlanSummary | None = None) -> list[JsonObject]:
    """The request message with its buttons replaced by the decision."""
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": request_text(request, plan)}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": decision_line(request)}]},
    ]


def approved_thread_line(request: Request) -> str:
    return (
        f":white_check_mark: {request.id} approved by {mention(request.approver)} at {clock(request.decided_at)} "
        f"(requested by {mention(request.requester)}). Queued for the workers: {kinds.of(request.kind).chain}."
    )


def decided_thread_line(request: Request) -> str:
    return f"{decision_line(request)} {request.id} will not run."


def report_requested(user: str, request_id: str) -> str:
    return f":memo: Incident report for {request_id} requested by {mention(user)}; the file follows in this thread."


def thread_report_requested(user: str) -> str:
    return f":memo: Incident report of this thread requested by {mention(user)}; the file follows in this thread."


# --- Step 1: terminate (bot/handlers.py terminate_draft) -------------------------------------------


def pid_not_assessed(target: str, pid: str, assessed: bool) -> str:
    if not assessed:
        return (f"No current assessment of {code(target)} in this channel: run `/rollback status {target}` "
                f"first; `terminate` acts only on a session it names.")
    return (f"Refused: pid {code(pid)} is not among the sessions the current assessment of {code(target)} "
            f"named; run `/rollback status {target}` again and pick one of those.")


def own_session(target: str, pid: str) -> str:
    return (f"Refused: pid {code(pid)} on {code(target)} is rollback-bot's own session (a worker's running job); it "
            f"ends with its job. Terminate the sessions in its way instead, or wait for that job to end.")


def session_summary(session: Mapping[str, Any]) -> str:
    why = ", ".join(str(w).replace("_", " ") for w in session.get("why") or ())
    return (f"Session pid {session.get('pid')}: {session.get('application') or '-'} as {session.get('user')}, "
            f"{session.get('state')}, {session.get('age_s')} s ({why}): {session.get('query')}")


def same_target_twice(verb_: Verb, target: str) -> str:
    return f"{code(target)} twice: {code(verbs.usage(verb_))} compares two different targets."


# --- scenario 1: repair (bot/handlers.py repair_draft) ---------------------------------------------


def repair_plan_timed_out(target: str, version: str, seconds: int) -> str:
    return (f"No worker planned the repair of {code(version)} on {code(target)} within {seconds} s; "
            "nothing was requested. Check the workers and try again.")


def repair_refused(target: str, version: str, error: str | None) -> str:
    return f"Cannot repair {code(version)} on {code(target)}: {escape(error or 'the worker could not plan it')}."


# --- the watch window (bot/handlers.py watch) -------------------------------------------------------


def no_watch(target: str) -> str:
    return f"No watch is running on {code(target)}: nothing to stop."


def watch_stop_line(request_id: str, user: str) -> str:
    return f":stop_sign: {mention(user)} stops the watch of {request_id} early."


# --- a watch window nobody finished (bot/lapsed.py) ----------------------------------------------------


def _contact(contact: str) -> str:
    return f"<!subteam^{contact}>" if contact.startswith(("S", "subteam")) else mention(contact)


def watch_lapsed_reason(watch: Mapping[str, Any]) -> str:
    """Why the sweeper ends the watch: since when nobody looked (the workers' record of the watch)."""
    since = watch.get("seen_at") if watch.get("looks") else watch.get("started_at")
    when = clock(float(since)) if isinstance(since, int | float) else "its start"
    return f"no look since {when} (no worker ran the watch; a worker died, or none is running)"


def watch_last_seen(watch: Mapping[str, Any]) -> str:
    last = watch.get("last")
    if not isinstance(last, Mapping) or not last:
        return "nothing (no look finished)"
    health = "n/a" if last.get("health_ok") is None else ("ok" if last["health_ok"] else "failing")
    smoke = "n/a" if last.get("smoke_ok") is None else ("ok" if last["smoke_ok"] else "failing")
    connections = last.get("connections")
    seen = f"health {health}, smoke test {smoke}, connections {connections if connections is not None else 'n/a'}"
    failing = [str(f) for f in watch.get("failing") or ()]
    return f"{seen}; failing: {', '.join(failing)}" if failing else seen


def watch_lapsed_summary(request: Request, reason: str) -> str:
    return (f"rollback-bot: the watch of {request.target} after {request.id} was interrupted, nobody watches it: "
            f"{reason}")[:1000]


def watch_lapsed_line(request: Request, reason: str, seen: str, contacts: Sequence[str], paged: bool,
                      page_detail: str) -> str:
    who = " ".join(_contact(c) for c in contacts) or "(no escalation contacts configured)"
    page = "PagerDuty paged" if paged else f"PagerDuty NOT paged: {escape(page_detail)}"
    ends = request.watch.get("ends_at")
    until = f" (it was to end at {clock(float(ends))})" if isinstance(ends, int | float) else ""
    return (f":rotating_light: {request.id}: watch interrupted: {reason}. Last seen: {seen}. Nobody watches the rest "
            f"of the window on {code(request.target)}{until}; the request is done. {who} — {page}.")


def watch_lapsed_outcome(reason: str) -> str:
    return f"watch interrupted: {reason}"


# --- the execute card: its dry run and its SQL ----------------------------------------------------

SQL_HEAD_LINES = 8


def _source_lines(request: Request) -> list[str]:
    lines = []
    if request.source_link:
        lines.append(f":link: <{request.source_link}|The dry run this plan comes from>")
    if request.sql:
        sql_lines = request.sql.strip().splitlines()
        head = "\n".join(sql_lines[:SQL_HEAD_LINES])
        more = (f"\n… {len(sql_lines) - SQL_HEAD_LINES} more line(s): the whole SQL is attached in this thread"
                if len(sql_lines) > SQL_HEAD_LINES else "")
        lines.append(f"SQL it will run:\n```\n{escape(head)}\n```{more}")
    return lines


def sql_file_title(request: Request) -> str:
    return f"SQL of {request.id}: rollback of {request.target} to {request.to_version}"
# -- the recovery paths (issue 10): the check, the restore preview on the card, the sample keys ----------

SAMPLES_SHOWN = 5


def recovery_check_refused(verb: str, target: str, error: str | None) -> str:
    why = escape(error) if error else "the check failed (its error is in the worker's log)"
    return f"Refused: `/rollback {verb}` on {code(target)} cannot run: {why}. Nothing was requested."


def recovery_check_timed_out(verb: str, target: str, seconds: float) -> str:
    return (f"Refused: no worker answered the check of `/rollback {verb}` on {code(target)} within {int(seconds)} s "
            "(`[bot] backup_check_timeout_seconds`). Nothing was requested; try again.")


def pitr_version_and_time(target: str) -> str:
    return (f"Refused: name either a migration (`before <version>`) or a UTC time, not both. "
            f"Usage: {code(verbs.usage(verbs.verb('pitr')))}. Nothing was requested for {code(target)}.")


def _versions_line(preview: Preview) -> str | None:
    before, after = preview.versions_before, preview.versions_after
    now = f"{code(before[-1])} ({len(before)} applied)" if before else "none applied"
    if after is None:
        return f"• Versions: now {now}; after: as the snapshot holds them"
    undone = [v for v in before if v not in after]
    back = [v for v in after if v not in before]
    then = f"{code(after[-1])} ({len(after)} applied)" if after else "none applied"
    changes = ([f"undone: {', '.join(code(v) for v in undone)}"] if undone else []) + \
        ([f"applied again: {', '.join(code(v) for v in back)}"] if back else [])
    return f"• Versions: now {now} → after {then}; {'; '.join(changes) or 'unchanged'}"


def _table_line(table: TablePreview, overwrite: bool) -> str:
    differing = table.differing
    fate = "overwritten (--overwrite)" if overwrite else "kept as they are in live; --overwrite replaces them"
    return (f"• {code(table.table)}: *{table.missing}* missing from live (inserted), "
            f"{differing} differing ({fate if differing else 'none'}), {table.only_live} only in "
            f"live (kept); rows live {table.live_rows}, in the backup {table.restored_rows}")


def _lost_line(preview: Preview) -> str | None:
    point = preview.point_unix
    if point is None:
        return None
    since = ", ".join(f"{code(t)} {n}" for t, n in preview.written_since.items() if n)
    rows = f" Rows created or updated since then: {since}." if since else ""
    return (f":warning: *Everything written after {clock(float(point))}"
            f" ({duration(float(preview.lost_seconds or 0))} ago) is lost.*{rows}")


class _Blank(dict[str, str]):
    """A template's field the preview does not hold reads as empty (a snapshot without a name)."""

    def __missing__(self, key: str) -> str:
        return ""


FILE_TABLES_SHOWN = 8


def _file_line(preview: Preview) -> str | None:
    """What the worker read in the backup file itself (workers/postgres/dump_reader.py): its kind, tables, rows, last version."""
    found = preview.file
    if found is None:
        return None
    whose = "ours (checksum verified)" if found.ours else \
        f"made by hand, not ours ({escape(found.verified_by or 'read whole')})"
    tables = found.tables
    held = ", ".join(f"{code(t)} {'no data' if n is None else n}" for t, n in list(tables.items())[:FILE_TABLES_SHOWN])
    more = f" and {len(tables) - FILE_TABLES_SHOWN} more" if len(tables) > FILE_TABLES_SHOWN else ""
    last = f"last migration {code(found.last_version)}" if found.last_version else "no completed migration"
    return (f"• File {code(found.name)}: {escape(found.format_name or found.format)}, {whose}; "
            f"{len(tables)} table(s) ({held}{more}); {last}")


def preview_summary(preview: Preview, digest: str) -> str:
    """The restore preview on a recovery's approval card (kept on the request as its summary)."""
    fields = {k: code(v) for k, v in preview.to_dict().items() if not isinstance(v, (list, dict))}
    bad, point = preview.bad_version, preview.point_unix
    fields.update(point=clock(float(point or 0)), before=f", just before {code(bad)} was applied" if bad else "",
                  taken=f" (taken {escape(preview.created_at)})" if preview.created_at else "")
    lines = [kinds.of(preview.kind).preview_headline.format_map(_Blank(fields))]
    if preview.overwrite is not None:  # a table recovery: what happens to each table's rows
        lines += [_table_line(t, preview.overwrite) for t in preview.tables]
    else:
        lines += [f"• {code(t.table)}: rows live {'none (no such table)' if t.live_rows is None else t.live_rows}, "
                  f"in the backup {t.restored_rows}" for t in preview.tables]
    if preview.chosen_before:  # no backup named: which one, and why
        lines.append(f"• No backup named: this is the newest that verifies taken before {code(preview.chosen_before)} "
                     "was applied.")
    if versions := _versions_line(preview):
        lines.append(versions)
    if file_line := _file_line(preview):
        lines.append(file_line)
    if lost := _lost_line(preview):
        lines.append(lost)
    lines.append(f"Preview hash `{digest[:12]}` (with the database's identity); the worker recomputes it at start "
                 "and refuses if the database moved on.")
    return "\n".join(lines)


def preview_samples(preview: Preview) -> str | None:
    """The sample keys of a table recovery, posted in the request's thread."""
    lines = []
    for table in preview.tables:
        parts = []
        for sample, label in ((table.missing_sample, "missing"), (table.differing_sample, "differing"),
                              (table.only_live_sample, "only in live")):
            keys = [str(k) for k in sample][:SAMPLES_SHOWN]
            if keys:
                parts.append(f"{label}: {', '.join(code(k) for k in keys)}")
        if parts:
            lines.append(f"• {code(table.table)} {'; '.join(parts)}")
    return ("Sample keys (primary key values):\n" + "\n".join(lines)) if lines else None


def restore_preview_missing(error: str | None) -> str:
    return f"No restore preview ({escape(error or 'not computed')}); the restore is bound to the backup's checksum only."
