"""The request kinds: one record per kind of two-person request, holding everything that differs per kind.

Nothing else in bot/, core/ or workers/ branches on a request's kind (tests/test_kinds.py scans for it):
the bot reads a kind's words, its draft and its verb from here, and the one runner
(workers/runtime/approved_requests.py) reads its steps, whether they run as chained jobs, whether its change is
watched, and the worker module (`workers/verbs/<kind>.py`) that holds its start check, its promise
(what "verified" compares against) and its thread lines.

Adding a kind: its `RequestKind` member and its `Kind` record here, its worker module
`workers/verbs/<name>.py`, and the verb that asks for it in bot/verbs.py. docs/ARCHITECTURE.md has the recipe.

Words here are templates over a request's fields, rendered by whoever shows them (the bot in Block Kit,
the workers in the thread) with its own `code` formatting: `{target}`, `{subject}`, `{backup}`, `{undoes}`,
`{to_version}`, `{tables}`, `{new_name}`, `{change}` (a recovery's insert / overwrite). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from core import steps
from core.steps import StepInfo


class RequestKind(StrEnum):
    """What an approved request runs (its record below says how; bot/verbs.py which verb asks for it)."""

    ROLLBACK = "rollback"
    RESTORE = "restore"
    TERMINATE = "terminate"  # end one session named by the channel's current assessment (`subject`: its pid)
    REPAIR = "repair"  # bring a failed or half-applied migration back to a clean state (`subject`: its version)
    RECOVER = "recover"  # lost rows of chosen tables back from a backup (scenario 4)
    PITR = "pitr"  # Supabase point-in-time recovery (playbook Method 3A)
    SNAPSHOT_RESTORE = "snapshot_restore"  # a DigitalOcean droplet from a snapshot (Method 3B)
    CLUSTER_RESTORE = "cluster_restore"  # a new managed DigitalOcean cluster from a backup (Method 3B)
    UNDO = "undo"  # reverse an earlier rollback from its escrow (`undoes` names it)


class Draft(StrEnum):
    """What the bot needs before a kind's request exists (one method per draft in bot/handlers.py)."""

    PLAN = "plan"  # the channel's current dry-run plan, used up by the request
    BACKUP_CHECK = "backup_check"  # a worker checks the backup and computes the restore preview
    ASSESSED_SESSION = "assessed_session"  # a session the channel's current assessment named
    REPAIR_PLAN = "repair_plan"  # a worker's dry run of the repair, shown on the card
    UNDO_CHECK = "undo_check"  # a worker's dry run of the undo, shown on the card
    PREVIEW_CHECK = "preview_check"  # a worker checks the recovery and computes its preview


# The job every approved request runs (the one runner); a kind's chained steps are its `STEP_JOB`s.
RUN_JOB = "workers.jobs.run_request"
STEP_JOB = "workers.jobs.pipeline_step"
# The step a worker claims (RequestStore.claim) when it starts an approved request. Whoever claims it first
# owns the start: the worker runs the request, or the bot's expiry sweeper records that it never started in
# time (and a late job then finds the claim taken and does nothing).
START_STEP = "start"


@dataclass(frozen=True)
class Kind:
    """Everything that differs per request kind."""

    kind: RequestKind
    name: str  # what it is called in a sentence ("table recovery"): a page about its check, its thread
    verb: str  # the /rollback verb that asks for it (bot/verbs.py)
    steps: tuple[StepInfo, ...]  # its pipeline, in order; `finish` last
    draft: Draft
    # Words (templates, see the module's doc): the card's first line says "<what> <target>"; `confirm` is the
    # approve button's confirmation; `ask_again` what to do once the request is no longer pending; `outcome`
    # the request's recorded outcome once its change is done and verified; `queued` the thread's first line.
    what: str
    confirm: str
    ask_again: str
    outcome: str
    queued: str
    # The card's lines below its header: `card_summary` shows the request's summary (`{summary}` as the draft
    # rendered it, `{escaped}` escaped here), `card_note` a line after it; `preview_headline` the first line of
    # the restore preview a worker computed (its fields, formatted by the bot: `{point}`, `{taken}`, `{before}`).
    card_summary: str = "{summary}"
    card_note: str = ""
    preview_headline: str = ""
    # Each step an RQ job chained with `depends_on` (a change that may take long: a worker's death between
    # steps leaves the rest unqueued) rather than all steps inside the one job.
    chained: bool = False
    # Its change is live on the target: after `finish` the workers watch the target (workers/verbs/watch.py).
    watched: bool = True
    # It changes no schema and runs beside the target's one active request (one per `subject` instead).
    beside_target: bool = False
    # Its backup may be skipped under the target's `backup_policy = "escrow"` (the escrow is the net).
    escrow_covers: bool = False
    backup_reason: str = "before restoring over it"  # the pre-change backup's line: "pg_dump of prod <why>"
    # Its steps when it runs into a new scratch database beside the target instead (the target left alone).
    scratch_steps: tuple[StepInfo, ...] = ()

    @property
    def job(self) -> str:
        return RUN_JOB

    @property
    def module(self) -> str:
        """The worker module with the kind's start check, promise and thread lines (workers/verbs/)."""
        return f"workers.verbs.{self.kind.value}"

    @property
    def announced(self) -> tuple[StepInfo, ...]:
        return steps.announced(self.steps)

    @property
    def chain(self) -> str:
        """`Backup → Maintenance on → Rollback → Verification → Maintenance off`."""
        return " → ".join(step.label for step in self.announced)


