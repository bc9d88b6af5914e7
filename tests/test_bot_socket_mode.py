"""Socket Mode (`SLACK_APP_TOKEN`, no signing secret, no public URL): `python -m bot` opens the socket
through `apps.connections.open` on the Slack stand-in, receives slash commands and mentions (Events API) as
envelopes on the WebSocket (sandbox/socket_mode.py), acks them there and enqueues the jobs as over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rq import Queue

from sandbox.slack_api import BOT_MENTION, SlackApiServer
from sandbox.socket_mode import SocketModeServer
from tests.fixtures.bot import ALICE, CHANNEL, DEFAULT_BOT_CONFIG, BotServer, launch_bot, roots, wait_jobs
from tests.fixtures.fakes import WAIT_SECONDS, quiet

CONNECT_TIMEOUT_SECONDS = WAIT_SECONDS


class PatientSocketMode(SocketModeServer):
    """The Socket Mode stand-in, waiting for acks as long as the tests wait for anything."""

    def deliver(self, kind: str, payload: dict[str, Any], *, timeout: float = WAIT_SECONDS,
                retry_attempt: int = 0) -> dict[str, Any]:
        return super().deliver(kind, payload, timeout=timeout, retry_attempt=retry_attempt)


@pytest.fixture
def sockets(slack_api: SlackApiServer) -> Iterator[SocketModeServer]:
    with PatientSocketMode(slack_api) as server:
        yield server


@pytest.fixture
def socket_bot(bot_env: dict[str, str], sockets: SocketModeServer, tmp_path: Path) -> Iterator[BotServer]:
    config = tmp_path / "rollback.toml"
    config.write_text(DEFAULT_BOT_CONFIG)
    env = {k: v for k, v in bot_env.items() if k != "SLACK_SIGNING_SECRET"}
    bot = launch_bot({**env, "SLACK_APP_TOKEN": sockets.app_token, "ROLLBACK_CONFIG": str(config)}, tmp_path)
    try:
        sockets.wait_connected(CONNECT_TIMEOUT_SECONDS)
    except AssertionError:
        bot.stop()
        raise AssertionError(f"the bot did not connect over Socket Mode:\n{bot.log()}") from None
    yield bot
    bot.stop()


@pytest.mark.usefixtures("idle_worker", "socket_bot")
def test_a_slash_command_over_the_socket_is_acked_and_enqueued(
    sockets: SocketModeServer, slack_api: SlackApiServer, bot_queue: Queue
) -> None:
    assert slack_api.calls("apps.connections.open")  # the socket came from the app-level token
    ack = sockets.slash_command("status prod", user_id=ALICE, channel_id=CHANNEL)
    assert ack["envelope_id"] and not (ack.get("payload") or {}).get("text")
    name, kwargs = wait_jobs(slack_api, bot_queue, 1)[0]
    assert name == "workers.jobs.status"
    assert kwargs == {"target": "prod", "channel": CHANNEL, "thread_ts": roots(slack_api)[0]["ts"]}

    # bad input is answered in the ack itself, and nothing is queued
    ack = sockets.slash_command("stauts prod", user_id=ALICE, channel_id=CHANNEL)
    assert "Did you mean `status`" in ack["payload"]["text"]
    assert bot_queue.count == 1 and len(roots(slack_api)) == 1

    # Slack redelivers an envelope it saw no ack for (retry_attempt): nothing runs twice
    first = sockets.sent[0]
    ack = sockets.deliver(first["type"], first["payload"], retry_attempt=1)
    assert ack["envelope_id"] != first["envelope_id"]
    quiet(slack_api)  # a wrongly repeated command would post a second root message
    assert bot_queue.count == 1 and len(roots(slack_api)) == 1


@pytest.mark.usefixtures("idle_worker", "socket_bot")
def test_a_mention_in_a_thread_over_the_socket_is_answered_in_that_thread(
    sockets: SocketModeServer, slack_api: SlackApiServer, bot_queue: Queue
) -> None:
    thread = str(slack_api.post_as_user(CHANNEL, "U_CAROL", "checkout is failing")["ts"])
    sockets.app_mention(f"{BOT_MENTION} status prod", user_id=ALICE, channel_id=CHANNEL, thread_ts=thread)
    name, kwargs = wait_jobs(slack_api, bot_queue, 1)[0]
    assert (name, kwargs) == ("workers.jobs.status", {"target": "prod", "channel": CHANNEL, "thread_ts": thread})
    assert [m["user"] for m in roots(slack_api)] == ["U_CAROL"]  # answered in the thread, no root of its own
    # Slack redelivers an event it saw no ack for: nothing runs twice
    first = sockets.sent[0]
    sockets.deliver(first["type"], first["payload"], retry_attempt=1)
    quiet(slack_api)
    assert bot_queue.count == 1


def test_a_wrong_app_token_gets_no_socket(sockets: SocketModeServer, slack_api: SlackApiServer) -> None:
    from slack_sdk import WebClient
    from slack_sdk.errors import SlackApiError

    with pytest.raises(SlackApiError) as err:
        WebClient(base_url=slack_api.api_url).apps_connections_open(app_token="xapp-wrong")
    assert err.value.response["error"] == "invalid_auth"
    answer = WebClient(base_url=slack_api.api_url).apps_connections_open(app_token=sockets.app_token)
    assert str(answer["url"]).startswith("ws://127.0.0.1:")
