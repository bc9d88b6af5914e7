"""Get lost rows back without losing newer ones (playbook scenario 4), table by table.

A whole-database restore throws away everything written since the backup. This module instead:
1. restores only the chosen tables of a verified backup into a scratch database (`pg_restore -L` with
   a table of contents cut down to those tables, `-j` for speed);
2. copies them into temporary tables of a session on the live database and compares them with the
   live tables by primary key: rows missing from live, rows that differ, rows only in live (kept);
3. inserts the missing rows (and, only when asked, overwrites the differing ones) in ONE transaction,
   parents before children along the foreign keys. The preview runs the very same statements in a
   transaction it rolls back, so a foreign key that would refuse a row is known before approval.

The preview's `digest` binds an approval to exactly what was shown: the apply recomputes it in its own
transaction and refuses when the live tables moved on. The scratch database is always dropped.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import conninfo as pg_conninfo
from psycopg import sql

from core import defaults
from core.jsontypes import JsonObject
from workers.postgres import dump_reader
from workers.postgres.pg_dump import Heartbeat, client_env, run_client, split_password
from workers.postgres.pg_restore import load_plain
from workers.runtime.errors import WorkerError

SAMPLE_SIZE = 5
TABLE_NAME = re.compile(r"^(?:([A-Za-z_][A-Za-z0-9_$]*)\.)?([A-Za-z_][A-Za-z0-9_$]*)$")
# pg_restore --list: "<id>; <catalog oid> <oid> <DESC> <schema> <name> <owner>"; DESC may hold a space.
TOC_ENTRY = re.compile(r"^\d+; \d+ \d+ (TABLE DATA|TABLE|TYPE|DOMAIN|SCHEMA|EXTENSION) (\S+) (\S+)")
# Entries a table's CREATE and COPY can depend on: its schema, extension types, user types and domains.
TOC_SUPPORT = frozenset({"TYPE", "DOMAIN", "SCHEMA", "EXTENSION"})


class RecoverError(WorkerError):
    """The recovery was refused or failed; `str()` is one line saying what is wrong and what to do."""


class TableNotInBackup(RecoverError):
    def __init__(self, table: str, backup: str) -> None:
        super().__init__(f"table {table} is not in backup {backup}: nothing recovered; "
                         "name a table the backup holds (`/rollback backups` lists them by date)")
        self.table, self.backup = table, backup


class TableNotLive(RecoverError):
    def __init__(self, table: str) -> None:
        super().__init__(f"table {table} does not exist in the live database: a table-level recovery "
                         "needs it; restore the whole backup into a scratch database instead")
        self.table = table


class NoPrimaryKey(RecoverError):
    def __init__(self, table: str) -> None:
        super().__init__(f"table {table} has no primary key, so its rows cannot be matched: nothing "
                         "recovered; restore the whole backup into a scratch database and copy by hand")
        self.table = table


class InvalidTableName(RecoverError):
    def __init__(self, name: str) -> None:
        super().__init__(f"`{name}` is not a table name: write `table` or `schema.table`")
        self.name = name


class ForeignKeyCycle(RecoverError):
    def __init__(self, tables: Sequence[str]) -> None:
        super().__init__(f"tables {', '.join(tables)} reference each other in a cycle, so no insert order "
                         "works: recover them one at a time, parents first")
        self.tables = tuple(tables)


class RowsRefused(RecoverError):
    """The database refused a recovered row (a foreign key to a row that is gone, a check, a unique key)."""

    def __init__(self, table: str, reason: str) -> None:
        super().__init__(f"the database refuses recovered rows of {table}: {reason}; add the parent "
                         "table to the recovery or fix the live rows first; nothing was changed")
        self.table, self.reason = table, reason


class DiffChanged(RecoverError):
    def __init__(self) -> None:
        super().__init__("the live tables changed since the preview that was approved: nothing was "
                         "changed; run the recovery again to see the new differences")


@dataclass(frozen=True)
class QualifiedName:
    schema: str
    name: str

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}"

    def identifier(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)


def parse_table(name: str) -> QualifiedName:
    """`users` or `public.users` (unquoted names, as people type them in Slack)."""
    match = TABLE_NAME.match(name.strip())
    if not match:
        raise InvalidTableName(name)
    return QualifiedName(match.group(1) or "public", match.group(2))


@dataclass(frozen=True)
class TableDiff:
    """One table, restored against live, compared by primary key."""

    table: str
    key: tuple[str, ...]
    restored_rows: int
    live_rows: int
    missing: int  # in the backup, not in live: inserted
    differing: int  # in both with other values: overwritten only with --overwrite
    only_live: int  # in live, not in the backup: always kept
    missing_sample: tuple[str, ...] = ()
    differing_sample: tuple[str, ...] = ()
    only_live_sample: tuple[str, ...] = ()
    digest: str = ""


@dataclass(frozen=True)
class RecoveryPreview:
    backup: str
    tables: tuple[TableDiff, ...]  # in insert order (parents first)
    overwrite: bool
    duration_s: float = 0.0

    @property
    def digest(self) -> str:
        """What an approval binds: the backup, the mode and each table's exact differences."""
        parts = [self.backup, "overwrite" if self.overwrite else "insert-only"]
        parts += [f"{t.table}:{t.missing}:{t.differing}:{t.digest}" for t in self.tables]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()

    @property
    def rows_to_insert(self) -> int:
        return sum(t.missing for t in self.tables)

    @property
    def rows_to_overwrite(self) -> int:
        return sum(t.differing for t in self.tables) if self.overwrite else 0

    def to_dict(self) -> JsonObject:
        return {**asdict(self), "digest": self.digest}


