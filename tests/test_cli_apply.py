"""`run-migrations` with no flags, what CI runs on every deploy: a verified backup before anything is applied
(playbook Step 2 and Prevention 4), and a rolled-back migration that stays rolled back until its up.sql
changes or `--reapply` names it. Real PostgreSQL, pg_dump and pg_restore; the CLI in-process and as a process."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.engine_support import (
    KNOWN_GOOD,
    METHOD_2,
    NEW_FEATURE,
    NEW_FEATURE_DIR,
    add_newer_migration,
    copy_migrations,
    psql_script,
    query,
    run_cli,
    statuses,
    table_exists,
)
from workers.cli import main
from workers.postgres.pg_dump import slug, verify_archive

ALL = ["2025_10_01_090000", "2025_10_01_090500", KNOWN_GOOD, NEW_FEATURE]
STAYS = (f"note: {NEW_FEATURE}_add_new_feature stays rolled back; re-applied when its up.sql changes, "
         f"or with `--reapply {NEW_FEATURE}`")


@pytest.fixture
def env(database_url: str, tmp_path: Path) -> dict[str, str]:
    return {"DATABASE_URL": database_url, "MIGRATIONS_DIR": str(copy_migrations(tmp_path)),
            "BACKUP_DIR": str(tmp_path / "backups")}


def archives(folder: str | Path) -> list[Path]:
    path = Path(folder)
    return sorted(p for p in path.iterdir() if p.suffix != ".json") if path.is_dir() else []


def history(url: str, operation: str) -> list[tuple[int, str, Any]]:
    return [(r[0], r[1], r[2]) for r in query(
        url, "SELECT id, status, details FROM migration_history WHERE operation = %s ORDER BY id", (operation,))]


def dbname(url: str) -> str:
    """The database's name as a backup file name carries it."""
    return slug(str(query(url, "SELECT current_database()")[0][0]))


def rolled_back_by_the_cli(env: dict[str, str]) -> None:
    assert main([], env) == 0 and main(["--rollback", "--to", KNOWN_GOOD], env) == 0
    assert statuses(env["DATABASE_URL"])[NEW_FEATURE] == "rolled_back"


# --- item 3: the backup before every apply -----------------------------------------------------------


