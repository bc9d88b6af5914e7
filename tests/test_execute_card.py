"""The execute card links the dry run it came from and shows the SQL it will run (its first lines; the
whole attached as a file in the card's thread). Signed requests into the running bot, a real worker."""

from __future__ import annotations

from collections.abc import Callable

import redis

from core.requests import RequestStore
from sandbox.signing import SlackRequestSender
from sandbox.slack_api import SlackApiServer, message_text
from tests.fixtures.stack import apply_example

CHANNEL = "C_INCIDENT"
GOOD = "2025_10_20_120001"


def test_the_execute_card_links_its_dry_run_and_shows_its_sql(
    stack_sender: SlackRequestSender, slack_api: SlackApiServer, stack_env: dict[str, str], database_url: str,
    start_worker: Callable[[dict[str, str]], object],
) -> None:
    apply_example(database_url)
    start_worker(stack_env)
    store = RequestStore(redis.Redis.from_url(stack_env["REDIS_URL"]))
    stack_sender.command(f"dry-run {GOOD}", user_id="U_ALICE", channel_id=CHANNEL)
    slack_api.wait_for(lambda: store.current_plan(CHANNEL, "prod"), timeout=30)
    dry_ts = slack_api.messages(CHANNEL)[0]["ts"]
    stack_sender.command("execute", user_id="U_ALICE", channel_id=CHANNEL)
    request = slack_api.wait_for(lambda: [r for r in store.for_channel(CHANNEL) if r.thread_ts], timeout=30)[0]
    card = message_text(slack_api.thread(CHANNEL, request.thread_ts)[0])
    assert "The dry run this plan comes from" in card and f"p{dry_ts.replace('.', '')}" in card
    assert "SQL it will run:" in card and "DROP TABLE IF EXISTS new_feature_table" in card
    attached = slack_api.wait_for(lambda: [f for f in slack_api.files() if f.thread_ts == request.thread_ts])
    sql = attached[0].text()
    assert "UPDATE users SET status = 'active' WHERE status = 'migrated'" in sql and "-- 2025_10_20_150000" in sql
