"""The approval card shows the dry run's lock-impact forecast, fed from the saved plan (issue 12).

The plan is a real dry run of the example migrations on PostgreSQL, made while an application thread
reads `users`; the card comes from a really signed `/rollback execute`.
"""

from __future__ import annotations

import threading
from pathlib import Path

import psycopg
import pytest

from core.requests import RequestStore
from sandbox.signing import SlackRequestSender
from sandbox.slack_api import SlackApiServer, message_text
from tests.engine_support import KNOWN_GOOD, apply_examples, make_engine
from tests.fixtures.bot import ALICE, CHANNEL, pending_request, roots

pytestmark = pytest.mark.usefixtures("idle_worker")


def dry_run_under_app_load(database_url: str, tmp_path: Path) -> dict[str, object]:
    migrations = apply_examples(database_url, tmp_path, seed=True)
    stop, errors = threading.Event(), []

    def app() -> None:
        try:
            with psycopg.connect(database_url, autocommit=True) as conn:
                while not stop.is_set():
                    conn.execute("SELECT count(*) FROM users").fetchone()
                    stop.wait(0.005)
        except psycopg.Error as exc:
            errors.append(str(exc))

    thread = threading.Thread(target=app, daemon=True)
    thread.start()
    try:
        report = make_engine(database_url, migrations).dry_run_rollback(KNOWN_GOOD).to_dict()
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not errors
    return report


def test_the_card_shows_the_forecast_line_from_the_saved_plan(
    database_url: str, tmp_path: Path, sender: SlackRequestSender, slack_api: SlackApiServer, store: RequestStore
) -> None:
    saved = dry_run_under_app_load(database_url, tmp_path)
    forecast = saved["forecast"]
    assert isinstance(forecast, dict) and forecast["tables"][0]["relation"] == "users"
    store.save_plan(CHANNEL, "prod", saved)
    sender.command("execute prod", user_id=ALICE, channel_id=CHANNEL)
    request = pending_request(slack_api, store)
    card = message_text(roots(slack_api)[0])
    assert "*Lock impact* of the real run" in card
    assert "• reads and writes of users blocked " in card and "(measured in the dry run)" in card
    assert request.forecast == forecast["lines"] and request.stall_ms == forecast["worst_ms"]
    # The record keeps them: the card is rebuilt from the request when it is approved or expires.
    assert store.get(request.id).forecast == forecast["lines"]


def test_a_plan_without_a_forecast_shows_no_lock_impact(
    sender: SlackRequestSender, slack_api: SlackApiServer, store: RequestStore
) -> None:
    from tests.fixtures.bot import PLAN

    store.save_plan(CHANNEL, "prod", PLAN)
    sender.command("execute prod", user_id=ALICE, channel_id=CHANNEL)
    request = pending_request(slack_api, store)
    assert "Lock impact" not in message_text(roots(slack_api)[0])
    assert request.forecast == [] and request.stall_ms is None
