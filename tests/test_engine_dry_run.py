"""Dry runs execute the real SQL and change nothing at all (compared by pg_dump, bookkeeping included)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.engine_support import (
    KNOWN_GOOD,
    NEW_FEATURE,
    NEW_FEATURE_DIR,
    apply_examples,
    copy_migrations,
    make_engine,
    pg_dump,
    query,
    table_exists,
)
from workers.engine import DryRunReport, MigrationFailed


@pytest.fixture
def applied(database_url: str, tmp_path: Path) -> tuple[str, Path]:
    migrations = apply_examples(database_url, tmp_path, seed=True)
    # a row that exists only because of 150000: its loss is what the dry run must warn about
    query(database_url, "UPDATE users SET new_field = NULL WHERE email = 'bo@example.com'")
    return database_url, migrations


def test_dry_run_rollback_reports_plan_statements_and_data_loss(applied: tuple[str, Path]) -> None:
    url, migrations = applied
    report = make_engine(url, migrations).dry_run_rollback(KNOWN_GOOD)
    assert report.plan.versions == [NEW_FEATURE]
    assert [(s.tag, s.rowcount) for s in report.statements] == [
        ("DROP TABLE", None), ("ALTER TABLE", None), ("UPDATE 3", 3)]
    assert report.warnings == [
        "DROP TABLE new_feature_table: 3 rows would be lost",
        "DROP COLUMN users.new_field: 2 non-null values would be lost",
        "UPDATE users: 3 rows would be changed",
    ]
    data = report.to_dict()
    assert data["dry_run"] is True and data["plan"]["hash"] == report.plan.hash


def test_dry_run_changes_nothing_byte_for_byte(applied: tuple[str, Path]) -> None:
    url, migrations = applied
    before = pg_dump(url)  # schema, data, schema_migrations, migration_history and sequence values
    make_engine(url, migrations).dry_run_rollback(KNOWN_GOOD)
    make_engine(url, migrations).dry_run_rollback("2025_10_01_090000")
    assert pg_dump(url) == before


def test_dry_run_apply_changes_nothing_and_leaves_tables_uncreated(database_url: str, tmp_path: Path) -> None:
    migrations = copy_migrations(tmp_path)
    before = pg_dump(database_url)
    report = make_engine(database_url, migrations).apply(dry_run=True)
    assert isinstance(report, DryRunReport)
    assert report.plan.versions == ["2025_10_01_090000", "2025_10_01_090500", KNOWN_GOOD, NEW_FEATURE]
    assert pg_dump(database_url) == before
    assert not table_exists(database_url, "schema_migrations")


def test_dry_run_of_a_failing_script_names_it_and_changes_nothing(applied: tuple[str, Path]) -> None:
    url, migrations = applied
    (migrations / NEW_FEATURE_DIR / "down.sql").write_text("DROP TABLE new_feature_table;\nSELECT 1/0;\n")
    before = pg_dump(url)
    with pytest.raises(MigrationFailed, match=r"dry run of rollback of 2025_10_20_150000.*division by zero"):
        make_engine(url, migrations).dry_run_rollback(KNOWN_GOOD)
    assert pg_dump(url) == before


def test_dry_run_warns_when_a_statement_advances_a_sequence(applied: tuple[str, Path]) -> None:
    url, migrations = applied
    with (migrations / NEW_FEATURE_DIR / "down.sql").open("a") as fh:
        fh.write("INSERT INTO projects (owner_id, name) SELECT id, 'x' FROM users LIMIT 1;\n")
    report = make_engine(url, migrations).dry_run_rollback(KNOWN_GOOD)
    assert any(w.startswith("sequence public.projects_id_seq advanced during the dry run") for w in report.warnings)
