"""`run-migrations --rollback` escrows, `--escrow` lists, `--undo RUN_ID` reverses (the CLI's `main`, real database)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.engine_support import (
    BOOKKEEPING,
    KNOWN_GOOD,
    NEW_FEATURE,
    apply_examples,
    pg_dump,
    rows_sorted,
    statuses,
)
from workers.cli import main

FAST = ["--lock-timeout", "200", "--lock-retries", "1"]


@pytest.fixture
def env(database_url: str, tmp_path: Path) -> dict[str, str]:
    migrations = apply_examples(database_url, tmp_path, seed=True)
    return {"DATABASE_URL": database_url, "MIGRATIONS_DIR": str(migrations), "PATH": "/usr/bin:/bin"}


def test_rollback_prints_its_run_id_and_undo_gives_the_database_back(
        env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    url = env["DATABASE_URL"]
    before = rows_sorted(pg_dump(url, exclude=BOOKKEEPING))

    assert main(["--rollback", "--to", KNOWN_GOOD, *FAST], env) == 0
    printed = capsys.readouterr().out
    run_id = re.search(r"undo with --undo (run-\d{8}-\d{6}-[0-9a-f]{4})", printed)
    assert run_id, printed
    assert "3 table(s), 10 row(s)" in printed

    assert main(["--escrow", "--json"], env) == 0
    held = json.loads(capsys.readouterr().out)
    assert [(h["request_id"], h["rows"], h["tables"]) for h in held] == [
        (run_id[1], 10, ["new_feature_table", "users"])]

    assert main(["--undo", run_id[1], "--dry-run", *FAST], env) == 0
    assert "DRY RUN of undo" in capsys.readouterr().out and statuses(url)[NEW_FEATURE] == "rolled_back"

    assert main(["--undo", run_id[1], *FAST], env) == 0
    assert f"undid rollback {run_id[1]}" in capsys.readouterr().out
    assert rows_sorted(pg_dump(url, exclude=BOOKKEEPING)) == before

    assert main(["--undo", run_id[1]], env) == 1
    assert "already undone" in capsys.readouterr().err


def test_bad_escrow_usage_gets_one_line_and_changes_nothing(env: dict[str, str],
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--undo", "run-nope"], env) == 1
    assert capsys.readouterr().err.strip() == ("run-migrations: error: no escrow is held for run-nope; list what is "
                                               "held with `run-migrations --escrow` or `/rollback escrow`")
    assert main(["--no-escrow", "--status"], env) == 2
    assert main(["--escrow", "--dry-run"], env) == 2
    assert main(["--rollback", "--no-escrow", "--escrow-required"], env) == 2
    assert main(["--rollback", "--to", KNOWN_GOOD, "--no-escrow", *FAST], env) == 0
    assert "undo with" not in capsys.readouterr().out
    assert main(["--escrow"], env) == 0
    assert capsys.readouterr().out.strip() == "no escrow held"
