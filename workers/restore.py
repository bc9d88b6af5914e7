"""Restore a local backup (playbook Method 3, option C) into a new scratch database or into the target.

Before anything, the archive's SHA-256 is checked against its manifest and pg_restore must read it.

- into="scratch": a new database is created on the target's server and the archive restored into it;
  the target is untouched. The scratch database's name is returned (never a password).
- into="target": the target is replaced by the archive's contents, all or nothing: one psql session
  in a single transaction first drops the tables the archive does not hold (created after the
  backup), then runs pg_restore's `--clean --if-exists` script, and commits only when all of it ran
  and pg_restore read the whole archive. Any error rolls the whole restore
  back and the target stays as it was. THE CALLER TAKES A FRESH BACKUP OF THE TARGET FIRST
  (workers.backup.take_backup), so a restore can itself be undone.
  Objects other than tables created after the backup (functions, types, views) are left in place.

Either way the result carries the row counts of all user tables in the restored database, to compare
with the counts of the original.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import conninfo as pg_conninfo
from psycopg import sql

from core import defaults
from workers import messages
from workers.backup import (
    BackupError,
    Heartbeat,
    client_env,
    describe,
    last_line,
    read_manifest,
    redact,
    run_client,
    slug,
    split_password,
    verify_archive,
)
from workers.verify import VerifyError, count_all_rows, user_tables

INTO = ("target", "scratch")
DATABASE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
TOC_TABLE = re.compile(r"^\d+; \d+ \d+ TABLE (\S+) (\S+) ")


class RestoreError(Exception):
    """A restore could not run or failed; `str()` is one line saying what is wrong and what to do."""


@dataclass(frozen=True)
class RestoreResult:
    into: str
    database: str
    target: str
    backup: str
    sha256: str
    toc_entries: int
    duration_s: float
    row_counts: dict[str, int] = field(default_factory=dict)
    dropped_tables: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_archive(backup_path: str, backup_dir: str) -> Path:
    """The archive's path, which must lie inside the backup directory (a name alone is looked up there)."""
    root = Path(backup_dir).resolve()
    candidate = Path(backup_path)
    if not candidate.is_absolute():
        candidate = root / candidate if not candidate.exists() else candidate
    resolved = candidate.resolve()
    if root != resolved.parent and root not in resolved.parents:
        raise RestoreError(messages.backup_outside_dir(candidate.name, backup_dir))
    if not resolved.exists():
        raise RestoreError(messages.backup_not_in_dir(candidate.name, backup_dir))
    return resolved


def scratch_database_name(target: str, now: datetime) -> str:
    # A random tail: two restores within one second (two people, two test runs) never collide.
    return f"{slug(target, 30).replace('-', '_')}_restore_{now.strftime('%Y%m%d%H%M%S')}_{secrets.token_hex(2)}"


