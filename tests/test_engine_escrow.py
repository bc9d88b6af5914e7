"""Data-loss escrow and undo against a real PostgreSQL: rollback then undo gives the same dump back."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from tests.engine_support import (
    BOOKKEEPING,
    KNOWN_GOOD,
    NEW_FEATURE,
    apply_examples,
    make_engine,
    pg_dump,
    query,
    rows_sorted,
    statuses,
    table_exists,
    write_migration,
)
from workers.engine import escrow
from workers.engine.errors import EscrowIncomplete, UndoRefused

ESCROW_TABLES = "SELECT count(*) FROM pg_tables WHERE schemaname = 'rollback_escrow'"


def test_rollback_then_undo_of_the_example_gives_the_same_dump_back(database_url: str, tmp_path: Path) -> None:
    migrations = apply_examples(database_url, tmp_path, seed=True)
    before = rows_sorted(pg_dump(database_url, exclude=BOOKKEEPING))

    report = make_engine(database_url, migrations, request_id="RB-ESC001").rollback(KNOWN_GOOD)

    held = report.escrow["held"]
    assert [(h["kind"], h["relation"], h["rows"]) for h in held] == [
        ("drop_table", "new_feature_table", 3), ("drop_column", "users", 4), ("update", "users", 3)]
    assert report.escrow["not_escrowed"] == []
    assert not table_exists(database_url, "new_feature_table")

    dry = make_engine(database_url, migrations).undo("RB-ESC001", dry_run=True)
    assert dry.dry_run and [r["rows"] for r in dry.restored] == [3, 4, 3]
    assert statuses(database_url)[NEW_FEATURE] == "rolled_back"  # the dry run changed nothing

    done = make_engine(database_url, migrations, request_id="RB-UNDO01").undo("RB-ESC001")

    assert done.plan.versions == [NEW_FEATURE]
    assert rows_sorted(pg_dump(database_url, exclude=BOOKKEEPING)) == before
    assert statuses(database_url)[NEW_FEATURE] == "completed"
    assert query(database_url, "SELECT operation, request_id FROM migration_history WHERE operation = 'undo'") == [
        ("undo", "RB-UNDO01")]
    # The same undo request delivered twice does nothing; another one is refused.
    again = make_engine(database_url, migrations, request_id="RB-UNDO01").undo("RB-ESC001")
    assert again.already_done
    with pytest.raises(UndoRefused, match="already undone"):
        make_engine(database_url, migrations, request_id="RB-UNDO02").undo("RB-ESC001")


def test_escrow_tables_are_plain_copies_that_never_act_on_live_data(database_url: str, tmp_path: Path) -> None:
    migrations = apply_examples(database_url, tmp_path, seed=True)
    make_engine(database_url, migrations, request_id="RB-ESC002").rollback(KNOWN_GOOD)

    assert query(database_url, ESCROW_TABLES)[0][0] == 5  # runs, manifest and three copies
    on_copies = ("SELECT count(*) FROM {} WHERE {} IN (SELECT oid FROM pg_class WHERE relnamespace ="
                 " 'rollback_escrow'::regnamespace AND relname LIKE 'rb_esc002%%')")
    assert query(database_url, on_copies.format("pg_constraint", "conrelid"))[0][0] == 0
    assert query(database_url, on_copies.format("pg_trigger", "tgrelid"))[0][0] == 0
    assert query(database_url, on_copies.format("pg_attrdef", "adrelid"))[0][0] == 0
    # Users can be deleted: nothing of the escrow references them.
    query(database_url, "DELETE FROM users")
    row = query(database_url, "SELECT request_id, version, kind, source_relation, key_columns, row_count"
                              " FROM rollback_escrow.manifest ORDER BY id LIMIT 1")[0]
    assert row == ("RB-ESC002", NEW_FEATURE, "drop_table", ["new_feature_table"], ["id"], 3)


@pytest.fixture
def custom(database_url: str, tmp_path: Path) -> tuple[str, Path]:
    """A table without a primary key, an enum-typed column and a trigger, then a migration to roll back."""
    root = tmp_path / "migrations"
    write_migration(root, "2025_01_01_000000_base", """
