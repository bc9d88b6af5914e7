"""Restore a local backup (playbook Method 3, option C) into a new scratch database or into the target.

Before anything, the archive's SHA-256 is checked against its manifest and pg_restore must read it.

- into="scratch": a new database is created on the target's server and the archive restored into it;
  the target is untouched. The scratch database's name is returned (never a password).
- into="target": the target is replaced by the archive's contents, all or nothing: one psql session
  in a single transaction first drops the tables the archive does not hold (created after the
  backup), then runs pg_restore's `--clean --if-exists` script, and commits only when all of it ran
  and pg_restore read the whole archive. Any error rolls the whole restore
  back and the target stays as it was. THE CALLER TAKES A FRESH BACKUP OF THE TARGET FIRST
  (workers.postgres.pg_dump.take_backup), so a restore can itself be undone.
  Objects other than tables created after the backup (functions, types, views) are left in place.
  The bot's own bookkeeping (KEPT_TABLES: migration_history, the identity record) is left out of the
  restore: the record of what happened, including rows written after the backup, survives it.

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
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import conninfo as pg_conninfo
from psycopg import sql

from core import defaults
from core.jsontypes import JsonObject
from core.prechecks import BackupCheck
from workers import messages
from workers.postgres import dump_reader, swap
from workers.postgres.checks import VerifyError, count_all_rows, user_tables
from workers.postgres.pg_dump import (
    BackupError,
    Heartbeat,
    client_env,
    connect,
    describe,
    last_line,
    read_manifest,
    redact,
    run_client,
    slug,
    split_password,
    verify_archive,
)
from workers.runtime import errors
from workers.runtime.errors import RestoreError

INTO = ("target", "scratch")
# How a restore into the target runs (docs/backups.md): `swap` restores with pg_restore --jobs into a
# new database and renames it into place in one transaction; `transaction` runs pg_restore's script
# serially in one transaction on the target itself; `auto` swaps where it can and says why not.
METHODS = ("auto", "swap", "transaction")
DATABASE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
TOC_TABLE = re.compile(r"^\d+; \d+ \d+ TABLE (?!DATA )(\S+) (\S+) ")
# The bot's own tables in the target: never dropped, never replaced by a restore. Their sequences,
# indexes and constraints carry the table's name as a prefix (workers/engine/store.py, identity.py).
KEPT_TABLES = ("public.migration_history", "public.rollback_target_identity")
NEWEST_SHOWN = 5




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
    method: str = "scratch"  # swap / transaction for a restore into the target
    jobs: int = 1
    replaced_database: str | None = None  # after a swap: the database the target was, kept for an undo
    method_note: str | None = None  # why `auto` did not swap
    format: str = "custom"  # workers/postgres/dump_reader.py: custom, directory, tar, plain, plain-gzip
    ours: bool = True  # made by rollback-bot (a manifest with a checksum), or a dump made by hand

    def to_dict(self) -> JsonObject:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RestoreResult:
        """Back from `to_dict` (a pipeline's state in Redis); keys it does not know are left out."""
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@dataclass(frozen=True)
class BackupManifest:
    """What a restore reads of a backup's manifest (`check_backup`'s `backup`, workers/postgres/pg_dump.py's
    `read_manifest`), read once; a field the manifest lacks is None (a dump made by hand says less)."""

    path: Any = None
    created_at: Any = None
    sha256: Any = None
    ours: Any = None
    target: Any = None
    format: Any = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BackupManifest:
        return cls(**{f.name: data.get(f.name) for f in fields(cls)})


def database_name(conninfo: str) -> str:
    """The database a connection string names ("" when it names none)."""
    return str(pg_conninfo.conninfo_to_dict(conninfo).get("dbname") or "")


def check_backup(backup: str, *, backup_dir: str, target: str, pg_restore: str = "pg_restore",
                 any_target: bool = False) -> BackupCheck:
    """Check `backup` (a name in `backup_dir`) before a restore is asked for or started; never raises
    for a bad backup. Ours: checksum against the manifest and `pg_restore --list`; a dump made by hand
    (workers/postgres/dump_reader.py): read whole and found complete. A backup of another target is refused unless
    `any_target` (a scratch restore); a dump made by hand does not say whose it is."""
    newest = tuple(str(b["name"]) for b in dump_reader.list_backups(backup_dir, target) if b.get("verified"))[:NEWEST_SHOWN]
    try:
        archive = resolve_archive(backup, backup_dir)
        if dump_reader.is_ours(archive):
            verify_archive(archive, pg_restore=pg_restore)
            manifest = {**(read_manifest(archive) or {}), "path": str(archive), "ours": True}
        else:
            manifest = dump_reader.as_manifest(dump_reader.read(archive, pg_restore=pg_restore), archive)
    except (RestoreError, BackupError) as exc:
        return BackupCheck(False, str(exc), newest)
    read = BackupManifest.from_dict(manifest)
    if not any_target and read.ours and read.target != target:
        return BackupCheck(False, errors.backup_of_other_target(archive.name, read.target, target), newest, manifest)
    return BackupCheck(True, None, newest, manifest)


def resolve_archive(backup_path: str, backup_dir: str) -> Path:
    """The archive's path, which must lie inside the backup directory (a name alone is looked up there)."""
    root = Path(backup_dir).resolve()
    candidate = Path(backup_path)
    if not candidate.is_absolute():
        candidate = root / candidate if not candidate.exists() else candidate
    resolved = candidate.resolve()
    if root != resolved.parent and root not in resolved.parents:
        raise RestoreError(errors.backup_outside_dir(candidate.name, backup_dir))
    if not resolved.exists():
        raise RestoreError(errors.backup_not_in_dir(candidate.name, backup_dir))
    return resolved


def scratch_database_name(target: str, now: datetime) -> str:
    # A random tail: two restores within one second (two people, two test runs) never collide.
    return f"{slug(target, 30).replace('-', '_')}_restore_{now.strftime('%Y%m%d%H%M%S')}_{secrets.token_hex(2)}"


def read_toc(archive: Path, pg_restore: str) -> list[str]:
    """The archive's table of contents (`pg_restore --list`), one entry per line."""
    done = subprocess.run([pg_restore, "--list", str(archive)], capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise RestoreError(errors.archive_unreadable(archive.name, last_line(done.stderr)))
    return done.stdout.splitlines()


def archive_tables(toc: list[str]) -> set[str]:
    """`schema.table` of every table a table of contents defines."""
    tables = set()
    for line in toc:
        match = TOC_TABLE.match(line)
        if match:
            tables.add(f"{match.group(1)}.{match.group(2)}")
    return tables


def is_kept(entry: str) -> bool:
    """Whether a TOC entry belongs to one of KEPT_TABLES (the table, its data, sequence, indexes...)."""
    if entry.startswith(";"):
        return False
    for kept in KEPT_TABLES:
        schema, table = kept.split(".", 1)
        words = entry.split()
        if schema in words:
            after = words[words.index(schema) + 1:]
            if any(word == table or word.startswith(f"{table}_") for word in after[:2]):
                return True
    return False


def restore_list(toc: list[str]) -> str:
    """The TOC for `pg_restore --use-list`: KEPT_TABLES' entries commented out (neither dropped nor loaded)."""
    return "".join(f";{line}\n" if is_kept(line) else f"{line}\n" for line in toc)


def _db_error(exc: psycopg.Error, conninfo: str) -> str:
    return redact((str(exc).strip().splitlines() or [errors.DATABASE_ERROR])[0], conninfo)


def create_scratch_database(conninfo: str, name: str) -> str:
    """CREATE DATABASE `name` on the target's server; returns the new database's conninfo."""
    if not DATABASE_NAME.match(name):
        raise RestoreError(errors.scratch_name_invalid(name))
    try:
        with connect(conninfo) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.errors.DuplicateDatabase as err:
        raise RestoreError(errors.scratch_exists(name)) from err
    except psycopg.errors.InsufficientPrivilege as err:
        raise RestoreError(errors.no_createdb(describe(conninfo))) from err
    except psycopg.Error as exc:
        raise RestoreError(errors.cannot_create_database(name, describe(conninfo), _db_error(exc, conninfo))) from None  # the cause may quote the DSN, password included
    return pg_conninfo.make_conninfo(conninfo, dbname=name)


def drop_database(conninfo: str, name: str) -> None:
    """Best effort: remove a scratch database that a failed restore left half-filled."""
    try:
        with connect(conninfo) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    except psycopg.Error:
        pass


def _counts(conninfo: str) -> dict[str, int]:
    try:
        return count_all_rows(conninfo)
    except VerifyError as exc:
        raise RestoreError(errors.rows_uncounted(exc)) from exc


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
    pg_dump: str = "pg_dump",
    psql: str = "psql",
    progress_interval: float = defaults.PROGRESS_INTERVAL_SECONDS,
    now: datetime | None = None,
    method: str = "auto",
    end_sessions: bool = False,
    maintenance_database: str = defaults.MAINTENANCE_DATABASE,
) -> RestoreResult:
    """`jobs` > 1 runs pg_restore with `--jobs` where it loads a database of its own: a scratch
    database, or the new database of a swap (workers/postgres/swap.py). The in-transaction method stays
    serial: parallel jobs cannot share its transaction. `end_sessions`: the application is in
    maintenance, so a swap may end the sessions still on the target.

    A dump made by hand (workers/postgres/dump_reader.py) is read whole first; its rows as its COPY blocks hold
    them must be the rows restored before anything is switched in. A plain SQL dump is restored only
    by the swap (its script cannot replace the tables of a live database in place)."""
    # Restore `backup_path` (a name in `backup_dir`, or a path inside it); see the module docstring.
    if into not in INTO:
        raise RestoreError(errors.restore_into_invalid(into))
    if method not in METHODS:
        raise RestoreError(errors.restore_method_invalid(method))
    archive = resolve_archive(backup_path, backup_dir)
    source = _source(archive, pg_restore)
    if into == "target" and source.ours and source.target != target and not allow_other_target:
        raise RestoreError(errors.backup_of_other_target(archive.name, source.target, target))
    started = time.monotonic()
    dbname, password = split_password(conninfo)
    env = client_env(password)
    dropped: list[str] = []
    loader = _Loader(source, env=env, conninfo=conninfo, jobs=max(jobs or 1, 1), pg_restore=pg_restore, psql=psql,
                     heartbeat=heartbeat, interval=progress_interval)

    if into == "scratch":
        name = scratch_name or scratch_database_name(target, now or datetime.now(UTC))
        scratch_conninfo = create_scratch_database(conninfo, name)
        try:
            loader.load(name, scratch_owner=True)
            counts = _counts(scratch_conninfo)
            source.check_counts(counts)
        except BaseException:
            drop_database(conninfo, name)
            raise
        database = name
    else:
        used, replaced, note = "transaction", None, None
        if method != "transaction":
            note = _swap_refused(conninfo)
            if note is not None and (method == "swap" or source.plain):
                raise RestoreError(note if not source.plain else errors.plain_needs_swap(archive.name, note))
        elif source.plain:
            raise RestoreError(errors.plain_needs_swap(archive.name, errors.METHOD_IS_TRANSACTION))
        if method != "transaction" and note is None:
            try:
                dropped, replaced = _restore_by_swap(
                    conninfo, loader, dbname=dbname, pg_dump=pg_dump, psql=psql, heartbeat=heartbeat,
                    interval=progress_interval, end_sessions=end_sessions, wait_ms=lock_timeout_ms,
                    maintenance_database=maintenance_database, now=now or datetime.now(UTC),
                )
                used = "swap"
            except swap.SessionsStayed as stayed:
                if method == "swap" or source.plain:
                    raise
                note = str(stayed)
        if used == "transaction":
            dropped = _restore_into_target(
                conninfo, archive, env=env, dbname=dbname, pg_restore=pg_restore, psql=psql,
                heartbeat=heartbeat, interval=progress_interval, lock_timeout_ms=lock_timeout_ms,
            )
        counts, database = _counts(conninfo), database_name(conninfo)
        return RestoreResult(
            into=into, database=database, target=target, backup=archive.name, sha256=source.sha256,
            toc_entries=source.entries, duration_s=round(time.monotonic() - started, 3), row_counts=counts,
            dropped_tables=dropped, method=used, jobs=loader.jobs if used == "swap" else 1,
            replaced_database=replaced, method_note=note, format=source.format, ours=source.ours,
        )

    return RestoreResult(
        into=into,
        database=database,
        target=target,
        backup=archive.name,
        sha256=source.sha256,
        toc_entries=source.entries,
        duration_s=round(time.monotonic() - started, 3),
        row_counts=counts,
        dropped_tables=dropped,
        jobs=loader.jobs,
        format=source.format,
        ours=source.ours,
    )


@dataclass(frozen=True)
class _Source:
    """The file a restore reads, verified: ours (checksum, `pg_restore --list`) or made by hand (read whole)."""

    archive: Path
    format: str
    ours: bool
    sha256: str
    entries: int  # TOC entries of an archive of ours; tables of a dump made by hand
    target: Any = None
    contents: dump_reader.DumpContents | None = None

    @property
    def plain(self) -> bool:
        return self.format in dump_reader.PLAIN_FORMATS

    def check_counts(self, counts: dict[str, int]) -> None:
        """A dump made by hand: the rows restored are the rows its COPY blocks hold (the preview's figures)."""
        if self.contents is None:
            return
        for table, rows in self.contents.tables.items():
            restored = counts.get(table)
            if rows is not None and table not in KEPT_TABLES and restored != rows:
                raise RestoreError(errors.restored_rows_differ(self.archive.name, table, rows, restored or 0))


def _source(archive: Path, pg_restore: str) -> _Source:
    """Verify the file before anything happens; a damaged one is refused in one line."""
    try:
        if dump_reader.is_ours(archive):
            manifest = BackupManifest.from_dict(read_manifest(archive) or {})
            entries = verify_archive(archive, pg_restore=pg_restore)
            return _Source(archive, str(manifest.format or dump_reader.format_of(archive)), True,
                           str(manifest.sha256 or ""), entries, target=manifest.target)
        contents = dump_reader.read(archive, pg_restore=pg_restore)
    except (BackupError, RestoreError) as exc:
        raise RestoreError(errors.nothing_restored(exc)) from exc
    return _Source(archive, contents.format, False, contents.sha256, len(contents.tables), contents=contents)


class _Loader:
    """Loads the verified file into a database of its own (a scratch database, a swap's new database):
    pg_restore for an archive, psql in one transaction for a plain SQL dump."""

    def __init__(self, source: _Source, *, env: dict[str, str], conninfo: str, jobs: int, pg_restore: str,
                 psql: str, heartbeat: Heartbeat | None, interval: float) -> None:
        self.source, self.env, self.conninfo, self.jobs = source, env, conninfo, jobs
        self.pg_restore, self.psql, self.heartbeat, self.interval = pg_restore, psql, heartbeat, interval
        self.toc = [] if source.plain else read_toc(source.archive, pg_restore)

    @property
    def tables(self) -> set[str]:
        """The tables the file defines."""
        if self.source.contents is not None:
            return set(self.source.contents.tables)
        return archive_tables(self.toc)

    def load(self, database: str, *, scratch_owner: bool = False, leave_out_kept: bool = False) -> None:
        """`scratch_owner`: objects belong to whoever restores (a scratch database); `leave_out_kept`:
        the bot's own tables are not restored (a swap copies the target's own)."""
        archive = self.source.archive
        dbname = swap.with_dbname(split_password(self.conninfo)[0], database)
        if self.source.plain:
            load_plain(archive, swap.with_dbname(self.conninfo, database), psql=self.psql, heartbeat=self.heartbeat,
                       interval=self.interval)
            if leave_out_kept:  # the file's copies of them: the target's own are copied in before the switch
                with connect(swap.with_dbname(self.conninfo, database)) as conn:
                    for table in KEPT_TABLES:
                        conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(
                            sql.Identifier(*table.split(".", 1))))
            return
        argv = [self.pg_restore, "--no-password", "--exit-on-error", f"--dbname={dbname}"]
        if scratch_owner:
            argv.append("--no-owner")
        if self.jobs > 1:
            argv.append(f"--jobs={self.jobs}")
        with tempfile.NamedTemporaryFile("w", prefix="restore-list-", suffix=".txt") as listing:
            if leave_out_kept:
                listing.write(restore_list(self.toc))
                listing.flush()
                argv.append(f"--use-list={listing.name}")
            run_client(
                [*argv, str(archive)], env=self.env, conninfo=self.conninfo, heartbeat=self.heartbeat,
                progress=lambda elapsed: messages.restoring(archive.name, database, elapsed),
                interval=self.interval, error=RestoreError, what=errors.pg_restore_into(database),
            )


