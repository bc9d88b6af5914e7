"""`/rollback recover <backup> <tables>`: lost rows back from a verified backup, newer rows kept
(core/kinds.py RECOVER; playbook scenario 4): a backup of just those tables, then the rows in one
transaction (workers/recovery.py, workers/recover.py)."""

from __future__ import annotations

from core.config import Target
from core.jsontypes import JsonObject
from core.requests import Request
from workers import recovery, recovery_messages
from workers.context import Context
from workers.progress import Progress
from workers.verbs import Promise, Refusal


def start_check(ctx: Context, request: Request, target: Target, progress: Progress) -> Refusal | None:
    return recovery.recheck(request, lambda: recovery.recover_preview(
        ctx, target, str(request.backup), list(request.params.get("tables") or []),
        bool(request.params.get("overwrite"))))


STEPS = {"table_backup": recovery.table_backup, "recover": recovery.recover_rows}


def promised(ctx: Context, request: Request, target: Target, state: JsonObject) -> Promise:
    """Every table gained exactly the rows the recovery put back (its diff was the approved one)."""
    done = (state.get("recover") or {}).get("recover") or {}
    before, after = done.get("counts_before") or {}, done.get("counts_after") or {}
    inserted = done.get("inserted") or {}
    wrong = tuple(recovery_messages.rows_not_put_back(t, int(before.get(t, 0)), int(inserted.get(t, 0)),
                                                      int(after.get(t, 0)))
                  for t in request.params.get("tables") or []
                  if int(after.get(t, 0)) != int(before.get(t, 0)) + int(inserted.get(t, 0)))
    return Promise(mismatches=wrong)


def succeeded(request: Request, target: Target, state: JsonObject, duration_s: float) -> str:
    return recovery_messages.recovery_succeeded(request.id, target.name, "table recovery")