def archive_tables(archive: Path, pg_restore: str) -> set[str]:
    """`schema.table` of every table the archive defines (from `pg_restore --list`)."""
    done = subprocess.run([pg_restore, "--list", str(archive)], capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise RestoreError(messages.archive_unreadable(archive.name, last_line(done.stderr)))
    tables = set()
    for line in done.stdout.splitlines():
        match = TOC_TABLE.match(line)
        if match:
            tables.add(f"{match.group(1)}.{match.group(2)}")
    return tables


def _db_error(exc: psycopg.Error, conninfo: str) -> str:
    return redact((str(exc).strip().splitlines() or [messages.DATABASE_ERROR])[0], conninfo)


def create_scratch_database(conninfo: str, name: str) -> str:
    """CREATE DATABASE `name` on the target's server; returns the new database's conninfo."""
    if not DATABASE_NAME.match(name):
        raise RestoreError(messages.scratch_name_invalid(name))
    try:
        with psycopg.connect(conninfo, connect_timeout=defaults.CONNECT_TIMEOUT_SECONDS, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.errors.DuplicateDatabase:
        raise RestoreError(messages.scratch_exists(name)) from None
    except psycopg.errors.InsufficientPrivilege:
        raise RestoreError(messages.no_createdb(describe(conninfo))) from None
    except psycopg.Error as exc:
        raise RestoreError(messages.cannot_create_database(name, describe(conninfo), _db_error(exc, conninfo))) from None
    return pg_conninfo.make_conninfo(conninfo, dbname=name)


def drop_database(conninfo: str, name: str) -> None:
    """Best effort: remove a scratch database that a failed restore left half-filled."""
    try:
        with psycopg.connect(conninfo, connect_timeout=defaults.CONNECT_TIMEOUT_SECONDS, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    except psycopg.Error:
        pass


def _counts(conninfo: str) -> dict[str, int]:
    try:
        return count_all_rows(conninfo)
    except VerifyError as exc:
        raise RestoreError(messages.rows_uncounted(exc)) from None


def restore_backup(
    conninfo: str,
    backup_path: str,
    *,
    into: str = "target",
    backup_dir: str,
    target: str,
    heartbeat: Heartbeat | None = None,
    scratch_name: str | None = None,
    jobs: int | None = None,
    allow_other_target: bool = False,
    lock_timeout_ms: int = defaults.RESTORE_LOCK_TIMEOUT_MS,
    pg_restore: str = "pg_restore",
    psql: str = "psql",
    progress_interval: float = defaults.PROGRESS_INTERVAL_SECONDS,
    now: datetime | None = None,
) -> RestoreResult:
    """Restore `backup_path` (a name in `backup_dir`, or a path inside it); see the module docstring."""
    if into not in INTO:
        raise RestoreError(messages.restore_into_invalid(into))
    archive = resolve_archive(backup_path, backup_dir)
    manifest = read_manifest(archive) or {}
    try:
        entries = verify_archive(archive, pg_restore=pg_restore)
    except BackupError as exc:
        raise RestoreError(messages.nothing_restored(exc)) from None
    backup_target = manifest.get("target")
    if into == "target" and backup_target != target and not allow_other_target:
        raise RestoreError(messages.backup_of_other_target(archive.name, backup_target, target))
    started = time.monotonic()
    dbname, password = split_password(conninfo)
    env = client_env(password)

    if into == "scratch":
        name = scratch_name or scratch_database_name(target, now or datetime.now(UTC))
        scratch_conninfo = create_scratch_database(conninfo, name)
        scratch_dbname = pg_conninfo.make_conninfo(dbname, dbname=name)
        argv = [pg_restore, "--no-password", "--no-owner", "--exit-on-error", f"--dbname={scratch_dbname}"]
        if jobs is not None and jobs > 1:
            argv.append(f"--jobs={jobs}")
        try:
            run_client(
                [*argv, str(archive)],
                env=env,
                conninfo=conninfo,
                heartbeat=heartbeat,
                progress=lambda elapsed: messages.restoring(archive.name, name, elapsed),
                interval=progress_interval,
                error=RestoreError,
                what=messages.pg_restore_into(name),
            )
        except BaseException:
            drop_database(conninfo, name)
            raise
        counts, dropped, database = _counts(scratch_conninfo), [], name
    else:
        dropped = _restore_into_target(
            conninfo, archive, env=env, dbname=dbname, pg_restore=pg_restore, psql=psql,
            heartbeat=heartbeat, interval=progress_interval, lock_timeout_ms=lock_timeout_ms,
        )
        counts, database = _counts(conninfo), str(pg_conninfo.conninfo_to_dict(conninfo).get("dbname") or "")

    return RestoreResult(
        into=into,
        database=database,
        target=target,
        backup=archive.name,
        sha256=str(manifest.get("sha256") or ""),
        toc_entries=entries,
        duration_s=round(time.monotonic() - started, 3),
        row_counts=counts,
        dropped_tables=dropped,
    )


def _restore_into_target(
    conninfo: str,
    archive: Path,
    *,
    env: dict[str, str],
    dbname: str,
    pg_restore: str,
    psql: str,
    heartbeat: Heartbeat | None,
    interval: float,
    lock_timeout_ms: int,
) -> list[str]:
    """pg_restore's clean script, after dropping tables the archive lacks, in one psql transaction."""
    try:
        extra = sorted(set(user_tables(conninfo)) - archive_tables(archive, pg_restore))
    except VerifyError as exc:
        raise RestoreError(messages.nothing_restored(exc)) from None
    # A bounded lock wait: behind the application's sessions the restore fails (and rolls back)
    # instead of hanging, and the application never queues behind a restore stuck waiting.
    prologue = f"SET lock_timeout = {int(lock_timeout_ms)};\n" + "".join(
        sql.SQL("DROP TABLE IF EXISTS {} CASCADE;\n").format(sql.Identifier(*table.split(".", 1))).as_string(None)
        for table in extra
    )
    _relay_in_transaction(
        [pg_restore, "--clean", "--if-exists", "--file=-", str(archive)],
        [psql, "--no-password", "--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1", f"--dbname={dbname}"],
        prologue=prologue.encode(),
        script_edits=((b"\nSET lock_timeout = 0;\n", f"\nSET lock_timeout = {int(lock_timeout_ms)};\n".encode()),),
        env=env,
        conninfo=conninfo,
        heartbeat=heartbeat,
        interval=interval,
        label=archive.name,
    )
    return extra


def _relay_in_transaction(
    producer: list[str],
    consumer: list[str],
    *,
    prologue: bytes,
    script_edits: tuple[tuple[bytes, bytes], ...] = (),
    env: dict[str, str],
    conninfo: str,
    heartbeat: Heartbeat | None,
    interval: float,
    label: str,
) -> None:
    """Feed `BEGIN; prologue; <producer's script>` to the consumer (psql), and `COMMIT;` only when the
    producer finished cleanly: a script cut short (pg_restore failing half-way) is never committed,
    and psql stopping at the first error (ON_ERROR_STOP) aborts the open transaction."""
    started = time.monotonic()
    with tempfile.TemporaryFile() as producer_err, tempfile.TemporaryFile() as consumer_err:
        try:
            first = subprocess.Popen(producer, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=producer_err)
        except OSError as exc:
            raise RestoreError(messages.cannot_run(producer[0], str(exc.strerror or exc), messages.INSTALL_PG_RESTORE)) from None
        try:
            second = subprocess.Popen(consumer, env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=consumer_err)
        except OSError as exc:
            first.kill()
            first.wait()
            raise RestoreError(messages.cannot_run(consumer[0], str(exc.strerror or exc), messages.INSTALL_PSQL)) from None

        def relay() -> None:
            assert first.stdout is not None and second.stdin is not None
            try:
                second.stdin.write(b"BEGIN;\n" + prologue)
                first_chunk = True
                for chunk in iter(lambda: first.stdout.read(1 << 16), b""):  # type: ignore[union-attr]
                    if first_chunk:  # the script's header SETs (lock_timeout = 0) sit in its first bytes
                        for old, new in script_edits:
                            chunk = chunk.replace(old, new, 1)
                        first_chunk = False
                    second.stdin.write(chunk)
                if first.wait() == 0:
                    second.stdin.write(b"COMMIT;\n")
                second.stdin.close()
            except BrokenPipeError:  # psql stopped at an error; its stderr says which
                pass
            finally:
                first.stdout.close()

        worker = threading.Thread(target=relay, name="restore-relay", daemon=True)
        worker.start()
        try:
            # Heartbeat from here while the relay thread may sit blocked in a write behind a slow statement.
            while worker.is_alive():
                worker.join(timeout=interval)
                if worker.is_alive() and heartbeat is not None:
                    heartbeat(messages.restoring(label, messages.INTO_THE_TARGET, time.monotonic() - started))
            second.wait()
            first.wait()
        except BaseException:
            for process in (first, second):
                process.kill()
                process.wait()
            raise
        producer_err.seek(0)
        consumer_err.seek(0)
        producer_text = producer_err.read().decode(errors="replace")
        consumer_text = consumer_err.read().decode(errors="replace")
    where = describe(conninfo)
    if second.returncode != 0:
        raise RestoreError(messages.restore_rolled_back(where, last_line(redact(consumer_text, conninfo))))
    if first.returncode != 0:
        raise RestoreError(messages.restore_unreadable(where, label, last_line(redact(producer_text, conninfo))))