def load_plain(dump: Path, conninfo: str, *, psql: str = "psql", heartbeat: Heartbeat | None = None,
               interval: float = defaults.PROGRESS_INTERVAL_SECONDS) -> None:
    """A plain SQL dump (gzipped or not) into the database of `conninfo`, in one psql transaction that
    stops at the first error: the database gets all of it or none."""
    dbname, password = split_password(conninfo)
    _relay_in_transaction(
        dump_reader.script_command(dump),
        [psql, "--no-password", "--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1", f"--dbname={dbname}"],
        prologue=b"", env=client_env(password), conninfo=conninfo, heartbeat=heartbeat, interval=interval,
        label=dump.name,
    )


def _swap_refused(conninfo: str) -> str | None:
    """Why a swap cannot run here (None: it can)."""
    try:
        with connect(conninfo) as conn:
            return swap.cannot_swap(conn)
    except psycopg.Error as exc:
        raise RestoreError(errors.nothing_restored(_db_error(exc, conninfo))) from None  # may quote the DSN


def _kept_present(conninfo: str) -> list[str]:
    try:
        present = set(user_tables(conninfo))
    except VerifyError as exc:
        raise RestoreError(errors.nothing_restored(exc)) from exc
    return [table for table in KEPT_TABLES if table in present]


