"""`/rollback dry-run <version>`: the rollback's dry run, saved as the channel's current plan, with its words.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.jsontypes import JsonObject
from workers import messages
from workers.messages import DONE, WARNING, statements_lines
from workers.runtime.context import Context
from workers.runtime.progress import Progress

if TYPE_CHECKING:
    from workers.engine.results import DryRunReport


def dry_run(ctx: Context, progress: Progress, target_name: str, version: str, requester: str,
            channel: str | None) -> JsonObject:
    target = ctx.target(target_name)
    try:
        report = ctx.engine(target, requester).dry_run_rollback(to=version)
    except Exception:
        ctx.store().clear_plans(target.name)  # a failed dry run leaves no plan to approve
        raise
    plan = report.to_dict()
    # Which net is under this rollback: the card shows it; `not escrowed` statements make the full backup mandatory.
    plan["net"] = messages.safety_net(target, messages.not_escrowed_count(report.warnings))
    if channel:  # the channel's current plan: what `/rollback execute` asks approval for
        # where the dry run was answered: the execute card links it
        saved = {**plan, "source": {"channel": channel, "thread_ts": progress.thread_ts}}
        ctx.store().save_plan(channel, target_name, saved, ttl_seconds=ctx.settings.policy.plan_ttl_seconds)
    progress.post(dry_run_text(target_name, report) + f"\nSafety net: {plan['net']}")
    return {"target": target_name, **plan}


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
