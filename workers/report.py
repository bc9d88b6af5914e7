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

from workers import messages
from workers.checks import VerifyReport
from workers.context import Context
from workers.paging import dedup_key
from workers.progress import Progress

EMOJI = re.compile(r":[a-z_]+:\s*")
MENTION = re.compile(r"<@([UW][A-Z0-9_]+)(?:\|[^>]*)?>")
USER_ID = re.compile(r"[UW][A-Z0-9_]+")


def read_thread(progress: Progress) -> list[dict[str, Any]]:
    """Every message of the thread, oldest first (paginated)."""
    assert progress.client is not None and progress.channel and progress.thread_ts
    found: list[dict[str, Any]] = []
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
           state: Mapping[str, Any], generated_by: str, names: Mapping[str, str] | None = None) -> str:
    """The incident record as markdown. Pure: data in, text out (`names`: Slack id -> name)."""
    names = names or {}
    req = request or {}
    lines = [messages.report_title(req.get("id") or messages.report_thread(thread[0].get("ts") if thread else None)), ""]
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
        "backup": messages.report_backup(backup) if backup else None,
        "paged": messages.report_paged(dedup_key(str(req.get("id"))) if state.get("paged") else None),
        "failed_step": state.get("failed_step"),
    }
    lines += ["| | |", "|---|---|"]
    lines += [f"| {messages.REPORT_FIELDS[key]} | {value} |" for key, value in summary.items() if value not in (None, "")]
    if rollback.get("statements"):
        lines += ["", messages.REPORT_SQL_HEADING, "", "```sql"]
        lines += [f"{s.get('sql', '').strip().rstrip(';')};  -- {s.get('tag', '')}" for s in rollback["statements"]]
        lines += ["```"]
    if verify.get("checks"):
        lines += ["", messages.REPORT_CHECKS_HEADING, ""]
        lines += [messages.report_check(check) for check in VerifyReport.from_dict(verify).checks]
    lines += ["", messages.REPORT_TIMELINE_HEADING, "", messages.REPORT_TIMELINE_COLUMNS, "|---|---|---|---|"]
    first = float(thread[0]["ts"]) if thread else 0.0
    for message in thread:
        text = _plain(str(message.get("text") or ""), names).replace("\n", " ").replace("|", "\\|")
        if len(text) > 400:
            text = text[:400] + "…"
        elapsed = messages.seconds(float(message["ts"]) - first)
        author = message.get("user")
        who = names.get(str(author), str(author)) if author else message.get("bot_id") or "?"
        lines.append(f"| {_when(message['ts'])} | {elapsed} | {who} | {text} |")
    generated = messages.report_generated(_person(generated_by, names) or generated_by,
                                          _when(datetime.now(UTC).timestamp()))
    lines += ["", generated, ""]
    return "\n".join(lines)


def write_report(ctx: Context, progress: Progress, channel: str, thread_ts: str, requester: str) -> dict[str, Any]:
    thread = read_thread(progress)
    request = next((r for r in ctx.store().for_channel(channel, limit=200) if r.thread_ts == thread_ts), None)
    state = ctx.load_state(request.id) if request else {}
    request_dict = request.to_dict() if request else None
    assert progress.client is not None
    names = resolve_names(progress.client, user_ids(thread, request_dict, requester))  # one lookup per id
    text = render(thread, request_dict, state, requester, names)
    name = f"incident-{request.id if request else thread_ts.replace('.', '-')}.md"
    folder = Path(ctx.settings.backup_dir) / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    progress.client.files_upload_v2(channel=channel, thread_ts=thread_ts, content=text, filename=name,
                                    title=messages.report_file_title(request.id if request else None))
    progress.post(messages.report_uploaded(str(path)))
    return {"path": str(path), "request_id": request.id if request else None, "messages": len(thread)}