@dataclass(frozen=True)
class RecoveryResult:
    preview: RecoveryPreview
    inserted: dict[str, int] = field(default_factory=dict)
    overwritten: dict[str, int] = field(default_factory=dict)
    counts_before: dict[str, int] = field(default_factory=dict)
    counts_after: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0

    def to_dict(self) -> JsonObject:
        return asdict(self)


# ------------------------------------------------------------------------------------------------
# pure: the table of contents and the insert order


def select_toc(toc: str, tables: Sequence[QualifiedName], backup: str) -> list[str]:
    """The lines of `pg_restore --list` output that restore exactly `tables` (definition and data)
    plus what their definitions may need (schemas, types, domains, extensions). Raises
    TableNotInBackup for a table the archive does not hold."""
    wanted = {(t.schema, t.name) for t in tables}
    kept, found = [], set()
    for line in toc.splitlines():
        match = TOC_ENTRY.match(line)
        if not match:
            continue
        desc, schema, name = match.groups()
        if desc in TOC_SUPPORT:
            kept.append(line)
        elif (schema, name) in wanted:
            kept.append(line)
            if desc == "TABLE":
                found.add((schema, name))
    for table in tables:
        if (table.schema, table.name) not in found:
            raise TableNotInBackup(str(table), backup)
    return kept


def insert_order(tables: Sequence[str], references: Sequence[tuple[str, str]]) -> list[str]:
    """`tables` with every referenced (parent) table before the tables referencing it.

    `references` holds (child, parent) pairs; pairs naming tables outside `tables` and self-references
    are ignored (a single INSERT ... SELECT satisfies a self-reference). Raises ForeignKeyCycle.
    """
    chosen = list(dict.fromkeys(tables))
    parents: dict[str, set[str]] = {t: set() for t in chosen}
    for child, parent in references:
        if child in parents and parent in parents and child != parent:
            parents[child].add(parent)
    ordered: list[str] = []
    while parents:
        ready = [t for t in chosen if t in parents and not parents[t]]
        if not ready:
            raise ForeignKeyCycle(sorted(parents))
        for table in ready:
            ordered.append(table)
            del parents[table]
        for waiting in parents.values():
            waiting.difference_update(ready)
    return ordered


# ------------------------------------------------------------------------------------------------
# the live database's catalog


def primary_key(conn: psycopg.Connection[Any], table: QualifiedName) -> tuple[str, ...]:
    exists = conn.execute("SELECT to_regclass(%s)", (sql.Identifier(table.schema, table.name).as_string(conn),))
    row = exists.fetchone()
    if row is None or row[0] is None:
        raise TableNotLive(str(table))
    rows = conn.execute(
        """
        SELECT a.attname FROM pg_index i
        JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) ON true
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
        WHERE i.indrelid = %s::regclass AND i.indisprimary ORDER BY k.n
        """,
        (sql.Identifier(table.schema, table.name).as_string(conn),),
    ).fetchall()
    if not rows:
        raise NoPrimaryKey(str(table))
    return tuple(str(r[0]) for r in rows)