CREATE TYPE mood AS ENUM ('calm', 'angry');
CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL, mood mood, score int NOT NULL DEFAULT 0);
CREATE TABLE log_lines (line text, level text);
CREATE TABLE tags (note_id int, tag text);
INSERT INTO notes SELECT g, 'note ' || g, CASE WHEN g % 2 = 0 THEN 'calm'::mood END, g FROM generate_series(1, 20) g;
INSERT INTO log_lines SELECT 'line ' || g, 'info' FROM generate_series(1, 5) g;
INSERT INTO tags SELECT g, 'odd' FROM generate_series(1, 20, 2) g;
""", "DROP TABLE tags; DROP TABLE log_lines; DROP TABLE notes; DROP TYPE mood;")
    write_migration(root, "2025_02_01_000000_bad", """
ALTER TABLE notes ADD COLUMN color text;
UPDATE notes SET color = 'red';
ALTER TABLE log_lines ADD COLUMN host text;
""", """
ALTER TABLE notes DROP COLUMN color;
UPDATE notes SET score = score + 100 FROM tags WHERE tags.note_id = notes.id AND tags.tag = 'odd';
DELETE FROM notes n WHERE n.id > 18;
ALTER TABLE log_lines DROP COLUMN host;
""")
    make_engine(database_url, root).apply()
    return database_url, root


def test_a_column_of_a_table_without_primary_key_is_flagged_not_escrowed(custom: tuple[str, Path]) -> None:
    url, root = custom
    report = make_engine(url, root, request_id="RB-NOPK01").rollback("2025_01_01_000000")

    assert [(n["relation"], n["reason"]) for n in report.escrow["not_escrowed"]] == [("log_lines", "no primary key")]
    assert query(url, "SELECT not_escrowed->0->>'reason' FROM rollback_escrow.runs")[0][0] == "no primary key"
    with pytest.raises(UndoRefused, match="was not escrowed"):  # undo would not give the data back
        make_engine(url, root).undo("RB-NOPK01")


def test_escrow_required_refuses_the_rollback_before_it_changes_anything(custom: tuple[str, Path]) -> None:
    url, root = custom
    before = pg_dump(url, exclude=BOOKKEEPING)
    with pytest.raises(EscrowIncomplete, match="no primary key"):
        make_engine(url, root, request_id="RB-NOPK02", escrow_required=True).rollback("2025_01_01_000000")
    assert pg_dump(url, exclude=BOOKKEEPING) == before
    assert query(url, ESCROW_TABLES)[0][0] == 0
    assert statuses(url)["2025_02_01_000000"] == "completed"
    assert query(url, "SELECT status FROM migration_history WHERE request_id = 'RB-NOPK02'") == [("failed",)]


def test_update_with_from_delete_and_dropped_types_come_back_by_primary_key(custom: tuple[str, Path]) -> None:
    url, root = custom
    query(url, "ALTER TABLE log_lines ADD PRIMARY KEY (line)")  # now every statement can be escrowed
    before = rows_sorted(pg_dump(url, exclude=BOOKKEEPING))

    report = make_engine(url, root, request_id="RB-FROM01").rollback("2025_01_01_000000")
    kinds = [(h["kind"], h["relation"], h["rows"]) for h in report.escrow["held"]]
    assert kinds == [("drop_column", "notes", 20), ("update", "notes", 10), ("delete", "notes", 2),
                     ("drop_column", "log_lines", 5)]
    make_engine(url, root).undo("RB-FROM01")

    assert rows_sorted(pg_dump(url, exclude=BOOKKEEPING)) == before


def test_a_dropped_enum_type_is_not_held_back_by_its_escrowed_values(custom: tuple[str, Path]) -> None:
    url, root = custom
    make_engine(url, root).rollback("2025_01_01_000000")
    before = rows_sorted(pg_dump(url, exclude=BOOKKEEPING))

    report = make_engine(url, root, request_id="RB-ALL001").rollback()  # the base: drops three tables and the type

    # Whole tables need no primary key: rows come back as they were (tags and log_lines have none).
    assert {h["relation"]: h["rows"] for h in report.escrow["held"]} == {"tags": 10, "log_lines": 5, "notes": 18}
    assert not query(url, "SELECT 1 FROM pg_type WHERE typname = 'mood'")
    assert query(url, "SELECT count(*) FROM rollback_escrow.rb_all001_003_notes WHERE mood = 'calm'")[0][0] == 9
    make_engine(url, root).undo("RB-ALL001")
    assert rows_sorted(pg_dump(url, exclude=BOOKKEEPING)) == before


def test_a_statement_that_changes_other_rows_than_were_copied_refuses_the_rollback(custom: tuple[str, Path]) -> None:
    url, root = custom
    # A trigger that silently skips some rows: the UPDATE's row count is not the copy's.
    query(url, "CREATE FUNCTION skip_even() RETURNS trigger LANGUAGE plpgsql AS"
               " $$ BEGIN IF NEW.id % 2 = 0 THEN RETURN NULL; END IF; RETURN NEW; END $$;"
               " CREATE TRIGGER skip_even BEFORE UPDATE ON notes FOR EACH ROW EXECUTE FUNCTION skip_even()")
    query(url, "UPDATE tags SET note_id = note_id + 1")  # now the joined notes are even: all skipped
    with pytest.raises(EscrowIncomplete, match="not exact"):
        make_engine(url, root, request_id="RB-TRIG01").rollback("2025_01_01_000000")
    assert statuses(url)["2025_02_01_000000"] == "completed"
    assert query(url, ESCROW_TABLES)[0][0] == 0


CANNOT = [
    ("MERGE INTO notes n USING tags t ON t.note_id = n.id WHEN MATCHED THEN UPDATE SET body = 'x'", "MERGE"),
    ("INSERT INTO notes (id, body) VALUES (1, 'x') ON CONFLICT (id) DO UPDATE SET body = 'y'", "ON CONFLICT"),
    ("UPDATE notes SET body = 'x' WHERE CURRENT OF c", "CURRENT OF"),
    ("DO $$ BEGIN DELETE FROM notes; END $$", "DO block"),
    ("WITH gone AS (DELETE FROM tags RETURNING note_id) UPDATE notes SET body = 'x' WHERE id IN (SELECT note_id FROM gone)",
     "data-modifying WITH"),
    ("UPDATE notes SET id = id + 100", "primary key"),
    ("UPDATE log_lines SET level = 'warn'", "no primary key"),
    ("ALTER TABLE log_lines ALTER COLUMN level TYPE varchar(10)", "no primary key"),
    ("ALTER TABLE notes DROP COLUMN id", "part of the primary key"),
]


@pytest.mark.parametrize(("statement", "reason"), CANNOT)
def test_what_cannot_be_escrowed_is_named(custom: tuple[str, Path], statement: str, reason: str) -> None:
    url, _root = custom
    with psycopg.connect(url) as conn:
        found = escrow.assess(conn, "2025_02_01_000000", statement)
        conn.rollback()
    assert found and all(reason in f.reason for f in found), found


CAN = [
    "UPDATE notes SET body = 'x' FROM tags WHERE tags.note_id = notes.id",
    "DELETE FROM log_lines WHERE level = 'info'",  # whole rows: no key needed
    "TRUNCATE log_lines",
    "ALTER TABLE notes ALTER COLUMN score TYPE bigint",
    "DROP INDEX IF EXISTS nothing_idx",
    "UPDATE notes AS n SET score = 0 WHERE n.mood = 'calm'",
]


@pytest.mark.parametrize("statement", CAN)
def test_what_can_be_escrowed_is_not_flagged(custom: tuple[str, Path], statement: str) -> None:
    url, _root = custom
    with psycopg.connect(url) as conn:
        assert escrow.assess(conn, "2025_02_01_000000", statement) == []
        conn.rollback()


def test_undo_is_refused_when_a_newer_migration_was_applied_since(custom: tuple[str, Path]) -> None:
    url, root = custom
    query(url, "ALTER TABLE log_lines ADD PRIMARY KEY (line)")
    make_engine(url, root, request_id="RB-NEWER1").rollback("2025_01_01_000000")
    write_migration(root, "2025_03_01_000000_later", "CREATE TABLE later (id int)", "DROP TABLE later")
    make_engine(url, root).apply()  # the new one only: 2025_02_01 stays rolled back
    with pytest.raises(UndoRefused, match="2025_03_01_000000 was applied after rollback RB-NEWER1"):
        make_engine(url, root).undo("RB-NEWER1")
    make_engine(url, root).apply(reapply=["2025_02_01_000000"])
    with pytest.raises(UndoRefused, match="no longer rolled back"):
        make_engine(url, root).undo("RB-NEWER1")
    with pytest.raises(UndoRefused, match="no escrow is held for RB-NOPE"):
        make_engine(url, root).undo("RB-NOPE")


def test_retention_purges_old_escrow_and_keeps_recent(custom: tuple[str, Path]) -> None:
    url, root = custom
    query(url, "ALTER TABLE log_lines ADD PRIMARY KEY (line)")
    make_engine(url, root, request_id="RB-OLD001").rollback("2025_01_01_000000")
    make_engine(url, root).apply(reapply=["2025_02_01_000000"])
    make_engine(url, root, request_id="RB-NEW001").rollback("2025_01_01_000000")
    query(url, "UPDATE rollback_escrow.runs SET created_at = now() - interval '15 days' WHERE request_id = 'RB-OLD001'")

    held = make_engine(url, root).escrow_holdings()
    assert [(h["request_id"], h["copies"], h["rows"]) for h in held] == [("RB-NEW001", 4, 32), ("RB-OLD001", 4, 37)]

    assert make_engine(url, root).purge_escrow(14) == [("RB-OLD001", 4)]
    assert [h["request_id"] for h in make_engine(url, root).escrow_holdings()] == ["RB-NEW001"]
    assert query(url, "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'rb_old001%'")[0][0] == 0


def test_rollback_then_undo_on_the_realistic_data_set_gives_the_same_dump_back(database_url: str) -> None:
    """bench/'s SaaS-like data set (tiny), rolled back three migrations deep: a dropped table keyed to users,
    dropped columns, two big UPDATEs, then every key and index; undo gives every application table back."""
    from bench import dataset

    dataset.build(database_url, dataset.SIZES["tiny"], say=lambda _line: None)
    before = rows_sorted(pg_dump(database_url, exclude=BOOKKEEPING))

    report = make_engine(database_url, dataset.MIGRATIONS_DIR, request_id="RB-BENCH1",
                         statement_timeout_ms=0).rollback(dataset.SCHEMA_VERSION)

    assert report.versions == [dataset.BAD_VERSION, dataset.KNOWN_GOOD, "2026_01_12_090000"]
    held = {(h["kind"], h["relation"]) for h in report.escrow["held"]}
    assert held == {("drop_table", "user_badges"), ("drop_column", "users"), ("update", "users"),
                    ("update", "events")}
    assert report.escrow["not_escrowed"] == [] and report.escrow["rows"] > 1500
    assert rows_sorted(pg_dump(database_url, exclude=BOOKKEEPING)) != before

    make_engine(database_url, dataset.MIGRATIONS_DIR, statement_timeout_ms=0).undo("RB-BENCH1")

    assert rows_sorted(pg_dump(database_url, exclude=BOOKKEEPING)) == before


def test_the_dry_run_names_what_escrow_cannot_hold_and_escrow_off_names_nothing(custom: tuple[str, Path]) -> None:
    url, root = custom
    dry = make_engine(url, root).dry_run_rollback("2025_01_01_000000")
    assert [w for w in dry.warnings if w.startswith("not escrowed")] == [
        "not escrowed: ALTER TABLE log_lines DROP COLUMN host (no primary key); "
        "a full backup is mandatory for this rollback"]
    off = make_engine(url, root, escrow=False).dry_run_rollback("2025_01_01_000000")
    assert not [w for w in off.warnings if w.startswith("not escrowed")]
    assert query(url, "SELECT to_regnamespace('rollback_escrow')")[0][0] is None  # a dry run keeps nothing
