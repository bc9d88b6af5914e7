"""Slack retries a delivery it thinks timed out (`X-Slack-Retry-Num`, `X-Slack-Retry-Reason`): the same
signed body again. Nothing may happen twice: one root message, one job, one decision."""

from __future__ import annotations

import pytest
from rq import Queue

from core.requests import RequestStatus, RequestStore
from sandbox.slack_api import SlackApiServer
from tests.fixtures.bot import (
    ALICE,
    BOB,
    CHANNEL,
    SIGNING_SECRET,
    BotServer,
    RedeliveringSender,
    ask,
    click,
    jobs,
    roots,
    settle,
    wait_jobs,
)
from tests.fixtures.fakes import quiet


@pytest.fixture
def redelivering(bot_server: BotServer, slack_api: SlackApiServer) -> RedeliveringSender:
    return RedeliveringSender(bot_server.events_url, SIGNING_SECRET, slack_api)


@pytest.mark.usefixtures("idle_worker")
def test_a_retried_slash_command_runs_once(
    redelivering: RedeliveringSender, slack_api: SlackApiServer, bot_queue: Queue
) -> None:
    redelivering.command("status prod", user_id=ALICE, channel_id=CHANNEL)
    wait_jobs(slack_api, bot_queue, 1)
    for retry, reason in [(1, "http_timeout"), (2, "http_timeout"), (3, "http_error")]:
        assert redelivering.redeliver(redelivering.bodies[0], retry, reason)[0] == 200
    quiet(slack_api)  # a wrongly repeated command would post a second root message
    assert len(roots(slack_api)) == 1 and len(jobs(bot_queue)) == 1
    # a new command (its own trigger_id) is of course taken
    redelivering.command("status prod", user_id=ALICE, channel_id=CHANNEL)
    assert len(wait_jobs(slack_api, bot_queue, 2)) == 2 and len(roots(slack_api)) == 2


@pytest.mark.usefixtures("idle_worker")
def test_a_retried_approval_click_decides_and_enqueues_once(
    redelivering: RedeliveringSender, slack_api: SlackApiServer, bot_queue: Queue, store: RequestStore
) -> None:
    request = ask(redelivering, slack_api, store)
    assert click(redelivering, request, BOB) == 200
    wait_jobs(slack_api, bot_queue, 1)
    assert redelivering.redeliver(redelivering.bodies[-1], 1, "http_timeout")[0] == 200
    texts = settle(slack_api, request, 1)
    assert len(texts) == 2 and len(roots(slack_api)) == 1  # the approval line once, no "already approved"
    assert slack_api.ephemerals(user=BOB) == []
    assert jobs(bot_queue) == [("workers.jobs.run_request", {"request_id": request.id})]
    assert store.get(request.id).status is RequestStatus.APPROVED  # type: ignore[union-attr]
