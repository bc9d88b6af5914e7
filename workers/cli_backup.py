"""The verified backup `run-migrations` takes before it changes a database, and its row in migration_history.

Before every apply that has something to apply (what CI runs on a deploy: playbook Step 2 and Prevention 4,
`backups/<target>-pre-migration-<time>`), and with --target before a rollback, repair or undo. The archive is
`workers/backup.take_backup`'s: checksummed, with its manifest, verified by `pg_restore --list`, named
`<name>-<reason>-<UTC time>` like every backup of ours, so one `ls backups/` sorts them all by time.
`--no-backup` skips it, and the skip is written into migration_history (who, before what), so an incident
review sees there was no net. A backup that fails raises BackupError: the change never starts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from core import defaults
from workers.engine import messages
from workers.postgres import migration_history as history
from workers.postgres.pg_dump import BackupResult, take_backup

# The playbook's name for the backup before a deploy's migrations (Method 3 option C, Prevention 4).
PRE_MIGRATION = "pre-migration"


def backup_first(conninfo: str, *, name: str, reason: str, backup_dir: str, pg_dump: str, pg_restore: str,
                 actor: str, operation: str, no_backup: bool, out: Callable[[str], None],
                 versions: Sequence[str] = ()) -> BackupResult | None:
    """The verified backup of `conninfo` before `operation` (none, recorded, with `no_backup`)."""
    if no_backup:
        _record(conninfo, operation="backup", status="skipped", executed_by=actor,
                details={"no_backup": True, "before": operation, "versions": list(versions),
                         "via": "run-migrations --no-backup"})
        out(messages.backup_skipped(actor))
        return None
    out(messages.backup_started(name, operation))
    result = take_backup(conninfo, target=name, reason=reason, backup_dir=backup_dir, pg_dump=pg_dump,
                         pg_restore=pg_restore)
    # The row says what it protects: recover finds the newest backup taken before a given migration.
    _record(conninfo, operation="backup", status="completed", executed_by=actor,
            details={**result.to_dict(), "before": operation, "versions": list(versions)},
            duration_ms=int(result.duration_s * 1000))
    out(messages.backup_verified(result.path, result.sha256))
    return result


def _record(conninfo: str, **fields: Any) -> None:
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=defaults.CONNECT_TIMEOUT_SECONDS) as conn:
        history.record(conn, **fields)
