"""Dotted paths of the worker jobs: the bot enqueues by name and never imports worker code."""

from __future__ import annotations

from typing import Any

# A JSON object: what a job returns (RQ stores it), what a request's pipeline state keeps in Redis,
# what a result's `to_dict()` gives. Inside a process results travel as typed objects; they become
# this only at those boundaries.
JsonObject = dict[str, Any]

STATUS = "workers.jobs.status"
DRY_RUN = "workers.jobs.dry_run"
EXECUTE = "workers.jobs.execute"
BACKUP = "workers.jobs.backup"
BACKUPS = "workers.jobs.backups"
VERIFY = "workers.jobs.verify"
HISTORY = "workers.jobs.history"
RESTORE = "workers.jobs.restore"
REPORT = "workers.jobs.report"
MAINTENANCE = "workers.jobs.maintenance"
CHECK_BACKUP = "workers.jobs.check_backup"

# The step a worker claims (RequestStore.claim) when it starts an approved request, per request kind.
# Whoever claims it first owns the start: the worker runs the request, or the bot's expiry sweeper
# records that it never started in time (and a late job then finds the claim taken and does nothing).
START_STEPS = {"rollback": "execute", "restore": "restore"}
