"""Thread lines around the rollback: assessment and terminate (Step 1), diff (scenario 3), repair
(scenario 1) and the watch window (Step 7).

Functions take data and return text (Slack mrkdwn). Nothing here does I/O.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from workers.messages import DONE, FAILED, PAGE, SKIPPED, STARTED, WARNING, contacts_mention

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


def session_still_there(pid: object) -> str:
    return f"session pid {pid} is still there after pg_terminate_backend"


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


def repair_not_kept(version: str, expected: str, found: str) -> str:
    return f"migration {version} is {found} after the repair, whose plan said {expected}"


# --- the watch window (workers/watching.py) --------------------------------------------------------

WATCH_WORDS = {"health": "health", "smoke": "smoke test", "error_rate": "error rate", "connections": "connections"}


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


def watch_started(request_id: str, target: str, window: float, interval: float) -> str:
    return (f":eyes: {request_id}: watching *{target}* for {_minutes(window)} (every {interval:g} s): health, "
            "smoke test, connections, error rate. One line per change; `/rollback watch stop` ends it early, and so does "
            "the next request on the target when it starts.")


def watch_change(change: Any) -> str:
    icon = FAILED if change.regression else (DONE if change.after in ("ok",) else WARNING)
    return f"{icon} watch: {WATCH_WORDS.get(change.signal.value, change.signal.value)} {change.before} → {change.after}"


def watch_page_summary(target: str, request_id: str, what: str) -> str:
    return f"rollback-bot: {target} regressed after {request_id}: {what}"


def watch_paged(request_id: str, what: str, ok: bool, detail: str | None) -> str:
    if ok:
        return f"{PAGE} {request_id}: paged on-call (same incident as the request): {what}"
    return f"{WARNING} {request_id}: could not page on-call ({detail}): {what}"


def _unwatched(seconds_: float) -> str:
    return f" ({seconds_:.0f} s unwatched)" if seconds_ >= 1 else ""


def watch_outcome(clean: bool, failing: Sequence[str], stopped_by: str | None, unwatched_s: float = 0.0) -> str:
    how = f"watch stopped early by {stopped_by}" if stopped_by else "watch window ended"
    state = ", clean" if clean else f" with {', '.join(failing)} failing"
    return f"{how}{state}{_unwatched(unwatched_s)}"


def watch_ended(request_id: str, target: str, clean: bool, failing: Sequence[str], stopped_by: str | None, *,
                resolved: bool, unwatched_s: float = 0.0) -> str:
    how = f"stopped early by <@{stopped_by}>" if stopped_by else "ended"
    gaps = f" Nobody looked for {unwatched_s:.0f} s of it (see above)." if unwatched_s >= 1 else ""
    if clean:
        page = " The page is resolved." if resolved else ""
        return f"{DONE} {request_id}: the watch of *{target}* {how}, clean; the request is done.{page}{gaps}"
    return (f"{WARNING} {request_id}: the watch of *{target}* {how} with {', '.join(failing)} failing; the page "
            f"stays open for on-call.{gaps}")


def _utc_clock(unix: float) -> str:
    return time.strftime("%H:%M:%S UTC", time.gmtime(unix))


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


def watch_gap(unseen_s: float, since: float) -> str:
    return (f"{WARNING} watch: no look for {unseen_s:.0f} s (since {_utc_clock(since)}): no worker ran the watch in "
            "that time; watching on")


def watch_look_failed(n: int, error: str, interval: float) -> str:
    return f"{WARNING} watch: look {n + 1} did not finish ({error}); watching on, next look in {interval:g} s"


def looks_failed(count: int, error: str) -> str:
    return f"{count} looks in a row did not finish (last: {error})"


def watch_seen(last: Mapping[str, Any], failing: Sequence[str]) -> str:
    """What the last look saw, for the line that says the watch stopped before its end."""
    if not last:
        return "nothing (no look finished)"
    seen = _sample_text(last)
    return f"{seen}; failing: {', '.join(failing)}" if failing else seen


def watch_interrupted_summary(target: str, request_id: str, reason: str) -> str:
    return f"rollback-bot: the watch of {target} after {request_id} was interrupted, nobody watches it: {reason}"[:1000]


def watch_interrupted(request_id: str, target: str, reason: str, seen: str, seen_at: float, contacts: Sequence[str],
                      paged: bool, page_detail: str) -> str:
    page = "PagerDuty paged" if paged else f"PagerDuty NOT paged: {page_detail}"
    when = f" at {_utc_clock(seen_at)}" if seen_at else ""
    return (f"{PAGE} {request_id}: watch interrupted: {reason}. Last seen{when}: {seen}. Nobody watches the rest of "
            f"the window on *{target}*; the request is done. {contacts_mention(contacts)} — "
            f"{page}.")


def watch_interrupted_outcome(reason: str) -> str:
    return f"watch interrupted: {reason}"


def _sample_text(sample: Mapping[str, Any]) -> str:
    health = "n/a" if sample.get("health_ok") is None else ("ok" if sample["health_ok"] else "failing")
    if sample.get("health_ms") is not None and sample.get("health_ok") is not None:
        health += f" ({sample['health_ms']:.0f} ms)"
    smoke = "n/a" if sample.get("smoke_ok") is None else ("ok" if sample["smoke_ok"] else "failing")
    connections = sample.get("connections")
    return f"health {health}, smoke test {smoke}, connections {connections if connections is not None else 'n/a'}"


def watch_baseline(sample: Mapping[str, Any]) -> str:
    return f":eyes: watch, first look: {_sample_text(sample)}"
