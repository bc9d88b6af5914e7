"""A stand-in for the worker's `check_backup` job, for the bot's tests (owner: bot).

The bot enqueues `workers.jobs.check_backup` by dotted path and waits for its result. The real job
lives in the workers' branch (it checks the archive's checksum and `pg_restore --list`); until the two
meet, the bot's tests answer the bot's real RQ job with a function of the same contract, run by a
real RQ worker (`BurstWorker`, a `SimpleWorker`, in the test's main thread) whose job class resolves that one dotted path
to the stand-in. Everything else about the job (queue, kwargs, result stream, the bot's blocking wait)
is the real thing.
"""

from __future__ import annotations

from typing import Any

from rq import Queue
from rq.job import Job

from bot import verbs
from core.prechecks import BackupCheck
from sandbox.slack_api import SlackApiServer
from tests.fixtures.stack import BurstWorker

GOOD_BACKUP = "prod-pre-rollback-20251020T150000Z.dump"
OLDER_BACKUP = "prod-20251020.dump"
CORRUPT_BACKUP = "prod-corrupt-20251019T000000Z.dump"
CHECK_BACKUP = str(verbs.verb("restore").check_job)  # the job the bot waits on before a restore request
NEWEST = [GOOD_BACKUP, OLDER_BACKUP]  # the target's verified backups, newest first
MANIFESTS = {
    GOOD_BACKUP: {"name": GOOD_BACKUP, "target": "prod", "created_at": "2025-10-20T15:00:00Z",
                  "size_bytes": 5_242_880, "sha256": "a" * 64, "verified": True},
    OLDER_BACKUP: {"name": OLDER_BACKUP, "target": "prod", "created_at": "2025-10-20T09:00:00Z",
                   "size_bytes": 4_194_304, "sha256": "b" * 64, "verified": True},
}


def check_backup(*, target: str, backup: str, **_: Any) -> dict[str, Any]:
    """The contract of `workers.jobs.check_backup` over a fixed catalogue of backups."""
    if backup == CORRUPT_BACKUP:
        return BackupCheck(ok=False, error="its checksum does not match its manifest", newest=tuple(NEWEST)).to_dict()
    manifest = MANIFESTS.get(backup)
    if manifest is None or manifest["target"] != target:
        return BackupCheck(ok=False, error=f"no backup named {backup} for {target}", newest=tuple(NEWEST)).to_dict()
    return BackupCheck(ok=True, newest=tuple(NEWEST), backup=manifest).to_dict()


def broken_check_backup(**_: Any) -> dict[str, Any]:
    raise RuntimeError("the check crashed")


class StandInJob(Job):
    """Runs `workers.jobs.check_backup` as `stand_in`; any other job as itself."""

    stand_in: Any = staticmethod(check_backup)

    @property
    def func(self) -> Any:
        if self.func_name == CHECK_BACKUP:
            return type(self).stand_in
        return super().func


class BrokenJob(StandInJob):
    stand_in = staticmethod(broken_check_backup)


def answer_backup_check(slack_api: SlackApiServer, queue: Queue, job_class: type[Job] = StandInJob) -> None:
    """Wait until the bot has enqueued a backup check, then let a real RQ worker run it (burst)."""
    slack_api.wait_for(lambda: any(j.func_name == CHECK_BACKUP for j in queue.jobs))
    BurstWorker([queue], connection=queue.connection, job_class=job_class).work(burst=True)
