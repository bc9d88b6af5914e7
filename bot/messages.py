"""Every word the bot says, and its Block Kit. Small functions returning text or blocks; no I/O.

Nothing here ever receives a secret: the bot knows target names, versions, request ids and user ids,
never a DSN or a token.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # approval imports nothing from here; the guard keeps import order free
    from bot.approval import Refusal
    from bot.plans import PlanSummary
    from core.requests import Request

APPROVE_ACTION = "rollback_approve"
REJECT_ACTION = "rollback_reject"
DECISION_BLOCK = "rollback_decision"

USAGE = {
    "status": "/rollback status [target]",
    "dry-run": "/rollback dry-run <version> [target]",
    "execute": "/rollback execute [target]",
    "backup": "/rollback backup [target]",
    "backups": "/rollback backups [target]",
    "verify": "/rollback verify [target]",
    "history": "/rollback history [target]",
    "restore": "/rollback restore <backup> [target]",
    "cancel": "/rollback cancel [RB-XXXXXX]",
    "report": "/rollback report [RB-XXXXXX]",
    "help": "/rollback help",
}
HELP_LINES = {
    "status": "migration table, current version, drift and failures, the server reached",
    "dry-run": "plan a rollback to <version>; it becomes this channel's current plan",
    "execute": "ask a second person to approve running the current plan",
    "backup": "take a verified backup now",
    "backups": "list backups and snapshots",
    "verify": "run the post-rollback checks",
    "history": "recent migration history",
    "restore": "restore a backup (needs a second person's approval)",
    "cancel": "cancel this channel's pending request",
    "report": "post the incident record of a request's thread as a file",
    "help": "this help",
}


def mention(user: str | None) -> str:
    return f"<@{user}>" if user else "someone"


def clock(ts: float | None) -> str:
    if ts is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def usage(verb: str) -> str:
    return f"Usage: `{USAGE[verb]}`"


# -- bad input (one line each) ----------------------------------------------------------------------


def unknown_verb(word: str, suggestion: str | None) -> str:
    hint = f" Did you mean `{suggestion}`? {usage(suggestion)}." if suggestion else " Try `/rollback help`."
    return f"Unknown command `{word}`.{hint}"


def unexpected_argument(verb: str, word: str) -> str:
    return f"`{verb}` does not take `{word}`. {usage(verb)}."


def malformed_version(word: str) -> str:
    return f"`{word}` is not a migration version (YYYY_MM_DD_HHMMSS, e.g. 2025_10_20_120001). {usage('dry-run')}."


def unknown_version(version: str, known: Sequence[str]) -> str:
    recent = ", ".join(f"`{v}`" for v in list(known)[-4:]) or "none"
    return f"Unknown version `{version}`: no such migration. Recent versions: {recent}. {usage('dry-run')}."


def unknown_target(word: str, targets: Sequence[str], suggestion: str | None) -> str:
    hint = f" Did you mean `{suggestion}`?" if suggestion else ""
    known = ", ".join(f"`{t}`" for t in targets) or "none configured"
    return f"Unknown target `{word}`.{hint} Targets: {known}."


def missing_argument(verb: str, what: str) -> str:
    return f"`{verb}` needs a {what}. {usage(verb)}."


def no_targets() -> str:
    return "No target is configured: set `<NAME>_DATABASE_URL` for the workers and list it in the config file."


def target_required(verb: str, targets: Sequence[str]) -> str:
    known = ", ".join(f"`{t}`" for t in targets)
    return f"Several targets are configured; say which one: `{USAGE[verb].split(' [')[0]} <target>` with one of {known}."


def help_text() -> str:
    lines = [f"`{USAGE[verb]}` - {HELP_LINES[verb]}" for verb in USAGE]
    return "*Roll back a migration, with a second person's approval:*\n" + "\n".join(lines)


# -- refusals ---------------------------------------------------------------------------------------

_REFUSALS = {
    "channel_not_allowed": "rollback-bot only takes requests in the incident channels",
    "requester_not_allowed": "you are not in the list of people who may ask for rollbacks",
    "self_approval": "you cannot approve your own request: a second person must approve",
    "not_approver": "you are not an approver",
    "wrong_channel": "approve in the channel where the request was made",
    "expired": "the request expired; ask again with `/rollback execute`",
    "already_decided": "the request was already decided",
    "not_allowed_to_cancel": "only the requester or an approver may cancel it",
}


def refusal(reason: Refusal, request: Request | None = None) -> str:
    text = _REFUSALS[reason.value]
    if reason.value == "already_decided" and request is not None:
        by = f" by {mention(request.decided_by)}" if request.decided_by else ""
        text = f"request {request.id} is already {request.status.value}{by}"
    return f"Refused: {text}."


def refusal_line(user: str, action: str, request_id: str, reason: Refusal, request: Request | None = None) -> str:
    """The thread's record of a refused click."""
    return f":no_entry: {mention(user)} tried to {action} {request_id}. {refusal(reason, request)}"


