"""The steps of the workers' pipelines as pure data: name, label, and what a failure there means.

The step records themselves are in core/kinds.py, beside the pipelines that place them, so that adding a step
is that one file plus the module with its function (the shared ones in workers/runtime/approved_requests.py,
a kind's own in workers/verbs/<kind>.py). The bot reads the labels from here (it never imports workers code).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StepInfo:
    """A step of a kind's pipeline (the records are in core/kinds.py, beside the pipelines that use them)."""

    name: str  # the RQ job's `step` argument and the claim's key
    label: str  # how the thread, the page and the card name it
    # A failure here happens after "maintenance on" ran, so maintenance mode stays on.
    leaves_maintenance_on: bool = False
    # A failure here is written to migration_history (operation = name) unless the step recorded it.
    recorded: bool = True

    def __post_init__(self) -> None:
        STEPS[self.name] = self  # every step made is known by its name (labels, failure reports)


STEPS: dict[str, StepInfo] = {}
FINISH_NAME = "finish"  # the bookkeeping step that ends every pipeline, never announced as a step


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
    "escrow": "Escrow",
    "check_undo": "Undo check",
}


def label(name: str) -> str:
    """A step's or job's label: `maintenance_on` -> `Maintenance on`."""
    import core.kinds  # noqa: F401 - the step records register themselves in STEPS as it is imported
    step = STEPS.get(name)
    if step is not None:
        return step.label
    return JOB_LABELS.get(name, name.replace("_", " ").capitalize())


def announced(pipeline: tuple[StepInfo, ...]) -> tuple[StepInfo, ...]:
    """The steps a thread announces (all but the bookkeeping `finish`)."""
    return tuple(step for step in pipeline if step.name != FINISH_NAME)
