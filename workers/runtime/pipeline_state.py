"""A request's pipeline state: what each step of an approved request hands the next, typed.

The runner (workers/runtime/approved_requests.py) keeps each step's result under the step's name, beside the
facts of the run (into, started, current_step, paged, failed_step, error, baseline_counts). They are JSON only
in Redis: `Context.save_state` writes a result's `to_dict()`, `Context.load_state` reads a `PipelineState`
back (`from_dict`), read once by each step. A step's `to_dict()` is also what its RQ job returns.

Pure data: no Redis, no database, no Slack.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

from core.jsontypes import JsonObject
from workers.engine.results import RunReport
from workers.postgres.check_results import VerifyReport
from workers.postgres.pg_dump import BackupResult
from workers.postgres.pg_restore import RestoreResult

T = TypeVar("T")


@runtime_checkable
class StepResult(Protocol):
    """What a pipeline step returns: kept in the pipeline's state, returned by its job."""

    def to_dict(self) -> JsonObject: ...


@dataclass(frozen=True)
class StepRefused:
    """A step that found it may not go on: its refusal is the request's outcome (terminate)."""

    reason: str

    def to_dict(self) -> JsonObject:
        return {"refused": True, "reason": self.reason}


@dataclass(frozen=True)
class BackupWaived:
    """Break-glass `run-migrations --no-backup`: the backup step (`backup` or `table_backup`) took none."""

    step: str

    def to_dict(self) -> JsonObject:
        return {self.step: None, "no_backup": True}


@dataclass(frozen=True)
class BackupStepResult:
    """The *Backup* step: the verified pg_dump (None under backup policy `escrow`, `escrow_only`), and the
    provider's snapshot or managed backup (DigitalOcean's answer) when one was taken."""

    backup: BackupResult | None
    escrow_only: bool = False
    snapshot: JsonObject | None = None

    def to_dict(self) -> JsonObject:
        data: JsonObject = {"backup": self.backup.to_dict() if self.backup else None}
        if self.escrow_only:
            data["escrow_only"] = True
        if self.snapshot:
            data["snapshot"] = self.snapshot
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BackupStepResult:
        return cls(backup=BackupResult.from_dict(data["backup"]) if data.get("backup") else None,
                   escrow_only=bool(data.get("escrow_only")), snapshot=data.get("snapshot"))