# The steps: what each is called and what its failure means (core/steps.py StepInfo).
BACKUP = StepInfo("backup", "Backup")
MAINTENANCE_ON = StepInfo("maintenance_on", "Maintenance on")
ROLLBACK = StepInfo("rollback", "Rollback", leaves_maintenance_on=True)
RESTORE = StepInfo("restore", "Restore", leaves_maintenance_on=True)
UNDO = StepInfo("undo", "Undo", leaves_maintenance_on=True)
VERIFY = StepInfo("verify", "Verification", leaves_maintenance_on=True)
MAINTENANCE_OFF = StepInfo("maintenance_off", "Maintenance off", leaves_maintenance_on=True)
FINISH = StepInfo("finish", "Outcome", recorded=False)
# Ending one blocking session (pg_terminate_backend): recorded by the step itself.
TERMINATE = StepInfo("terminate", "Terminate session", recorded=False)
# Scenario 1: a failed or half-applied migration brought back to a clean state (recorded by the step).
REPAIR = StepInfo("repair", "Repair", recorded=False)
# The recovery paths (issue 10): a backup of just the chosen tables, then their lost rows back in one
# transaction (no maintenance: the rest of the database is untouched); a Supabase point-in-time
# recovery and a droplet restored from its snapshot replace the whole database, like a restore.
TABLE_BACKUP = StepInfo("table_backup", "Backup of the tables")
RECOVER = StepInfo("recover", "Recovery")
PITR = StepInfo("pitr", "Point-in-time recovery", leaves_maintenance_on=True)
SNAPSHOT_RESTORE = StepInfo("snapshot_restore", "Snapshot restore", leaves_maintenance_on=True)
# A managed cluster is restored into a new cluster: the target itself is left as it is.
NEW_CLUSTER = StepInfo("new_cluster", "New cluster from a backup", recorded=False)

_RESTORE_CHAIN = (BACKUP, MAINTENANCE_ON)
_AFTER_CHANGE = (VERIFY, MAINTENANCE_OFF, FINISH)

