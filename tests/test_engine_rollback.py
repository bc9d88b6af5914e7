"""Rollback against a real PostgreSQL: the playbook scenario, all-or-nothing, exactly-once, plan hashes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.engine_support import (
    BOOKKEEPING,
    HISTORY,
    KNOWN_GOOD,
    NEW_FEATURE,
    NEW_FEATURE_DIR,
    apply_examples,
    copy_migrations,
    held_back,
    make_engine,
    pg_dump,
    query,
    rows_sorted,
    seed_app_data,
    statuses,
    table_exists,
)
from workers.engine import (
    MigrationFailed,
    MissingDownScript,
    NotCompleted,
    PlanChanged,
    UnknownVersion,
    UnsupportedStatement,
)


@pytest.fixture
def applied(database_url: str, tmp_path: Path) -> tuple[str, Path]:
    """All four example migrations applied, with app data seeded before 150000 ran."""
    return database_url, apply_examples(database_url, tmp_path, seed=True)


def test_playbook_scenario_restores_schema_and_data_exactly(database_url: str, tmp_path: Path) -> None:
    migrations = copy_migrations(tmp_path)
    with held_back(migrations):
        make_engine(database_url, migrations).apply()
        seed_app_data(database_url)
    before = pg_dump(database_url, exclude=BOOKKEEPING)

    make_engine(database_url, migrations).apply()
    assert table_exists(database_url, "new_feature_table")
    assert query(database_url, "SELECT count(*) FROM users WHERE status = 'migrated'")[0][0] == 3

    report = make_engine(database_url, migrations).rollback(KNOWN_GOOD)

    assert report.versions == [NEW_FEATURE]
    assert [s.tag for s in report.statements] == ["DROP TABLE", "ALTER TABLE", "UPDATE 3"]
    assert rows_sorted(pg_dump(database_url, exclude=BOOKKEEPING)) == rows_sorted(before)
    assert statuses(database_url)[NEW_FEATURE] == "rolled_back"
    assert statuses(database_url)[KNOWN_GOOD] == "completed"
    history = query(database_url, "SELECT operation, status, executed_by FROM migration_history"
                                  " WHERE version = %s ORDER BY id", (NEW_FEATURE,))
    assert history == [("apply", "completed", "tester"), ("rollback", "completed", "tester")]


def test_rollback_to_an_older_version_reverts_newest_first(applied: tuple[str, Path]) -> None:
    url, migrations = applied
    lines: list[str] = []
    report = make_engine(url, migrations, log=lines.append).rollback("2025_10_01_090500")
    assert report.versions == [NEW_FEATURE, KNOWN_GOOD]
    assert [ln for ln in lines if ln.startswith("reverting")] == [
        f"reverting {NEW_FEATURE_DIR}", "reverting 2025_10_20_120001_add_projects_archived_at"]
    assert query(url, "SELECT count(*) FROM information_schema.columns WHERE column_name = 'archived_at'"
                 " AND table_schema = 'public'")[0][0] == 0


def test_rollback_without_to_reverts_only_the_newest(applied: tuple[str, Path]) -> None:
    url, migrations = applied
    assert make_engine(url, migrations).rollback().versions == [NEW_FEATURE]
    assert statuses(url)[KNOWN_GOOD] == "completed"


def test_unknown_or_incomplete_target_changes_nothing(applied: tuple[str, Path]) -> None:
    url, migrations = applied
    before = pg_dump(url)
    engine = make_engine(url, migrations)
    with pytest.raises(UnknownVersion, match="never been applied"):
        engine.rollback("2024_01_01_000000")
    with pytest.raises(UnknownVersion, match="not a migration version"):
        engine.rollback("2025_10_20")
    engine.rollback(KNOWN_GOOD)
    after_first = pg_dump(url)
    with pytest.raises(NotCompleted, match="rolled_back, not completed"):
        engine.rollback(NEW_FEATURE)
    assert pg_dump(url) == after_first != before


def test_failing_down_script_leaves_everything_unchanged_and_is_recorded(applied: tuple[str, Path]) -> None:
    url, migrations = applied
    down = migrations / NEW_FEATURE_DIR / "down.sql"
    down.write_text("DROP TABLE IF EXISTS new_feature_table;\nALTER TABLE users DROP COLUMN no_such_column;\n")
    before = pg_dump(url, exclude=HISTORY)

    with pytest.raises(MigrationFailed) as caught:
        make_engine(url, migrations, approved_by="bob", request_id="req-1").rollback(KNOWN_GOOD)

    message = str(caught.value)
    assert "\n" not in message
    assert NEW_FEATURE in message and "ALTER TABLE users DROP COLUMN no_such_column" in message
    assert 'column "no_such_column" of relation "users" does not exist' in message
    assert pg_dump(url, exclude=HISTORY) == before
    assert table_exists(url, "new_feature_table")
    failed = query(url, "SELECT status, executed_by, approved_by, request_id, error_message"
                        " FROM migration_history WHERE operation = 'rollback'")
    assert len(failed) == 1
    assert failed[0][:4] == ("failed", "tester", "bob", "req-1")
    assert "no_such_column" in failed[0][4]


def test_missing_down_script_is_refused_by_plan_dry_run_and_rollback(applied: tuple[str, Path]) -> None:
    url, migrations = applied
    (migrations / NEW_FEATURE_DIR / "down.sql").unlink()
    before = pg_dump(url)
    engine = make_engine(url, migrations)
    for call in (engine.plan_rollback, engine.dry_run_rollback, engine.rollback):
        with pytest.raises(MissingDownScript, match=f"{NEW_FEATURE_DIR} has no down.sql or rollback.sql"):
            call(KNOWN_GOOD)
    assert pg_dump(url) == before


def test_rollback_sql_is_accepted_as_the_down_script(applied: tuple[str, Path]) -> None:
    url, migrations = applied
    folder = migrations / NEW_FEATURE_DIR
    (folder / "down.sql").rename(folder / "rollback.sql")
    assert make_engine(url, migrations).rollback(KNOWN_GOOD).versions == [NEW_FEATURE]


def test_same_request_id_rolls_back_exactly_once(applied: tuple[str, Path]) -> None:
    url, migrations = applied
    first = make_engine(url, migrations, request_id="req-42", approved_by="bob").rollback(KNOWN_GOOD)
    second = make_engine(url, migrations, request_id="req-42", approved_by="bob").rollback(KNOWN_GOOD)
    assert not first.already_done
    assert second.already_done and second.versions == first.versions == [NEW_FEATURE]
    assert [s["tag"] for s in second.to_dict()["statements"]] == ["DROP TABLE", "ALTER TABLE", "UPDATE 3"]
    rows = query(url, "SELECT request_id, approved_by FROM migration_history WHERE operation = 'rollback'")
    assert rows == [("req-42", "bob")]


def test_plan_hash_guards_against_a_changed_plan(applied: tuple[str, Path]) -> None:
    url, migrations = applied
    engine = make_engine(url, migrations)
    plan = engine.plan_rollback(KNOWN_GOOD)
    assert plan.versions == [NEW_FEATURE]
    assert plan.steps[0].down_sql.startswith("-- The playbook's manual rollback")
    assert engine.plan_rollback(KNOWN_GOOD).hash == plan.hash
    with (migrations / NEW_FEATURE_DIR / "down.sql").open("a") as fh:
        fh.write("DELETE FROM projects;\n")
    before = pg_dump(url)
    with pytest.raises(PlanChanged, match="changed since it was approved"):
        engine.rollback(KNOWN_GOOD, expected_plan_hash=plan.hash)
    assert pg_dump(url) == before


def test_plan_hash_differs_between_databases(applied: tuple[str, Path], make_database: Any) -> None:
    url, migrations = applied
    other = make_database()
    make_engine(other, migrations).apply()
    assert make_engine(url, migrations).plan_rollback(KNOWN_GOOD).hash != \
        make_engine(other, migrations).plan_rollback(KNOWN_GOOD).hash


def test_rolled_back_migration_stays_rolled_back_until_reapplied(applied: tuple[str, Path]) -> None:
    url, migrations = applied
    engine = make_engine(url, migrations)
    engine.rollback(KNOWN_GOOD)
    kept = engine.apply()  # what every deploy runs: the migration taken out on purpose stays out
    assert kept.versions == [] and kept.held == ((NEW_FEATURE, "add_new_feature"),)
    assert statuses(url)[NEW_FEATURE] == "rolled_back"
    report = engine.apply(reapply=[NEW_FEATURE])
    assert report.versions == [NEW_FEATURE]
    assert statuses(url)[NEW_FEATURE] == "completed"
    assert query(url, "SELECT rolled_back_at, error_message FROM schema_migrations WHERE version = %s",
                 (NEW_FEATURE,)) == [(None, None)]
    engine.rollback(KNOWN_GOOD)
    ops = query(url, "SELECT operation, status FROM migration_history WHERE version = %s ORDER BY id",
                (NEW_FEATURE,))
    assert ops == [("apply", "completed"), ("rollback", "completed"), ("apply", "completed"),
                   ("rollback", "completed")]


def test_a_failure_in_a_later_down_script_undoes_the_earlier_ones_too(applied: tuple[str, Path]) -> None:
    url, migrations = applied
    down = migrations / "2025_10_20_120001_add_projects_archived_at" / "down.sql"
    down.write_text("ALTER TABLE projects DROP COLUMN archived_at;\nSELECT 1 / 0;\n")
    before = pg_dump(url, exclude=HISTORY)
    with pytest.raises(MigrationFailed, match="rollback of 2025_10_20_120001_add_projects_archived_at failed"):
        make_engine(url, migrations).rollback("2025_10_01_090500")
    # 150000 was reverted first, in the same transaction: that is undone as well
    assert pg_dump(url, exclude=HISTORY) == before
    assert table_exists(url, "new_feature_table")


def test_copy_from_stdin_in_a_down_script_is_refused_and_shown_by_status(applied: tuple[str, Path]) -> None:
    url, migrations = applied
    down = migrations / NEW_FEATURE_DIR / "down.sql"
    down.write_text("DROP TABLE new_feature_table;\nCOPY users (email) FROM STDIN;\n")
    before = pg_dump(url)
    engine = make_engine(url, migrations)
    expected = "COPY FROM STDIN is not supported in migration scripts; use INSERT or load data separately"
    for call in (engine.plan_rollback, engine.dry_run_rollback, engine.rollback):
        with pytest.raises(UnsupportedStatement, match=expected) as caught:
            call(KNOWN_GOOD)
        assert caught.value.path == str(down)
    assert pg_dump(url) == before
    assert any(w.startswith(f"{down}: `COPY users (email) FROM STDIN`") for w in engine.status().warnings)
