"""A command typed inside an incident thread is answered in that thread (issue 11, "One incident, one
record"). Slack refuses slash commands in threads, so there the bot is mentioned instead:
`@rollback-bot status prod` delivered as an Events API `app_mention` (a signed JSON `event_callback`),
through the same verb table, parsing, authorisation and refusals as `/rollback`.

Really signed deliveries into the running bot (`python -m bot` under gunicorn): the first tests with a
registered RQ worker that takes nothing (the jobs stay to be inspected), the last one on the whole stack
with a real forking worker, PostgreSQL and Redis.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import redis
from rq import Queue

from bot.messages import HELP_TITLE
from core.requests import Request, RequestStatus, RequestStore
from sandbox.signing import SlackRequestSender
from sandbox.slack_api import BOT_ID, BOT_MENTION, BOT_USER_ID, SlackApiServer, message_text
from tests.fixtures.bot import (
    ALICE,
    BOB,
    CAROL,
    CHANNEL,
    DEFAULT_BOT_CONFIG,
    SIGNING_SECRET,
    V1,
    BotServer,
    RedeliveringSender,
    jobs,
    wait_jobs,
)
from tests.fixtures.fakes import WAIT_SECONDS, quiet
from tests.fixtures.stack import apply_example

PIPELINE_TIMEOUT = 90.0


def incident_thread(slack_api: SlackApiServer, channel: str = CHANNEL) -> str:
    """A thread a person started about the incident (not the bot): its ts."""
    return str(slack_api.post_as_user(channel, CAROL, "checkout is failing since the 15:00 deploy")["ts"])


def bot_roots(slack_api: SlackApiServer, channel: str = CHANNEL) -> list[dict[str, Any]]:
    return [m for m in slack_api.messages(channel) if m.get("bot_id") == BOT_ID and m.get("thread_ts", m["ts"]) == m["ts"]]


def bot_replies(slack_api: SlackApiServer, thread_ts: str, channel: str = CHANNEL) -> list[str]:
    return [message_text(m) for m in slack_api.thread(channel, thread_ts)[1:] if m.get("bot_id") == BOT_ID]


def whispered(slack_api: SlackApiServer, user: str, thread_ts: str | None) -> list[str]:
    """The ephemeral answers `user` got in the thread `thread_ts` (None: in the channel)."""
    return [message_text(e) for e in slack_api.ephemerals(user=user) if e.get("thread_ts") == thread_ts]


def mention(sender: SlackRequestSender, words: str, user: str, thread_ts: str | None, channel: str = CHANNEL) -> None:
    status, body = sender.app_mention(f"{BOT_MENTION} {words}", user_id=user, channel_id=channel, thread_ts=thread_ts)
    assert status == 200, body


@pytest.mark.usefixtures("idle_worker")
def test_verbs_mentioned_in_a_thread_are_answered_in_that_thread(
    sender: SlackRequestSender, slack_api: SlackApiServer, bot_queue: Queue
) -> None:
    thread = incident_thread(slack_api)
    mention(sender, "status prod", ALICE, thread)
    name, kwargs = wait_jobs(slack_api, bot_queue, 1)[0]
    assert (name, kwargs) == ("workers.jobs.status", {"target": "prod", "channel": CHANNEL, "thread_ts": thread})
    slack_api.wait_for(lambda: bot_replies(slack_api, thread))
    assert "*status* of `prod` requested by <@U_ALICE>" in bot_replies(slack_api, thread)[0]
    assert bot_roots(slack_api) == []  # no new root message: the incident stays in its thread

    # maintenance (an approver) is recorded in the thread it was asked in, and its job answers there
    mention(sender, "maintenance on prod", BOB, thread)
    name, kwargs = wait_jobs(slack_api, bot_queue, 2)[1]
    assert name == "workers.jobs.maintenance" and kwargs["thread_ts"] == thread and kwargs["state"] == "on"

    # what is answered to the person alone is answered in the thread too: help, bad input (escaped)
    mention(sender, "help", ALICE, thread)
    assert HELP_TITLE in slack_api.wait_for(lambda: whispered(slack_api, ALICE, thread))[0]
    mention(sender, "stauts prod", ALICE, thread)
    mention(sender, "dry-run <!channel> prod", ALICE, thread)
    answers = slack_api.wait_for(lambda: (found := whispered(slack_api, ALICE, thread)) and len(found) >= 3 and found)
    assert "Did you mean `status`" in answers[1]
    assert "&lt;!channel&gt;" in answers[2] and "<!channel>" not in answers[2]
    quiet(slack_api)
    assert len(jobs(bot_queue)) == 2 and bot_roots(slack_api) == []
    assert whispered(slack_api, ALICE, None) == []  # nothing answered outside the thread


@pytest.mark.usefixtures("idle_worker")
def test_a_mention_outside_a_thread_behaves_like_the_slash_command(
    sender: SlackRequestSender, slack_api: SlackApiServer, bot_queue: Queue
) -> None:
    mention(sender, "status prod", ALICE, None)
    name, kwargs = wait_jobs(slack_api, bot_queue, 1)[0]
    (root,) = bot_roots(slack_api)
    assert (name, kwargs) == ("workers.jobs.status", {"target": "prod", "channel": CHANNEL, "thread_ts": root["ts"]})
    assert "*status* of `prod` requested by <@U_ALICE>" in message_text(root)
    mention(sender, "stauts prod", ALICE, None)
    assert "Did you mean `status`" in slack_api.wait_for(lambda: whispered(slack_api, ALICE, None))[0]


@pytest.mark.usefixtures("idle_worker")
def test_an_unauthorised_mention_is_refused_in_its_thread(
    make_sender: Callable[..., SlackRequestSender], slack_api: SlackApiServer, bot_queue: Queue
) -> None:
    config = DEFAULT_BOT_CONFIG.replace('channels = ["C_INCIDENT"]', 'channels = ["C_INCIDENT"]\nrequesters = ["U_ALICE"]')
    sender = make_sender(config)
    thread = incident_thread(slack_api)
    mention(sender, f"dry-run {V1} prod", CAROL, thread)
    refusal = slack_api.wait_for(lambda: whispered(slack_api, CAROL, thread))
    assert refusal == ["Refused: you are not in the list of people who may ask for rollbacks."]
    # outside the incident channels, the same refusal as the slash command's, in that thread
    elsewhere = incident_thread(slack_api, "C_RANDOM")
    mention(sender, "status prod", ALICE, elsewhere, channel="C_RANDOM")
    assert slack_api.wait_for(lambda: whispered(slack_api, ALICE, elsewhere)) == [
        "Refused: rollback-bot only takes requests in the incident channels."]
    quiet(slack_api)
    assert bot_queue.count == 0 and bot_replies(slack_api, thread) == [] and bot_roots(slack_api) == []


@pytest.mark.usefixtures("idle_worker")
def test_a_retried_mention_runs_once(bot_server: BotServer, slack_api: SlackApiServer, bot_queue: Queue) -> None:
    redelivering = RedeliveringSender(bot_server.events_url, SIGNING_SECRET, slack_api)
    thread = incident_thread(slack_api)
    mention(redelivering, "status prod", ALICE, thread)
    wait_jobs(slack_api, bot_queue, 1)
    first = redelivering.bodies[0]
    assert redelivering.redeliver(first, 1, "http_timeout")[0] == 200
    # Slack's retry is the same event (its event_id), whatever the bytes: re-serialised, it is still a retry
    again = json.dumps(dict(reversed(list(json.loads(first).items()))))
    assert again != first and redelivering.redeliver(again, 2, "http_error")[0] == 200
    quiet(slack_api)  # a wrongly repeated mention would post a second line and queue a second job
    assert len(jobs(bot_queue)) == 1 and len(bot_replies(slack_api, thread)) == 1
    # a new mention (its own event) is of course taken
    mention(redelivering, "status prod", ALICE, thread)
    assert len(wait_jobs(slack_api, bot_queue, 2)) == 2


@pytest.mark.usefixtures("idle_worker")
def test_mentions_by_bots_are_ignored(sender: SlackRequestSender, slack_api: SlackApiServer, bot_queue: Queue) -> None:
    thread = incident_thread(slack_api)
    # the bot's own message naming itself, and another app's bot message
    sender.app_mention(f"{BOT_MENTION} status prod", user_id=BOT_USER_ID, channel_id=CHANNEL, thread_ts=thread,
                       bot_id=BOT_ID)
    sender.app_mention(f"{BOT_MENTION} status prod", user_id="U_OTHERBOT", channel_id=CHANNEL, thread_ts=thread,
                       bot_id="B_OTHERBOT", subtype="bot_message")
    mention(sender, "status staging", ALICE, thread)  # a person's, delivered last, is taken
    assert [kwargs["target"] for _, kwargs in wait_jobs(slack_api, bot_queue, 1)] == ["staging"]
    quiet(slack_api)
    answered = [text for text in bot_replies(slack_api, thread) if "requested by" in text]
    assert len(jobs(bot_queue)) == 1 and len(answered) == 1 and "`staging`" in answered[0]
    assert slack_api.ephemerals() == []


def test_the_events_url_answers_slacks_url_check(sender: SlackRequestSender) -> None:
    status, body = sender.url_verification("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P")
    assert status == 200 and json.loads(body) == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}


# -- the whole stack: a real worker answers in the thread ----------------------------------------------

def thread_text(slack_api: SlackApiServer, ts: str) -> str:
    return "\n".join(message_text(m) for m in slack_api.thread(CHANNEL, ts))


def card_of(slack_api: SlackApiServer, store: RequestStore) -> tuple[Request, dict[str, Any]]:
    """The channel's one request, once its card is posted and recorded on it, and that card."""
    request = slack_api.wait_for(lambda: [r for r in store.for_channel(CHANNEL) if r.card], timeout=WAIT_SECONDS)[0]
    (card,) = [m for m in slack_api.messages(CHANNEL) if m["ts"] == request.card]
    return request, card