def _copy_kept_rows(source: psycopg.Connection[Any], dest: psycopg.Connection[Any], tables: list[str]) -> None:
    """Every row of the bot's own tables, and their sequences' positions, from the target (over the
    session kept open for it) into the new database, in the new database's one transaction."""
    with dest.transaction():
        for table in tables:
            name = sql.Identifier(*table.split(".", 1))
            dest.execute(sql.SQL("TRUNCATE {}").format(name))
            with source.cursor().copy(sql.SQL("COPY {} TO STDOUT (FORMAT BINARY)").format(name)) as out, \
                    dest.cursor().copy(sql.SQL("COPY {} FROM STDIN (FORMAT BINARY)").format(name)) as into:
                for chunk in out:
                    into.write(chunk)
            for (sequence,) in source.execute(
                "SELECT pg_get_serial_sequence(%s, attname) FROM pg_attribute WHERE attrelid = %s::regclass "
                "AND attnum > 0 AND NOT attisdropped AND pg_get_serial_sequence(%s, attname) IS NOT NULL",
                (table, table, table),
            ).fetchall():
                row = source.execute(sql.SQL("SELECT last_value, is_called FROM {}").format(
                    sql.Identifier(*str(sequence).split(".", 1)))).fetchone()
                if row is not None:
                    dest.execute("SELECT setval(%s, %s, %s)", (sequence, row[0], row[1]))