@dataclass(frozen=True)
class MaintenanceStepResult:
    """A maintenance step: the hook ran (`skipped` False, and it succeeded: a failed hook fails the step), or
    it was skipped (no hook, or the stall forecast said none is needed). `record`: the rest of what the
    hook or the forecast said (state, kind, figure, duration_s; policy), kept as the job returns it."""

    skipped: bool
    ok: bool
    detail: str
    record: JsonObject = field(default_factory=dict)

    @property
    def ran(self) -> bool:
        return not self.skipped

    def to_dict(self) -> JsonObject:
        return {"maintenance": {**self.record, "skipped": self.skipped, "ok": self.ok, "detail": self.detail}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MaintenanceStepResult:
        hook = dict(data["maintenance"])
        return cls(skipped=bool(hook.pop("skipped")), ok=bool(hook.pop("ok")), detail=str(hook.pop("detail")),
                   record=hook)


@dataclass(frozen=True)
class VerifyStepResult:
    report: VerifyReport

    def to_dict(self) -> JsonObject:
        return {"verify": self.report.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VerifyStepResult:
        return cls(VerifyReport.from_dict(data["verify"]))


@dataclass(frozen=True)
class RollbackStepResult:
    run: RunReport
    baseline_counts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> JsonObject:
        return {"rollback": self.run.to_dict(), "baseline_counts": dict(self.baseline_counts)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RollbackStepResult:
        return cls(RunReport.from_dict(data["rollback"]), dict(data["baseline_counts"]))


@dataclass(frozen=True)
class RestoreStepResult:
    result: RestoreResult

    def to_dict(self) -> JsonObject:
        return {"restore": self.result.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RestoreStepResult:
        return cls(RestoreResult.from_dict(data["restore"]))


@dataclass(frozen=True)
class UndoStepResult:
    report: JsonObject  # the engine's UndoReport.to_dict()

    def to_dict(self) -> JsonObject:
        return {"undo": self.report}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UndoStepResult:
        return cls(dict(data["undo"]))


@dataclass(frozen=True)
class TerminateStepResult:
    pid: int
    session: JsonObject  # the session as the channel's assessment showed it

    def to_dict(self) -> JsonObject:
        return {"terminated": self.pid, "session": dict(self.session)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TerminateStepResult:
        return cls(int(data["terminated"]), dict(data["session"]))


@dataclass(frozen=True)
class RepairStepResult:
    new_status: str  # pending (retried by the next apply) or rolled_back
    report: JsonObject  # the engine's RepairReport.to_dict()

    def to_dict(self) -> JsonObject:
        return {"repair": self.report}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RepairStepResult:
        return cls(str(data["repair"]["new_status"]), dict(data["repair"]))


@dataclass(frozen=True)
class TableBackupStepResult:
    backup: BackupResult | None  # None: waived (`run-migrations --no-backup`)

    def to_dict(self) -> JsonObject:
        return {"table_backup": self.backup.to_dict() if self.backup else None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TableBackupStepResult:
        return cls(BackupResult.from_dict(data["table_backup"]) if data["table_backup"] else None)


@dataclass(frozen=True)
class RecoverStepResult:
    inserted: dict[str, int]
    overwritten: dict[str, int]
    counts_before: dict[str, int]
    counts_after: dict[str, int]

    def to_dict(self) -> JsonObject:
        return {"recover": {"inserted": self.inserted, "overwritten": self.overwritten,
                            "counts_before": self.counts_before, "counts_after": self.counts_after}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RecoverStepResult:
        done = data["recover"]
        return cls(dict(done["inserted"]), dict(done["overwritten"]), dict(done["counts_before"]),
                   dict(done["counts_after"]))


@dataclass(frozen=True)
class PitrStepResult:
    project_ref: str
    point_unix: int
    waited_s: float
    versions: list[str]

    def to_dict(self) -> JsonObject:
        return {"pitr": {"project_ref": self.project_ref, "point_unix": self.point_unix, "waited_s": self.waited_s,
                         "versions": list(self.versions)}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PitrStepResult:
        return cls(**data["pitr"])


@dataclass(frozen=True)
class SnapshotRestoreStepResult:
    action: JsonObject  # DigitalOcean's restore action as the provider client answered it
    versions: list[str]

    def to_dict(self) -> JsonObject:
        return {"snapshot_restore": {**self.action, "versions": list(self.versions)}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SnapshotRestoreStepResult:
        action = dict(data["snapshot_restore"])
        return cls(action, list(action.pop("versions")))


@dataclass(frozen=True)
class NewClusterStepResult:
    created: JsonObject  # the new cluster as the DigitalOcean client answered it (no password)
    new_target: str  # the target name the thread suggests for it

    def to_dict(self) -> JsonObject:
        return {"new_cluster": self.created, "new_target": self.new_target}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NewClusterStepResult:
        return cls(dict(data["new_cluster"]), str(data["new_target"]))


@dataclass(frozen=True)
class FinishStepResult:
    """The outcome: the page resolved (when one was sent and no watch follows), or the watch started."""

    resolved: JsonObject | None = None
    watch: JsonObject | None = None  # what workers/verbs/watch.py `start` returned

    def to_dict(self) -> JsonObject:
        return {"outcome": "succeeded", "resolved": self.resolved, **(self.watch or {})}


StateValue = StepResult | str | float | bool | Mapping[str, int] | None  # what `save_state` takes


def stored(value: StateValue) -> Any:
    """A saved value as the state keeps it (JSON-able): a step's result as its `to_dict()`."""
    return value.to_dict() if isinstance(value, StepResult) else value


# Each step's result read back by its step name (maintenance_off and finish: nothing reads them back).
READERS: dict[str, Callable[[Mapping[str, Any]], StepResult]] = {
    "backup": BackupStepResult.from_dict,
    "maintenance_on": MaintenanceStepResult.from_dict,
    "verify": VerifyStepResult.from_dict,
    "rollback": RollbackStepResult.from_dict,
    "restore": RestoreStepResult.from_dict,
    "undo": UndoStepResult.from_dict,
    "terminate": TerminateStepResult.from_dict,
    "repair": RepairStepResult.from_dict,
    "table_backup": TableBackupStepResult.from_dict,
    "recover": RecoverStepResult.from_dict,
    "pitr": PitrStepResult.from_dict,
    "snapshot_restore": SnapshotRestoreStepResult.from_dict,
    "new_cluster": NewClusterStepResult.from_dict,
}


@dataclass(frozen=True)
class PipelineState:
    """Everything a request's pipeline has kept so far; a step not run (yet) is None."""

    into: str = "target"  # a restore's: the target, or a scratch database
    started: float | None = None
    current_step: str | None = None  # the step running in this job (what a failure report names)
    paged: bool = False
    failed_step: str | None = None
    error: str | None = None
    baseline_counts: dict[str, int] | None = None  # the critical tables' rows just before a rollback
    backup: BackupStepResult | None = None
    maintenance_on: MaintenanceStepResult | None = None
    verify: VerifyStepResult | None = None
    rollback: RollbackStepResult | None = None
    restore: RestoreStepResult | None = None
    undo: UndoStepResult | None = None
    terminate: TerminateStepResult | StepRefused | None = None
    repair: RepairStepResult | None = None
    table_backup: TableBackupStepResult | None = None
    recover: RecoverStepResult | None = None
    pitr: PitrStepResult | None = None
    snapshot_restore: SnapshotRestoreStepResult | None = None
    new_cluster: NewClusterStepResult | None = None
    # A step without a field above (a step added with only its record and its function): its result as saved,
    # read by its own module with `result()`. Adding a step needs no change here.
    others: dict[str, JsonObject] = field(default_factory=dict)

    def result(self, step: str, read: Callable[[Mapping[str, Any]], T]) -> T | None:
        """A step's result that has no field of its own, read by the reader its module gives."""
        return read(self.others[step]) if step in self.others else None

    @property
    def maintenance_ran(self) -> bool:
        """Whether this request's `maintenance_on` step ran a hook (and it succeeded: else no later step runs)."""
        return self.maintenance_on is not None and self.maintenance_on.ran

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PipelineState:
        """From what Redis holds: each value as its step or field wrote it. A refused step reads as StepRefused; a
        value its reader cannot read stays as it was saved, in `others` (a failure report must never fail on it)."""
        steps: dict[str, Any] = {}
        unread: dict[str, JsonObject] = {}
        for name, read in READERS.items():
            value = data.get(name)
            if isinstance(value, Mapping):
                try:
                    steps[name] = StepRefused(str(value["reason"])) if value.get("refused") else read(value)
                except (KeyError, TypeError, ValueError, AttributeError):
                    unread[name] = dict(value)
        counts = data.get("baseline_counts")
        return cls(
            into=str(data.get("into") or "target"),
            started=float(data["started"]) if data.get("started") else None,
            current_step=str(data["current_step"]) if data.get("current_step") else None,
            paged=bool(data.get("paged")),
            failed_step=str(data["failed_step"]) if data.get("failed_step") else None,
            error=str(data["error"]) if data.get("error") else None,
            baseline_counts={str(t): int(n) for t, n in counts.items()} if isinstance(counts, Mapping) else None,
            others={**{str(k): dict(v) for k, v in data.items() if k not in KNOWN and isinstance(v, Mapping)},
                    **unread},
            **steps,
        )


# The keys with a field of their own (the facts of the run and the typed steps); any other is in `others`.
KNOWN = frozenset({f for f in PipelineState.__dataclass_fields__ if f != "others"})