def test_the_playbook_mentioned_in_one_thread_stays_in_that_thread(
    stack_sender: SlackRequestSender, slack_api: SlackApiServer, stack_env: dict[str, str], database_url: str,
    start_worker: Callable[[dict[str, str]], object],
) -> None:
    apply_example(database_url)
    start_worker(stack_env)
    store = RequestStore(redis.Redis.from_url(stack_env["REDIS_URL"]))
    thread = incident_thread(slack_api)
    good, bad = "2025_10_20_120001", "2025_10_20_150000"

    mention(stack_sender, "status", ALICE, thread)  # the worker's assessment lands in the thread
    slack_api.wait_for(lambda: bad in thread_text(slack_api, thread) and "health" in thread_text(slack_api, thread),
                       timeout=WAIT_SECONDS)
    mention(stack_sender, f"dry-run {good}", ALICE, thread)
    slack_api.wait_for(lambda: store.current_plan(CHANNEL, "prod"), timeout=WAIT_SECONDS)
    mention(stack_sender, "execute", ALICE, thread)
    request, card = card_of(slack_api, store)
    assert request.thread_ts == thread and card["thread_ts"] == thread  # the card is a reply in the thread
    assert any(b["type"] == "actions" for b in card["blocks"])
    # the whole SQL is attached in the same thread
    slack_api.wait_for(lambda: [f for f in slack_api.files() if f.thread_ts == thread and f.filename.endswith(".sql")])

    # two people still: the requester's own click is refused (in the thread), the approver's starts the pipeline
    assert stack_sender.action("rollback_approve", request.id, user_id=ALICE, channel_id=CHANNEL,
                               message_ts=card["ts"])[0] == 200
    slack_api.wait_for(lambda: "cannot approve your own request" in thread_text(slack_api, thread))
    assert "cannot approve your own request" in slack_api.wait_for(lambda: whispered(slack_api, ALICE, thread))[0]
    assert stack_sender.action("rollback_approve", request.id, user_id="U_BOB", channel_id=CHANNEL,
                               message_ts=card["ts"])[0] == 200
    done = slack_api.wait_for(lambda: (r := store.get(request.id)) is not None and r.is_final and r,
                              timeout=PIPELINE_TIMEOUT)
    slack_api.wait_for(lambda: [m for m in slack_api.messages(CHANNEL)
                                if m.get("reply_broadcast") and m.get("thread_ts") == thread], timeout=PIPELINE_TIMEOUT)
    record = thread_text(slack_api, thread)
    assert done.status is RequestStatus.SUCCEEDED, record
    for step in ("Approved* by <@U_BOB>", "Backup", "Rollback", "Verification", f"rolled back to {good}"):
        assert step in record, f"{step!r} missing from the thread:\n{record}"
    # the decision replaced the card's buttons; the person's message that opened the thread is untouched
    decided = [m for m in slack_api.messages(CHANNEL) if m["ts"] == card["ts"]][0]
    assert "*Approved* by <@U_BOB>" in message_text(decided) and not any(b["type"] == "actions" for b in decided["blocks"])
    opener = slack_api.thread(CHANNEL, thread)[0]
    assert message_text(opener) == "checkout is failing since the 15:00 deploy" and "edited" not in opener

    mention(stack_sender, "report", ALICE, thread)  # the record of this very thread, posted into it
    report = slack_api.wait_for(lambda: [f for f in slack_api.files() if f.thread_ts == thread
                                         and f.filename.startswith("incident-")], timeout=WAIT_SECONDS)[0]
    text = report.text()
    assert request.id in text and "checkout is failing since the 15:00 deploy" in text and f"rolled back to {good}" in text
    assert bot_roots(slack_api) == []  # nothing of the incident outside its thread
