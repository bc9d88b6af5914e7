"""Restores with the real pg_restore and psql into real PostgreSQL databases."""

from __future__ import annotations

import gzip
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.test_backup import PASSWORD, build_example, with_password
from workers.postgres.checks import count_all_rows, user_tables
from workers.postgres.pg_dump import manifest_path, take_backup
from workers.postgres.pg_restore import KEPT_TABLES, RestoreError, restore_backup


@pytest.fixture
def scratch_cleanup(postgres_admin_url: str) -> Iterator[list[str]]:
    """Names of scratch databases a test created, dropped at the end."""
    names: list[str] = []
    yield names
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        for name in names:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def example_url(database_url: str) -> str:
    build_example(database_url)
    return database_url


@pytest.mark.parametrize("jobs", [1, 2], ids=["custom", "directory"])
def test_restore_into_scratch_matches_the_original(
    example_url: str, tmp_path: Path, scratch_cleanup: list[str], jobs: int
) -> None:
    original = count_all_rows(example_url)
    backup = take_backup(example_url, target="prod", reason="pre-rollback", backup_dir=str(tmp_path), jobs=jobs)
    beats: list[str] = []
    result = restore_backup(
        with_password(example_url), Path(backup.path).name, into="scratch", backup_dir=str(tmp_path),
        target="prod", heartbeat=beats.append, progress_interval=0.001, jobs=jobs,
    )
    scratch_cleanup.append(result.database)
    assert result.database.startswith("prod_restore_") and PASSWORD not in json.dumps(result.to_dict())
    assert result.row_counts == original and original["public.users"] == 60
    assert result.sha256 == backup.sha256 and result.toc_entries == backup.toc_entries
    scratch = psycopg.conninfo.make_conninfo(example_url, dbname=result.database)
    assert count_all_rows(scratch) == original
    assert beats


def test_restore_into_target_is_all_or_nothing(example_url: str, tmp_path: Path) -> None:
    original = count_all_rows(example_url)
    backup = take_backup(example_url, target="prod", reason="pre-rollback", backup_dir=str(tmp_path), jobs=1)
    with psycopg.connect(example_url, autocommit=True) as conn:
        conn.execute("DELETE FROM projects")
        conn.execute("CREATE TABLE created_after (id int REFERENCES users (id))")
        conn.execute("INSERT INTO created_after SELECT id FROM users LIMIT 5")
        # A real failure late in the restore (its indexes come after tables and data are back).
        conn.execute(
            "CREATE FUNCTION refuse_index() RETURNS event_trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'index creation refused'; END $$"
        )
        conn.execute("CREATE EVENT TRIGGER refuse_index ON ddl_command_start WHEN TAG IN ('CREATE INDEX')"
                     " EXECUTE FUNCTION refuse_index()")
    changed = count_all_rows(example_url)

    with pytest.raises(RestoreError) as caught:
        restore_backup(with_password(example_url), backup.path, into="target", backup_dir=str(tmp_path), target="prod",
                       method="transaction")
    message = str(caught.value)
    assert "rolled back" in message and "index creation refused" in message
    assert "\n" not in message and PASSWORD not in message
    assert count_all_rows(example_url) == changed  # nothing of the restore stayed
    assert "public.created_after" in user_tables(example_url)

    with psycopg.connect(example_url, autocommit=True) as conn:
        conn.execute("DROP EVENT TRIGGER refuse_index")
    result = restore_backup(example_url, backup.path, into="target", backup_dir=str(tmp_path), target="prod",
                            method="transaction")
    assert result.method == "transaction"
    assert result.row_counts == original == count_all_rows(example_url)
    assert result.dropped_tables == ["public.created_after"] and result.database == psycopg.conninfo.conninfo_to_dict(
        example_url)["dbname"]


def test_corrupted_backup_is_refused_before_anything(example_url: str, tmp_path: Path, postgres_admin_url: str) -> None:
    backup = take_backup(example_url, target="prod", reason="x", backup_dir=str(tmp_path), jobs=1)
    archive = Path(backup.path)
    archive.write_bytes(archive.read_bytes()[:-10])
    with pytest.raises(RestoreError, match="corrupted.*nothing was restored"):
        restore_backup(example_url, archive.name, into="scratch", backup_dir=str(tmp_path), target="prod",
                       scratch_name="rbt_should_not_exist")
    with psycopg.connect(postgres_admin_url) as conn:
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = 'rbt_should_not_exist'").fetchone() is None
    manifest_path(archive).unlink()  # now a custom dump made by hand: read whole, and found cut short
    with pytest.raises(RestoreError, match=r"is damaged: pg_restore cannot read all of it.*nothing was restored"):
        restore_backup(example_url, archive.name, into="target", backup_dir=str(tmp_path), target="prod")