def foreign_keys(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    """(child, parent) pairs of every foreign key in the database, as `schema.table`."""
    rows = conn.execute(
        """
        SELECT cn.nspname || '.' || c.relname, pn.nspname || '.' || p.relname
        FROM pg_constraint f
        JOIN pg_class c ON c.oid = f.conrelid JOIN pg_namespace cn ON cn.oid = c.relnamespace
        JOIN pg_class p ON p.oid = f.confrelid JOIN pg_namespace pn ON pn.oid = p.relnamespace
        WHERE f.contype = 'f'
        """
    ).fetchall()
    return [(str(child), str(parent)) for child, parent in rows]


def columns(conn: psycopg.Connection[Any], table: QualifiedName) -> list[tuple[str, str]]:
    """(name, type) of the table's stored columns, in order (generated columns are left out: they
    cannot be written and follow from the others)."""
    rows = conn.execute(
        """
        SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
        WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = ''
        ORDER BY attnum
        """,
        (sql.Identifier(table.schema, table.name).as_string(conn),),
    ).fetchall()
    return [(str(name), str(type_)) for name, type_ in rows]


# ------------------------------------------------------------------------------------------------
# the scratch database


def _admin_dsn(conninfo: str, dbname: str) -> str:
    return pg_conninfo.make_conninfo(conninfo, dbname=dbname)


@contextmanager
def scratch_database(conninfo: str, label: str) -> Iterator[str]:
    """A new, empty database on the live database's server for the restored tables; dropped on exit,
    whatever happens (the caller's error is never masked by the drop)."""
    name = f"rb_recover_{re.sub(r'[^a-z0-9_]', '_', label.lower())[:24]}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(conninfo, connect_timeout=defaults.CONNECT_TIMEOUT_SECONDS, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield _admin_dsn(conninfo, name)
    finally:
        try:
            with psycopg.connect(conninfo, connect_timeout=defaults.CONNECT_TIMEOUT_SECONDS, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        except psycopg.Error:
            pass  # best effort: listed by name prefix, so an operator can spot a leftover


# Runs a PostgreSQL client: (argv without any password, the password for its environment or None).
RunClient = Callable[[list[str], "str | None"], None]


def client_runner(live_dsn: str, heartbeat: Heartbeat | None = None,
                  interval: float = defaults.PROGRESS_INTERVAL_SECONDS) -> RunClient:
    """Run pg_restore as the backup step runs its clients: password in the environment, heartbeats
    while it works, one redacted line on failure."""

    def run(argv: list[str], password: str | None) -> None:
        run_client(argv, env=client_env(password), conninfo=live_dsn, heartbeat=heartbeat,
                   progress=lambda elapsed: f"restoring the chosen tables ({elapsed:.0f} s)", interval=interval,
                   error=RecoverError, what="pg_restore of the chosen tables")

    return run


def archive_toc(archive: Path, tables: Sequence[QualifiedName], *, pg_restore: str) -> list[str]:
    """The archive's table of contents cut down to `tables` (`pg_restore --list`, reads the archive
    only). Raises TableNotInBackup before anything is created."""
    listed = subprocess.run([pg_restore, "--list", str(archive)], capture_output=True, text=True, timeout=300,
                            check=False)
    if listed.returncode != 0:
        raise RecoverError(f"backup {archive.name} cannot be read: {listed.stderr.strip().splitlines()[-1:]}")
    return select_toc(listed.stdout, tables, archive.name)


def restore_tables(archive: Path, scratch_dsn: str, keep: Sequence[str], *, jobs: int, pg_restore: str,
                   run: RunClient) -> None:
    """Restore the entries `keep` (from archive_toc) of `archive` into the scratch database (`run` runs
    the client)."""
    dsn, password = split_password(scratch_dsn)  # never on a command line, where `ps` shows it
    with tempfile.NamedTemporaryFile("w", suffix=".toc", delete=False) as toc:
        toc.write("\n".join(keep) + "\n")
    try:
        argv = [pg_restore, "--no-owner", "--no-privileges", "--exit-on-error", f"--use-list={toc.name}",
                f"--dbname={dsn}"]
        if jobs > 1:
            argv.append(f"--jobs={jobs}")
        run([*argv, str(archive)], password)
    finally:
        Path(toc.name).unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------------
# comparing and applying, in a session on the live database


@dataclass(frozen=True)
class _Loaded:
    table: QualifiedName
    temp: sql.Identifier
    key: tuple[str, ...]
    common: tuple[str, ...]  # stored columns in both the backup's and the live table, live order


def load_restored(live: psycopg.Connection[Any], scratch: psycopg.Connection[Any], table: QualifiedName,
                  key: tuple[str, ...]) -> _Loaded:
    """Copy the restored table from the scratch database into a temporary table of the live session
    (text COPY: portable between databases, whatever the types' OIDs)."""
    restored_cols = columns(scratch, table)
    live_names = [name for name, _ in columns(live, table)]
    missing_key = [k for k in key if k not in {n for n, _ in restored_cols}]
    if missing_key:
        raise RecoverError(f"the backup's {table} has no column {missing_key[0]} of the live primary key: "
                           "its rows cannot be matched; restore the whole backup into a scratch database")
    temp = sql.Identifier(f"rb_restored_{uuid.uuid4().hex[:12]}")
    live.execute(sql.SQL("CREATE TEMP TABLE {} ({}) ON COMMIT DROP").format(
        temp, sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t)) for n, t in restored_cols)))
    names = sql.SQL(", ").join(sql.Identifier(n) for n, _ in restored_cols)
    with scratch.cursor().copy(sql.SQL("COPY (SELECT {} FROM {}) TO STDOUT").format(names, table.identifier())) as out, \
            live.cursor().copy(sql.SQL("COPY {} ({}) FROM STDIN").format(temp, names)) as into:
        for chunk in out:
            into.write(chunk)
    live.execute(sql.SQL("ANALYZE {}").format(temp))
    restored_names = {n for n, _ in restored_cols}
    return _Loaded(table, temp, key, tuple(n for n in live_names if n in restored_names))


