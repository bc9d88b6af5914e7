"""Table-level recovery (scenario 4) against a real PostgreSQL: lost rows back, newer rows kept."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from workers.postgres import row_merge
from workers.postgres.pg_dump import client_env, split_password
from workers.postgres.row_merge import (
    DiffChanged,
    ForeignKeyCycle,
    NoPrimaryKey,
    RowsRefused,
    TableNotInBackup,
    TableNotLive,
    insert_order,
    parse_table,
    select_toc,
)

SCHEMA = """
CREATE TYPE plan AS ENUM ('free', 'pro');
CREATE TABLE users (id bigserial PRIMARY KEY, email text NOT NULL UNIQUE, name text NOT NULL,
                    plan plan NOT NULL DEFAULT 'free', settings json, tags text[]);
CREATE TABLE projects (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                       owner_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE, name text NOT NULL);
CREATE TABLE memberships (user_id bigint REFERENCES users (id) ON DELETE CASCADE,
                          project_id bigint REFERENCES projects (id) ON DELETE CASCADE,
                          role text NOT NULL, PRIMARY KEY (user_id, project_id));
CREATE TABLE page_views (user_id bigint, at timestamptz DEFAULT now());
INSERT INTO users (email, name, plan, settings, tags)
  SELECT 'u' || i || '@example.com', 'User ' || i, CASE WHEN i % 3 = 0 THEN 'pro'::plan ELSE 'free' END,
         json_build_object('theme', CASE WHEN i % 2 = 0 THEN 'dark' ELSE 'light' END), ARRAY['t' || (i % 4)]
  FROM generate_series(1, 40) i;
