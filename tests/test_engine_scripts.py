"""Loading migrations from disk: names, down-script variants, markers, checksums, bad folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.engine_support import KNOWN_GOOD, NEW_FEATURE, copy_migrations
from workers.engine import MigrationsDirError
from workers.engine.scripts import load


def test_the_example_migrations_load_in_version_order(tmp_path: Path) -> None:
    found = load(copy_migrations(tmp_path))
    assert list(found.migrations) == ["2025_10_01_090000", "2025_10_01_090500", KNOWN_GOOD, NEW_FEATURE]
    feature = found.migrations[NEW_FEATURE]
    assert feature.name == "add_new_feature" and feature.up and feature.down
    assert feature.down.statements == [
        "DROP TABLE IF EXISTS new_feature_table",
        "ALTER TABLE users DROP COLUMN new_field",
        "UPDATE users SET status = 'active' WHERE status = 'migrated'",
    ]
    assert feature.up.transactional and len(feature.up.checksum) == 64


def test_rollback_sql_missing_down_and_markers(tmp_path: Path) -> None:
    root = tmp_path / "m"
    (root / "2025_11_01_000000_with_rollback_sql").mkdir(parents=True)
    (root / "2025_11_01_000000_with_rollback_sql" / "up.sql").write_text("SELECT 1;")
    (root / "2025_11_01_000000_with_rollback_sql" / "rollback.sql").write_text("SELECT 2;")
    (root / "2025_11_02_000000_no_down").mkdir()
    (root / "2025_11_02_000000_no_down" / "up.sql").write_text(
        "-- rollback-bot: no-transaction\nCREATE INDEX CONCURRENTLY i ON t (c);")
    (root / "README.md").write_text("not a migration")
    (root / "drafts").mkdir()
    found = load(root)
    first = found.migrations["2025_11_01_000000"]
    assert first.down is not None and first.down.path.name == "rollback.sql"
    second = found.migrations["2025_11_02_000000"]
    assert second.down is None and second.up is not None and not second.up.transactional
    assert found.ignored == ("drafts",)


def test_missing_folder_duplicate_versions_and_non_utf8_are_refused(tmp_path: Path) -> None:
    with pytest.raises(MigrationsDirError, match="does not exist; pass --dir or set MIGRATIONS_DIR"):
        load(tmp_path / "nope")
    root = tmp_path / "m"
    (root / "2025_11_01_000000_a").mkdir(parents=True)
    (root / "2025_11_01_000000_b").mkdir()
    with pytest.raises(MigrationsDirError, match="two folders .* have version 2025_11_01_000000"):
        load(root)
    (root / "2025_11_01_000000_b").rmdir()
    (root / "2025_11_01_000000_a" / "up.sql").write_bytes(b"SELECT '\xff';")
    with pytest.raises(MigrationsDirError, match="is not UTF-8 text"):
        load(root)
