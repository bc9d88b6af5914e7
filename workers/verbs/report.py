"""The incident record (playbook Step 8): the request's thread turned into a markdown document.

Read the thread (conversations.replies), join it with the request record and the pipeline's state,
render markdown (`render`, pure), write it next to the backups and attach it to the thread
(files_upload_v2).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from slack_sdk import WebClient
from slack_sdk.web import SlackResponse

from core import defaults
from core.jsontypes import JsonObject
from core.requests import Request
from workers import messages
from workers.engine.results import RunReport
from workers.messages import DONE
from workers.postgres.check_results import Check
from workers.postgres.pg_dump import BackupResult
from workers.runtime.context import Context
from workers.runtime.escalation import dedup_key
from workers.runtime.pipeline_state import PipelineState
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


@dataclass(frozen=True)
class ThreadMessage:
    """One message of a Slack thread, as conversations.replies / conversations.history answer it."""

    ts: str
    text: str = ""
    user: str | None = None
    bot_id: str | None = None
    thread_ts: str | None = None

    @property
    def at(self) -> float:
        return float(self.ts)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ThreadMessage:
        """Read Slack's answer (the one place its JSON is read here)."""
        def optional(name: str) -> Any:
            return data.get(name) or None
        return cls(ts=str(data["ts"]), text=str(optional("text") or ""), user=optional("user"),
                   bot_id=optional("bot_id"), thread_ts=optional("thread_ts"))


@dataclass(frozen=True)
class MessagePage:
    """One page of Slack's `conversations.replies` or `conversations.history` answer."""

    messages: list[ThreadMessage]
    next_cursor: str | None = None  # None: the last page

    @classmethod
    def from_dict(cls, data: SlackResponse) -> MessagePage:
        return cls(messages=[ThreadMessage.from_dict(m) for m in data.get("messages") or []],
                   next_cursor=(data.get("response_metadata") or {}).get("next_cursor") or None)


def _paged(fetch: Callable[[str | None], SlackResponse]) -> Iterator[ThreadMessage]:
    """Every message of a paginated Slack listing; `fetch` asks for the page at a cursor."""
    cursor: str | None = None
    while True:
        page = MessagePage.from_dict(fetch(cursor))
        yield from page.messages
        cursor = page.next_cursor
        if not cursor:
            return


def _thread_label(thread: Sequence[ThreadMessage]) -> str:
    """A thread named by its root's first line (emoji codes and mentions left as they are: short)."""
    if not thread:
        return "thread"
    first = EMOJI.sub("", thread[0].text.splitlines()[0] if thread[0].text else "")
    first = first.replace("|", "/").strip()
    return first if len(first) <= 80 else first[:79] + "…"


def impact_lines(messages_: Sequence[ThreadMessage], rollback: RunReport | None) -> list[str]:
    """Downtime from maintenance on/off (as the threads recorded them) and the rows the run changed."""
    on = next((m.at for m in messages_ if MAINTENANCE_ON_DONE.search(m.text)), None)
    off = next((m.at for m in messages_ if MAINTENANCE_OFF_DONE.search(m.text) and (on is None or m.at >= on)), None)
    if on is not None and off is not None:
        downtime = f"maintenance mode for {messages.seconds(off - on)} ({_when(on)} to {_when(off)})"
    elif on is not None:
        downtime = f"maintenance mode on since {_when(on)}; not switched off within these threads"
    elif any(MAINTENANCE_SKIPPED.search(m.text) for m in messages_):
        downtime = "no maintenance window (no maintenance hooks configured): the app stayed up"
    else:
        downtime = "no maintenance window recorded"
    counts = [s.rowcount for s in (rollback.statements if rollback else ()) if isinstance(s.rowcount, int)]
    rows = f"{sum(counts)} row(s) changed by the statements run" if counts else "no rows counted"
    return [f"- Downtime: {downtime}", f"- Rows affected: {rows}"]


def post_mortem(messages_: Sequence[ThreadMessage], rollback: RunReport | None,
                names: Mapping[str, str]) -> list[str]:
    """The post-mortem sections: impact, what was run (besides the SQL above), and what people fill in."""
    lines = ["", "## Impact", "", *impact_lines(messages_, rollback), "", "## What was run", ""]
    ran = [_plain(m.text, names).replace("\n", " ") for m in messages_
           if WHAT_RAN.search(m.text) and m.text.startswith((":white_check_mark:", ":x:"))]
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


def report_backup(backup: BackupResult) -> str:
    verified = "verified" if backup.verified else "NOT verified"
    return f"{backup.path} ({messages.human_bytes(backup.size_bytes)}, sha256 {backup.sha256}, {verified})"


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


def read_thread(progress: Progress) -> list[ThreadMessage]:
    """Every message of the thread, oldest first (paginated)."""
    client, channel, thread_ts = progress.client, progress.channel, progress.thread_ts
    assert client is not None and channel and thread_ts
    return list(_paged(lambda cursor: client.conversations_replies(
        channel=channel, ts=thread_ts, cursor=cursor, limit=200)))


