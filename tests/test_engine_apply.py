"""Apply: order, bookkeeping, the playbook's scenario 1 (failed, then re-run once fixed), no-transaction scripts."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.engine_support import (
    KNOWN_GOOD,
    KNOWN_GOOD_DIR,
    NEW_FEATURE,
    NEW_FEATURE_DIR,
    copy_migrations,
    held_back,
    make_engine,
    query,
    statuses,
    table_exists,
)
from workers.engine import InterruptedMigration, MigrationFailed, RunReport

INDEX_DIR = "2025_10_21_090000_index_emails"
NO_TX = "-- rollback-bot: no-transaction\n"


def test_apply_runs_every_pending_migration_in_order_and_records_it(database_url: str, tmp_path: Path) -> None:
    migrations = copy_migrations(tmp_path)
    report = make_engine(database_url, migrations).apply()
    assert isinstance(report, RunReport)
    assert report.versions == ["2025_10_01_090000", "2025_10_01_090500", KNOWN_GOOD, NEW_FEATURE]
    rows = query(database_url, "SELECT version, name, status, checksum IS NOT NULL, error_message"
                               " FROM schema_migrations ORDER BY version")
    assert rows[-1] == (NEW_FEATURE, "add_new_feature", "completed", True, None)
    assert make_engine(database_url, migrations).apply().versions == []  # idempotent


def test_failed_apply_is_recorded_and_a_fixed_rerun_applies_it(database_url: str, tmp_path: Path) -> None:
    migrations = copy_migrations(tmp_path)
    up = migrations / NEW_FEATURE_DIR / "up.sql"
    good = up.read_text()
    up.write_text(good.replace("ADD COLUMN new_field text", "ADD COLUMN new_field text REFERENCES no_such_table (id)"))

    with pytest.raises(MigrationFailed) as caught:
        make_engine(database_url, migrations).apply()
    assert "no_such_table" in str(caught.value) and NEW_FEATURE in str(caught.value)
    assert statuses(database_url) == {"2025_10_01_090000": "completed", "2025_10_01_090500": "completed",
                                      KNOWN_GOOD: "completed", NEW_FEATURE: "failed"}
    error = query(database_url, "SELECT error_message FROM schema_migrations WHERE version = %s", (NEW_FEATURE,))
    assert "no_such_table" in error[0][0]
    assert not table_exists(database_url, "new_feature_table")  # the failed transaction left nothing

    up.write_text(good)
    assert make_engine(database_url, migrations).apply().versions == [NEW_FEATURE]
    assert query(database_url, "SELECT status, error_message FROM schema_migrations WHERE version = %s",
                 (NEW_FEATURE,)) == [("completed", None)]
    history = query(database_url, "SELECT status FROM migration_history WHERE version = %s ORDER BY id",
                    (NEW_FEATURE,))
    assert history == [("failed",), ("completed",)]


def _add_index_migration(migrations: Path) -> None:
    folder = migrations / INDEX_DIR
    folder.mkdir()
    (folder / "up.sql").write_text(NO_TX + "CREATE INDEX CONCURRENTLY users_lower_email_idx ON users (lower(email));\n")
    (folder / "down.sql").write_text(NO_TX + "DROP INDEX CONCURRENTLY IF EXISTS users_lower_email_idx;\n")


def test_no_transaction_migration_runs_outside_a_transaction_both_ways(database_url: str, tmp_path: Path) -> None:
    migrations = copy_migrations(tmp_path)
    _add_index_migration(migrations)
    engine = make_engine(database_url, migrations)
    engine.apply()
    assert table_exists(database_url, "users_lower_email_idx")

    plan = engine.plan_rollback(NEW_FEATURE)
    assert [s.transactional for s in plan.steps] == [False]
    dry = engine.dry_run_rollback(NEW_FEATURE)
    assert dry.statements[0].tag == "(not run)"
    assert any("runs outside a transaction and was NOT executed" in w for w in dry.warnings)
    assert table_exists(database_url, "users_lower_email_idx")

    report = engine.rollback(KNOWN_GOOD)
    assert report.versions == ["2025_10_21_090000", NEW_FEATURE]
    assert not table_exists(database_url, "users_lower_email_idx")
    assert statuses(database_url)["2025_10_21_090000"] == "rolled_back"
    assert statuses(database_url)[NEW_FEATURE] == "rolled_back"


def test_an_interrupted_no_transaction_migration_is_shown_and_blocks_apply(database_url: str,
                                                                           tmp_path: Path) -> None:
    migrations = copy_migrations(tmp_path)
    _add_index_migration(migrations)
    engine = make_engine(database_url, migrations)
    engine.apply()
    # what a runner killed in the middle of CREATE INDEX CONCURRENTLY leaves behind
    query(database_url, "UPDATE schema_migrations SET status = 'running' WHERE version = '2025_10_21_090000'")
    warnings = engine.status().warnings
    assert any("is marked running but no run holds the lock: it was interrupted" in w for w in warnings)
    with pytest.raises(InterruptedMigration, match="check its effects, then UPDATE schema_migrations"):
        engine.apply()


def test_apply_says_it_applies_a_late_migration_out_of_order(database_url: str, tmp_path: Path) -> None:
    migrations = copy_migrations(tmp_path)
    with held_back(migrations, KNOWN_GOOD_DIR):
        make_engine(database_url, migrations).apply()
    notice = f"note: applying {KNOWN_GOOD_DIR} out of order: it is older than the current version {NEW_FEATURE}"
    dry = make_engine(database_url, migrations).apply(dry_run=True)
    assert notice in dry.warnings
    lines: list[str] = []
    report = make_engine(database_url, migrations, log=lines.append).apply()
    assert report.versions == [KNOWN_GOOD]
    assert report.warnings == [notice] and notice in lines
    assert statuses(database_url)[KNOWN_GOOD] == "completed"
    assert make_engine(database_url, migrations).status().warnings == []
