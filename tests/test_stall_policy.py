"""Maintenance mode by the dry run's stall forecast (issue 12): the per-target policy, the card and the
refusal in the bot, and the execute pipeline's maintenance steps honouring it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.config import ConfigError, Hook, Target, load_settings
from core.requests import RequestStore
from core.stall_policy import MaintenanceChoice, decide
from sandbox.signing import SlackRequestSender
from sandbox.slack_api import SlackApiServer, message_text
from tests.fixtures.bot import (
    ALICE,
    CHANNEL,
    DEFAULT_BOT_CONFIG,
    PLAN,
    SIGNING_SECRET,
    ephemeral_texts,
    roots,
)
from tests.fixtures.stack import (
    apply_example,
    approved_request,
    dry_run_plan,
    run_request,
    thread_text,
    write_config,
)

GOOD = "2025_10_20_120001"
HOOK = Hook(command="true")


def target(**policy: Any) -> Target:
    return Target("prod", "PROD_DATABASE_URL", **policy)


def test_the_policy_requires_at_or_above_and_skips_below_its_thresholds() -> None:
    both = target(maintenance_above_stall_s=10, skip_maintenance_below_stall_s=1, maintenance_on=HOOK)
    assert decide(both, 10_000).choice is MaintenanceChoice.REQUIRED and not decide(both, 10_000).refused
    assert decide(both, 999).choice is MaintenanceChoice.SKIP and decide(both, 999).threshold_s == 1
    assert decide(both, 5_000).choice is MaintenanceChoice.AS_CONFIGURED
    assert decide(both, None).choice is MaintenanceChoice.AS_CONFIGURED  # an older plan: no forecast
    assert decide(target(), 60_000).choice is MaintenanceChoice.AS_CONFIGURED  # no policy
    assert decide(target(maintenance_above_stall_s=10), 12_000).refused  # required, but nothing to turn it on


def config(extra: str) -> str:
    return f'[targets.prod]\ndatabase_url_env = "PROD_DATABASE_URL"\n{extra}\n'


def test_the_thresholds_are_read_per_target_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "rollback.toml"
    path.write_text(config("maintenance_above_stall_s = 10\nskip_maintenance_below_stall_s = 0.5\n"
                           "dry_run_budget_ms = 500"))
    prod = load_settings({}, path).targets["prod"]
    assert (prod.maintenance_above_stall_s, prod.skip_maintenance_below_stall_s) == (10.0, 0.5)
    assert prod.dry_run_budget_ms == 500
    path.write_text(config(""))
    assert load_settings({}, path).targets["prod"].dry_run_budget_ms == 2000
    for bad, problem in (("maintenance_above_stall_s = -1", "0 or more"),
                         ('maintenance_above_stall_s = "ten"', "number of seconds"),
                         ("dry_run_budget_ms = -5", "number of milliseconds"),
                         ("maintenance_above_stall_s = 1\nskip_maintenance_below_stall_s = 2", "must not exceed")):
        path.write_text(config(bad))
        with pytest.raises(ConfigError, match=problem):
            load_settings({}, path)


SAVED = {**PLAN, "forecast": {"lines": ["reads and writes of users blocked ≈17 s (measured in the dry run)"],
                              "worst_ms": 17_200.0, "tables": [], "statements": []}}


def bot_with(make_bot: Any, slack_api: SlackApiServer, extra: str) -> SlackRequestSender:
    server = make_bot(DEFAULT_BOT_CONFIG.replace('[targets.prod]\n', f'[targets.prod]\n{extra}\n', 1))
    return SlackRequestSender(server.events_url, SIGNING_SECRET, slack_api)


@pytest.mark.usefixtures("idle_worker")
def test_a_required_maintenance_mode_without_a_hook_is_refused_before_any_request(
    make_bot: Any, slack_api: SlackApiServer, store: RequestStore
) -> None:
    sender = bot_with(make_bot, slack_api, "maintenance_above_stall_s = 10")
    store.save_plan(CHANNEL, "prod", SAVED)
    status, body = sender.command("execute prod", user_id=ALICE, channel_id=CHANNEL)
    assert status == 200
    text = body or slack_api.wait_for(lambda: ephemeral_texts(slack_api, ALICE))[0]
    assert text.startswith("Refused: the dry run forecasts the application blocked ≈17 s") and "\n" not in text
    assert "`maintenance_on` hook" in text
    assert store.for_channel(CHANNEL) == [] and roots(slack_api) == []


@pytest.mark.usefixtures("idle_worker")
def test_the_card_says_when_the_policy_skips_maintenance_mode(
    make_bot: Any, slack_api: SlackApiServer, store: RequestStore
) -> None:
    sender = bot_with(make_bot, slack_api, "skip_maintenance_below_stall_s = 60")
    store.save_plan(CHANNEL, "prod", SAVED)
    sender.command("execute prod", user_id=ALICE, channel_id=CHANNEL)
    card = slack_api.wait_for(lambda: roots(slack_api))
    assert "Maintenance mode will be *skipped* by this target's policy: the forecast stall ≈17 s is under 60 s" \
        in message_text(card[0])


def test_the_pipeline_skips_maintenance_when_the_forecast_is_below_the_threshold(
    stack_env: dict[str, str], database_url: str, slack_api: Any, start_worker: Any, tmp_path: Path
) -> None:
    marks = tmp_path / "maintenance.log"
    write_config(stack_env["ROLLBACK_CONFIG"], target_extra=(
        f'maintenance_on = "echo on >> {marks}"\nmaintenance_off = "echo off >> {marks}"\n'
        "skip_maintenance_below_stall_s = 3600\n"))
    apply_example(database_url)
    start_worker(stack_env)
    ts, dry = dry_run_plan(stack_env, slack_api, GOOD)
    assert dry["forecast"]["worst_ms"] < 3_600_000
    request = approved_request(stack_env, thread_ts=ts, plan=dry)
    assert run_request(stack_env, slack_api, request.id) == "succeeded", thread_text(slack_api, ts)
    assert not marks.exists()  # neither hook ran
    assert thread_text(slack_api, ts).count("skipped by the target's policy") == 2


def test_the_pipeline_runs_the_hooks_when_the_forecast_requires_maintenance(
    stack_env: dict[str, str], database_url: str, slack_api: Any, start_worker: Any, tmp_path: Path
) -> None:
    marks = tmp_path / "maintenance.log"
    write_config(stack_env["ROLLBACK_CONFIG"], target_extra=(
        f'maintenance_on = "echo on >> {marks}"\nmaintenance_off = "echo off >> {marks}"\n'
        "maintenance_above_stall_s = 0\nskip_maintenance_below_stall_s = 0\n"))
    apply_example(database_url)
    start_worker(stack_env)
    ts, dry = dry_run_plan(stack_env, slack_api, GOOD)
    request = approved_request(stack_env, thread_ts=ts, plan=dry)
    assert run_request(stack_env, slack_api, request.id) == "succeeded", thread_text(slack_api, ts)
    assert marks.read_text().split() == ["on", "off"]