def _key_match(loaded: _Loaded, left: str, right: str) -> sql.Composed:
    return sql.SQL(" AND ").join(
        sql.SQL("{}.{} = {}.{}").format(sql.Identifier(left), sql.Identifier(k), sql.Identifier(right), sql.Identifier(k))
        for k in loaded.key)


def _key_text(loaded: _Loaded, alias: str) -> sql.Composable:
    if len(loaded.key) == 1:
        return sql.SQL("{}.{}::text").format(sql.Identifier(alias), sql.Identifier(loaded.key[0]))
    return sql.SQL("ROW({})::text").format(
        sql.SQL(", ").join(sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(k)) for k in loaded.key))


def _values_text(loaded: _Loaded, alias: str) -> sql.Composable:
    """The compared (non-key) columns as a row of texts: every type compares, json included."""
    cols = [c for c in loaded.common if c not in loaded.key]
    if not cols:
        return sql.SQL("ROW(NULL::text)")
    return sql.SQL("ROW({})").format(
        sql.SQL(", ").join(sql.SQL("{}.{}::text").format(sql.Identifier(alias), sql.Identifier(c)) for c in cols))


def _differs(loaded: _Loaded) -> sql.Composed:
    return sql.SQL("{} IS DISTINCT FROM {}").format(_values_text(loaded, "r"), _values_text(loaded, "l"))


