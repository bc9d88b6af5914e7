"""`/rollback history`: the target's migration_history rows, with their words.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from core.jsontypes import JsonObject
from workers.runtime.context import Context
from workers.runtime.progress import Progress


def history_of(ctx: Context, progress: Progress, target_name: str) -> JsonObject:
    rows = ctx.engine(ctx.target(target_name), "history").history(limit=30)
    plain = [{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()} for row in rows]
    progress.post(history_text(target_name, plain))
    return {"target": target_name, "history": plain}


def history_text(target: str, rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return f"*{target}*: migration_history is empty."
    return f"*History of {target}* (newest first)\n```\n" + "\n".join(history_line(r) for r in rows[:30]) + "\n```"


def history_line(row: Mapping[str, Any]) -> str:
    """A whole migration_history row (every column there, NULL as None)."""
    who = row["executed_by"] or "?"
    approved = f", approved by {row['approved_by']}" if row["approved_by"] else ""
    return (
        f"{row['executed_at']}  {row['operation']} {row['version'] or ''} "
        f"{row['status']} by {who}{approved}"
    ).replace("  ", " ")
