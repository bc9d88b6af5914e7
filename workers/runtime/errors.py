"""The workers' own errors, and the one boundary that turns any failure into the line a person reads."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg
import redis
from rq.exceptions import AbandonedJobError
from rq.timeouts import JobTimeoutException

from core.config import ConfigError
from core.errors import RollbackError, first_line
from core.requests import RequestError
from workers import messages
from workers.engine import EngineError
from workers.engine.messages import SLACK, Advice
from workers.engine.redact import redact


class WorkerError(RollbackError):
    """An expected failure of a job; `str()` is one line saying what is wrong and what to do."""


class StepFailed(WorkerError):
    """A pipeline step did not succeed (the chain stops here)."""


class Refused(WorkerError):
    """A job declined to act (not approved, plan changed, wrong database...): nothing was changed."""


class BackupError(WorkerError):
    """A backup could not be taken, read or verified. `str()` is one line: what is wrong, what to do."""


class VerifyError(WorkerError):
    """Verification could not run at all (e.g. the database is unreachable); one line, no secret."""


class RestoreError(WorkerError):
    """A restore could not run or failed; `str()` is one line saying what is wrong and what to do."""


class DumpDamaged(RestoreError):
    """A dump file is cut short or corrupt (workers/postgres/dump_reader.py): refused before anything changes."""


class DigitalOceanError(WorkerError):
    """A DigitalOcean call failed; `str()` is one line saying what and what to do, never the token."""


class ServiceUnavailable(WorkerError):
    """An outside API (Supabase, DigitalOcean) failed on its side or could not be reached, after its
    retries: not an answer about what was asked, so besides the one line someone is paged."""


class DigitalOceanUnavailable(DigitalOceanError, ServiceUnavailable):
    """DigitalOcean answered 5xx or 429, or could not be reached, after pydo's retries."""


class DigitalOceanNoAnswer(DigitalOceanUnavailable):
    """No answer to rely on (a 5xx, a timeout, a dropped connection): a POST may still have been acted on."""


def request_missing(request_id: str) -> str:
    return f"request {request_id} does not exist (expired or never created); start again with a dry-run"


def no_backup() -> str:
    return "no verified backup for this request, so nothing was rolled back (no backup, no rollback)"


def no_managed_backup(database_id: str) -> str:
    return f"managed database {database_id} has no backup; take one before rolling back"


def row_count_missing_table(table: str) -> str:
    return f"table {table} does not exist; check the target's critical_tables"


def job_crashed(step: str, reason: str) -> str:
    return f"the worker running {messages.step_name(step)} died ({reason}); the transaction in progress was not committed"


def timed_out(detail: str) -> str:
    return f"timeout: the step ran past its time limit and was stopped ({detail or 'RQ job timeout'})"


def abandoned() -> str:
    return "its worker stopped responding (killed or lost)"


def unexpected_error(error: BaseException) -> str:
    return f"unexpected error ({type(error).__name__}); see the worker log"


def settings_error(error: str) -> str:
    return f"the worker's configuration is invalid: {error}"


def redis_unavailable(reason: str) -> str:
    return f"Redis is unreachable ({reason}); the request's state could not be read or saved"


def step_done_state_lost(step: str, reason: str) -> str:
    return (
        f"{messages.step_name(step)} itself completed, but Redis is unreachable ({reason}) so the pipeline cannot go on; "
        "check `/rollback status` and finish the remaining steps by hand"
    )


def database_unavailable(target: str | None, reason: str) -> str:
    where = f"target {target}: " if target else "the target's "
    return f"{where}PostgreSQL is unreachable or stopped answering ({reason})"


def maintenance_failed(state: str, detail: str) -> str:
    return f"the maintenance_{state} hook failed: {detail}"


def unknown_step(step: str) -> str:
    return f"unknown pipeline step {step!r}"


def wrong_kind(request_id: str, kind: str, expected: str) -> str:
    return f"request {request_id} is a {kind} request, not a {expected} one; nothing was run"


def restore_without_backup() -> str:
    return "the restore request names no backup; ask again with `/rollback restore <backup>`"


UNPARSABLE_URL = "an unparsable database URL"


CONNECTION_FAILED = "connection failed"


DATABASE_ERROR = "database error"


NO_OUTPUT = "no output"