def unknown_request(request_id: str) -> str:
    return f"Request `{request_id}` does not exist (or is older than its retention)."


def no_worker(queue: str) -> str:
    return (
        f":warning: No worker is listening on queue `{queue}`, so nothing was queued. "
        "Start one (`python -m workers`), or use the break-glass path without Slack: "
        "`run-migrations --rollback --to <version> --dry-run` then without `--dry-run` (docs/bot.md)."
    )


def no_plan(target: str) -> str:
    return (
        f"No current dry-run for `{target}` in this channel (none, or it expired). "
        f"Run `/rollback dry-run <version> {target}` first, then `/rollback execute {target}`."
    )


def empty_plan(target: str) -> str:
    return f"The current dry-run for `{target}` reverts nothing. Run `/rollback dry-run <version> {target}` again."


def target_busy(active: Request, permalink: str | None) -> str:
    where = f" <{permalink}|thread>" if permalink else ""
    return (
        f"`{active.target}` already has {active.kind} request {active.id} ({active.status.value}) "
        f"started by {mention(active.requester)}{where}. One at a time: wait for it, or `/rollback cancel {active.id}`."
    )


def nothing_to_cancel() -> str:
    return "Nothing to cancel: this channel has no pending request."


def nothing_to_report() -> str:
    return "No request in this channel to report on. Use `/rollback report RB-XXXXXX`."


def queue_unreachable() -> str:
    return (
        ":warning: rollback-bot cannot reach Redis (its queue and request records), so nothing was recorded or "
        "queued. Break-glass path without Slack or Redis: `run-migrations --rollback --to <version> --dry-run`, "
        "then without `--dry-run` (docs/bot.md)."
    )


def not_queued(request_id: str) -> str:
    return f":x: {request_id} was approved but could not be queued for the workers; nothing ran. Ask again."


def internal_error() -> str:
    return "Something went wrong on rollback-bot's side; nothing was changed. The details are in the bot's log."


# -- root messages and thread lines ------------------------------------------------------------------


def read_root(verb: str, targets: Sequence[str], user: str) -> str:
    names = ", ".join(f"`{t}`" for t in targets)
    return f":mag: *{verb}* of {names} requested by {mention(user)}; the answer follows in this thread."


def dry_run_root(target: str, version: str, user: str) -> str:
    return (
        f":clipboard: *dry-run* of a rollback of `{target}` to `{version}` requested by {mention(user)}. "
        "The plan follows in this thread; it becomes this channel's current plan."
    )


def backup_root(target: str, user: str) -> str:
    return f":floppy_disk: *backup* of `{target}` requested by {mention(user)}; progress follows in this thread."


def backup_reason(user: str) -> str:
    return f"manual backup requested by {user}"


