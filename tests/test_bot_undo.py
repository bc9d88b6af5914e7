"""`/rollback undo` and `/rollback escrow` through the real bot and a real worker: the undo's dry run comes
first, a rollback that cannot be undone is refused in one line, and the card shows what comes back.
Real bot, worker, PostgreSQL and Redis; Slack is the local stand-in, requests are really signed."""

from __future__ import annotations

import pytest
import redis

from core.requests import RequestKind, RequestStore
from sandbox.signing import SlackRequestSender
from sandbox.slack_api import SlackApiServer, message_text
from tests.fixtures.stack import apply_example
from workers.engine import Engine

CHANNEL = "C_INCIDENT"
ALICE = "U_ALICE"
GOOD = "2025_10_20_120001"

pytestmark = pytest.mark.usefixtures("worker")


def test_undo_is_requested_after_its_dry_run_and_refused_when_nothing_is_held(
    stack_sender: SlackRequestSender, slack_api: SlackApiServer, stack_env: dict[str, str], database_url: str,
) -> None:
    from core.config import load_settings

    apply_example(database_url)
    store = RequestStore(redis.Redis.from_url(stack_env["REDIS_URL"]))

    stack_sender.command("undo RB-NOPE00 prod", user_id=ALICE, channel_id=CHANNEL)
    refusal = slack_api.wait_for(lambda: [message_text(e) for e in slack_api.ephemerals(user=ALICE)], timeout=60)[0]
    assert refusal.startswith("Refused: rollback `RB-NOPE00` of `prod` cannot be undone: no escrow is held"), refusal
    assert store.for_channel(CHANNEL) == [] and slack_api.messages(CHANNEL) == []

    engine = Engine(database_url, load_settings(stack_env).target("prod").migrations_dir, actor="cli-user")
    engine.rollback(GOOD)  # a break-glass rollback on the command line: undone from Slack
    run_id = engine.run_id
    assert run_id

    stack_sender.command(f"undo {run_id} prod", user_id=ALICE, channel_id=CHANNEL)
    request = slack_api.wait_for(lambda: [r for r in store.for_channel(CHANNEL) if r.thread_ts], timeout=60)[0]
    assert request.kind is RequestKind.UNDO and request.undoes == run_id and request.plan_hash
    card = message_text(slack_api.thread(CHANNEL, request.thread_ts)[0])
    assert f"undo of rollback `{run_id}`" in card and "new_feature_table (drop_table) 16 row(s)" in card

    stack_sender.command("escrow prod", user_id=ALICE, channel_id=CHANNEL)
    def escrow_listing() -> list[str]:
        roots = [m for m in slack_api.messages(CHANNEL) if m.get("ts") != request.thread_ts]
        texts = [message_text(m) for root in roots for m in slack_api.thread(CHANNEL, root["ts"])]
        return [t for t in texts if f"`{run_id}`:" in t]

    assert "new_feature_table, users" in slack_api.wait_for(escrow_listing, timeout=60)[0]
