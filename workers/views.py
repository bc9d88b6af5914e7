"""The read-only answers the workers post into a thread: status, dry run, backups, history.

Functions take data and return text (Slack mrkdwn). Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from workers.messages import (
    DONE,
    FORMAT_NAMES,
    STARTED,
    WARNING,
    history_line,
    human_bytes,
    seconds,
    statements_lines,
)

if TYPE_CHECKING:  # types only: the modules that build these results import this one
    from workers.engine.reports import DryRunReport
    from workers.restore import RestoreResult

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
            + (f"ours, sha256 `{str(b.get('sha256') or '?')[:16]}`" if b.get("ours") else
               f"not ours ({dump_format(b.get('format'))}, made by hand: no manifest; read whole when restored)")
        )
    for s in snapshots[:10]:
        lines.append(f"DigitalOcean snapshot `{s.get('name')}` ({s.get('created_at')})")
    for d in managed[:10]:
        lines.append(f"Managed database backup {d.get('created_at')} ({d.get('size_gigabytes')} GB)")
    lines += [f"{WARNING} {n}" for n in notes]
    return "\n".join(lines)


def dump_format(name: Any) -> str:
    """A backup's format as people say it (workers/dumpfiles.py FORMAT_NAMES)."""
    return FORMAT_NAMES.get(str(name), str(name or "unknown format"))


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
