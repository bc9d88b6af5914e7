"""Requests that end with nobody acting: the rules (pure), then the running bot's expiry sweeper
replacing the buttons, recording the expiry in the thread and freeing the target without a click."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from rq import Queue

from bot.expiry import Due, due, watched
from core.kinds import START_STEP
from core.requests import Request, RequestStatus, RequestStore
from sandbox.signing import SlackRequestSender
from sandbox.slack_api import SlackApiServer
from tests.fixtures.bot import (
    BOB,
    CHANNEL,
    DEFAULT_BOT_CONFIG,
    ask,
    click,
    has_buttons,
    settle,
    thread_texts,
)
from tests.fixtures.fakes import quiet

NOW = 1_800_000_000.0
START_WITHIN = 120.0
SWEEP_INTERVAL = 0.2
SWEEPS_SECONDS = 3 * SWEEP_INTERVAL  # Slack unchanged for three sweep intervals: the sweeps changed nothing


def request(status: RequestStatus, **fields: object) -> Request:
    base: dict[str, object] = dict(id="RB-AAAAAA", kind="rollback", target="prod", channel=CHANNEL, thread_ts="1.0",
                                   requester="U_ALICE", status=status, created_at=NOW - 60, expires_at=NOW + 840)
    return Request(**{**base, **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (request(RequestStatus.PENDING), None),
        (request(RequestStatus.PENDING, expires_at=NOW), Due.UNANSWERED),
        (request(RequestStatus.EXPIRED), Due.UNANSWERED),  # expired by a click or a new request: announce it
        (request(RequestStatus.APPROVED, approver="U_BOB", decided_at=NOW - 60), None),
        (request(RequestStatus.APPROVED, approver="U_BOB", decided_at=NOW - START_WITHIN), Due.NOT_STARTED),
        (request(RequestStatus.APPROVED, approver="U_BOB", decided_at=NOW - 500, started_at=NOW - 490), None),
        (request(RequestStatus.RUNNING, approver="U_BOB", decided_at=NOW - 500, started_at=NOW - 490), None),
        (request(RequestStatus.EXPIRED, approver="U_BOB", decided_at=NOW - 500), None),  # the sweeper's own
        (request(RequestStatus.REJECTED, decided_by="U_BOB", decided_at=NOW - 500), None),
        # in its watch window: due once the deadline the workers wrote has passed (nobody looked by then)
        # (a succeeded request: its change done, its watch holding nothing; a running one: a record from before)
        (request(RequestStatus.SUCCEEDED, started_at=NOW - 490, watch={"deadline": NOW + 1}), None),
        (request(RequestStatus.SUCCEEDED, started_at=NOW - 490, watch={"deadline": NOW}), Due.WATCH_LAPSED),
        (request(RequestStatus.RUNNING, started_at=NOW - 490, watch={"deadline": NOW}), Due.WATCH_LAPSED),
        (request(RequestStatus.SUCCEEDED, started_at=NOW - 490, watch={"deadline": NOW - 9}, watch_ended="completed"),
         None),
    ],
)
def test_which_requests_are_due(record: Request, expected: Due | None) -> None:
    assert due(record, NOW, START_WITHIN) == expected


def test_only_pending_approved_and_running_requests_stay_watched() -> None:
    assert [s.value for s in RequestStatus if watched(request(s))] == ["pending", "approved", "running"]


@pytest.fixture
def sweeping_bot(make_sender: Callable[..., SlackRequestSender]) -> SlackRequestSender:
    return make_sender(DEFAULT_BOT_CONFIG.replace("request_ttl_seconds = 900",
                                                  f"request_ttl_seconds = 900\nstart_within_seconds = {int(START_WITHIN)}"),
                       env={"ROLLBACK_SWEEP_INTERVAL_SECONDS": str(SWEEP_INTERVAL)})


@pytest.mark.usefixtures("idle_worker")
def test_unanswered_request_expires_without_a_click(
    sweeping_bot: SlackRequestSender, slack_api: SlackApiServer, store: RequestStore, bot_queue: Queue
) -> None:
    pending = ask(sweeping_bot, slack_api, store)
    quiet(slack_api, SWEEPS_SECONDS)  # a few sweeps go by: a request within its time is left alone
    assert has_buttons(slack_api, pending) and len(thread_texts(slack_api, pending)) == 1
    store.update(pending.id, expires_at=time.time() - 1)  # its 15 minutes are over; nobody clicked
    texts = settle(slack_api, pending, 1)
    quiet(slack_api, SWEEPS_SECONDS)  # more sweeps add nothing
    assert thread_texts(slack_api, pending) == texts
    assert not has_buttons(slack_api, pending)
    assert "Expired* at" in texts[0] and "nobody approved; run a new dry-run" in texts[0]
    assert texts[1].startswith(f"{pending.id}: :hourglass: *Expired* at") and "nobody approved" in texts[1]
    assert store.get(pending.id).status is RequestStatus.EXPIRED  # type: ignore[union-attr]
    assert store.active_for_target("prod") is None and bot_queue.count == 0
    # a late click is refused and adds only its own line
    click(sweeping_bot, pending, BOB)
    texts = settle(slack_api, pending, 2)
    assert len(texts) == 3 and "<@U_BOB> tried to approve" in texts[2]
    assert bot_queue.count == 0


@pytest.mark.usefixtures("idle_worker")
def test_approved_request_that_never_started_expires_and_a_late_job_runs_nothing(
    sweeping_bot: SlackRequestSender, slack_api: SlackApiServer, store: RequestStore, bot_queue: Queue
) -> None:
    pending = ask(sweeping_bot, slack_api, store)
    click(sweeping_bot, pending, BOB)
    settle(slack_api, pending, 1)
    assert store.get(pending.id).status is RequestStatus.APPROVED and bot_queue.count == 1  # type: ignore[union-attr]
    # the approval was long ago and the queued execute job was never taken by a worker
    store.update(pending.id, decided_at=time.time() - 500)
    expired = slack_api.wait_for(
        lambda: (r := store.get(pending.id)) is not None and r.status is RequestStatus.EXPIRED and r)
    texts = settle(slack_api, pending, 2)
    assert "no worker started it in time" in texts[0] and "nothing ran" in texts[0] and not has_buttons(slack_api, pending)
    assert texts[2].startswith(f"{pending.id}: :hourglass: *Expired*") and "approved by <@U_BOB>" in texts[2]
    assert expired.outcome == "not started within 120 s of the approval"
    assert store.active_for_target("prod") is None
    # the worker's start step is taken: the execute job, if a worker takes it now, does nothing
    assert not store.claim(pending.id, START_STEP)
