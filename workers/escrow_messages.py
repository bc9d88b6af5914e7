"""Thread lines of the data-loss escrow and undo.

Functions take data and return text (Slack mrkdwn). Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from workers.messages import DONE, human_bytes, seconds

if TYPE_CHECKING:  # types only: the modules that build these results import this one
    from core.config import Target

# --- data-loss escrow and undo ----------------------------------------------------------------------


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


def escrow_figures(escrow: Mapping[str, Any] | None) -> dict[str, Any]:
    if not escrow:
        return {"escrow": "off (backup policy full)"}
    return {"escrow": f"{len(escrow['held'])} table(s), {escrow['rows']} row(s), {human_bytes(escrow['bytes'])}",
            "escrow id": f"`{escrow['request_id']}`",
            "not escrowed": len(escrow["not_escrowed"]) or None}


def escrow_list(target: str, held: Sequence[Mapping[str, Any]], retention_days: float,
                purged: Sequence[tuple[str, int]]) -> str:
    lines = [f"*Escrow* on *{target}* (kept {retention_days:g} days):"]
    lines += [f"• purged {r} ({n} table(s)): older than the retention period" for r, n in purged]
    if not held:
        lines.append("nothing held")
    for h in held:
        state = " — undone" if h.get("undone_at") else (
            f" — {len(h['not_escrowed'])} statement(s) not escrowed" if h["not_escrowed"] else "")
        lines.append(f"• `{h['request_id']}`: {', '.join(h['tables']) or 'no table'}; {h['rows']} row(s), "
                     f"{human_bytes(h['bytes'])}, {h['age']} old{state}")
    return "\n".join(lines)


def undo_of(undoes: str | None, versions: Sequence[str]) -> str:
    return f"of rollback {undoes}: re-apply {', '.join(versions)} and put the escrow back"


def undo_figures(report: Mapping[str, Any]) -> dict[str, Any]:
    return {"re-applied": ", ".join(report.get("versions") or []) or "nothing",
            "put back": "; ".join(f"{r['relation']} ({r['kind']}) {r['rows']} row(s)"
                                  for r in report.get("restored") or []) or "nothing",
            "already done": "yes" if report.get("already_done") else None}


def undo_succeeded(request_id: str, target: str, undoes: str | None, requester: str, approver: str | None,
                   duration_s: float | None) -> str:
    by = f"requested by <@{requester}>" + (f", approved by <@{approver}>" if approver else "")
    return (f"{DONE} Request {request_id}: rollback {undoes} of *{target}* undone and verified in "
            f"{seconds(duration_s)} ({by}). Maintenance mode is off.")


def escrow_purge_skipped(reason: str) -> str:
    return f"escrow purge skipped this time ({reason}); it runs again with the next rollback or /rollback escrow"