def _plan_lines(plan: PlanSummary) -> list[str]:
    lines = [f"Target `{plan.target}`: revert {len(plan.versions)} migration(s) to `{plan.to_version or 'nothing'}`:"]
    lines += [f"• `{v}`" for v in plan.versions]
    for warning in plan.warnings[:5]:
        lines.append(f":warning: {warning}")
    if plan.hash:
        lines.append(f"Plan hash `{plan.hash[:12]}`; the worker re-plans and refuses if the database changed.")
    return lines


def _decision_buttons(request: Request, confirm_text: str) -> dict[str, Any]:
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


def _request_header(request: Request) -> str:
    what = "rollback" if request.kind == "rollback" else f"restore of backup `{request.backup}`"
    return (
        f":rotating_light: *{request.id}*: {what} of `{request.target}` requested by {mention(request.requester)}. "
        f"Needs a second person's approval before {clock(request.expires_at)}."
    )


def request_text(request: Request, plan: PlanSummary | None = None) -> str:
    lines = [_request_header(request)]
    if plan is not None:
        lines += _plan_lines(plan)
    elif request.kind == "restore":
        lines.append(
            f"The workers take a fresh backup of `{request.target}` first, then restore `{request.backup}` into it."
        )
    return "\n".join(lines)


def request_blocks(request: Request, plan: PlanSummary | None = None) -> list[dict[str, Any]]:
    if request.kind == "rollback":
        confirm = (
            f"This runs: backup, maintenance on, rollback of `{request.target}` to `{request.to_version}`, "
            "verify, maintenance off."
        )
    else:
        confirm = f"This replaces the contents of `{request.target}` with backup `{request.backup}`."
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": request_text(request, plan)}},
        _decision_buttons(request, confirm),
    ]


_DECISION_ICONS = {"approved": ":white_check_mark:", "rejected": ":x:", "cancelled": ":heavy_minus_sign:",
                   "expired": ":hourglass:"}


def _ask_again(request: Request) -> str:
    return "run a new dry-run" if request.kind == "rollback" else "ask again with `/rollback restore`"


def decision_line(request: Request) -> str:
    by = f" by {mention(request.decided_by)}" if request.decided_by else ""
    if request.status.value == "expired":
        if request.approver:  # approved, but no worker started it within the bound
            return (
                f":hourglass: *Expired* at {clock(request.finished_at)}: approved{by} at {clock(request.decided_at)} "
                f"but no worker started it in time ({request.outcome}); nothing ran — {_ask_again(request)}."
            )
        return f":hourglass: *Expired* at {clock(request.expires_at)} — nobody approved; {_ask_again(request)}."
    if request.status.value not in _DECISION_ICONS:  # running / succeeded / failed: it was approved
        return f"{_DECISION_ICONS['approved']} *Approved*{by} at {clock(request.decided_at)}; now {request.status.value}."
    return f"{_DECISION_ICONS[request.status.value]} *{request.status.value.capitalize()}*{by} at {clock(request.decided_at)}."


def not_started_outcome(bound_seconds: float) -> str:
    return f"not started within {int(bound_seconds)} s of the approval"


def expired_thread_line(request: Request) -> str:
    return f"{request.id}: {decision_line(request)}"


def decided_blocks(request: Request, plan: PlanSummary | None = None) -> list[dict[str, Any]]:
    """The request message with its buttons replaced by the decision."""
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": request_text(request, plan)}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": decision_line(request)}]},
    ]


def approved_thread_line(request: Request) -> str:
    if request.kind == "rollback":
        steps = "backup → maintenance on → rollback → verify → maintenance off"
    else:
        steps = "fresh backup → restore → verify"
    return (
        f":white_check_mark: {request.id} approved by {mention(request.approver)} at {clock(request.decided_at)} "
        f"(requested by {mention(request.requester)}). Queued for the workers: {steps}."
    )


def decided_thread_line(request: Request) -> str:
    return f"{decision_line(request)} {request.id} will not run."


def report_requested(user: str, request_id: str) -> str:
    return f":memo: Incident report for {request_id} requested by {mention(user)}; the file follows in this thread."

