"""Two-person approval through really signed clicks into the running bot: who may approve, when, and
that double clicks and concurrent approvers start the pipeline exactly once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from rq import Queue

from core.requests import RequestStatus, RequestStore
from sandbox.signing import SlackRequestSender
from sandbox.slack_api import SlackApiServer
from tests.bot_standins import answer_backup_check
from tests.fixtures.bot import (
    ALICE,
    BOB,
    CAROL,
    CHANNEL,
    DEFAULT_BOT_CONFIG,
    ask,
    click,
    ephemeral_texts,
    has_buttons,
    jobs,
    pending_request,
    settle,
    thread_texts,
)
from tests.fixtures.fakes import quiet

pytestmark = pytest.mark.usefixtures("idle_worker")


def test_approval_by_the_group_member_enqueues_execute_once(
    sender: SlackRequestSender, slack_api: SlackApiServer, bot_queue: Queue, store: RequestStore
) -> None:
    request = ask(sender, slack_api, store)
    assert click(sender, request, BOB) == 200
    slack_api.wait_for(lambda: bot_queue.count == 1)
    assert jobs(bot_queue) == [("workers.jobs.run_request", {"request_id": request.id})]
    decided = store.get(request.id)
    assert decided is not None and decided.status is RequestStatus.APPROVED and decided.approver == BOB
    texts = settle(slack_api, request, 1)
    assert not has_buttons(slack_api, request)
    assert "*Approved* by <@U_BOB>" in texts[0]
    assert ":warning: drops 3 rows" in texts[0]  # the plan's data-loss warnings stay on the decided request
    assert "approved by <@U_BOB>" in texts[1] and "requested by <@U_ALICE>" in texts[1]
    assert slack_api.calls("usergroups.users.list")  # membership checked at click time


def test_self_approval_and_non_approver_are_refused_and_recorded(
    sender: SlackRequestSender, slack_api: SlackApiServer, bot_queue: Queue, store: RequestStore
) -> None:
    request = ask(sender, slack_api, store)
    click(sender, request, ALICE)
    click(sender, request, CAROL)
    texts = settle(slack_api, request, 2)
    assert "cannot approve your own request" in slack_api.wait_for(lambda: ephemeral_texts(slack_api, ALICE))[0]
    assert "not an approver" in slack_api.wait_for(lambda: ephemeral_texts(slack_api, CAROL))[0]
    assert any("<@U_ALICE> tried to approve" in t and "own request" in t for t in texts)
    assert any("<@U_CAROL> tried to approve" in t and "not an approver" in t for t in texts)
    assert store.get(request.id).status is RequestStatus.PENDING  # type: ignore[union-attr]
    assert bot_queue.count == 0
    assert has_buttons(slack_api, request)  # still open for a real approver


def test_click_from_another_channel_is_refused(
    sender: SlackRequestSender, slack_api: SlackApiServer, bot_queue: Queue, store: RequestStore
) -> None:
    request = ask(sender, slack_api, store)
    click(sender, request, BOB, channel="C_OTHER")
    answer = slack_api.wait_for(lambda: ephemeral_texts(slack_api, BOB))[0]
    assert "approve in the channel where the request was made" in answer
    assert store.get(request.id).status is RequestStatus.PENDING and bot_queue.count == 0  # type: ignore[union-attr]


def test_expired_request_cannot_be_approved(
    sender: SlackRequestSender, slack_api: SlackApiServer, bot_queue: Queue, store: RequestStore
) -> None:
    request = ask(sender, slack_api, store)
    store.update(request.id, expires_at=time.time() - 1)  # its 15 minutes are over
    click(sender, request, BOB)
    assert "expired" in slack_api.wait_for(lambda: ephemeral_texts(slack_api, BOB))[0]
    texts = settle(slack_api, request, 2)
    assert store.get(request.id).status is RequestStatus.EXPIRED and bot_queue.count == 0  # type: ignore[union-attr]
    assert "Expired" in texts[0] and "nobody approved; run a new dry-run" in texts[1]
    assert "<@U_BOB> tried to approve" in texts[2]
    assert store.active_for_target("prod") is None  # the target is free for a new request


def test_reject_frees_the_target_and_runs_nothing(
    sender: SlackRequestSender, slack_api: SlackApiServer, bot_queue: Queue, store: RequestStore
) -> None:
    request = ask(sender, slack_api, store)
    click(sender, request, BOB, action="rollback_reject")
    slack_api.wait_for(lambda: store.get(request.id).status is RequestStatus.REJECTED)  # type: ignore[union-attr]
    texts = settle(slack_api, request, 1)
    assert "*Rejected* by <@U_BOB>" in texts[0] and "will not run" in texts[1]
    click(sender, request, BOB)  # approving after the rejection changes nothing
    assert "already rejected" in slack_api.wait_for(lambda: ephemeral_texts(slack_api, BOB))[0]
    assert bot_queue.count == 0 and store.active_for_target("prod") is None


def test_double_click_starts_one_pipeline(
    sender: SlackRequestSender, slack_api: SlackApiServer, bot_queue: Queue, store: RequestStore
) -> None:
    request = ask(sender, slack_api, store)
    assert click(sender, request, BOB) == 200
    assert click(sender, request, BOB) == 200
    assert "already approved" in slack_api.wait_for(lambda: ephemeral_texts(slack_api, BOB))[0]
    texts = settle(slack_api, request, 1)
    assert len(texts) == 2  # the repeat click by the approver adds nothing to the record
    assert jobs(bot_queue) == [("workers.jobs.run_request", {"request_id": request.id})]


def test_concurrent_approvers_start_one_pipeline(
    make_sender: Callable[..., SlackRequestSender], slack_api: SlackApiServer, bot_queue: Queue, store: RequestStore
) -> None:
    config = DEFAULT_BOT_CONFIG.replace('approver_group = "S_DBA"', 'approver_group = "S_DBA"\napprovers = ["U_DAVE"]')
    sender = make_sender(config)
    request = ask(sender, slack_api, store)
    barrier = threading.Barrier(8)
    statuses: list[int] = []

    def approve(user: str) -> None:
        barrier.wait()
        statuses.append(click(sender, request, user))

    threads = [threading.Thread(target=approve, args=(u,)) for u in [BOB, "U_DAVE"] * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 8
    slack_api.wait_for(lambda: len(slack_api.ephemerals()) >= 7)
    quiet(slack_api)
    assert jobs(bot_queue) == [("workers.jobs.run_request", {"request_id": request.id})]
    decided = store.get(request.id)
    assert decided is not None and decided.approver in (BOB, "U_DAVE")
    approvals = [t for t in thread_texts(slack_api, request) if "approved by" in t and "Queued" in t]
    assert len(approvals) == 1


def test_restore_approval_enqueues_restore(
    sender: SlackRequestSender, slack_api: SlackApiServer, bot_queue: Queue, store: RequestStore
) -> None:
    sender.command("restore prod-20251020.dump prod", user_id=ALICE, channel_id=CHANNEL)
    answer_backup_check(slack_api, bot_queue)  # the backup exists and verifies (issue 8)
    request = pending_request(slack_api, store)
    click(sender, request, BOB)
    slack_api.wait_for(lambda: bot_queue.count == 1)
    assert jobs(bot_queue) == [("workers.jobs.run_request", {"request_id": request.id})]


def test_approval_without_a_worker_is_refused_and_stays_pending(
    sender: SlackRequestSender, slack_api: SlackApiServer, bot_queue: Queue, store: RequestStore,
    idle_worker: object
) -> None:
    request = ask(sender, slack_api, store)
    idle_worker.register_death()  # type: ignore[attr-defined]
    click(sender, request, BOB)
    assert "No worker is listening" in slack_api.wait_for(lambda: ephemeral_texts(slack_api, BOB))[0]
    assert any("No worker is listening" in t for t in settle(slack_api, request, 1))
    assert store.get(request.id).status is RequestStatus.PENDING and bot_queue.count == 0  # type: ignore[union-attr]


def test_unknown_request_click(sender: SlackRequestSender, slack_api: SlackApiServer, bot_queue: Queue) -> None:
    sender.action("rollback_approve", "RB-ZZZZZZ", user_id=BOB, channel_id=CHANNEL, message_ts="1.0")
    assert "RB-ZZZZZZ" in slack_api.wait_for(lambda: ephemeral_texts(slack_api, BOB))[0]
    assert bot_queue.count == 0