def database_url_unparsable() -> str:
    return "the database URL cannot be parsed; check the target's *_DATABASE_URL"


def cannot_connect(where: str, error: str, *, hint: bool = False) -> str:
    return f"cannot connect to {where}: {error}" + ("; check the target's database URL" if hint else "")


def version_unreadable(text: str) -> str:
    return f"cannot read a PostgreSQL version from {text.strip()[:80]!r}"


def client_not_found(binary: str) -> str:
    return f"{binary} not found; install the PostgreSQL client matching the server, or set PG_DUMP/PG_RESTORE"


def pg_restore_not_found(binary: str) -> str:
    return f"{binary} not found; install the PostgreSQL client, or set PG_RESTORE"


def cannot_run(binary: str, reason: str, fix: str = "") -> str:
    return f"cannot run {binary}: {reason}" + (f"; {fix}" if fix else "")


CHECK_CLIENT_SETTING = "check the PG_DUMP/PG_RESTORE setting"


INSTALL_PG_RESTORE = "install it or set PG_RESTORE"


INSTALL_PSQL = "install it or set PSQL"


def client_version_failed(binary: str, status: int) -> str:
    return f"{binary} --version failed with status {status}; check the binary"


def pg_dump_too_old(pg_dump: str, dump_version: str, server_version: str, server_major: str) -> str:
    return (
        f"{pg_dump} is version {dump_version} but the server is {server_version}: install the "
        f"PostgreSQL {server_major} client (or newer) and point PG_DUMP at it"
    )


def client_failed(what: str, status: int, line: str) -> str:
    return f"{what} failed (exit {status}): {line}"


def archive_unreadable(name: str, line: str) -> str:
    return f"{name} is not a readable archive: {line}"


def archive_empty(name: str) -> str:
    return f"{name} holds no entries; take a new backup"


def backup_missing(name: str) -> str:
    return f"backup {name} does not exist; list backups to pick another"


def backup_untrusted(name: str) -> str:
    return f"backup {name} has no manifest with a checksum; it cannot be trusted"


def backup_corrupted(name: str, actual: str, expected: str) -> str:
    return (
        f"backup {name} is corrupted: its SHA-256 {actual[:12]}… does not match the manifest's "
        f"{expected[:12]}…; pick another backup"
    )


def backup_dir_not_writable(directory: str, reason: str) -> str:
    return f"backup directory {directory} is not writable ({reason}); fix its permissions or set BACKUP_DIR"


def dump_empty(where: str) -> str:
    return f"pg_dump of {where} wrote an empty archive; check disk space and retry"


def manifest_unwritable(name: str, reason: str) -> str:
    return f"cannot write the manifest for {name}: {reason}"


def backup_outside_dir(name: str, directory: str) -> str:
    return f"{name} is not in the backup directory {directory}; pick one from the list of backups"


def backup_not_in_dir(name: str, directory: str) -> str:
    return f"backup {name} does not exist in {directory}; pick one from the list of backups"


def scratch_name_invalid(name: str) -> str:
    return f"scratch database name {name!r} must be lower-case letters, digits or '_' (at most 63)"


def scratch_exists(name: str) -> str:
    return f"database {name} already exists; choose another scratch name"


def no_createdb(where: str) -> str:
    return f"the target's user may not create databases on {where}; grant CREATEDB"


def cannot_create_database(name: str, where: str, error: str) -> str:
    return f"cannot create database {name} on {where}: {error}"


def rows_uncounted(error: BaseException | str) -> str:
    return f"restored, but counting rows failed: {error}"


def restore_into_invalid(into: str) -> str:
    return f"restore into must be 'target' or 'scratch', not {into!r}"


def nothing_restored(error: BaseException | str) -> str:
    return f"{error}; nothing was restored"


# -- dump files made by hand (workers/postgres/dump_reader.py) ----------------------------------------------------

GZIP_CUT = "its gzip stream ends before its end marker (the file was cut short)"
NOT_A_PG_DUMP = "it is not a pg_dump file (no `-- PostgreSQL database dump` header)"
DUMP_UNFINISHED = ("it lacks pg_dump's closing `-- PostgreSQL database dump complete` line "
                   "(the file was cut short)")


def dump_damaged(name: str, why: str) -> str:
    return f"backup {name} is damaged: {why}; pick another backup"


