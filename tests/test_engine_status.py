"""Status: every migration with its state, and the warnings an operator must see."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.engine_support import (
    KNOWN_GOOD,
    KNOWN_GOOD_DIR,
    NEW_FEATURE,
    NEW_FEATURE_DIR,
    copy_migrations,
    held_back,
    make_engine,
    query,
)


def test_status_of_a_fresh_database_lists_pending_and_creates_nothing(database_url: str, tmp_path: Path) -> None:
    migrations = copy_migrations(tmp_path)
    report = make_engine(database_url, migrations).status()
    assert [(m.version, m.status) for m in report.migrations][-1] == (NEW_FEATURE, "pending")
    assert report.current_version is None and report.warnings == []
    assert query(database_url, "SELECT to_regclass('schema_migrations')") == [(None,)]


def test_status_is_json_able_and_never_holds_a_password(database_url: str, tmp_path: Path) -> None:
    migrations = copy_migrations(tmp_path)
    url_with_password = database_url + " password=topsecret99"
    engine = make_engine(url_with_password, migrations)
    engine.apply()
    data = engine.status().to_dict()
    text = json.dumps(data)
    assert "topsecret99" not in text and "topsecret99" not in repr(engine)
    assert set(data["server"]) == {"host", "port", "dbname", "system_identifier", "server_version", "user"}
    assert data["current_version"] == NEW_FEATURE
    assert data["migrations"][-1]["status"] == "completed" and data["migrations"][-1]["applied_at"]


def test_status_warns_about_drift_missing_files_missing_down_and_failures(database_url: str,
                                                                          tmp_path: Path) -> None:
    migrations = copy_migrations(tmp_path)
    make_engine(database_url, migrations).apply()
    with (migrations / "2025_10_01_090000_create_users" / "up.sql").open("a") as fh:
        fh.write("-- edited after it ran\n")
    shutil.rmtree(migrations / NEW_FEATURE_DIR)
    (migrations / "2025_10_01_090500_create_projects" / "down.sql").unlink()
    query(database_url, "UPDATE schema_migrations SET status = 'failed', error_message = 'disk full'"
                        " WHERE version = %s", (KNOWN_GOOD,))
    (migrations / "notes").mkdir()

    report = make_engine(database_url, migrations).status()
    by_version = {m.version: m for m in report.migrations}
    assert by_version["2025_10_01_090000"].drift
    assert by_version[NEW_FEATURE].missing_file and by_version[NEW_FEATURE].name == "add_new_feature"
    assert not by_version["2025_10_01_090500"].has_down
    assert by_version[KNOWN_GOOD].error_message == "disk full"
    assert report.warnings == [
        "2025_10_01_090000_create_users: up.sql changed since it was applied (checksum differs)",
        "2025_10_01_090500_create_projects: no down.sql or rollback.sql — it cannot be rolled back automatically",
        "2025_10_20_120001_add_projects_archived_at failed: disk full",
        "2025_10_20_150000: applied but its folder is missing from the migrations directory",
        "ignored 'notes' in the migrations folder: not named YYYY_MM_DD_HHMMSS_<name>",
    ]


def test_history_lists_rows_newest_first(database_url: str, tmp_path: Path) -> None:
    migrations = copy_migrations(tmp_path)
    engine = make_engine(database_url, migrations)
    assert engine.history() == []
    engine.apply()
    engine.rollback(KNOWN_GOOD)
    rows = engine.history(limit=2)
    assert [(r["version"], r["operation"]) for r in rows] == [(NEW_FEATURE, "rollback"), (NEW_FEATURE, "apply")]


def test_status_warns_about_a_pending_migration_older_than_the_current_version(database_url: str,
                                                                               tmp_path: Path) -> None:
    migrations = copy_migrations(tmp_path)
    with held_back(migrations, KNOWN_GOOD_DIR):  # a branch merged after 150000 was deployed
        make_engine(database_url, migrations).apply()
    report = make_engine(database_url, migrations).status()
    assert report.current_version == NEW_FEATURE
    assert report.warnings == [
        f"{KNOWN_GOOD_DIR} is pending but older than the current version {NEW_FEATURE} (merged late?): "
        "the next apply runs it out of order; check it does not conflict with the newer migrations"]