def test_backup_outside_the_directory_or_of_another_target_is_refused(example_url: str, tmp_path: Path) -> None:
    backups = tmp_path / "backups"
    backup = take_backup(example_url, target="staging", reason="x", backup_dir=str(backups), jobs=1)
    outside = tmp_path / "elsewhere.dump"
    outside.write_bytes(Path(backup.path).read_bytes())
    with pytest.raises(RestoreError, match="not in the backup directory"):
        restore_backup(example_url, str(outside), into="target", backup_dir=str(backups), target="prod")
    with pytest.raises(RestoreError, match="not in the backup directory"):
        restore_backup(example_url, "../elsewhere.dump", into="target", backup_dir=str(backups), target="prod")
    with pytest.raises(RestoreError, match="does not exist"):
        restore_backup(example_url, "nope.dump", into="target", backup_dir=str(backups), target="prod")
    with pytest.raises(RestoreError, match="taken from 'staging'"):
        restore_backup(example_url, backup.path, into="target", backup_dir=str(backups), target="prod")
    with pytest.raises(RestoreError, match="'target' or 'scratch'"):
        restore_backup(example_url, backup.path, into="elsewhere", backup_dir=str(backups), target="prod")


def test_existing_scratch_name_is_refused(example_url: str, tmp_path: Path) -> None:
    backup = take_backup(example_url, target="prod", reason="x", backup_dir=str(tmp_path), jobs=1)
    existing = str(psycopg.conninfo.conninfo_to_dict(example_url)["dbname"])
    with pytest.raises(RestoreError, match="already exists"):
        restore_backup(example_url, backup.path, into="scratch", backup_dir=str(tmp_path), target="prod",
                       scratch_name=existing)
    with pytest.raises(RestoreError, match="lower-case"):
        restore_backup(example_url, backup.path, into="scratch", backup_dir=str(tmp_path), target="prod",
                       scratch_name='bad"; drop')


def test_restore_behind_an_application_lock_fails_instead_of_hanging(example_url: str, tmp_path: Path) -> None:
    original = count_all_rows(example_url)
    backup = take_backup(example_url, target="prod", reason="x", backup_dir=str(tmp_path), jobs=1)
    with psycopg.connect(example_url) as app:
        app.execute("INSERT INTO users (email, full_name) VALUES ('late@example.com', 'Late')")
        app.execute("SELECT count(*) FROM projects")  # holds ACCESS SHARE on projects until commit
        with pytest.raises(RestoreError, match="lock timeout"):
            restore_backup(example_url, backup.path, into="target", backup_dir=str(tmp_path), target="prod",
                           lock_timeout_ms=300)
        app.commit()
    assert count_all_rows(example_url) == {**original, "public.users": original["public.users"] + 1}


def test_the_bots_own_tables_are_left_out_of_a_restore() -> None:
    from workers.postgres.pg_restore import archive_tables, restore_list

    toc = [
        ";",
        "216; 1259 24541 TABLE public migration_history postgres",
        "215; 1259 24540 SEQUENCE public migration_history_id_seq postgres",
        "3400; 0 0 SEQUENCE OWNED BY public migration_history_id_seq postgres",
        "3216; 2604 24544 DEFAULT public migration_history id postgres",
        "3387; 0 24541 TABLE DATA public migration_history postgres",
        "3404; 0 0 SEQUENCE SET public migration_history_id_seq postgres",
        "3230; 2606 24546 CONSTRAINT public migration_history migration_history_pkey postgres",
        "3231; 1259 24550 INDEX public migration_history_request_id_idx postgres",
        "230; 1259 24600 TABLE public rollback_target_identity postgres",
        "220; 1259 24566 TABLE public projects postgres",
        "3391; 0 24566 TABLE DATA public projects postgres",
        "3228; 2606 24539 CONSTRAINT public schema_migrations schema_migrations_pkey postgres",
        "3241; 2606 24575 FK CONSTRAINT public projects projects_owner_id_fkey postgres",
    ]
    kept = [line for line in restore_list(toc).splitlines() if not line.startswith(";")]
    assert kept == toc[-4:]
    assert archive_tables(toc) == {"public.migration_history", "public.rollback_target_identity", "public.projects"}