def diff_table(live: psycopg.Connection[Any], loaded: _Loaded) -> TableDiff:
    params = {
        "live": loaded.table.identifier(), "restored": loaded.temp, "match": _key_match(loaded, "l", "r"),
        "rkey": _key_text(loaded, "r"), "lkey": _key_text(loaded, "l"), "differs": _differs(loaded),
        "lvalues": _values_text(loaded, "l"), "n": sql.Literal(SAMPLE_SIZE),
    }
    missing = sql.SQL("SELECT {rkey} AS k FROM {restored} r WHERE NOT EXISTS "
                      "(SELECT 1 FROM {live} l WHERE {match})").format(**params)
    differing = sql.SQL("SELECT {rkey} AS k, md5({lvalues}::text) AS v FROM {restored} r "
                        "JOIN {live} l ON {match} WHERE {differs}").format(**params)
    only_live = sql.SQL("SELECT {lkey} AS k FROM {live} l WHERE NOT EXISTS "
                        "(SELECT 1 FROM {restored} r WHERE {match})").format(**params)

    def summary(query: sql.Composed, value: sql.Composable) -> tuple[int, str, tuple[str, ...]]:
        row = live.execute(sql.SQL(
            "SELECT count(*), coalesce(md5(string_agg({v}, ',' ORDER BY k)), ''), "
            "(array_agg(k ORDER BY k))[1:{n}] FROM ({q}) d").format(v=value, n=params["n"], q=query)).fetchone()
        assert row is not None
        return int(row[0]), str(row[1]), tuple(row[2] or ())

    n_missing, missing_md5, missing_sample = summary(missing, sql.SQL("k"))
    n_differing, differing_md5, differing_sample = summary(differing, sql.SQL("k || ':' || v"))
    n_only, _, only_sample = summary(only_live, sql.SQL("k"))
    counts = live.execute(sql.SQL("SELECT (SELECT count(*) FROM {restored}), (SELECT count(*) FROM {live})")
                          .format(**params)).fetchone()
    assert counts is not None
    return TableDiff(
        table=str(loaded.table), key=loaded.key, restored_rows=int(counts[0]), live_rows=int(counts[1]),
        missing=n_missing, differing=n_differing, only_live=n_only, missing_sample=missing_sample,
        differing_sample=differing_sample, only_live_sample=only_sample,
        digest=hashlib.sha256(f"{missing_md5}|{differing_md5}".encode()).hexdigest()[:32],
    )


def apply_table(live: psycopg.Connection[Any], loaded: _Loaded, overwrite: bool) -> tuple[int, int]:
    """Insert the missing rows (and overwrite the differing ones when asked); (inserted, overwritten)."""
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in loaded.common)
    r_cols = sql.SQL(", ").join(sql.SQL("r.{}").format(sql.Identifier(c)) for c in loaded.common)
    match = _key_match(loaded, "l", "r")
    # OVERRIDING SYSTEM VALUE: identity columns GENERATED ALWAYS take the backup's values back.
    inserted = live.execute(sql.SQL(
        "INSERT INTO {live} AS l ({cols}) OVERRIDING SYSTEM VALUE SELECT {r_cols} FROM {restored} r "
        "WHERE NOT EXISTS (SELECT 1 FROM {live} l WHERE {match})").format(
        live=loaded.table.identifier(), cols=cols, r_cols=r_cols, restored=loaded.temp, match=match)).rowcount
    overwritten = 0
    values = [c for c in loaded.common if c not in loaded.key]
    if overwrite and values:
        assignments = sql.SQL(", ").join(sql.SQL("{} = r.{}").format(sql.Identifier(c), sql.Identifier(c))
                                         for c in values)
        overwritten = live.execute(sql.SQL(
            "UPDATE {live} AS l SET {assignments} FROM {restored} r WHERE {match} AND {differs}").format(
            live=loaded.table.identifier(), assignments=assignments, restored=loaded.temp, match=match,
            differs=_differs(loaded))).rowcount
    return max(inserted, 0), max(overwritten, 0)


def _refused(table: str, exc: psycopg.Error) -> RowsRefused:
    diag = exc.diag
    detail = diag.message_detail or ""
    reason = (diag.message_primary or str(exc)).strip()
    if diag.constraint_name:
        reason = f"{reason} ({detail.strip()})" if detail else reason
    return RowsRefused(table, reason.splitlines()[0][:300])


@dataclass
class Session:
    """A live-database transaction holding the restored tables as temporary tables, in insert order."""

    live: psycopg.Connection[Any]
    loaded: list[_Loaded]


