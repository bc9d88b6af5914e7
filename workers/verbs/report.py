"""The incident record (playbook Step 8): the request's thread turned into a markdown document.

Read the thread (conversations.replies), join it with the request record and the pipeline's state,
render markdown (`render`, pure), write it next to the backups and attach it to the thread
(files_upload_v2).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from slack_sdk import WebClient

from core import defaults
from core.jsontypes import JsonObject
from core.requests import Request
from workers import messages
from workers.messages import DONE
from workers.postgres.check_results import Check, VerifyReport
from workers.runtime.context import Context
from workers.runtime.escalation import dedup_key
from workers.runtime.progress import Progress

EMOJI = re.compile(r":[a-z_]+:\s*")
MENTION = re.compile(r"<@([UW][A-Z0-9_]+)(?:\|[^>]*)?>")
USER_ID = re.compile(r"[UW][A-Z0-9_]+")


REPORT_SQL_HEADING = "## SQL run"


REPORT_CHECKS_HEADING = "## Checks"


REPORT_TIMELINE_HEADING = "## Timeline"


REPORT_TIMELINE_COLUMNS = "| time | +elapsed | who | message |"


REPORT_THREADS_HEADING = "## Threads of this incident"
MAINTENANCE_ON_DONE = re.compile(r"\*Maintenance on\* finished")
MAINTENANCE_OFF_DONE = re.compile(r"\*Maintenance off\* finished")
MAINTENANCE_SKIPPED = re.compile(r"\*Maintenance (on|off)\* skipped")
WHAT_RAN = re.compile(r"(terminated|repaired|restored|rolled back to)", re.IGNORECASE)
TO_FILL_IN = "_To be filled in by the people who handled the incident._"


def _thread_label(thread: Sequence[Mapping[str, Any]]) -> str:
    """A thread named by its root's first line (emoji codes and mentions left as they are: short)."""
    if not thread:
        return "thread"
    first = EMOJI.sub("", str(thread[0].get("text") or "").splitlines()[0] if thread[0].get("text") else "")
    first = first.replace("|", "/").strip()
    return first if len(first) <= 80 else first[:79] + "…"


def impact_lines(messages_: Sequence[Mapping[str, Any]], rollback: Mapping[str, Any]) -> list[str]:
    """Downtime from maintenance on/off (as the threads recorded them) and the rows the run changed."""
    on = next((float(m["ts"]) for m in messages_ if MAINTENANCE_ON_DONE.search(str(m.get("text") or ""))), None)
    off = next((float(m["ts"]) for m in messages_
                if MAINTENANCE_OFF_DONE.search(str(m.get("text") or "")) and (on is None or float(m["ts"]) >= on)), None)
    if on is not None and off is not None:
        downtime = f"maintenance mode for {messages.seconds(off - on)} ({_when(on)} to {_when(off)})"
    elif on is not None:
        downtime = f"maintenance mode on since {_when(on)}; not switched off within these threads"
    elif any(MAINTENANCE_SKIPPED.search(str(m.get("text") or "")) for m in messages_):
        downtime = "no maintenance window (no maintenance hooks configured): the app stayed up"
    else:
        downtime = "no maintenance window recorded"
    counts = [s.get("rowcount") for s in rollback.get("statements") or () if isinstance(s.get("rowcount"), int)]
    rows = f"{sum(counts)} row(s) changed by the statements run" if counts else "no rows counted"
    return [f"- Downtime: {downtime}", f"- Rows affected: {rows}"]


def post_mortem(messages_: Sequence[Mapping[str, Any]], rollback: Mapping[str, Any],
                names: Mapping[str, str]) -> list[str]:
    """The post-mortem sections: impact, what was run (besides the SQL above), and what people fill in."""
    lines = ["", "## Impact", "", *impact_lines(messages_, rollback), "", "## What was run", ""]
    ran = [_plain(str(m.get("text") or ""), names).replace("\n", " ") for m in messages_
           if WHAT_RAN.search(str(m.get("text") or "")) and str(m.get("text") or "").startswith((":white_check_mark:",
                                                                                                   ":x:"))]
    lines += [f"- {text[:300]}" for text in ran] or ["- nothing changed the target in these threads"]
    lines += ["", "## Root cause", "", TO_FILL_IN, "", "## Action items", "", f"- [ ] {TO_FILL_IN}"]
    return lines


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
    return f"{backup.get('path')} ({messages.human_bytes(backup.get('size_bytes'))}, sha256 {backup.get('sha256')}, {verified})"


def report_paged(dedup_key: str | None) -> str:
    return f"yes (PagerDuty dedup_key {dedup_key})" if dedup_key else "no"


def report_check(check: Check) -> str:
    mark = "skipped" if check.skipped else "pass" if check.passed else "FAIL"
    text = check.detail.removeprefix(messages.check_skipped(""))  # the mark already says skipped
    return f"- **{mark}** {messages.check_label(check)}" + (f": {text}" if text else "")