# -- restore by swapping databases (workers/postgres/swap.py) -------------------------------------------------


def _databases(admin_url: str, prefix: str) -> dict[str, bool]:
    """Databases whose name starts with `prefix`, and whether they accept connections."""
    with psycopg.connect(admin_url) as conn:
        rows = conn.execute("SELECT datname, datallowconn FROM pg_database WHERE starts_with(datname, %s)",
                            (prefix,)).fetchall()
    return {str(name): bool(allowed) for name, allowed in rows}


@pytest.fixture
def swapped(postgres_admin_url: str, example_url: str) -> Iterator[str]:
    """The test database's name; the databases a swap leaves beside it are dropped at the end."""
    name = str(psycopg.conninfo.conninfo_to_dict(example_url)["dbname"])
    yield name
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        for other in _databases(postgres_admin_url, name + "_"):
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(other)))


def _history_rows(url: str) -> list[tuple[str, str]]:
    with psycopg.connect(url) as conn:
        return [(str(a), str(b)) for a, b in conn.execute("SELECT operation, executed_by FROM migration_history ORDER BY id")]


def test_restore_by_swap_is_parallel_keeps_history_and_database_settings(
    example_url: str, tmp_path: Path, postgres_admin_url: str, swapped: str
) -> None:
    original = count_all_rows(example_url)
    backup = take_backup(example_url, target="prod", reason="pre-rollback", backup_dir=str(tmp_path), jobs=2)
    with psycopg.connect(example_url, autocommit=True) as conn:
        conn.execute("DELETE FROM projects")
        conn.execute("CREATE TABLE created_after (id int)")
        conn.execute("INSERT INTO migration_history (version, operation, status, executed_by) "
                     "VALUES ('x', 'note', 'completed', 'after-the-backup')")
        conn.execute(sql.SQL("ALTER DATABASE {} SET work_mem = '7MB'").format(sql.Identifier(swapped)))
    history = _history_rows(example_url)
    beats: list[str] = []

    result = restore_backup(with_password(example_url), backup.path, into="target", backup_dir=str(tmp_path),
                            target="prod", method="swap", jobs=2, heartbeat=beats.append, progress_interval=0.001)

    assert (result.method, result.jobs, result.method_note) == ("swap", 2, None)
    assert result.row_counts == count_all_rows(example_url)
    assert {k: v for k, v in result.row_counts.items() if k != "public.migration_history"} == {
        k: v for k, v in original.items() if k != "public.migration_history"}
    assert result.dropped_tables == ["public.created_after"]
    assert "public.created_after" not in user_tables(example_url)
    assert _history_rows(example_url) == history  # every row up to the switch, the newest included
    with psycopg.connect(example_url) as conn:
        assert conn.execute("SHOW work_mem").fetchone() == ("7MB",)
        conn.execute("INSERT INTO migration_history (version, operation, status) VALUES ('y', 'note', 'completed')")
    assert result.replaced_database and result.replaced_database.startswith(swapped + "_replaced_")
    around = _databases(postgres_admin_url, swapped + "_")
    assert around == {result.replaced_database: True}  # the old one kept and readable, no leftover
    old = psycopg.conninfo.make_conninfo(example_url, dbname=result.replaced_database)
    assert "public.created_after" in user_tables(old)
    assert PASSWORD not in json.dumps(result.to_dict()) and beats


def test_a_session_that_stays_makes_auto_fall_back_and_swap_refuse(
    example_url: str, tmp_path: Path, postgres_admin_url: str, swapped: str
) -> None:
    backup = take_backup(example_url, target="prod", reason="x", backup_dir=str(tmp_path), jobs=1)
    with psycopg.connect(example_url, autocommit=True) as conn:
        conn.execute("DELETE FROM projects")
    changed = count_all_rows(example_url)
    with psycopg.connect(example_url, autocommit=True, application_name="app-pool") as app:
        with pytest.raises(RestoreError, match=r"session\(s\) stayed connected.*app-pool.*maintenance on"):
            restore_backup(example_url, backup.path, into="target", backup_dir=str(tmp_path), target="prod",
                           method="swap", lock_timeout_ms=300)
        assert count_all_rows(example_url) == changed
        result = restore_backup(example_url, backup.path, into="target", backup_dir=str(tmp_path), target="prod",
                                lock_timeout_ms=300)
        assert result.method == "transaction" and "app-pool" in str(result.method_note)
        assert app.execute("SELECT 1").fetchone() == (1,)  # never ended: nobody said the app is in maintenance
    assert _databases(postgres_admin_url, swapped + "_") == {}