def test_apply_takes_a_verified_pre_migration_backup_before_the_first_migration(
        env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    url = env["DATABASE_URL"]
    assert main(["--actor", "ci"], env) == 0
    out = capsys.readouterr().out
    [archive] = archives(env["BACKUP_DIR"])
    assert re.fullmatch(rf"{dbname(url)}-pre-migration-\d{{8}}T\d{{6}}Z(\.dir|\.dump)", archive.name)
    assert verify_archive(archive) > 0  # checksum matches its manifest, pg_restore --list reads it
    manifest = json.loads(archive.with_suffix(".json").read_text())
    assert manifest["verified"] is True and manifest["reason"] == "pre-migration"
    assert f"backup verified: {archive}" in out and "applied 4 migration(s)" in out
    [(backup_id, status, details)] = history(url, "backup")
    assert status == "completed" and details["before"] == "apply" and details["versions"] == ALL
    assert details["path"] == str(archive)
    assert backup_id < min(i for i, _, _ in history(url, "apply"))  # taken before anything was applied


def test_no_backup_is_written_into_history_and_nothing_pending_or_a_dry_run_takes_none(
        env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    url = env["DATABASE_URL"]
    assert main(["--dry-run"], env) == 0
    assert archives(env["BACKUP_DIR"]) == [] and not table_exists(url, "migration_history")
    assert main(["--no-backup", "--actor", "alice"], env) == 0
    assert "no backup taken (--no-backup), recorded in migration_history by alice" in capsys.readouterr().out
    [(_, status, details)] = history(url, "backup")
    assert status == "skipped" and details["no_backup"] is True and details["before"] == "apply"
    assert main([], env) == 0  # nothing pending: no backup, nothing recorded
    assert "nothing to apply" in capsys.readouterr().out
    assert archives(env["BACKUP_DIR"]) == [] and len(history(url, "backup")) == 1


def test_without_backup_dir_the_backup_goes_to_backups_in_the_working_folder(
        env: dict[str, str], tmp_path: Path) -> None:
    work = tmp_path / "checkout"
    work.mkdir()
    plain = {k: v for k, v in env.items() if k != "BACKUP_DIR"}
    result = run_cli([], plain, cwd=work)
    assert result.returncode == 0, result.stderr
    [archive] = archives(work / "backups")
    assert archive.name.startswith(f"{dbname(env['DATABASE_URL'])}-pre-migration-")


@pytest.mark.parametrize("setting, value, expected", [
    ("PG_DUMP", "/nonexistent/pg_dump", "/nonexistent/pg_dump"),
    ("BACKUP_DIR", "README.md", "backup directory README.md is not writable"),
])
def test_a_failed_backup_stops_the_apply_with_one_line_and_nothing_applied(
        env: dict[str, str], setting: str, value: str, expected: str) -> None:
    result = run_cli([], {**env, setting: value})
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("run-migrations: error: ") and expected in result.stderr
    assert "Traceback" not in result.stderr and "applied" not in result.stdout
    assert not table_exists(env["DATABASE_URL"], "users")
    assert query(env["DATABASE_URL"], "SELECT count(*) FROM schema_migrations") == [(0,)]


# --- item 4: a rolled-back migration stays rolled back -------------------------------------------------


def test_a_rolled_back_migration_stays_rolled_back_until_reapply(
        env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    url = env["DATABASE_URL"]
    rolled_back_by_the_cli(env)
    capsys.readouterr()
    assert main([], env) == 0  # the next deploy
    out = capsys.readouterr().out
    assert out.count(STAYS) == 1 and "nothing to apply" in out
    assert statuses(url)[NEW_FEATURE] == "rolled_back" and not table_exists(url, "new_feature_table")
    assert len(archives(env["BACKUP_DIR"])) == 1  # only the first apply's: nothing was pending this time

    assert main(["--status"], env) == 0
    assert (f"{NEW_FEATURE}_add_new_feature: rolled back; re-applied when its up.sql changes, "
            f"or with `--reapply {NEW_FEATURE}`") in capsys.readouterr().out
    assert main(["--dry-run", "--json"], env) == 0
    plan = json.loads(capsys.readouterr().out)["plan"]
    assert plan["versions"] == [] and plan["held"] == [{"version": NEW_FEATURE, "name": "add_new_feature"}]

    assert main(["--reapply", NEW_FEATURE], env) == 0
    assert "applied 1 migration(s) in " in capsys.readouterr().out
    assert statuses(url)[NEW_FEATURE] == "completed" and table_exists(url, "new_feature_table")
    assert len(archives(env["BACKUP_DIR"])) == 2  # --reapply is an apply: backed up first


def test_a_changed_up_sql_is_applied_as_usual(env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    url = env["DATABASE_URL"]
    rolled_back_by_the_cli(env)
    up = Path(env["MIGRATIONS_DIR"]) / NEW_FEATURE_DIR / "up.sql"
    up.write_text(up.read_text() + "\nCREATE INDEX new_feature_table_user_idx ON new_feature_table (user_id);\n")
    capsys.readouterr()
    assert main(["--status"], env) == 0
    assert "rolled back, and its up.sql changed since: the next run-migrations applies it" in capsys.readouterr().out
    assert main([], env) == 0  # the fix (playbook Step 8) is deployed
    assert "stays rolled back" not in capsys.readouterr().out
    assert statuses(url)[NEW_FEATURE] == "completed" and table_exists(url, "new_feature_table_user_idx")


def test_newer_migrations_apply_while_the_rolled_back_one_stays(env: dict[str, str]) -> None:
    url = env["DATABASE_URL"]
    rolled_back_by_the_cli(env)
    newer = add_newer_migration(Path(env["MIGRATIONS_DIR"]))
    result = run_cli([], env)
    assert result.returncode == 0, result.stderr
    assert "applied 1 migration(s)" in result.stdout and result.stdout.count(STAYS) == 1
    assert statuses(url)[newer] == "completed" and statuses(url)[NEW_FEATURE] == "rolled_back"


@pytest.mark.parametrize("by_hand", ["method_2", "row_deleted"])
def test_a_migration_rolled_back_by_hand_stays_rolled_back(env: dict[str, str], by_hand: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    url = env["DATABASE_URL"]
    assert main([], env) == 0
    script = METHOD_2 if by_hand == "method_2" else METHOD_2.replace(
        "UPDATE schema_migrations\nSET status = 'rolled_back'\nWHERE", "DELETE FROM schema_migrations\nWHERE")
    assert (script == METHOD_2) == (by_hand == "method_2")
    psql_script(url, script)
    capsys.readouterr()
    assert main([], env) == 0
    assert capsys.readouterr().out.count(STAYS) == 1
    assert not table_exists(url, "new_feature_table")
    assert main(["--status", "--json"], env) == 0
    states = {m["version"]: m["status"] for m in json.loads(capsys.readouterr().out)["migrations"]}
    assert states[NEW_FEATURE] == "rolled_back"
    assert main(["--reapply", NEW_FEATURE], env) == 0
    assert statuses(url)[NEW_FEATURE] == "completed" and table_exists(url, "new_feature_table")


def test_scenario_3_the_correct_database_still_gets_the_migration(
        env: dict[str, str], make_database: Callable[[], str]) -> None:
    rolled_back_by_the_cli(env)  # applied to the wrong database, rolled back there
    correct = {**env, "DATABASE_URL": make_database()}
    assert main([], correct) == 0
    assert statuses(correct["DATABASE_URL"]) == dict.fromkeys(ALL, "completed")


def test_reapply_of_a_migration_that_is_not_rolled_back_is_refused(env: dict[str, str]) -> None:
    url = env["DATABASE_URL"]
    assert run_cli([], env).returncode == 0
    result = run_cli(["--reapply", KNOWN_GOOD], env)
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert f"--reapply {KNOWN_GOOD}: the migration is completed, not rolled back" in result.stderr
    assert len(history(url, "apply")) == 4
    result = run_cli(["--status", "--reapply", KNOWN_GOOD], env)
    assert result.returncode == 2 and "--reapply goes with an apply" in result.stderr
