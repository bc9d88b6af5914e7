"""Break-glass parity: `run-migrations --target NAME` applies the workers' wrong-database guard and takes
the same verified backup before a real rollback; `--no-backup` is written into history. Real PostgreSQL
and Redis, the CLI as a function (its exit status and output)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
import redis

from tests.engine_support import add_newer_migration, copy_migrations
from tests.fixtures.stack import EXAMPLE_MIGRATIONS, apply_example, write_config
from workers.cli import main
from workers.postgres import identity

GOOD, BAD = "2025_10_20_120001", "2025_10_20_150000"


@pytest.fixture
def target_env(tmp_path: Path, database_url: str, redis_url: str) -> dict[str, str]:
    config = tmp_path / "rollback.toml"
    write_config(config, migrations_dir=str(EXAMPLE_MIGRATIONS))
    backups = tmp_path / "backups"
    backups.mkdir()
    apply_example(database_url)
    return {"PROD_DATABASE_URL": database_url, "REDIS_URL": redis_url, "ROLLBACK_CONFIG": str(config),
            "BACKUP_DIR": str(backups)}


def history(url: str, operation: str) -> list[tuple[str, dict]]:  # type: ignore[type-arg]
    with psycopg.connect(url) as conn:
        return [(r[0], r[1]) for r in conn.execute(
            "SELECT status, details FROM migration_history WHERE operation = %s ORDER BY id", (operation,))]


def status_of(url: str, version: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT status FROM schema_migrations WHERE version = %s", (version,)).fetchone()
    return str(row[0]) if row else "pending"


def test_a_rollback_with_target_takes_a_verified_backup_first(
    target_env: dict[str, str], capsys: pytest.CaptureFixture[str],
) -> None:
    url = target_env["PROD_DATABASE_URL"]
    assert main(["--target", "prod", "--rollback", "--to", GOOD, "--actor", "alice"], target_env) == 0
    assert status_of(url, BAD) == "rolled_back"
    [(status, details)] = history(url, "backup")
    assert status == "completed" and details["verified"] is True
    assert Path(details["path"]).exists() and Path(details["path"]).parent == Path(target_env["BACKUP_DIR"])
    assert "backup verified" in capsys.readouterr().err


def test_an_apply_with_target_is_backed_up_first_under_the_targets_name(target_env: dict[str, str],
                                                                         tmp_path: Path) -> None:
    url = target_env["PROD_DATABASE_URL"]
    migrations = copy_migrations(tmp_path)
    newer = add_newer_migration(migrations)
    assert main(["--target", "prod", "--dir", str(migrations), "--actor", "ci"], target_env) == 0
    assert status_of(url, newer) == "completed"
    [(status, details)] = history(url, "backup")
    assert status == "completed" and details["before"] == "apply" and details["versions"] == [newer]
    archive = Path(details["path"])
    assert archive.parent == Path(target_env["BACKUP_DIR"]) and archive.name.startswith("prod-pre-migration-")


def test_no_backup_is_written_into_history(target_env: dict[str, str]) -> None:
    url = target_env["PROD_DATABASE_URL"]
    assert main(["--target", "prod", "--rollback", "--to", GOOD, "--no-backup", "--actor", "alice"], target_env) == 0
    assert status_of(url, BAD) == "rolled_back"
    [(status, details)] = history(url, "backup")
    assert status == "skipped" and details["no_backup"] is True and details["before"] == "rollback"
    assert list(Path(target_env["BACKUP_DIR"]).iterdir()) == []


def test_an_undo_with_target_takes_a_verified_backup_first(target_env: dict[str, str]) -> None:
    url = target_env["PROD_DATABASE_URL"]
    assert main(["--target", "prod", "--rollback", "--to", GOOD, "--no-backup", "--actor", "alice"], target_env) == 0
    with psycopg.connect(url) as conn:
        [(run_id,)] = conn.execute("SELECT request_id FROM rollback_escrow.runs").fetchall()
    assert main(["--target", "prod", "--undo", run_id, "--actor", "bob"], target_env) == 0
    assert status_of(url, BAD) == "completed"  # re-applied
    (skipped, _), (status, details) = history(url, "backup")
    assert skipped == "skipped" and status == "completed" and details["verified"] is True
    assert Path(details["path"]).exists() and "pre-undo" in Path(details["path"]).name


def test_the_wrong_database_is_refused_before_anything_runs(
    target_env: dict[str, str], make_database: Callable[[], str], redis_url: str, capsys: pytest.CaptureFixture[str],
) -> None:
    real = target_env["PROD_DATABASE_URL"]
    with psycopg.connect(real, autocommit=True) as conn:  # prod's identity, as the workers recorded it
        identity.guard(conn, redis.Redis.from_url(redis_url), "prod", by="setup")
    other = make_database()
    apply_example(other)
    wrong = {**target_env, "PROD_DATABASE_URL": other}  # an edited URL now reaching another database
    assert main(["--target", "prod", "--rollback", "--to", GOOD], wrong) == 1
    assert "wrong database?" in capsys.readouterr().err
    assert status_of(other, BAD) == "completed" and history(other, "backup") == []
    assert list(Path(target_env["BACKUP_DIR"]).iterdir()) == []


def test_plain_database_url_stays_as_the_playbook_has_it(target_env: dict[str, str],
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    url = target_env["PROD_DATABASE_URL"]
    env = {"DATABASE_URL": url, "MIGRATIONS_DIR": str(EXAMPLE_MIGRATIONS)}
    assert main(["--rollback", "--to", GOOD], env) == 0
    assert history(url, "backup") == []  # no backup on the plain path
    assert main(["--rollback", "--no-backup"], env) == 2
    assert "--no-backup goes with an apply, or with --target" in capsys.readouterr().err
