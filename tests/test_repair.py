"""Scenario 1, a migration that failed halfway, through `run-migrations --repair V` against a real
PostgreSQL: a failed transactional migration is repaired, then applied; a half-applied
`CREATE INDEX CONCURRENTLY` migration is repaired (its INVALID index dropped, the statements whose
objects are gone skipped, status rolled_back); rolling back past either is refused with a pointer to repair."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sandbox.scenarios import HALF_DONE_VERSION as INDEX_VERSION
from sandbox.scenarios import add_half_done_index
from tests.engine_support import apply_examples, query, statuses
from workers.cli import main
from workers.engine.errors import NeedsRepair

CHECK_VERSION = "2025_10_21_100000"


def add_failing_check(migrations: Path) -> None:
    """A transactional migration that fails on today's data (an upper-case email)."""
    folder = migrations / f"{CHECK_VERSION}_lowercase_emails"
    folder.mkdir()
    (folder / "up.sql").write_text("ALTER TABLE users ADD COLUMN email_checked boolean;\n"
                                   "ALTER TABLE users ADD CONSTRAINT users_email_lower CHECK (email = lower(email));\n")
    (folder / "down.sql").write_text("ALTER TABLE users DROP CONSTRAINT users_email_lower;\n"
                                     "ALTER TABLE users DROP COLUMN email_checked;\n")


def invalid_indexes(url: str) -> list[str]:
    return [r[0] for r in query(url, "SELECT indexrelid::regclass::text FROM pg_index WHERE NOT indisvalid")]


def test_a_failed_transactional_migration_is_repaired_then_applied(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    migrations = apply_examples(database_url, tmp_path, seed=True)
    query(database_url, "UPDATE users SET email = 'Ana@Example.com' WHERE email = 'ana@example.com' RETURNING id")
    add_failing_check(migrations)
    env = {"DATABASE_URL": database_url, "MIGRATIONS_DIR": str(migrations), "BACKUP_DIR": str(tmp_path / "backups")}
    assert main([], env) == 1
    assert statuses(database_url)[CHECK_VERSION] == "failed"

    # rolling back past the failed migration is refused, with the way out
    capsys.readouterr()
    assert main(["--rollback", "--to", "2025_10_20_120001"], env) == 1
    assert f"--repair {CHECK_VERSION}" in capsys.readouterr().err

    assert main(["--repair", CHECK_VERSION, "--dry-run"], env) == 0
    out = capsys.readouterr().out
    assert "transactional: it changed nothing" in out and "users_email_lower" in out
    assert statuses(database_url)[CHECK_VERSION] == "failed"  # the dry run changed nothing

    assert main(["--repair", CHECK_VERSION, "--reason", "upper-case email fixed by hand"], env) == 0
    assert CHECK_VERSION not in statuses(database_url)  # pending again
    [(details,)] = query(database_url, "SELECT details FROM migration_history WHERE operation = 'repair'"
                                       " AND version = %s AND status = 'completed'", (CHECK_VERSION,))
    assert details["reason"] == "upper-case email fixed by hand" and "users_email_lower" in details["previous_error"]

    query(database_url, "UPDATE users SET email = lower(email) RETURNING id")
    assert main([], env) == 0
    assert statuses(database_url)[CHECK_VERSION] == "completed"


def test_a_half_applied_concurrent_index_migration_is_repaired(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    migrations = apply_examples(database_url, tmp_path, seed=True)
    add_half_done_index(migrations)
    env = {"DATABASE_URL": database_url, "MIGRATIONS_DIR": str(migrations), "BACKUP_DIR": str(tmp_path / "backups")}
    assert main([], env) == 1
    assert statuses(database_url)[INDEX_VERSION] == "failed"
    assert invalid_indexes(database_url) == ["idx_users_status_unique"]

    from tests.engine_support import make_engine

    with pytest.raises(NeedsRepair, match=f"--repair {INDEX_VERSION}"):
        make_engine(database_url, migrations).plan_rollback("2025_10_20_120001")
    with pytest.raises(NeedsRepair):
        make_engine(database_url, migrations).dry_run_rollback()

    capsys.readouterr()
    assert main(["--repair", INDEX_VERSION, "--dry-run"], env) == 0
    plan = capsys.readouterr().out
    assert "skip  ALTER TABLE users DROP COLUMN status_rank   -- column users.status_rank already gone" in plan
    assert "run   DROP INDEX CONCURRENTLY idx_users_full_name   -- drops idx_users_full_name" in plan
    assert 'run   DROP INDEX CONCURRENTLY IF EXISTS "idx_users_status_unique"' in plan
    assert invalid_indexes(database_url) == ["idx_users_status_unique"]

    assert main(["--repair", INDEX_VERSION], env) == 0
    assert invalid_indexes(database_url) == []
    assert query(database_url, "SELECT to_regclass('idx_users_full_name') IS NULL")[0][0]
    assert statuses(database_url)[INDEX_VERSION] == "rolled_back"
    # and a rollback goes through again
    assert main(["--rollback", "--to", "2025_10_20_120001"], env) == 0
    # the repaired migration never ran to the end: the next apply runs it again, while 150000, rolled back
    # on purpose, stays rolled back
    capsys.readouterr()
    assert main(["--dry-run", "--json"], env) == 0
    plan = json.loads(capsys.readouterr().out)["plan"]
    assert plan["versions"] == [INDEX_VERSION] and [h["version"] for h in plan["held"]] == ["2025_10_20_150000"]
    assert main(["--status"], env) == 0
    assert "rolled back by --repair: the next run-migrations applies it again" in capsys.readouterr().out