def _restore_by_swap(
    conninfo: str,
    loader: _Loader,
    *,
    dbname: str,
    pg_dump: str,
    psql: str,
    heartbeat: Heartbeat | None,
    interval: float,
    end_sessions: bool,
    wait_ms: int,
    maintenance_database: str,
    now: datetime,
) -> tuple[list[str], str]:
    """Load the file into a new database (pg_restore --jobs, or psql for a plain dump), then switch it
    in (workers/postgres/swap.py). Returns the tables the file lacks (gone with the old database) and the name
    the old database is kept under."""
    target_db = database_name(conninfo)
    try:
        extra = sorted(set(user_tables(conninfo)) - loader.tables - set(KEPT_TABLES))
    except VerifyError as exc:
        raise RestoreError(errors.nothing_restored(exc)) from exc
    kept = _kept_present(conninfo)
    replacement, replaced = swap.side_name(target_db, "restoring", now), swap.side_name(target_db, "replaced", now)
    where = describe(conninfo)
    with swap.maintenance_connection(conninfo, maintenance_database) as admin:
        if not end_sessions:  # sessions that will not leave: say so now, not after a whole restore
            swap.empty(admin, target_db, end_sessions=False, wait_ms=wait_ms)
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(replacement)))
        switched = False
        try:
            loader.load(replacement, leave_out_kept=True)
            loader.source.check_counts(_counts(swap.with_dbname(conninfo, replacement)))
            if kept:  # their definitions now; their rows at the switch, when nobody else writes
                _relay_in_transaction(
                    [pg_dump, "--no-password", "--schema-only", *(f"--table={t}" for t in kept), f"--dbname={dbname}"],
                    [psql, "--no-password", "--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1",
                     f"--dbname={swap.with_dbname(dbname, replacement)}"],
                    prologue=b"", env=loader.env, conninfo=conninfo, heartbeat=heartbeat, interval=interval,
                    label=messages.KEPT_TABLES_LABEL,
                )
            swap.copy_database_settings(admin, target_db, replacement)
            with connect(conninfo) as source, connect(swap.with_dbname(conninfo, replacement)) as dest:
                with swap.connections_refused(admin, target_db):
                    swap.empty(admin, target_db, end_sessions=end_sessions, wait_ms=wait_ms, keep={source.info.backend_pid})
                    _copy_kept_rows(source, dest, kept)
                    source.close()
                    dest.close()
                    swap.empty(admin, target_db, end_sessions=False, wait_ms=wait_ms)
                    swap.switch(admin, target_db, replacement, replaced)
                    switched = True
        except psycopg.Error as exc:
            raise RestoreError(errors.swap_failed(where, _db_error(exc, conninfo))) from None  # may quote the DSN
        finally:
            if not switched:
                drop_database(swap.with_dbname(conninfo, maintenance_database), replacement)
    return extra, replaced


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
    toc = read_toc(archive, pg_restore)
    try:
        extra = sorted(set(user_tables(conninfo)) - archive_tables(toc) - set(KEPT_TABLES))
    except VerifyError as exc:
        raise RestoreError(errors.nothing_restored(exc)) from exc
    # A bounded lock wait: behind the application's sessions the restore fails (and rolls back)
    # instead of hanging, and the application never queues behind a restore stuck waiting.
    prologue = f"SET lock_timeout = {int(lock_timeout_ms)};\n" + "".join(
        sql.SQL("DROP TABLE IF EXISTS {} CASCADE;\n").format(sql.Identifier(*table.split(".", 1))).as_string(None)
        for table in extra
    )
    with tempfile.NamedTemporaryFile("w", prefix="restore-list-", suffix=".txt") as listing:
        listing.write(restore_list(toc))
        listing.flush()
        _relay_in_transaction(
            [pg_restore, "--clean", "--if-exists", f"--use-list={listing.name}", "--file=-", str(archive)],
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
            raise RestoreError(errors.cannot_run(producer[0], str(exc.strerror or exc), errors.INSTALL_PG_RESTORE)) from exc
        try:
            second = subprocess.Popen(consumer, env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=consumer_err)
        except OSError as exc:
            first.kill()
            first.wait()
            raise RestoreError(errors.cannot_run(consumer[0], str(exc.strerror or exc), errors.INSTALL_PSQL)) from exc

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
        raise RestoreError(errors.restore_rolled_back(where, last_line(redact(consumer_text, conninfo))))
    if first.returncode != 0:
        raise RestoreError(errors.restore_unreadable(where, label, last_line(redact(producer_text, conninfo))))