KINDS: dict[RequestKind, Kind] = {k.kind: k for k in (
    Kind(RequestKind.ROLLBACK, "rollback", "execute", (*_RESTORE_CHAIN, ROLLBACK, *_AFTER_CHANGE), Draft.PLAN,
         what="rollback of {target}",
         confirm="This runs: backup, maintenance on, rollback of {target} to {to_version}, verify, maintenance off.",
         ask_again="run a new dry-run", outcome="rolled back and verified",
         queued="rolling back {target} to {to_version}", chained=True, escrow_covers=True,
         backup_reason="before rolling back"),
    Kind(RequestKind.RESTORE, "restore", "restore", (*_RESTORE_CHAIN, RESTORE, *_AFTER_CHANGE), Draft.BACKUP_CHECK,
         what="restore of backup {backup} of {target}",
         confirm="This runs: a fresh backup, maintenance on, restore of backup {backup} into {target} (replacing "
                 "its contents), verify, maintenance off.",
         ask_again="ask again with `/rollback restore`", outcome="restored and verified",
         queued="restoring {backup} into {target}", scratch_steps=(RESTORE, FINISH),
         card_summary="Backup: {escaped}.",
         card_note="The workers take a fresh backup of {target} first, then restore {backup} into it.",
         preview_headline="Restore preview:"),
    Kind(RequestKind.UNDO, "undo", "undo", (*_RESTORE_CHAIN, UNDO, *_AFTER_CHANGE), Draft.UNDO_CHECK,
         what="undo of rollback {undoes} of {target}",
         confirm="This runs: backup → maintenance on → undo → verification → maintenance off on {target}, "
                 "reversing rollback {undoes}.",
         ask_again="ask again with `/rollback undo`", outcome="undone and verified",
         queued="undoing rollback {undoes} of {target}", chained=True, escrow_covers=True,
         card_summary=":leftwards_arrow_with_hook: {escaped}.",
         card_note="In one transaction: the up scripts, then every escrowed value back by primary key, checked as it "
                   "goes; then the post-rollback checks.",
         backup_reason="before undoing a rollback"),
    Kind(RequestKind.TERMINATE, "termination", "terminate", (TERMINATE, FINISH), Draft.ASSESSED_SESSION,
         what="termination of session pid {subject} on {target}",
         confirm="This ends session pid {subject} on {target} (pg_terminate_backend).",
         ask_again="ask again with `/rollback terminate`", outcome="session {subject} terminated",
         queued="ending session pid {subject} on {target}", watched=False, beside_target=True,
         card_summary="{escaped}"),
    Kind(RequestKind.REPAIR, "repair", "repair", (BACKUP, REPAIR, FINISH), Draft.REPAIR_PLAN,
         what="repair of migration {subject} on {target}",
         confirm="This runs: a fresh backup, then the repair of {subject} on {target}.",
         ask_again="ask again with `/rollback repair`", outcome="{subject} repaired and verified",
         queued="repairing migration {subject} on {target}", watched=False, card_summary="```\n{escaped}\n```",
         backup_reason="before repairing a migration"),
    Kind(RequestKind.RECOVER, "table recovery", "recover", (TABLE_BACKUP, RECOVER, FINISH), Draft.PREVIEW_CHECK,
         what="table recovery of {target}",
         confirm="This runs: a backup of {tables}, then in one transaction on {target}: {change}, parents first, "
                 "and the counts verified.",
         ask_again="ask again with `/rollback recover`", outcome="rows recovered and verified",
         queued="table recovery of {target}",
         preview_headline="From backup {backup}{taken}, rows matched by primary key; rows newer than the backup stay:"),
    Kind(RequestKind.PITR, "point-in-time recovery", "pitr", (*_RESTORE_CHAIN, PITR, *_AFTER_CHANGE), Draft.PREVIEW_CHECK,
         what="point-in-time recovery of {target}",
         confirm="This runs: a fresh backup, maintenance on, Supabase point-in-time recovery of {target} "
                 "(everything written after the point is lost), verify, maintenance off.",
         ask_again="ask again with `/rollback pitr`", outcome="recovered to a point in time and verified",
         queued="point-in-time recovery of {target}",
         preview_headline="Supabase project {project_ref} back to {point}{before}."),
    Kind(RequestKind.SNAPSHOT_RESTORE, "snapshot restore", "snapshot-restore", (*_RESTORE_CHAIN, SNAPSHOT_RESTORE, *_AFTER_CHANGE),
         Draft.PREVIEW_CHECK,
         what="snapshot restore of {target}",
         confirm="This runs: a fresh backup, maintenance on, droplet restore from the snapshot of {target} "
                 "(everything written after the point is lost), verify, maintenance off.",
         ask_again="ask again with `/rollback snapshot-restore`",
         outcome="restored from the snapshot and verified", queued="snapshot restore of {target}",
         preview_headline="Droplet {droplet_id} back to snapshot {snapshot} ({snapshot_name})."),
    Kind(RequestKind.CLUSTER_RESTORE, "restore into a new managed cluster", "cluster-restore", (NEW_CLUSTER, FINISH), Draft.PREVIEW_CHECK,
         what="restore into a new managed cluster of {target}",
         confirm="This runs: a new managed cluster {new_name} from the backup; {target} is not changed. The thread "
                 "then says what to switch.",
         ask_again="ask again with `/rollback cluster-restore`",
         outcome="new cluster ready; not watched (the application does not use it yet)",
         queued="restore into a new managed cluster of {target}", watched=False,
         preview_headline="A new cluster {new_name} from the backup of managed cluster {database_id} taken "
                          "{backup_created_at}. The live cluster is left as it is: nothing is lost until the "
                          "application is switched to the new one."),
)}

BESIDE_TARGET = frozenset(k.kind for k in KINDS.values() if k.beside_target)


def of(kind: RequestKind | str) -> Kind:
    return KINDS[RequestKind(kind)]


def words(template: str, request: Any, code: Callable[[object], str] = str) -> str:
    """A kind's template filled in from a request (`code` formats each value: the bot's and the workers'
    backticks)."""
    params: Mapping[str, Any] = getattr(request, "params", None) or {}
    change = ("insert the missing rows and overwrite the differing ones" if params.get("overwrite")
              else "insert the missing rows (differing rows are kept)")
    values = {
        "target": request.target, "subject": request.subject, "backup": request.backup, "undoes": request.undoes,
        "to_version": request.to_version or "the planned version",
        "tables": ", ".join(code(t) for t in params.get("tables") or []) or "the tables",
        "new_name": params.get("new_name"),
    }
    return template.format(change=change, **{k: v if k == "tables" else code(v) for k, v in values.items()})