def test_in_maintenance_a_swap_ends_the_sessions_left_on_the_target(
    example_url: str, tmp_path: Path, postgres_admin_url: str, swapped: str
) -> None:
    original = count_all_rows(example_url)
    backup = take_backup(example_url, target="prod", reason="x", backup_dir=str(tmp_path), jobs=1)
    app = psycopg.connect(example_url, autocommit=True, application_name="app-pool")
    try:
        app.execute("DELETE FROM projects")
        result = restore_backup(example_url, backup.path, into="target", backup_dir=str(tmp_path), target="prod",
                                end_sessions=True, lock_timeout_ms=5000)
        assert result.method == "swap"
        with pytest.raises(psycopg.OperationalError):
            app.execute("SELECT 1")
    finally:
        app.close()
    counts = count_all_rows(example_url)
    assert counts["public.projects"] == original["public.projects"] > 0


def test_a_swap_that_fails_before_the_switch_leaves_the_target_as_it_was(
    example_url: str, tmp_path: Path, postgres_admin_url: str, swapped: str
) -> None:
    backup = take_backup(example_url, target="prod", reason="x", backup_dir=str(tmp_path), jobs=1)
    with psycopg.connect(example_url, autocommit=True) as conn:
        conn.execute("DELETE FROM projects")
    changed = count_all_rows(example_url)
    failing = tmp_path / "pg_restore"  # reads archives like the real one, fails when it loads one
    failing.write_text('#!/bin/sh\ncase " $* " in *" --list "*) exec pg_restore "$@";; esac\n'
                       'echo "pg_restore: error: could not execute query: ERROR:  disk full" >&2\nexit 1\n')
    failing.chmod(0o755)
    with pytest.raises(RestoreError, match="failed.*disk full"):
        restore_backup(example_url, backup.path, into="target", backup_dir=str(tmp_path), target="prod",
                       method="swap", pg_restore=str(failing))
    assert count_all_rows(example_url) == changed
    assert _databases(postgres_admin_url, swapped) == {swapped: True}  # no leftover, connections allowed


# -- dumps made by hand (workers/postgres/dump_reader.py): the playbook's `pg_dump | gzip`, plain `.sql`, `pg_dump -Fc` ---


def dump_by_hand(url: str, path: Path, kind: str) -> Path:
    """What the playbook does by hand: `pg_dump $DATABASE_URL > x.sql`, `| gzip > x.sql.gz`, or `-Fc`."""
    dbname = str(psycopg.conninfo.conninfo_to_dict(url)["dbname"])
    argv = ["pg_dump", "--no-password", f"--dbname={psycopg.conninfo.make_conninfo(url, dbname=dbname)}"]
    if kind == "custom":
        subprocess.run([*argv, "-Fc", f"--file={path}"], check=True)
        return path
    dumped = subprocess.run(argv, check=True, capture_output=True).stdout
    path.write_bytes(gzip.compress(dumped) if kind == "plain-gzip" else dumped)
    return path