def _when(ts: str | float | None) -> str:
    if not ts:
        return "?"
    return datetime.fromtimestamp(float(ts), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _plain(text: str, names: Mapping[str, str]) -> str:
    """Slack text for a markdown table cell: no emoji codes, `<@U…>` mentions as `@name`."""
    text = MENTION.sub(lambda m: "@" + _name(m.group(1), names), text)
    return EMOJI.sub("", text).strip()


def user_ids(thread: Sequence[ThreadMessage], *people: str | None) -> list[str]:
    """Every Slack user id the report names: authors, mentions, and `people` (requester, approver, reader)."""
    found: dict[str, None] = {}
    for message in thread:
        if message.user:
            found[message.user] = None
        for match in MENTION.finditer(message.text):
            found[match.group(1)] = None
    for value in people:
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


def _name(user_id: str, names: Mapping[str, str]) -> str:
    """A user's display name; an id never resolved stands for itself."""
    return names.get(user_id, user_id)


def _person(user_id: Any, names: Mapping[str, str]) -> str | None:
    """`alice (U_ALICE)`: the name to read, the id to search for."""
    if not user_id:
        return None
    name = _name(str(user_id), names)
    return name if name == str(user_id) else f"{name} ({user_id})"


def render(thread: Sequence[ThreadMessage], request: Request | None, state: PipelineState, generated_by: str,
           names: Mapping[str, str] | None = None, others: Sequence[tuple[str, Sequence[ThreadMessage]]] = ()) -> str:
    """The incident record as markdown. Pure: data in, text out (`names`: Slack id -> name; `others`:
    the incident's other threads, each with its label, merged into one timeline)."""
    names = names or {}
    lines = [report_title(request.id if request else report_thread(thread[0].ts if thread else None)), ""]
    rollback = state.rollback.run if state.rollback else None
    verify = state.verify.report if state.verify else None
    lines += ["| | |", "|---|---|"]
    lines += [f"| {REPORT_FIELDS[key]} | {value} |" for key, value in _summary(request, state, names).items()
              if value not in (None, "")]
    if rollback and rollback.statements:
        lines += ["", REPORT_SQL_HEADING, "", "```sql"]
        lines += [f"{s.sql.strip().rstrip(';')};  -- {s.tag}" for s in rollback.statements]
        lines += ["```"]
    if verify and verify.checks:
        lines += ["", REPORT_CHECKS_HEADING, ""]
        lines += [report_check(check) for check in verify.checks]
    labelled = [("", m) for m in thread]
    if others:
        main = _thread_label(thread)
        labelled = sorted([(main, m) for m in thread] + [(label, m) for label, msgs in others for m in msgs],
                          key=lambda pair: pair[1].at)
        lines += ["", REPORT_THREADS_HEADING, ""]
        lines += [f"- {_when(msgs[0].ts)}: {_plain(label, names)}" for label, msgs in
                  sorted([(main, thread), *others], key=lambda pair: pair[1][0].at) if msgs]
    lines += ["", REPORT_TIMELINE_HEADING, "", REPORT_TIMELINE_COLUMNS, "|---|---|---|---|"]
    first = labelled[0][1].at if labelled else 0.0
    for label, message in labelled:
        text = _plain(message.text, names).replace("\n", " ").replace("|", "\\|")
        if len(text) > 400:
            text = text[:400] + "…"
        if label:  # which thread, in a timeline merged from several
            text = f"[{_plain(label, names)}] {text}"
        elapsed = messages.seconds(message.at - first)
        who = _name(message.user, names) if message.user else message.bot_id or "?"
        lines.append(f"| {_when(message.ts)} | {elapsed} | {who} | {text} |")
    lines += post_mortem([m for _, m in labelled], rollback, names)
    generated = report_generated(_person(generated_by, names) or generated_by,
                                          _when(datetime.now(UTC).timestamp()))
    lines += ["", generated, ""]
    return "\n".join(lines)


def _summary(request: Request | None, state: PipelineState, names: Mapping[str, str]) -> dict[str, Any]:
    """The record's header rows by REPORT_FIELDS key (a None or empty value is left out)."""
    backup = state.backup.backup if state.backup else None
    paged = report_paged(dedup_key(str(request.id if request else None)) if state.paged else None)
    rows: dict[str, Any] = {"backup": report_backup(backup) if backup else None, "paged": paged,
                            "failed_step": state.failed_step}
    if request is None:
        return rows
    started, finished = request.started_at, request.finished_at
    return {
        "target": request.target,
        "kind": request.kind.value,
        "requester": _person(request.requester, names),
        "approver": _person(request.approver, names),
        "versions": ", ".join(request.versions) or None,
        "to_version": request.to_version,
        "plan_hash": request.plan_hash,
        "status": request.status.value,
        "outcome": request.outcome,
        "started": _when(started) if started else None,
        "finished": _when(finished) if finished else None,
        "duration": messages.seconds(finished - started) if started and finished else None,
        **rows,
    }


def incident_threads(ctx: Context, progress: Progress, request: Request) -> list[tuple[str, list[ThreadMessage]]]:
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
    client, channel = progress.client, progress.channel
    history = _paged(lambda cursor: client.conversations_history(channel=channel, oldest=f"{start:.6f}",
                                                                 cursor=cursor, limit=200))
    roots = [m for m in history
             if (m.thread_ts or m.ts) == m.ts and m.ts != progress.thread_ts and m.at >= start
             and m.user == bot_user and (single or about.search(m.text))]
    found = []
    for root in sorted(roots, key=lambda m: m.at):
        replies = read_thread(Progress(progress.client, progress.channel, root.ts, lambda _: None))
        found.append((_thread_label(replies or [root]), replies or [root]))
    return found


def write_report(ctx: Context, progress: Progress, channel: str, thread_ts: str, requester: str) -> JsonObject:
    thread = read_thread(progress)
    request = next((r for r in ctx.store().for_channel(channel, limit=200) if r.thread_ts == thread_ts), None)
    state = ctx.load_state(request.id) if request else PipelineState()
    assert progress.client is not None
    others = incident_threads(ctx, progress, request) if request else []
    every = [*thread, *(m for _, msgs in others for m in msgs)]
    names = resolve_names(progress.client, user_ids(every, request.requester if request else None,
                                                           request.approver if request else None, requester))  # one lookup per id
    text = render(thread, request, state, requester, names, others)
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