def gzip_corrupt(detail: str) -> str:
    return f"its gzip stream is corrupt ({detail})"


def pg_restore_cannot_read(line: str) -> str:
    return f"pg_restore cannot read all of it ({line})"


def copy_unfinished(table: str) -> str:
    return f"its COPY block of {table} has no closing `\\.` line (the file was cut short)"


def copy_row_broken(line_number: int, table: str, fields: int, columns: int) -> str:
    return (f"line {line_number} in the COPY block of {table} has {fields} field(s) where its COPY names "
            f"{columns} column(s) (a broken COPY block)")


METHOD_IS_TRANSACTION = "the restore method is `transaction` (workers.restore_method); set it to `auto` or `swap`"


def plain_needs_swap(name: str, why: str) -> str:
    return (f"{name} is a plain SQL dump, which is restored only beside the target and switched in (the swap), "
            f"and the swap cannot run: {why}")


def restored_rows_differ(name: str, table: str, in_file: int, restored: int) -> str:
    return (f"{table} has {restored} row(s) restored but {in_file} in {name}: the target was not switched, "
            "it is unchanged")


def backup_of_other_target(name: str, backup_target: Any, target: str) -> str:
    return f"backup {name} was taken from {backup_target!r}, not {target!r}; restore it into a scratch database"


def restore_rolled_back(where: str, line: str) -> str:
    return f"restore into {where} failed and was rolled back, the target is unchanged: {line}"


def restore_unreadable(where: str, label: str, line: str) -> str:
    return restore_rolled_back(where, f"pg_restore could not read {label}: {line}")


def restore_method_invalid(method: str) -> str:
    return f"restore method must be 'auto', 'swap' or 'transaction', not {method!r}"


def swap_unknown_role() -> str:
    return "cannot tell whether the target's user may create and rename databases"


def swap_not_allowed(*, createdb: bool, owns: bool) -> str:
    missing = [what for what, has in (("CREATEDB", createdb), ("ownership of the database", owns)) if not has]
    return f"the target's user lacks {' and '.join(missing)}, needed to restore by swapping databases"


def sessions_stayed(database: str, sessions: list[str], waited_ms: int) -> str:
    shown = ", ".join(sessions[:5]) + (f" and {len(sessions) - 5} more" if len(sessions) > 5 else "")
    return (f"{len(sessions)} session(s) stayed connected to {database} for {waited_ms / 1000:g} s ({shown}); "
            "turn maintenance on first (a maintenance hook lets the restore end them)")


def swap_failed(where: str, line: str) -> str:
    return f"restore into {where} failed before the switch, the target is unchanged: {line}"


def maintenance_state_invalid(state: str) -> str:
    return f"maintenance state must be 'on' or 'off', not {state!r}"


def do_token_missing() -> str:
    return "DIGITALOCEAN_TOKEN is not set; set it to use snapshots and managed backups"


def do_token_refused(what: str) -> str:
    return f"DigitalOcean refused the token while trying to {what}; check DIGITALOCEAN_TOKEN"


def do_answered(status: Any, what: str, message: str) -> str:
    return f"DigitalOcean answered {status} while trying to {what}: {message}"


def do_unreachable(what: str, error: str) -> str:
    return f"DigitalOcean could not be reached while trying to {what}: {error}"


def do_unexpected(what: str) -> str:
    return f"DigitalOcean gave an unexpected answer while trying to {what}"


def do_refused(what: str, message: str, error_id: str) -> str:
    return f"DigitalOcean could not {what}: {message} ({error_id})"


def do_sent_once_nothing_started(lost: str) -> str:
    return f"{lost}; sent once, not resent, and nothing was started: check the DigitalOcean console, then ask again"


def do_sent_once_lookup_failed(lost: str, lookup: str) -> str:
    return (f"{lost}; sent once, not resent, and whether it started is unknown ({lookup}): check the "
            "DigitalOcean console before asking again")


def do_no_action(droplet_id: Any) -> str:
    return f"DigitalOcean started no snapshot action for droplet {droplet_id}"


def do_snapshot_slow(droplet_id: Any, action_id: Any, status: Any, timeout_s: float) -> str:
    return (
        f"snapshot of droplet {droplet_id} (action {action_id}) still {status} after "
        f"{messages.seconds(timeout_s)}; check it in the DigitalOcean console"
    )


