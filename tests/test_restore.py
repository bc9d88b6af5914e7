"""Restores with the real pg_restore and psql into real PostgreSQL databases."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.test_backup import PASSWORD, build_example, with_password
from workers.backup import manifest_path, take_backup
from workers.restore import RestoreError, restore_backup
from workers.verify import count_all_rows, user_tables


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
        restore_backup(with_password(example_url), backup.path, into="target", backup_dir=str(tmp_path), target="prod")
    message = str(caught.value)
    assert "rolled back" in message and "index creation refused" in message
    assert "\n" not in message and PASSWORD not in message
    assert count_all_rows(example_url) == changed  # nothing of the restore stayed
    assert "public.created_after" in user_tables(example_url)

    with psycopg.connect(example_url, autocommit=True) as conn:
        conn.execute("DROP EVENT TRIGGER refuse_index")
    result = restore_backup(example_url, backup.path, into="target", backup_dir=str(tmp_path), target="prod")
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
    manifest_path(archive).unlink()
    with pytest.raises(RestoreError, match="no manifest"):
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
    from workers.restore import archive_tables, restore_list

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
