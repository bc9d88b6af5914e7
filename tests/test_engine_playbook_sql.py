"""Every SQL query of the playbook, run verbatim through psql, against the engine's tables.

After an operator's manual rollback (Method 2) and scenario 1's manual UPDATE, the engine keeps
telling the truth and `run-migrations` leaves what was rolled back by hand rolled back (`--reapply` puts it back).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.engine_support import (
    KNOWN_GOOD,
    METHOD_2,
    NEW_FEATURE,
    NEW_FEATURE_DIR,
    apply_examples,
    copy_migrations,
    make_engine,
    psql,
    psql_script,
    seed_app_data,
    statuses,
    table_exists,
)
from workers.engine import MigrationFailed

# Copied from playbook.md, byte for byte.
CHECK_STATE = "SELECT * FROM schema_migrations ORDER BY applied_at DESC LIMIT 10;"
LIST_ALL = "SELECT version, name, status, applied_at FROM schema_migrations ORDER BY version DESC;"
VERIFY_RESTORED = "SELECT * FROM schema_migrations ORDER BY applied_at DESC LIMIT 5;"
COUNT = "SELECT COUNT(*) FROM schema_migrations;"
ROLLED_BACK = "SELECT * FROM schema_migrations WHERE status = 'rolled_back';"
COUNT_USERS = "SELECT COUNT(*) FROM users;"
COUNT_PROJECTS = "SELECT COUNT(*) FROM projects;"
CONNECTIONS = "SELECT count(*) FROM pg_stat_activity WHERE datname = 'postgres';"
SCENARIO_1 = """
  UPDATE schema_migrations
  SET status = 'failed', error_message = 'Manual investigation required'
  WHERE version = '2025_10_20_150000';
"""
HISTORY = """
  SELECT * FROM migration_history
  WHERE version = '2025_10_20_150000'
  ORDER BY executed_at DESC;
"""
QUICK_MANUAL = """BEGIN;
-- Your rollback SQL here
UPDATE schema_migrations SET status = 'rolled_back' WHERE version = 'X';
COMMIT;
"""


@pytest.fixture
def applied(database_url: str, tmp_path: Path) -> tuple[str, Path]:
    migrations = apply_examples(database_url, tmp_path)
    seed_app_data(database_url)
    return database_url, migrations


def test_the_playbook_read_queries_run_and_show_the_engine_state(applied: tuple[str, Path]) -> None:
    url, _ = applied
    assert NEW_FEATURE in psql(url, CHECK_STATE) and "completed" in psql(url, CHECK_STATE)
    listing = psql(url, LIST_ALL).splitlines()
    assert listing[0].split("|")[0].strip() == "version" and listing[2].startswith(f" {NEW_FEATURE} | add_new_feature")
    assert NEW_FEATURE in psql(url, VERIFY_RESTORED)
    assert psql(url, COUNT).splitlines()[2].strip() == "4"
    assert "(0 rows)" in psql(url, ROLLED_BACK)
    assert psql(url, COUNT_USERS).splitlines()[2].strip() == "4"
    assert psql(url, COUNT_PROJECTS).splitlines()[2].strip() == "4"
    psql(url, CONNECTIONS)
    assert "apply" in psql(url, HISTORY)
    psql_script(url, QUICK_MANUAL)  # version 'X' matches nothing; it must still run


def test_manual_rollback_method_2_then_the_engine_stays_truthful(applied: tuple[str, Path]) -> None:
    url, migrations = applied
    out = psql_script(url, METHOD_2)
    assert "rolled_back" in out
    assert not table_exists(url, "new_feature_table")

    engine = make_engine(url, migrations)
    status = {m.version: m.status for m in engine.status().migrations}
    assert status[NEW_FEATURE] == "rolled_back" and engine.status().current_version == KNOWN_GOOD
    assert engine.plan_rollback().versions == [KNOWN_GOOD]  # the newest completed is now 120001
    assert "rolled_back" in psql(url, ROLLED_BACK)
    history = psql(url, HISTORY)
    assert "admin" in history and "rollback" in history

    assert engine.apply().versions == []  # a plain `run-migrations` (the next deploy) leaves it rolled back
    assert statuses(url)[NEW_FEATURE] == "rolled_back" and not table_exists(url, "new_feature_table")
    assert engine.apply(reapply=[NEW_FEATURE]).versions == [NEW_FEATURE]  # `run-migrations --reapply`
    assert statuses(url)[NEW_FEATURE] == "completed" and table_exists(url, "new_feature_table")
    assert engine.rollback(KNOWN_GOOD).versions == [NEW_FEATURE]


def test_scenario_1_failed_migration_marked_by_hand_then_rerun_with_fixes(database_url: str,
                                                                          tmp_path: Path) -> None:
    migrations = copy_migrations(tmp_path)
    up = migrations / NEW_FEATURE_DIR / "up.sql"
    good = up.read_text()
    up.write_text(good + "SELECT no_such_function();\n")
    engine = make_engine(database_url, migrations)
    with pytest.raises(MigrationFailed, match="no_such_function"):
        engine.apply()

    psql(database_url, SCENARIO_1)
    state = {m.version: m for m in engine.status().migrations}[NEW_FEATURE]
    assert (state.status, state.error_message) == ("failed", "Manual investigation required")
    assert "failed: Manual investigation required" in " ".join(engine.status().warnings)

    up.write_text(good)  # "Fix the migration SQL. Re-run with fixes"
    assert engine.apply().versions == [NEW_FEATURE]
    state = {m.version: m for m in engine.status().migrations}[NEW_FEATURE]
    assert (state.status, state.error_message) == ("completed", None)


def test_tables_created_by_hand_with_only_the_playbook_columns_are_adopted(database_url: str,
                                                                           tmp_path: Path) -> None:
    psql_script(database_url, """
        CREATE TABLE schema_migrations (version text PRIMARY KEY, name text, status text,
                                        applied_at timestamptz, error_message text);
        CREATE TABLE migration_history (version text, operation text, status text, executed_by text,
                                        executed_at timestamptz);
        INSERT INTO migration_history (version, operation, status, executed_by, executed_at)
        VALUES ('2025_10_20_150000', 'rollback', 'completed', 'admin', NOW());
    """)
    migrations = copy_migrations(tmp_path)
    engine = make_engine(database_url, migrations)
    engine.apply()
    assert engine.rollback(KNOWN_GOOD).versions == [NEW_FEATURE]
    assert [r["operation"] for r in engine.history()][:2] == ["rollback", "apply"]