def report_generated(by: str, when: str) -> str:
    return f"_Generated by rollback-bot for {by} at {when}._"


def report_file_title(request_id: str | None) -> str:
    return f"Incident record {request_id or ''}".strip()


def read_thread(progress: Progress) -> list[JsonObject]:
    """Every message of the thread, oldest first (paginated)."""
    assert progress.client is not None and progress.channel and progress.thread_ts
    found: list[JsonObject] = []
    cursor: str | None = None
    while True:
        response = progress.client.conversations_replies(
            channel=progress.channel, ts=progress.thread_ts, cursor=cursor, limit=200)
        found += list(response.get("messages") or [])
        cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
        if not cursor:
            return found


def _when(ts: str | float | None) -> str:
    if not ts:
        return "?"
    return datetime.fromtimestamp(float(ts), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _plain(text: str, names: Mapping[str, str]) -> str:
    """Slack text for a markdown table cell: no emoji codes, `<@U…>` mentions as `@name`."""
    text = MENTION.sub(lambda m: "@" + names.get(m.group(1), m.group(1)), text)
    return EMOJI.sub("", text).strip()


def user_ids(thread: Sequence[Mapping[str, Any]], request: Mapping[str, Any] | None, *more: str | None) -> list[str]:
    """Every Slack user id the report names: authors, mentions, requester and approver."""
    found: dict[str, None] = {}
    for message in thread:
        if message.get("user"):
            found[str(message["user"])] = None
        for match in MENTION.finditer(str(message.get("text") or "")):
            found[match.group(1)] = None
    for value in (*(((request or {}).get(k)) for k in ("requester", "approver")), *more):
        if value and USER_ID.fullmatch(str(value)):
            found[str(value)] = None
    return list(found)


def resolve_names(client: WebClient, ids: Sequence[str]) -> dict[str, str]:
    """Slack user id -> display name through `users.info`, once per id; an id that cannot be
    resolved (unknown, bot, API trouble) keeps standing for itself."""
    names: dict[str, str] = {}
    for user_id in ids:
        if user_id in names:
            continue
        try:
            user = client.users_info(user=user_id).get("user") or {}
        except Exception:  # the report is still worth writing with the bare id
            names[user_id] = user_id
            continue
        profile = user.get("profile") or {}
        names[user_id] = str(profile.get("display_name") or user.get("name") or user.get("real_name") or user_id)
    return names


def _person(user_id: Any, names: Mapping[str, str]) -> str | None:
    """`alice (U_ALICE)`: the name to read, the id to search for."""
    if not user_id:
        return None
    name = names.get(str(user_id), str(user_id))
    return name if name == str(user_id) else f"{name} ({user_id})"


def render(thread: Sequence[Mapping[str, Any]], request: Mapping[str, Any] | None,
           state: Mapping[str, Any], generated_by: str, names: Mapping[str, str] | None = None,
           others: Sequence[tuple[str, Sequence[Mapping[str, Any]]]] = ()) -> str:
    """The incident record as markdown. Pure: data in, text out (`names`: Slack id -> name; `others`:
    the incident's other threads, each with its label, merged into one timeline)."""
    names = names or {}
    req = request or {}
    lines = [report_title(req.get("id") or report_thread(thread[0].get("ts") if thread else None)), ""]
    backup = ((state.get("backup") or {}).get("backup")) or {}
    rollback = ((state.get("rollback") or {}).get("rollback")) or {}
    verify = ((state.get("verify") or {}).get("verify")) or {}
    started, finished = req.get("started_at"), req.get("finished_at")
    summary = {
        "target": req.get("target"),
        "kind": req.get("kind"),
        "requester": _person(req.get("requester"), names),
        "approver": _person(req.get("approver"), names),
        "versions": ", ".join(req.get("versions") or []) or None,
        "to_version": req.get("to_version"),
        "plan_hash": req.get("plan_hash"),
        "status": req.get("status"),
        "outcome": req.get("outcome"),
        "started": _when(started) if started else None,
        "finished": _when(finished) if finished else None,
        "duration": messages.seconds(float(finished) - float(started)) if started and finished else None,
        "backup": report_backup(backup) if backup else None,
        "paged": report_paged(dedup_key(str(req.get("id"))) if state.get("paged") else None),
        "failed_step": state.get("failed_step"),
    }
    lines += ["| | |", "|---|---|"]
    lines += [f"| {REPORT_FIELDS[key]} | {value} |" for key, value in summary.items() if value not in (None, "")]
    if rollback.get("statements"):
        lines += ["", REPORT_SQL_HEADING, "", "```sql"]
        lines += [f"{s.get('sql', '').strip().rstrip(';')};  -- {s.get('tag', '')}" for s in rollback["statements"]]
        lines += ["```"]
    if verify.get("checks"):
        lines += ["", REPORT_CHECKS_HEADING, ""]
        lines += [report_check(check) for check in VerifyReport.from_dict(verify).checks]
    labelled = [("", m) for m in thread]
    if others:
        main = _thread_label(thread)
        labelled = sorted([(main, m) for m in thread] + [(label, m) for label, msgs in others for m in msgs],
                          key=lambda pair: float(pair[1]["ts"]))
        lines += ["", REPORT_THREADS_HEADING, ""]
        lines += [f"- {_when(msgs[0]['ts'])}: {_plain(label, names)}" for label, msgs in
                  sorted([(main, thread), *others], key=lambda pair: float(pair[1][0]["ts"])) if msgs]
    lines += ["", REPORT_TIMELINE_HEADING, "", REPORT_TIMELINE_COLUMNS, "|---|---|---|---|"]
    first = float(labelled[0][1]["ts"]) if labelled else 0.0
    for label, message in labelled:
        text = _plain(str(message.get("text") or ""), names).replace("\n", " ").replace("|", "\\|")
        if len(text) > 400:
            text = text[:400] + "…"
        if label:  # which thread, in a timeline merged from several
            text = f"[{_plain(label, names)}] {text}"
        elapsed = messages.seconds(float(message["ts"]) - first)
        author = message.get("user")
        who = names.get(str(author), str(author)) if author else message.get("bot_id") or "?"
        lines.append(f"| {_when(message['ts'])} | {elapsed} | {who} | {text} |")
    lines += post_mortem([m for _, m in labelled], rollback, names)
    generated = report_generated(_person(generated_by, names) or generated_by,
                                          _when(datetime.now(UTC).timestamp()))
    lines += ["", generated, ""]
    return "\n".join(lines)


def incident_threads(ctx: Context, progress: Progress, request: Request) -> list[tuple[str, list[JsonObject]]]:
    """The incident's other threads: the bot's root messages in the channel about the request's target
    (any, with one target), from the end of the target's previous request (at most
    INCIDENT_LOOKBACK_SECONDS before this one) until now: the assessment, the dry run, recoveries, diffs."""
    assert progress.client is not None and progress.channel
    start = request.created_at - defaults.INCIDENT_LOOKBACK_SECONDS
    for earlier in ctx.store().for_channel(progress.channel, limit=200):
        if (earlier.id != request.id and earlier.target == request.target and earlier.finished_at
                and earlier.created_at < request.created_at):
            start = max(start, earlier.finished_at)
    bot_user = progress.client.auth_test().get("user_id")
    about = re.compile(rf"(?<![\w-]){re.escape(request.target)}(?![\w-])")
    single = len(ctx.settings.targets) <= 1
    roots = []
    cursor: str | None = None
    while True:
        response = progress.client.conversations_history(channel=progress.channel, oldest=f"{start:.6f}",
                                                         cursor=cursor, limit=200)
        roots += [m for m in response.get("messages") or []
                  if m.get("thread_ts", m["ts"]) == m["ts"] and m["ts"] != progress.thread_ts
                  and float(m["ts"]) >= start
                  and m.get("user") == bot_user and (single or about.search(str(m.get("text") or "")))]
        cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
        if not cursor:
            break
    found = []
    for root in sorted(roots, key=lambda m: float(m["ts"])):
        replies = read_thread(Progress(progress.client, progress.channel, str(root["ts"]), lambda _: None))
        found.append((_thread_label(replies or [root]), replies or [root]))
    return found


def write_report(ctx: Context, progress: Progress, channel: str, thread_ts: str, requester: str) -> JsonObject:
    thread = read_thread(progress)
    request = next((r for r in ctx.store().for_channel(channel, limit=200) if r.thread_ts == thread_ts), None)
    state = ctx.load_state(request.id) if request else {}
    request_dict = request.to_dict() if request else None
    assert progress.client is not None
    others = incident_threads(ctx, progress, request) if request else []
    every = [*thread, *(m for _, msgs in others for m in msgs)]
    names = resolve_names(progress.client, user_ids(every, request_dict, requester))  # one lookup per id
    text = render(thread, request_dict, state, requester, names, others)
    name = f"incident-{request.id if request else thread_ts.replace('.', '-')}.md"
    folder = Path(ctx.settings.backup_dir) / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    progress.client.files_upload_v2(channel=channel, thread_ts=thread_ts, content=text, filename=name,
                                    title=report_file_title(request.id if request else None))
    progress.post(report_uploaded(str(path)))
    return {"path": str(path), "request_id": request.id if request else None, "messages": len(every),
            "threads": 1 + len(others)}


def report_uploaded(path: str) -> str:
    return f"{DONE} Incident record written to `{path}` and attached to this thread."
