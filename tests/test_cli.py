"""`run-migrations`: the playbook's commands with `node scripts/run-migrations.js` replaced, in-process and as a process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.engine_support import (
    BOOKKEEPING,
    HISTORY,
    KNOWN_GOOD,
    KNOWN_GOOD_DIR,
    NEW_FEATURE,
    NEW_FEATURE_DIR,
    REPO,
    WAIT_SECONDS,
    copy_migrations,
    held_back,
    pg_dump,
    query,
    run_cli,
    statuses,
    wait_for_backend,
)
from workers.cli import main
from workers.engine.locks import MIGRATION_LOCK_KEY

FAST = ["--lock-timeout", "200", "--lock-retries", "1"]


@pytest.fixture
def env(database_url: str, tmp_path: Path) -> dict[str, str]:
    return {"DATABASE_URL": database_url, "MIGRATIONS_DIR": str(copy_migrations(tmp_path)),
            "BACKUP_DIR": str(tmp_path / "backups")}


def test_playbook_procedure_end_to_end(env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*FAST], env) == 0  # run-migrations
    out = capsys.readouterr().out
    assert "applied 4 migration(s)" in out and NEW_FEATURE in out

    assert main(["--status"], env) == 0
    out = capsys.readouterr().out
    assert "version" in out and "status" in out and "applied_at" in out
    assert f"current version: {NEW_FEATURE}" in out

    assert main(["--rollback", "--to", KNOWN_GOOD, "--dry-run", "--verbose", *FAST], env) == 0
    out = capsys.readouterr().out
    assert "DRY RUN" in out and "DROP TABLE new_feature_table: 0 rows would be lost" in out
    assert f"[{NEW_FEATURE}] ALTER TABLE users DROP COLUMN new_field" in out  # --verbose: each statement
    assert f"[{NEW_FEATURE}]   -> ALTER TABLE (" in out and " ms)" in out  # ... and its timing
    assert statuses(env["DATABASE_URL"])[NEW_FEATURE] == "completed"

    assert main(["--rollback", "--to", KNOWN_GOOD, "--verbose", "--actor", "alice", *FAST], env) == 0
    out = capsys.readouterr().out
    assert "rolled back 1 migration(s)" in out and f"database is now at {KNOWN_GOOD}" in out
    with psycopg.connect(env["DATABASE_URL"]) as conn:
        row = conn.execute("SELECT executed_by FROM migration_history WHERE operation = 'rollback'").fetchone()
    assert row == ("alice",)

    assert main(["--status", "--json"], env) == 0
    data = json.loads(capsys.readouterr().out)
    assert {m["version"]: m["status"] for m in data["migrations"]}[NEW_FEATURE] == "rolled_back"

    assert main(["--history", "--json"], env) == 0
    assert json.loads(capsys.readouterr().out)[0]["operation"] == "rollback"


def test_rollback_without_to_reverts_the_newest_and_reports_nothing_left(env: dict[str, str],
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main([], env) == 0
    assert main(["--rollback", *FAST], env) == 0
    assert statuses(env["DATABASE_URL"])[NEW_FEATURE] == "rolled_back"
    capsys.readouterr()
    assert main(["--rollback", "--to", KNOWN_GOOD], env) == 0
    assert "nothing to roll back" in capsys.readouterr().out


def test_dry_run_apply_with_json(env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--dry-run", "--json"], env) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["dry_run"] is True and len(data["plan"]["versions"]) == 4
    assert "schema_migrations" not in pg_dump(env["DATABASE_URL"])


@pytest.mark.parametrize("args, expected", [
    (["--rollback", "--to", "2025_10_20"], "'2025_10_20' is not a migration version"),
    (["--rollback", "--to", "2024_01_01_000000"], "version 2024_01_01_000000 has never been applied"),
    (["--rollback", "--to", NEW_FEATURE, "--dir", "/nonexistent"], "migrations folder /nonexistent does not exist"),
    (["--status", "--dir", str(REPO / "README.md")], f"migrations folder {REPO / 'README.md'} is a file, not a folder"),
])
def test_expected_failures_exit_1_with_one_line_and_no_traceback(env: dict[str, str], args: list[str],
                                                                 expected: str) -> None:
    assert run_cli([], env).returncode == 0
    result = run_cli(args, env)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("run-migrations: error: ")
    assert expected in result.stderr and "Traceback" not in result.stderr


def test_failing_down_script_exits_nonzero_and_changes_nothing(env: dict[str, str]) -> None:
    assert run_cli([], env).returncode == 0
    down = Path(env["MIGRATIONS_DIR"]) / NEW_FEATURE_DIR / "down.sql"
    down.write_text("DROP TABLE new_feature_table;\nALTER TABLE users DROP COLUMN nope;\n")
    before = pg_dump(env["DATABASE_URL"], exclude=HISTORY)
    result = run_cli(["--rollback", "--to", KNOWN_GOOD, *FAST], env)
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert "rollback of 2025_10_20_150000_add_new_feature failed at `ALTER TABLE users DROP COLUMN nope`" in result.stderr
    assert 'column "nope" of relation "users" does not exist' in result.stderr
    assert pg_dump(env["DATABASE_URL"], exclude=HISTORY) == before


def test_missing_down_script_and_lock_busy_exit_1(env: dict[str, str]) -> None:
    assert run_cli([], env).returncode == 0
    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        busy = run_cli(["--rollback", "--to", KNOWN_GOOD, *FAST], env)
    assert busy.returncode == 1 and "another migration run holds the migration lock" in busy.stderr
    (Path(env["MIGRATIONS_DIR"]) / NEW_FEATURE_DIR / "down.sql").unlink()
    missing = run_cli(["--rollback", "--to", KNOWN_GOOD], env)
    assert missing.returncode == 1 and "has no down.sql or rollback.sql" in missing.stderr


def test_connection_refused_is_one_line_without_the_password(tmp_path: Path) -> None:
    env = {"DATABASE_URL": "postgresql://app:hunter2secret@127.0.0.1:9/prod", "MIGRATIONS_DIR": str(tmp_path)}
    result = run_cli(["--status"], env)
    assert result.returncode == 1
    assert "cannot connect to PostgreSQL at 127.0.0.1:9/prod" in result.stderr
    assert "hunter2secret" not in result.stderr + result.stdout and "Traceback" not in result.stderr


@pytest.mark.parametrize("args, env_over, expected", [
    (["--to", KNOWN_GOOD], {}, "--to needs --rollback"),
    (["--status", "--rollback"], {}, "not allowed with argument"),
    (["--status", "--dry-run"], {}, "--dry-run goes with apply or --rollback"),
    (["--lock-timeout", "0"], {}, "--lock-timeout must be a positive number"),
    (["--history", "--limit", "-1"], {}, "--limit must be a positive number of rows"),
    (["--bogus"], {}, "unrecognized arguments: --bogus"),
    (["--status"], {"DATABASE_URL": ""}, "DATABASE_URL is not set"),
])
def test_usage_errors_exit_2(env: dict[str, str], args: list[str], env_over: dict[str, str], expected: str) -> None:
    result = run_cli(args, {**env, **env_over})
    assert result.returncode == 2
    assert expected in result.stderr and result.stderr.count("\n") == 1


def test_lock_timeout_shows_each_retry_then_names_the_blocker(env: dict[str, str]) -> None:
    assert run_cli([], env).returncode == 0
    with psycopg.connect(env["DATABASE_URL"], autocommit=True, application_name="web") as app:
        app.execute("BEGIN")
        app.execute("LOCK TABLE users IN ACCESS SHARE MODE")
        result = run_cli(["--rollback", "--to", KNOWN_GOOD, "--lock-timeout", "200", "--lock-retries", "1"], env)
        app.execute("ROLLBACK")
        pid = app.info.backend_pid
    lines = result.stderr.splitlines()
    assert result.returncode == 1 and len(lines) == 2
    assert lines[0].startswith("lock wait: attempt 1/2 timed out after 200 ms")
    assert lines[1].startswith("run-migrations: error: gave up after 2 attempts")
    assert f"blocked by pid {pid}" in lines[1] and "application 'web'" in lines[1]
    assert statuses(env["DATABASE_URL"])[NEW_FEATURE] == "completed"


def test_the_cli_needs_neither_slack_nor_redis() -> None:
    """The break-glass path works when Slack and Redis are down: it does not even import them."""
    code = ("import sys, workers.cli; print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'redis', 'rq', 'slack_sdk', 'slack_bolt'}))")
    result = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=str(REPO)),
                            capture_output=True, text=True, cwd=REPO, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_stopping_a_rollback_mid_statement_rolls_it_back_and_says_so_in_one_line(env: dict[str, str],
                                                                                 stop: signal.Signals) -> None:
    assert run_cli([], env).returncode == 0
    url = env["DATABASE_URL"]
    (Path(env["MIGRATIONS_DIR"]) / NEW_FEATURE_DIR / "down.sql").write_text(
        "DROP TABLE new_feature_table;\nSELECT pg_sleep(30);\n")
    before = pg_dump(url, exclude=BOOKKEEPING)
    # A suite started in the background (`cmd &`) inherits SIGINT ignored, and so would the CLI: give it
    # a terminal's default disposition, so that SIGINT is the Ctrl-C it stands for.
    proc = subprocess.Popen([sys.executable, "-m", "workers.cli", "--rollback", "--to", KNOWN_GOOD, *FAST],
                            env=dict(os.environ, PYTHONPATH=str(REPO), **env), cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        wait_for_backend(url, "SELECT pg_sleep")
        proc.send_signal(stop)
        _, stderr = proc.communicate(timeout=WAIT_SECONDS)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert stderr.count("\n") == 1 and stderr.startswith("run-migrations: error: interrupted;")
    assert pg_dump(url, exclude=BOOKKEEPING) == before
    assert statuses(url)[NEW_FEATURE] == "completed"
    assert query(url, "SELECT status FROM migration_history WHERE operation = 'rollback'") == [("failed",)]


def test_a_late_merged_migration_is_flagged_by_status_and_applied_out_of_order(
        env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    migrations = Path(env["MIGRATIONS_DIR"])
    with held_back(migrations, KNOWN_GOOD_DIR):
        assert main([], env) == 0
    capsys.readouterr()
    assert main(["--status"], env) == 0
    assert f"! {KNOWN_GOOD_DIR} is pending but older than the current version {NEW_FEATURE}" in capsys.readouterr().out
    assert main([], env) == 0  # without --verbose the notice still shows, on stderr
    captured = capsys.readouterr()
    assert captured.err == (f"note: applying {KNOWN_GOOD_DIR} out of order: it is older than the current version "
                            f"{NEW_FEATURE}\n")
    assert "applied 1 migration(s)" in captured.out and "warnings:" in captured.out


def test_rollback_on_a_database_never_migrated_says_so_and_creates_nothing(
        env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--rollback"], env) == 0
    assert capsys.readouterr().out.startswith("nothing to roll back: no migration is completed in ")
    assert query(env["DATABASE_URL"], "SELECT to_regclass('schema_migrations')") == [(None,)]


@pytest.mark.parametrize("state", ["rolled_back", "failed"])
def test_rollback_to_a_version_that_is_not_completed_is_refused(env: dict[str, str], state: str) -> None:
    assert run_cli([], env).returncode == 0
    query(env["DATABASE_URL"], "UPDATE schema_migrations SET status = %s WHERE version = %s", (state, KNOWN_GOOD))
    result = run_cli(["--rollback", "--to", KNOWN_GOOD], env)
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert f"version {KNOWN_GOOD} is {state}, not completed" in result.stderr
    assert statuses(env["DATABASE_URL"])[NEW_FEATURE] == "completed"


def test_a_misnamed_migration_folder_stops_apply_and_is_named(env: dict[str, str]) -> None:
    misnamed = Path(env["MIGRATIONS_DIR"]) / "2025_10_21_1200_add_index"
    misnamed.mkdir()
    (misnamed / "up.sql").write_text("CREATE INDEX users_status_idx ON users (status);")
    result = run_cli([], env)
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert f"folder {misnamed} looks like a migration but is not named YYYY_MM_DD_HHMMSS_<name>" in result.stderr
    assert query(env["DATABASE_URL"], "SELECT to_regclass('users')") == [(None,)]  # nothing else ran either


@pytest.mark.parametrize("url, expected", [
    ("hunter2secret host=", "DATABASE_URL is not a valid PostgreSQL URL or connection string"),
    ("postgresql://app:hunter2secret@no-such-host.invalid:5432/prod",
     "cannot connect to PostgreSQL at no-such-host.invalid:5432/prod: failed to resolve host"),
    ("host=127.0.0.1 port=9 user=app password='hunter2secret' dbname=prod",
     "cannot connect to PostgreSQL at 127.0.0.1:9/prod"),
])
def test_bad_database_urls_are_one_line_without_the_password(tmp_path: Path, url: str, expected: str) -> None:
    result = run_cli(["--status"], {"DATABASE_URL": url, "MIGRATIONS_DIR": str(tmp_path)})
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert expected in result.stderr
    assert "hunter2secret" not in result.stderr + result.stdout and "Traceback" not in result.stderr


def test_copy_from_stdin_is_refused_before_anything_runs(env: dict[str, str]) -> None:
    up = Path(env["MIGRATIONS_DIR"]) / NEW_FEATURE_DIR / "up.sql"
    up.write_text("CREATE TABLE imported (id int);\nCOPY imported (id) FROM stdin;\n1\n2\n\\.\n")
    for args in ([], ["--dry-run"]):
        result = run_cli(args, env)
        assert result.returncode == 1 and result.stderr.count("\n") == 1
        assert (f"{up}: `COPY imported (id) FROM stdin`: COPY FROM STDIN is not supported in migration scripts; "
                "use INSERT or load data separately") in result.stderr
    assert query(env["DATABASE_URL"], "SELECT to_regclass('users')") == [(None,)]


def test_a_verbose_dry_run_says_dry_run_before_any_statement(env: dict[str, str],
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*FAST], env) == 0
    capsys.readouterr()
    assert main(["--rollback", "--to", KNOWN_GOOD, "--dry-run", "--verbose", *FAST], env) == 0
    lines = capsys.readouterr().out.splitlines()
    first_statement = next(i for i, line in enumerate(lines) if line.startswith(f"[{NEW_FEATURE}]"))
    assert lines[0].startswith("DRY RUN — nothing will change") and first_statement > 0
    assert statuses(env["DATABASE_URL"])[NEW_FEATURE] == "completed"


def test_a_folder_of_other_files_is_summarized_in_one_line(env: dict[str, str],
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    folder = Path(env["MIGRATIONS_DIR"])
    for i in range(100):  # e.g. MIGRATIONS_DIR pointing at a project's root by mistake
        (folder / f"notes-{i:03d}").mkdir()
    assert main(["--status"], env) == 0
    ignored = [line for line in capsys.readouterr().out.splitlines() if "ignored" in line]
    assert len(ignored) == 1, ignored
    assert "ignored 100 entries in the migrations folder" in ignored[0] and "'notes-000'" in ignored[0]
    assert "and 97 more" in ignored[0]