INSERT INTO projects (owner_id, name) SELECT 1 + (i % 40), 'Project ' || i FROM generate_series(1, 60) i;
INSERT INTO memberships SELECT p.owner_id, p.id, 'owner' FROM projects p;
INSERT INTO page_views (user_id) SELECT 1 + (i % 40) FROM generate_series(1, 10) i;
"""


def _dump(database_url: str, path: Path) -> Path:
    dsn, password = split_password(database_url)
    subprocess.run(["pg_dump", "-Fc", "-f", str(path), f"--dbname={dsn}"], check=True, env=client_env(password))
    return path


def _rows(database_url: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(query).fetchall()


def _exec(database_url: str, statements: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(statements)


def _label(database_url: str) -> str:
    """The scratch databases of a recovery are named after the live database (workers/postgres/row_merge.py)."""
    return "rb_recover_" + re.sub(r"[^a-z0-9_]", "_", str(psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]).lower())[:24]


def _scratch_databases(database_url: str, label: str) -> list[str]:
    return [r[0] for r in _rows(database_url, "SELECT datname FROM pg_database") if label in r[0]]


@pytest.fixture
def incident(database_url: str, tmp_path: Path) -> tuple[str, Path]:
    """A database backed up, then hit by scenario 4: rows deleted (cascading), one row changed, and a
    newer row written after the backup."""
    _exec(database_url, SCHEMA)
    archive = _dump(database_url, tmp_path / f"incident{time.time_ns()}.dump")
    _exec(database_url, """
        DELETE FROM users WHERE id BETWEEN 5 AND 9;          -- cascades to projects and memberships
        UPDATE users SET name = 'Renamed' WHERE id = 2;
        INSERT INTO users (email, name) VALUES ('new@example.com', 'Newer');
    """)
    return database_url, archive


def _session(database_url: str, archive: Path, tables: list[str]) -> Any:
    return row_merge.recovery_session(database_url, archive, tables, jobs=2, pg_restore="pg_restore",
                                    run=row_merge.client_runner(database_url), lock_timeout_ms=2000,
                                    statement_timeout_ms=60_000)


def _preview(database_url: str, archive: Path, tables: list[str], overwrite: bool = False) -> row_merge.RecoveryPreview:
    with _session(database_url, archive, tables) as session:
        return row_merge.preview(session, archive.name, overwrite, time.monotonic())


def _apply(database_url: str, archive: Path, tables: list[str], digest: str,
           overwrite: bool = False) -> row_merge.RecoveryResult:
    with _session(database_url, archive, tables) as session:
        return row_merge.apply(session, archive.name, overwrite, digest, time.monotonic())


def test_preview_counts_missing_differing_and_newer_rows_without_changing_anything(incident: tuple[str, Path]) -> None:
    url, archive = incident
    before = _rows(url, "SELECT * FROM users ORDER BY id")
    shown = _preview(url, archive, ["users", "public.projects", "memberships"])
    by_table = {t.table: t for t in shown.tables}
    users = by_table["public.users"]
    assert (users.missing, users.differing, users.only_live) == (5, 1, 1)
    assert users.missing_sample == ("5", "6", "7", "8", "9")
    assert users.differing_sample == ("2",)
    assert users.only_live_sample == ("41",)
    deleted_projects = _rows(url, "SELECT count(*) FROM generate_series(1, 60) i WHERE 1 + (i % 40) BETWEEN 5 AND 9")
    assert by_table["public.projects"].missing == deleted_projects[0][0] > 0
    assert by_table["public.memberships"].key == ("user_id", "project_id")
    # parents first, whatever order they were named in
    assert [t.table for t in shown.tables] == ["public.users", "public.projects", "public.memberships"]
    assert shown.rows_to_insert == 5 + 2 * deleted_projects[0][0]
    assert _rows(url, "SELECT * FROM users ORDER BY id") == before
    assert _scratch_databases(url, _label(url)) == []


def test_apply_brings_lost_rows_back_and_keeps_newer_and_changed_rows(incident: tuple[str, Path]) -> None:
    url, archive = incident
    tables = ["memberships", "projects", "users"]
    shown = _preview(url, archive, tables)
    result = _apply(url, archive, tables, shown.digest)
    assert result.inserted["public.users"] == 5
    assert result.counts_after["public.users"] == result.counts_before["public.users"] + 5 == 41
    assert _rows(url, "SELECT name FROM users WHERE id = 2") == [("Renamed",)]  # changed row kept
    assert _rows(url, "SELECT name FROM users WHERE id = 41") == [("Newer",)]  # newer row kept
    assert _rows(url, "SELECT name, plan::text, settings::text, tags FROM users WHERE id = 6") == [
        ("User 6", "pro", '{"theme" : "dark"}', ["t2"])]
    assert _rows(url, "SELECT count(*) FROM projects")[0][0] == 60
    assert _rows(url, "SELECT count(*) FROM memberships")[0][0] == 60
    # a second preview finds nothing left to insert
    again = _preview(url, archive, tables)
    assert again.rows_to_insert == 0


def test_overwrite_puts_changed_rows_back_too(incident: tuple[str, Path]) -> None:
    url, archive = incident
    shown = _preview(url, archive, ["users"], overwrite=True)
    assert shown.rows_to_overwrite == 1
    result = _apply(url, archive, ["users"], shown.digest, overwrite=True)
    assert result.overwritten == {"public.users": 1}
    assert _rows(url, "SELECT name FROM users WHERE id = 2") == [("User 2",)]
    assert _rows(url, "SELECT name FROM users WHERE id = 41") == [("Newer",)]


def test_an_approval_binds_the_diff_it_was_shown(incident: tuple[str, Path]) -> None:
    url, archive = incident
    shown = _preview(url, archive, ["users"])
    insert_only_digest = shown.digest
    assert _preview(url, archive, ["users"], overwrite=True).digest != insert_only_digest
    _exec(url, "DELETE FROM users WHERE id = 12")  # the live table moves on after the preview
    before = _rows(url, "SELECT * FROM users ORDER BY id")
    with pytest.raises(DiffChanged):
        _apply(url, archive, ["users"], insert_only_digest)
    assert _rows(url, "SELECT * FROM users ORDER BY id") == before


def test_children_without_their_parents_are_refused_in_the_preview(incident: tuple[str, Path]) -> None:
    url, archive = incident
    with pytest.raises(RowsRefused, match=r"projects.*foreign key.*add the parent table"):
        _preview(url, archive, ["projects"])
    assert _scratch_databases(url, _label(url)) == []


@pytest.mark.parametrize(
    ("tables", "error", "text"),
    [
        (["page_views"], NoPrimaryKey, "page_views has no primary key"),
        (["nope"], TableNotLive, "public.nope does not exist in the live database"),
        (["users;drop"], row_merge.InvalidTableName, "is not a table name"),
    ],
)
def test_refusals_before_anything_runs(incident: tuple[str, Path], tables: list[str], error: type[Exception],
                                       text: str) -> None:
    url, archive = incident
    with pytest.raises(error, match=text):
        _preview(url, archive, tables)
    assert _scratch_databases(url, _label(url)) == []


def test_a_table_the_backup_does_not_hold_is_refused(incident: tuple[str, Path]) -> None:
    url, archive = incident
    _exec(url, "CREATE TABLE later (id int PRIMARY KEY)")
    with pytest.raises(TableNotInBackup, match="table public.later is not in backup"):
        _preview(url, archive, ["later"])
    assert _scratch_databases(url, _label(url)) == []


def test_the_scratch_database_is_dropped_when_the_restore_fails(incident: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = incident
    broken = tmp_path / "broken.dump"
    broken.write_bytes(b"PGDMP not really")
    with pytest.raises(row_merge.RecoverError, match="cannot be read"):
        _preview(url, broken, ["users"])
    calls: list[list[str]] = []

    def failing(argv: list[str], password: str | None) -> None:
        calls.append(argv)
        raise row_merge.RecoverError("pg_restore failed")

    _, archive = incident
    with pytest.raises(row_merge.RecoverError, match="pg_restore failed"), row_merge.recovery_session(
            url, archive, ["users"], jobs=1, pg_restore="pg_restore", run=failing, lock_timeout_ms=1000,
            statement_timeout_ms=10_000):
        pass
    assert calls and not any("password" in arg for arg in calls[0])
    assert _scratch_databases(url, _label(url)) == []


# -- pure parts ----------------------------------------------------------------------------------

TOC = """;
; Archive created at 2025-10-20 12:00:00 UTC
4; 2615 2200 SCHEMA - public pg_database_owner
5; 1247 16390 TYPE public plan postgres
216; 1259 16386 TABLE public users postgres
217; 1259 16387 SEQUENCE public users_id_seq postgres
3370; 2604 16388 DEFAULT public users id postgres
218; 1259 16400 TABLE public projects postgres
3371; 0 16386 TABLE DATA public users postgres
3372; 0 16400 TABLE DATA public projects postgres
3373; 2606 16401 CONSTRAINT public users users_pkey postgres
"""


def test_select_toc_keeps_the_tables_their_data_and_their_types() -> None:
    kept = select_toc(TOC, [parse_table("users")], "b.dump")
    assert [line.split(" ", 3)[3] for line in kept] == [
        "SCHEMA - public pg_database_owner", "TYPE public plan postgres", "TABLE public users postgres",
        "TABLE DATA public users postgres"]
    with pytest.raises(TableNotInBackup):
        select_toc(TOC, [parse_table("users"), parse_table("audit.users")], "b.dump")


def test_insert_order_puts_parents_first_and_refuses_cycles() -> None:
    refs = [("public.projects", "public.users"), ("public.memberships", "public.projects"),
            ("public.memberships", "public.users"), ("public.users", "public.users"),
            ("public.other", "public.users")]
    assert insert_order(["public.memberships", "public.users", "public.projects"], refs) == [
        "public.users", "public.projects", "public.memberships"]
    assert insert_order(["public.projects"], refs) == ["public.projects"]
    with pytest.raises(ForeignKeyCycle):
        insert_order(["a.x", "a.y"], [("a.x", "a.y"), ("a.y", "a.x")])