def cut(path: Path, how: str) -> None:
    """Damage a dump the ways the brief names: a cut gzip stream, a plain dump missing its end or with a
    broken COPY block, a truncated custom dump."""
    data = path.read_bytes()
    if how == "end":
        path.write_bytes(data[: data.index(b"-- PostgreSQL database dump complete")])
    elif how == "copy":  # a row of the users' COPY block cut in the middle, the rest of the file intact
        start = data.index(b"COPY public.users ")
        row = data.index(b"\n", data.index(b"\n", start) + 1)  # end of the block's first row
        path.write_bytes(data[:row - 20] + data[row:])
    else:  # the last tenth gone: a gzip stream without its end, a custom archive without its last data
        path.write_bytes(data[: len(data) * 9 // 10])


def _versions(url: str) -> list[tuple[str, str]]:
    with psycopg.connect(url) as conn:
        return [(str(v), str(s)) for v, s in conn.execute("SELECT version, status FROM schema_migrations ORDER BY 1")]


def test_a_gzipped_plain_dump_is_restored_by_swap_keeping_the_bots_own_tables(
    example_url: str, tmp_path: Path, postgres_admin_url: str, swapped: str
) -> None:
    original, versions = count_all_rows(example_url), _versions(example_url)
    dump = dump_by_hand(example_url, tmp_path / "emergency-pre-rollback-20251020T150000Z.sql.gz", "plain-gzip")
    with psycopg.connect(example_url, autocommit=True) as conn:  # after the dump: a bad hour
        conn.execute("DELETE FROM projects")
        conn.execute("UPDATE schema_migrations SET status = 'rolled_back'")
        conn.execute("CREATE TABLE created_after (id int)")
        conn.execute("CREATE TABLE rollback_target_identity (target text PRIMARY KEY)")
        conn.execute("INSERT INTO rollback_target_identity VALUES ('prod')")
        conn.execute("INSERT INTO migration_history (version, operation, status, executed_by) "
                     "VALUES ('x', 'note', 'completed', 'after-the-dump')")
    history = _history_rows(example_url)

    with pytest.raises(RestoreError) as refused:  # plain SQL cannot replace live tables in place
        restore_backup(example_url, dump.name, into="target", backup_dir=str(tmp_path), target="prod",
                       method="transaction")
    assert "plain SQL dump" in str(refused.value) and "\n" not in str(refused.value)

    result = restore_backup(with_password(example_url), dump.name, into="target", backup_dir=str(tmp_path),
                            target="prod")
    assert (result.method, result.format, result.ours) == ("swap", "plain-gzip", False)
    assert result.sha256 and PASSWORD not in json.dumps(result.to_dict())
    assert {k: v for k, v in count_all_rows(example_url).items() if k not in KEPT_TABLES} == {
        k: v for k, v in original.items() if k not in KEPT_TABLES}
    assert _versions(example_url) == versions  # schema_migrations is the file's
    assert _history_rows(example_url) == history  # migration_history and the identity record are the live ones
    with psycopg.connect(example_url) as conn:
        assert conn.execute("SELECT target FROM rollback_target_identity").fetchall() == [("prod",)]
    assert "public.created_after" not in user_tables(example_url) and result.dropped_tables == ["public.created_after"]


def test_a_custom_dump_made_by_hand_restores_with_any_name(
    example_url: str, tmp_path: Path, scratch_cleanup: list[str]
) -> None:
    original = count_all_rows(example_url)
    dump = dump_by_hand(example_url, tmp_path / "by-hand", "custom")  # no suffix, no manifest
    result = restore_backup(example_url, dump.name, into="scratch", backup_dir=str(tmp_path), target="prod")
    scratch_cleanup.append(result.database)
    assert (result.format, result.ours) == ("custom", False)
    assert result.row_counts == original


@pytest.mark.parametrize(("kind", "how", "why"), [
    ("plain-gzip", "tail", "gzip stream ends before its end marker"),
    ("plain", "end", "closing `-- PostgreSQL database dump complete` line"),
    ("plain", "copy", "in the COPY block of public.users has"),
    ("custom", "tail", "pg_restore cannot read all of it"),
], ids=["cut-gzip", "plain-without-end", "broken-copy", "cut-custom"])
def test_a_damaged_dump_is_refused_in_one_line_before_anything(
    example_url: str, tmp_path: Path, postgres_admin_url: str, swapped: str, kind: str, how: str, why: str
) -> None:
    dump = dump_by_hand(example_url, tmp_path / f"emergency.{kind}", kind)
    cut(dump, how)
    with psycopg.connect(example_url, autocommit=True) as conn:
        conn.execute("DELETE FROM projects")
    changed = count_all_rows(example_url)
    for into in ("target", "scratch"):
        with pytest.raises(RestoreError) as refused:
            restore_backup(example_url, dump.name, into=into, backup_dir=str(tmp_path), target="prod",
                           scratch_name="rbt_should_not_exist")
        message = str(refused.value)
        assert f"backup {dump.name} is damaged: " in message and why in message, message
        assert "nothing was restored" in message and "\n" not in message
    assert count_all_rows(example_url) == changed
    assert _databases(postgres_admin_url, swapped) == {swapped: True}
    assert _databases(postgres_admin_url, "rbt_should_not_exist") == {}
