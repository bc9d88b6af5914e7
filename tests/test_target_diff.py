"""Scenario 3 end to end: `/rollback diff prod staging` through the running bot and a real worker flags
the migration applied to prod from staging's folder, and says how to take it off prod."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.commands import CommandError, parse
from sandbox.signing import SlackRequestSender
from sandbox.slack_api import SlackApiServer
from tests.fixtures.bot import thread_text
from tests.fixtures.stack import EXAMPLE_MIGRATIONS, apply_all, apply_example

CHANNEL = "C_INCIDENT"
STRAY = "2025_10_22_090000"
NEWEST_EXAMPLE = "2025_10_20_150000"


@pytest.fixture
def two_targets(stack_env: dict[str, str], make_database: Callable[[], str], tmp_path: Path) -> dict[str, str]:
    """prod (the example migrations) and staging (the same plus one newer migration, which someone also
    ran against prod: the classic accident). Written before the bot starts, so it knows both targets."""
    staging_dir = tmp_path / "staging-migrations"
    shutil.copytree(EXAMPLE_MIGRATIONS, staging_dir)
    stray = staging_dir / f"{STRAY}_add_audit_log"
    stray.mkdir()
    (stray / "up.sql").write_text("CREATE TABLE audit_log (id bigint PRIMARY KEY, at timestamptz NOT NULL);\n")
    (stray / "down.sql").write_text("DROP TABLE audit_log;\n")
    config = Path(stack_env["ROLLBACK_CONFIG"])
    config.write_text(config.read_text() + f'\n[targets.staging]\nmigrations_dir = "{staging_dir}"\n')
    staging_url = make_database()
    apply_example(stack_env["PROD_DATABASE_URL"])
    apply_example(staging_url)
    apply_all(stack_env["PROD_DATABASE_URL"], str(staging_dir))  # staging's migration, run against prod
    return {**stack_env, "STAGING_DATABASE_URL": staging_url}


def test_diff_flags_the_stray_migration_and_how_to_take_it_off(
    two_targets: dict[str, str], stack_sender: SlackRequestSender, slack_api: SlackApiServer,
    start_worker: Callable[[dict[str, str]], object],
) -> None:
    start_worker(two_targets)
    status, body = stack_sender.command("diff prod staging", user_id="U_ALICE", channel_id=CHANNEL)
    assert status == 200, body
    root = slack_api.wait_for(lambda: slack_api.messages(CHANNEL) and slack_api.messages(CHANNEL)[0]["ts"])
    text = slack_api.wait_for(lambda: "Diff" in thread_text(slack_api, root) and thread_text(slack_api, root), timeout=30)
    assert f"{STRAY} is applied on *prod* but not on *staging*" in text
    assert f"`/rollback dry-run {NEWEST_EXAMPLE} prod`" in text
    assert "prod's migrations folder does not know" in text
    assert f"*prod* has version(s) its migrations folder does not know: {STRAY}" in text
    assert "table public.audit_log: only on prod" in text


def test_diff_needs_two_different_targets() -> None:
    targets = ["prod", "staging"]
    assert parse("diff prod staging", targets).other == "staging"
    with pytest.raises(CommandError, match="twice"):
        parse("diff prod prod", targets)
    assert parse("diff prod", targets).other is None  # prod against each other target