@contextmanager
def recovery_session(
    live_dsn: str, archive: Path, names: Sequence[str], *, jobs: int, pg_restore: str, run: RunClient,
    lock_timeout_ms: int, statement_timeout_ms: int, psql: str = "psql", heartbeat: Heartbeat | None = None,
) -> Iterator[Session]:
    """Check the tables (live, with a primary key, in the backup) before anything is created, restore
    them into a scratch database, and open a transaction on the live database with each restored table
    loaded; the caller commits or it is rolled back. The scratch database is dropped before this
    returns, whatever happens. A plain SQL dump has no table of contents to pick tables from: all of
    it is loaded into the scratch database (psql, one transaction)."""
    tables = [parse_table(n) for n in names]
    with psycopg.connect(live_dsn, connect_timeout=defaults.CONNECT_TIMEOUT_SECONDS) as live:
        # One snapshot from comparison to commit: a row the application writes meanwhile cannot slip
        # between the check and the insert (its key then collides, and nothing is changed).
        live.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        keys = {str(t): primary_key(live, t) for t in tables}  # refusals before anything runs
        order = insert_order([str(t) for t in tables], foreign_keys(live))
        live.rollback()
        plain = dump_reader.is_plain(archive)
        if plain:  # a table not in the backup: refused here
            held = dump_reader.read(archive, pg_restore=pg_restore).tables
            for table in tables:
                if str(table) not in held:
                    raise TableNotInBackup(str(table), archive.name)
        else:
            keep = archive_toc(archive, tables, pg_restore=pg_restore)
        by_name = {str(t): t for t in tables}
        # named after the live database: an operator (or a test run) can tell whose leftover it is
        with scratch_database(live_dsn, str(live.info.dbname)) as scratch_dsn:
            if plain:
                load_plain(archive, scratch_dsn, psql=psql, heartbeat=heartbeat)
            else:
                restore_tables(archive, scratch_dsn, keep, jobs=jobs, pg_restore=pg_restore, run=run)
            with psycopg.connect(scratch_dsn, connect_timeout=defaults.CONNECT_TIMEOUT_SECONDS) as scratch:
                live.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(f"{lock_timeout_ms}ms")))
                live.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(
                    sql.Literal(f"{statement_timeout_ms}ms")))
                loaded = [load_restored(live, scratch, by_name[t], keys[t]) for t in order]
        try:
            yield Session(live, loaded)
        finally:
            live.rollback()  # a preview, or an apply that raised; after a commit this is a no-op


def preview(session: Session, backup: str, overwrite: bool, started: float) -> RecoveryPreview:
    """The differences, and a trial of the inserts in a savepoint rolled back (a refused row shows now)."""
    diffs = tuple(diff_table(session.live, loaded) for loaded in session.loaded)
    with session.live.transaction(force_rollback=True):
        for loaded in session.loaded:
            try:
                with session.live.transaction():
                    apply_table(session.live, loaded, overwrite)
            except psycopg.errors.IntegrityError as exc:
                raise _refused(str(loaded.table), exc) from exc
    return RecoveryPreview(backup=backup, tables=diffs, overwrite=overwrite,
                           duration_s=round(time.monotonic() - started, 3))


def apply(session: Session, backup: str, overwrite: bool, expected_digest: str, started: float) -> RecoveryResult:
    """Recompute the preview in this transaction, refuse if it moved on, then insert (and overwrite)
    and commit. Counts before and after are taken in the same transaction."""
    shown = RecoveryPreview(backup=backup, tables=tuple(diff_table(session.live, x) for x in session.loaded),
                            overwrite=overwrite)
    if shown.digest != expected_digest:
        raise DiffChanged()
    before: dict[str, int] = {}
    after: dict[str, int] = {}
    inserted: dict[str, int] = {}
    overwritten: dict[str, int] = {}
    for loaded in session.loaded:
        name = str(loaded.table)
        before[name] = _count(session.live, loaded.table)
        try:
            inserted[name], overwritten[name] = apply_table(session.live, loaded, overwrite)
        except psycopg.errors.IntegrityError as exc:
            raise _refused(name, exc) from exc
        after[name] = _count(session.live, loaded.table)
    for name in before:
        if after[name] != before[name] + inserted[name]:
            raise RecoverError(f"{name}: {before[name]} rows + {inserted[name]} inserted should be "
                               f"{before[name] + inserted[name]}, found {after[name]}: nothing was changed")
    session.live.commit()
    return RecoveryResult(preview=shown, inserted=inserted, overwritten=overwritten, counts_before=before,
                          counts_after=after, duration_s=round(time.monotonic() - started, 3))


def _count(conn: psycopg.Connection[Any], table: QualifiedName) -> int:
    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table.identifier())).fetchone()
    return int(row[0]) if row else 0


