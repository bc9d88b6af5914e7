"""The running bot (`python -m bot`) answering really signed slash commands: every verb, signatures,
access, bad input, no worker. Jobs are asserted on the real RQ queue (a registered worker that takes
nothing keeps them there); the Slack side is the sandbox's Web API stand-in."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from rq import Queue

from core.requests import RequestStatus, RequestStore
from sandbox.signing import SlackRequestSender
from sandbox.slack_api import SlackApiServer, message_text
from tests.bot_standins import answer_backup_check
from tests.fixtures.bot import (
    ALICE,
    BOB,
    CAROL,
    CHANNEL,
    DEFAULT_BOT_CONFIG,
    PLAN,
    REPO,
    V1,
    V2,
    ask,
    ephemeral_texts,
    free_port,
    pending_request,
    roots,
    wait_jobs,
)
from tests.fixtures.fakes import quiet


def single_target_config() -> str:
    return DEFAULT_BOT_CONFIG.split("[targets.staging]")[0]


@pytest.mark.usefixtures("idle_worker")
def test_forged_and_stale_signatures_are_rejected(
    sender: SlackRequestSender, slack_api: SlackApiServer, bot_queue: Queue
) -> None:
    status, _ = sender.command("status prod", user_id=ALICE, channel_id=CHANNEL, secret="not-the-secret")
    assert status == 401
    status, _ = sender.command("status prod", user_id=ALICE, channel_id=CHANNEL, timestamp=int(time.time()) - 600)
    assert status == 401
    status, _ = sender.action("rollback_approve", "RB-AAAAAA", user_id=BOB, channel_id=CHANNEL, message_ts="1.0",
                              secret="forged")
    assert status == 401
    body = "command=%2Frollback&text=status&user_id=U_ALICE&channel_id=C_INCIDENT"
    status, _ = sender.send(body, secret="wrong")
    assert status == 401
    assert bot_queue.count == 0 and slack_api.messages(CHANNEL) == []
    # the same request, rightly signed, is taken
    status, _ = sender.command("status prod", user_id=ALICE, channel_id=CHANNEL)
    assert status == 200
    assert wait_jobs(slack_api, bot_queue, 1)[0][0] == "workers.jobs.status"


@pytest.mark.usefixtures("idle_worker")
def test_help_and_read_verbs(sender: SlackRequestSender, slack_api: SlackApiServer, bot_queue: Queue) -> None:
    status, body = sender.command("help", user_id=ALICE, channel_id=CHANNEL)
    assert status == 200 and "*Main path*" in body and "`dry-run`" in body and "`restore`" in body
    status, body = sender.command("help dry-run", user_id=ALICE, channel_id=CHANNEL)  # a verb's details: its usage
    assert status == 200 and "/rollback dry-run &lt;version&gt; [target]" in body

    for verb, path in [("status", "status"), ("backups", "backups"), ("history", "history")]:
        sender.command(f"{verb} staging", user_id=ALICE, channel_id=CHANNEL)
        name, kwargs = wait_jobs(slack_api, bot_queue, 1)[0]
        root = roots(slack_api)[-1]
        assert name == f"workers.jobs.{path}"
        assert kwargs == {"target": "staging", "channel": CHANNEL, "thread_ts": root["ts"]}
        assert f"*{verb}*" in root["text"] and "<@U_ALICE>" in root["text"]
        bot_queue.empty()

    sender.command("verify prod", user_id=ALICE, channel_id=CHANNEL)
    name, kwargs = wait_jobs(slack_api, bot_queue, 1)[0]
    assert name == "workers.jobs.verify"
    assert kwargs == {"target": "prod", "channel": CHANNEL, "thread_ts": roots(slack_api)[-1]["ts"], "requester": ALICE}
    bot_queue.empty()

    # with two targets and none named, a read verb asks about both, in one thread
    sender.command("status", user_id=ALICE, channel_id=CHANNEL)
    found = wait_jobs(slack_api, bot_queue, 2)
    root = roots(slack_api)[-1]
    assert sorted(k["target"] for _, k in found) == ["prod", "staging"]
    assert {k["thread_ts"] for _, k in found} == {root["ts"]}


@pytest.mark.usefixtures("idle_worker")
def test_dry_run_and_backup_enqueue_with_the_requester(
    sender: SlackRequestSender, slack_api: SlackApiServer, bot_queue: Queue
) -> None:
    status, body = sender.command(f"dry-run {V1} prod", user_id=ALICE, channel_id=CHANNEL)
    assert status == 200 and body == ""
    name, kwargs = wait_jobs(slack_api, bot_queue, 1)[0]
    root = roots(slack_api)[-1]
    assert name == "workers.jobs.dry_run"
    assert kwargs == {"target": "prod", "version": V1, "channel": CHANNEL, "thread_ts": root["ts"], "requester": ALICE}
    assert "dry-run" in root["text"] and V1 in root["text"]
    job = bot_queue.jobs[0]
    assert job.timeout and job.timeout > 0
    bot_queue.empty()

    sender.command("backup staging", user_id=ALICE, channel_id=CHANNEL)
    name, kwargs = wait_jobs(slack_api, bot_queue, 1)[0]
    assert name == "workers.jobs.backup"
    assert kwargs["target"] == "staging" and kwargs["requester"] == ALICE and "manual" in kwargs["reason"]


@pytest.mark.usefixtures("idle_worker")
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("stauts prod", "Did you mean `status`"),
        (f"dry-run {V1}", "say which one"),
        ("execute", "say which one"),
        ("dry-run 2025_01_01_000000 prod", "Unknown version `2025_01_01_000000`"),
        ("dry-run yesterday prod", "`yesterday` is not a migration version: versions look like 2025_10_20_120001"),
        ("dry-run 2025-10-20 prod", "is not a migration version"),
        ("status prdo", "Did you mean `prod`"),
        ("backup", "`prod`, `staging`"),
    ],
)
def test_bad_input_gets_one_line_and_nothing_is_queued(
    sender: SlackRequestSender, slack_api: SlackApiServer, bot_queue: Queue, text: str, expected: str
) -> None:
    status, body = sender.command(text, user_id=ALICE, channel_id=CHANNEL)
    assert status == 200 and expected in body and "\n" not in body.strip()
    quiet(slack_api)  # a wrongly queued job or post would come with a Slack change
    assert bot_queue.count == 0 and slack_api.messages(CHANNEL) == []


@pytest.mark.usefixtures("idle_worker")
def test_single_target_needs_no_name(
    make_sender: Callable[..., SlackRequestSender], slack_api: SlackApiServer, bot_queue: Queue
) -> None:
    sender = make_sender(single_target_config())
    sender.command(f"dry-run {V1}", user_id=ALICE, channel_id=CHANNEL)
    name, kwargs = wait_jobs(slack_api, bot_queue, 1)[0]
    assert name == "workers.jobs.dry_run" and kwargs["target"] == "prod"


@pytest.mark.usefixtures("idle_worker")
def test_access_outside_incident_channels_and_requesters_is_refused(
    make_sender: Callable[..., SlackRequestSender], slack_api: SlackApiServer, bot_queue: Queue
) -> None:
    config = DEFAULT_BOT_CONFIG.replace('channels = ["C_INCIDENT"]', 'channels = ["C_INCIDENT"]\nrequesters = ["U_ALICE"]')
    sender = make_sender(config)
    status, body = sender.command("status prod", user_id=ALICE, channel_id="C_RANDOM")
    assert status == 200 and "only takes requests in the incident channels" in body
    status, body = sender.command("status prod", user_id=CAROL, channel_id=CHANNEL)
    assert status == 200 and "not in the list of people who may ask" in body
    quiet(slack_api)
    assert bot_queue.count == 0 and slack_api.messages(CHANNEL) == [] and slack_api.messages("C_RANDOM") == []


def test_no_worker_listening_is_said_at_once(
    sender: SlackRequestSender, slack_api: SlackApiServer, bot_queue: Queue
) -> None:
    status, _ = sender.command("status prod", user_id=ALICE, channel_id=CHANNEL)
    assert status == 200
    answer = slack_api.wait_for(lambda: ephemeral_texts(slack_api, ALICE))
    assert "No worker is listening on queue `rollback`" in answer[0] and "run-migrations" in answer[0]
    assert bot_queue.count == 0 and slack_api.messages(CHANNEL) == []


@pytest.mark.usefixtures("idle_worker")
def test_execute_needs_a_fresh_dry_run(
    sender: SlackRequestSender, slack_api: SlackApiServer, bot_queue: Queue, store: RequestStore
) -> None:
    sender.command("execute prod", user_id=ALICE, channel_id=CHANNEL)
    answer = slack_api.wait_for(lambda: ephemeral_texts(slack_api, ALICE))
    assert "No current dry-run for `prod`" in answer[0] and "dry-run &lt;version&gt; prod" in answer[0]
    assert slack_api.messages(CHANNEL) == []
    # a plan made in another channel, or for another target, is not this one
    store.save_plan("C_OTHER", "prod", PLAN)
    store.save_plan(CHANNEL, "staging", PLAN)
    sender.command("execute prod", user_id=ALICE, channel_id=CHANNEL)
    slack_api.wait_for(lambda: len(ephemeral_texts(slack_api, ALICE)) == 2)
    assert slack_api.messages(CHANNEL) == [] and bot_queue.count == 0


@pytest.mark.usefixtures("idle_worker")
def test_execute_posts_an_approval_request_and_one_per_target(
    sender: SlackRequestSender, slack_api: SlackApiServer, bot_queue: Queue, store: RequestStore
) -> None:
    request = ask(sender, slack_api, store)
    root = roots(slack_api)[0]
    assert request.status is RequestStatus.PENDING and request.thread_ts == root["ts"]
    assert (request.plan_hash, request.to_version, request.versions) == ("f" * 64, V1, [V2])
    buttons = [e for b in root["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert [(b["action_id"], b["value"]) for b in buttons] == [
        ("rollback_approve", request.id), ("rollback_reject", request.id)]
    assert "confirm" in buttons[0]
    text = message_text(root)
    assert request.id in text and V2 in text and V1 in text and "drops 3 rows" in text
    assert bot_queue.count == 0  # nothing runs before the approval

    # a second request for the same target names the first and links its thread
    sender.command("execute prod", user_id=CAROL, channel_id=CHANNEL)
    answer = slack_api.wait_for(lambda: ephemeral_texts(slack_api, CAROL))[0]
    permalink = slack_api.calls("chat.getPermalink")[-1]
    assert request.id in answer and "<@U_ALICE>" in answer and "<http" in answer
    assert permalink["message_ts"] == root["ts"]
    assert len(roots(slack_api)) == 1 and len(store.for_channel(CHANNEL)) == 1


@pytest.mark.usefixtures("idle_worker")
def test_restore_is_two_person_too(
    sender: SlackRequestSender, slack_api: SlackApiServer, bot_queue: Queue, store: RequestStore
) -> None:
    sender.command("restore prod-20251020.dump prod", user_id=ALICE, channel_id=CHANNEL)
    answer_backup_check(slack_api, bot_queue)  # the backup exists and verifies (issue 8)
    request = pending_request(slack_api, store)
    root = roots(slack_api)[0]
    assert request.kind == "restore" and request.backup == "prod-20251020.dump" and request.status.value == "pending"
    assert "prod-20251020.dump" in message_text(root)
    assert any(b["type"] == "actions" for b in root["blocks"]) and bot_queue.count == 0


@pytest.mark.usefixtures("idle_worker")
def test_cancel_replaces_the_buttons(
    sender: SlackRequestSender, slack_api: SlackApiServer, bot_queue: Queue, store: RequestStore
) -> None:
    request = ask(sender, slack_api, store)
    sender.command("cancel", user_id=CAROL, channel_id=CHANNEL)  # neither requester nor approver
    assert "only the requester or an approver" in slack_api.wait_for(lambda: ephemeral_texts(slack_api, CAROL))[0]
    sender.command("cancel", user_id=ALICE, channel_id=CHANNEL)
    slack_api.wait_for(lambda: store.get(request.id).status is RequestStatus.CANCELLED)  # type: ignore[union-attr]
    thread = slack_api.wait_for(lambda: (t := slack_api.thread(CHANNEL, request.thread_ts)) and len(t) >= 3 and t)
    root = thread[0]
    assert not any(b["type"] == "actions" for b in root["blocks"]) and "Cancelled" in message_text(root)
    assert "<@U_CAROL> tried to cancel" in message_text(thread[1]) and "Cancelled" in message_text(thread[2])
    assert store.active_for_target("prod") is None and bot_queue.count == 0
    sender.command("cancel", user_id=ALICE, channel_id=CHANNEL)
    assert "Nothing to cancel" in slack_api.wait_for(
        lambda: [t for t in ephemeral_texts(slack_api, ALICE) if "Nothing" in t])[0]


@pytest.mark.usefixtures("idle_worker")
def test_report_enqueues_for_the_latest_request_thread(
    sender: SlackRequestSender, slack_api: SlackApiServer, bot_queue: Queue, store: RequestStore
) -> None:
    sender.command("report", user_id=ALICE, channel_id=CHANNEL)
    assert "No request in this channel" in slack_api.wait_for(lambda: ephemeral_texts(slack_api, ALICE))[0]
    request = ask(sender, slack_api, store)
    sender.command(f"report {request.id}", user_id=BOB, channel_id=CHANNEL)
    name, kwargs = wait_jobs(slack_api, bot_queue, 1)[0]
    assert name == "workers.jobs.report"
    assert kwargs == {"channel": CHANNEL, "thread_ts": request.thread_ts, "requester": BOB}
    sender.command("report RB-ZZZZZZ", user_id=BOB, channel_id=CHANNEL)
    assert "RB-ZZZZZZ" in slack_api.wait_for(lambda: ephemeral_texts(slack_api, BOB))[0]


def test_redis_unreachable_is_one_line_not_a_traceback(
    make_sender: Callable[..., SlackRequestSender], slack_api: SlackApiServer
) -> None:
    sender = make_sender(env={"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    status, _ = sender.command("status prod", user_id=ALICE, channel_id=CHANNEL)
    assert status == 200
    answer = slack_api.wait_for(lambda: ephemeral_texts(slack_api, ALICE))[0]
    assert "cannot reach Redis" in answer and "run-migrations" in answer and "Traceback" not in answer
    assert slack_api.messages(CHANNEL) == []


def test_the_bot_refuses_to_start_without_its_secrets(bot_env: dict[str, str], tmp_path: Any) -> None:
    for missing in ("SLACK_SIGNING_SECRET", "SLACK_BOT_TOKEN"):
        env = {k: v for k, v in bot_env.items() if k != missing}
        env["PYTHONPATH"] = str(REPO)
        done = subprocess.run([sys.executable, "-m", "bot"], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=30)
        assert done.returncode == 2
        assert missing in done.stderr and "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1