def do_snapshot_errored(name: str, droplet_id: Any, action_id: Any) -> str:
    return f"snapshot {name} of droplet {droplet_id} failed (action {action_id} errored); check the droplet"


def do_restore_slow(droplet_id: Any, action_id: Any, status: Any, timeout_s: float) -> str:
    return (
        f"restore of droplet {droplet_id} (action {action_id}) still {status} after "
        f"{messages.seconds(timeout_s)}; check it in the DigitalOcean console before anything else"
    )


def do_restore_errored(snapshot_id: Any, droplet_id: Any, action_id: Any) -> str:
    return (f"restore of droplet {droplet_id} from snapshot {snapshot_id} failed (action {action_id} errored); "
            "check the droplet in the DigitalOcean console")


def do_cluster_slow(name: str, status: Any, timeout_s: float) -> str:
    return (f"new cluster {name} still {status} after {messages.seconds(timeout_s)}; watch it in the "
            "DigitalOcean console (Databases)")


def do_droplet_slow(name: str, status: Any, timeout_s: float) -> str:
    return (f"new droplet {name} still {status} after {messages.seconds(timeout_s)}; watch it in the "
            "DigitalOcean console (Droplets)")


# what a DigitalOcean call was trying to do, for its error line
def do_get_droplet(droplet_id: Any) -> str:
    return f"read droplet {droplet_id}"


def do_create_droplet(name: str, snapshot_id: Any) -> str:
    return f"create droplet {name} from snapshot {snapshot_id}"


def do_list_droplets_named(name: str) -> str:
    return f"list droplets named {name}"


def do_get_snapshot(snapshot_id: Any) -> str:
    return f"look up snapshot {snapshot_id}"


def do_restore_droplet(droplet_id: Any, snapshot_id: Any) -> str:
    return f"restore droplet {droplet_id} from snapshot {snapshot_id}"


def do_get_cluster(database_id: Any) -> str:
    return f"read database cluster {database_id}"


def do_create_cluster(name: str) -> str:
    return f"create database cluster {name} from a backup"


def do_snapshot_droplet(droplet_id: Any) -> str:
    return f"snapshot droplet {droplet_id}"


def do_list_actions_of(droplet_id: Any) -> str:
    return f"list the actions of droplet {droplet_id}"


DO_LIST_CLUSTERS = "list database clusters"


def do_poll_action(action_id: Any) -> str:
    return f"poll action {action_id}"


DO_LIST_SNAPSHOTS = "list snapshots"


def do_list_snapshots_of(droplet_id: Any) -> str:
    return f"list snapshots of droplet {droplet_id}"


def do_list_backups_of(database_id: Any) -> str:
    return f"list backups of database {database_id}"


def pg_restore_into(name: str) -> str:
    return f"pg_restore into {name}"


# Expected failures from outside the workers' own base (settings, request records): shown as they are.
EXPECTED = (RollbackError, ConfigError, RequestError)


def describe(error: BaseException | None, secrets: Iterable[str | None] = (), advice: Advice = SLACK) -> str:
    """One line, no secrets: what went wrong, with advice for where it is shown (Slack by default)."""
    timeout = timeout_in_chain(error)
    if timeout is not None:  # e.g. the engine's cleanup failed after the timeout interrupted a query
        error = timeout
    if error is None:
        text = abandoned()
    elif isinstance(error, EngineError):
        text = error.render(advice)
    elif isinstance(error, EXPECTED):
        text = str(error)
    elif isinstance(error, AbandonedJobError):
        text = abandoned()
    elif isinstance(error, JobTimeoutException):
        text = timed_out(str(error))
    elif isinstance(error, psycopg.OperationalError):
        text = database_unavailable(None, first_line(error, type(error).__name__))
    elif isinstance(error, psycopg.Error):
        text = f"PostgreSQL error: {first_line(error, type(error).__name__)}"
    elif isinstance(error, redis.RedisError):
        text = redis_unavailable(type(error).__name__)
    else:
        text = unexpected_error(error)
    return redact(" ".join(text.split()), secrets)


def timeout_in_chain(error: BaseException | None) -> JobTimeoutException | None:
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, JobTimeoutException):
            return error
        error = error.__cause__ or error.__context__
        seen += 1
    return None
