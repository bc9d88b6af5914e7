"""`/rollback verify`: the checks by hand, against the counts taken before the last rollback.
"""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg

from core.config import Target
from core.jsontypes import JsonObject
from workers import messages
from workers.messages import NO_EARLIER_COUNT
from workers.postgres import migration_history
from workers.postgres.checks import run_checks
from workers.runtime import approved_requests
from workers.runtime.context import Context
from workers.runtime.progress import Progress


def verify(ctx: Context, progress: Progress, target_name: str, requester: str) -> JsonObject:
    """Standalone verification: no migration failed, running or drifted, and the row counts against
    those taken before the target's most recent rollback (when one is recorded)."""
    target = ctx.target(target_name)
    status_report = ctx.engine(target, requester).status().to_dict()
    baseline, source = last_baseline(ctx, target)
    started = progress.start("verify", f"{target.name}; {baseline_from(**source)}")
    report = run_checks(ctx.conninfo(target), target, expected_status=None, baseline_counts=baseline,
                        migrations_dir=target.migrations_dir, status_report=status_report)
    failed = approved_requests.report_checks(ctx, progress, target, report, extra={"baseline": source},
                                    executed_by=requester)
    if failed:
        progress.fail("verify", messages.verification_failed(failed), started)
    else:
        progress.finish("verify", started, messages.checks_summary(report.checks))
    return {"target": target.name, "verify": {**report.to_dict(), "baseline": source}, "passed": not failed}


def last_baseline(ctx: Context, target: Target) -> tuple[dict[str, int] | None, dict[str, str | None]]:
    """The row counts taken before the target's most recent rollback, and which request and when
    (`{"request_id": None, "when": None}` when no rollback with counts is recorded)."""
    none: dict[str, str | None] = {"request_id": None, "when": None}
    try:
        with ctx.connect(target) as conn:
            last = migration_history.last_rollback(conn)
            if not last or not last.get("request_id"):
                return None, none
            request_id = str(last["request_id"])
            counts = ctx.load_state(request_id).baseline_counts or migration_history.counts_before(conn, request_id)
    except psycopg.Error:  # a hand-made history table without our columns: nothing to compare with
        return None, none
    if not counts:
        return None, none
    when = last["executed_at"]
    shown = when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if isinstance(when, datetime) else str(when)
    return dict(counts), {"request_id": request_id, "when": shown}


def baseline_from(request_id: str | None, when: str | None) -> str:
    """Where a standalone verification's row-count baseline comes from."""
    if not request_id:
        return f"row counts: {NO_EARLIER_COUNT} (no rollback of this target with counts taken before it is recorded)"
    return f"row counts compared with those taken before rollback {request_id} ({when or 'time unknown'})"
