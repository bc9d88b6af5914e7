"""`/rollback repair <version>`: a failed or half-applied migration brought back to a clean state
(core/kinds.py REPAIR): a verified backup, then the engine's repair (workers/engine/repair.py), whose
plan the card showed and the approval bound."""

from __future__ import annotations

from core.config import Target
from core.jsontypes import JsonObject
from core.requests import Request
from workers import incident_messages, repairing
from workers.context import Context
from workers.progress import Progress
from workers.verbs import Promise, Refusal


def start_check(ctx: Context, request: Request, target: Target, progress: Progress) -> Refusal | None:
    return None  # the engine refuses a changed repair plan itself (expected_plan_hash), inside its transaction


STEPS = {"repair": repairing.repair_step}


def promised(ctx: Context, request: Request, target: Target, state: JsonObject) -> Promise:
    """The migration is in the state the repair's plan said: gone from the table (retried by the next apply)
    or rolled_back."""
    expected = str((((state.get("repair") or {}).get("repair") or {}).get("new_status")) or "")
    with ctx.connect(target) as conn:
        row = conn.execute("SELECT status FROM schema_migrations WHERE version = %s", (request.subject,)).fetchone()
    found = str(row[0]) if row else "pending"
    if found == expected:
        return Promise()
    return Promise(mismatches=(incident_messages.repair_not_kept(str(request.subject), expected, found),))


def succeeded(request: Request, target: Target, state: JsonObject, duration_s: float) -> str:
    new_status = str((((state.get("repair") or {}).get("repair") or {}).get("new_status")) or "")
    return incident_messages.repaired(request.id, str(request.subject), target.name, new_status)
