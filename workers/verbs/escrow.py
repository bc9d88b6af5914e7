"""`/rollback escrow`: what the target's escrow holds, after purging what is past its retention; the purge the
rollback runs too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from core.jsontypes import JsonObject
from workers.engine import Engine
from workers.engine.errors import EngineError
from workers.messages import human_bytes
from workers.runtime.context import Context
from workers.runtime.progress import Progress


def escrow(ctx: Context, progress: Progress, target_name: str) -> JsonObject:
    """What the target's escrow holds, after purging what is older than the retention period."""
    target = ctx.target(target_name)
    engine = ctx.engine(target, "rollback-bot")
    purged = purge_escrow(engine, ctx.settings.escrow_retention_days, progress)
    held = engine.escrow_holdings()
    progress.post(escrow_list(target.name, held, ctx.settings.escrow_retention_days, purged))
    return {"target": target.name, "held": held, "purged": [r for r, _ in purged]}


def escrow_list(target: str, held: Sequence[Mapping[str, Any]], retention_days: float,
                purged: Sequence[tuple[str, int]]) -> str:
    lines = [f"*Escrow* on *{target}* (kept {retention_days:g} days):"]
    lines += [f"• purged {r} ({n} table(s)): older than the retention period" for r, n in purged]
    if not held:
        lines.append("nothing held")
    for h in held:
        state = " — undone" if h["undone_at"] else (
            f" — {len(h['not_escrowed'])} statement(s) not escrowed" if h["not_escrowed"] else "")
        lines.append(f"• `{h['request_id']}`: {', '.join(h['tables']) or 'no table'}; {h['rows']} row(s), "
                     f"{human_bytes(h['bytes'])}, {h['age']} old{state}")
    return "\n".join(lines)


def escrow_purge_skipped(reason: str) -> str:
    return f"escrow purge skipped this time ({reason}); it runs again with the next rollback or /rollback escrow"


def purge_escrow(engine: Engine, retention_days: float, progress: Progress) -> list[tuple[str, int]]:
    """Old escrow goes in the worker's own time; a purge that cannot run now (the migration lock is busy, the
    database hiccups) is logged and left for the next time, never in the way of the job."""
    try:
        return engine.purge_escrow(retention_days)
    except EngineError as exc:
        progress.log(escrow_purge_skipped(str(exc)))
        return []
