"""`/rollback backup`: a pg_dump of the target by hand, recorded in history.
"""

from __future__ import annotations

from core.jsontypes import JsonObject
from workers import messages
from workers.postgres import identity, migration_history
from workers.runtime import approved_requests
from workers.runtime.context import Context
from workers.runtime.progress import Progress


def backup(ctx: Context, progress: Progress, target_name: str, requester: str, reason: str) -> JsonObject:
    target = ctx.target(target_name)
    with ctx.connect(target) as conn:
        identity.guard(conn, ctx.redis, target.name, by=requester)
    started, result = approved_requests.dump(ctx, progress, target, reason or "manual", messages.dump_of(target.name))
    with ctx.connect(target) as conn:
        migration_history.record(conn, operation="backup", status="completed", executed_by=requester,
                       duration_ms=int(result.duration_s * 1000), details=result.to_dict())
    progress.finish("backup", started, messages.backup_figures(result))
    return {"target": target.name, "backup": result.to_dict()}
