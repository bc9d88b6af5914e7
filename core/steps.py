"""The steps of the workers' pipelines as pure data: name, label, and what a failure there means.

The bot reads the labels from here (it never imports workers code); each kind's pipeline is a tuple of
these in its record (core/kinds.py), and the workers bind each step to the function that runs it (the
shared ones in workers/runtime/approved_requests.py, a kind's own in workers/verbs/<kind>.py). Adding a step: a record
here (and in ALL) and its place in a kind's pipeline, plus its function.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StepInfo:
    name: str  # the RQ job's `step` argument and the claim's key
    label: str  # how the thread, the page and the card name it
    # A failure here happens after "maintenance on" ran, so maintenance mode stays on.
    leaves_maintenance_on: bool = False
    # A failure here is written to migration_history (operation = name) unless the step recorded it.
    recorded: bool = True


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
# A droplet snapshot restored into a new droplet (Method 3B as the playbook writes it): the target is left as it is.
NEW_DROPLET = StepInfo("new_droplet", "New droplet from a snapshot", recorded=False)

# Every step (a kind's pipeline, core/kinds.py, is a tuple of these).
ALL: tuple[StepInfo, ...] = (BACKUP, MAINTENANCE_ON, ROLLBACK, RESTORE, UNDO, VERIFY, MAINTENANCE_OFF, FINISH, TERMINATE,
                             REPAIR, TABLE_BACKUP, RECOVER, PITR, SNAPSHOT_RESTORE, NEW_CLUSTER,
                             NEW_DROPLET)
STEPS = {step.name: step for step in ALL}

# Labels of the jobs that are not pipeline steps (what a thread line or a page calls them).
JOB_LABELS = {
    "start": "Start",
    "snapshot": "Snapshot",
    "status": "Status",
    "dry_run": "Dry run",
    "history": "History",
    "backups": "Backups",
    "report": "Report",
    "check_backup": "Backup check",
    "maintenance": "Maintenance",
    "diff": "Diff",
    "watch": "Watch",
    "watch_tick": "Watch look",
    "check_recover": "Recovery check",
    "check_pitr": "Point-in-time recovery check",
    "check_snapshot": "Snapshot check",
    "check_cluster": "Cluster restore check",
    "check_new_droplet": "New droplet check",
    "escrow": "Escrow",
    "check_undo": "Undo check",
}


def label(name: str) -> str:
    """A step's or job's label: `maintenance_on` -> `Maintenance on`."""
    step = STEPS.get(name)
    if step is not None:
        return step.label
    return JOB_LABELS.get(name, name.replace("_", " ").capitalize())


def announced(pipeline: tuple[StepInfo, ...]) -> tuple[StepInfo, ...]:
    """The steps a thread announces (all but the bookkeeping `finish`)."""
    return tuple(step for step in pipeline if step is not FINISH)
