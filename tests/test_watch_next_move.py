"""The next move is never blocked by a watch: through the running bot (signed requests), a real forking worker,
PostgreSQL, Redis and the Slack and PagerDuty stand-ins. A request whose change is done is `succeeded` while it
is watched and holds nothing; the next request on the target is taken and, when it starts, ends the watch as
superseded (both threads, history, the watch's page resolved); `cancel` of a watched request ends its watch;
and no busy answer suggests a command the bot would refuse."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from core.kinds import KINDS
from core.requests import Request, RequestKind, RequestStatus, RequestStore
from sandbox.signing import SlackRequestSender
from sandbox.slack_api import message_text
from tests.fixtures.bot import BotServer, signed_sender
from tests.fixtures.kind_requests import (
    PROVIDERS,
    Asking,
    assert_covers_every_kind,
    provider_env,
    supabase,  # noqa: F401  (fixture)
)
from tests.fixtures.stack import (
    APPROVER,
    CHANNEL,
    REQUESTER,
    WorkerProcess,
    apply_example,
    approved_request,
    dry_run_plan,
    enqueue,
    incident_history,
    open_slow_gate,
    slow_stack,
    thread_text,
    wait_job,
)
from tests.test_watch_flow import GOOD, Health, health, watch_env  # noqa: F401  (health: fixture)
from workers.runtime.escalation import dedup_key

ALICE, BOB = REQUESTER, APPROVER
BAD = "2025_10_20_150000"
OLDER = "2025_10_01_090500"  # a rollback past GOOD: what the next request reverts
LONG_WINDOW = "600"  # the watch runs all through the test unless something ends it


@dataclass
class Stack:
    env: dict[str, str]
    sender: SlackRequestSender
    store: RequestStore


@pytest.fixture
def store(stack_env: dict[str, str]) -> Iterator[RequestStore]:
    connection = redis.Redis.from_url(stack_env["REDIS_URL"])
    yield RequestStore(connection)
    connection.close()


@pytest.fixture
def make_stack(slack_api: Any, store: RequestStore, start_worker: Callable[[dict[str, str]], WorkerProcess],
               make_stack_bot: Callable[[Mapping[str, str]], BotServer]) -> Callable[[dict[str, str]], Stack]:
    """A worker and the bot on `env`."""
    def make(env: dict[str, str]) -> Stack:
        start_worker(env)
        return Stack(env, signed_sender(make_stack_bot(env), slack_api), store)

    return make


def watched_rollback(stack: Stack, slack_api: Any, to: str = GOOD) -> tuple[Request, str]:
    """A rollback through its pipeline, its watch window open (the first look posted)."""
    ts, dry = dry_run_plan(stack.env, slack_api, to)
    request = approved_request(stack.env, thread_ts=ts, plan=dry)
    enqueue(stack.env, "workers.jobs.run_request", request_id=request.id)
    slack_api.wait_for(lambda: "watch, first look" in thread_text(slack_api, ts), timeout=90)
    return request, ts


def answered(stack: Stack, slack_api: Any, text: str, done: Callable[[], Any], user: str = ALICE) -> str | None:
    """Send `/rollback text` as `user`; the bot's answer to them alone, or None when `done()` came true first
    (a command that is carried out answers in a thread, not to the person)."""
    before = len(slack_api.ephemerals(user=user))
    stack.sender.command(text, user_id=user, channel_id=CHANNEL)
    slack_api.wait_for(lambda: len(slack_api.ephemerals(user=user)) > before or done(), timeout=120)
    answers = slack_api.ephemerals(user=user)[before:]
    return message_text(answers[0]) if answers else None


def new_card(store: RequestStore, kind: RequestKind, seen: set[str]) -> Callable[[], Request | None]:
    """A request of `kind` not in `seen` whose card is posted (the bot took the command)."""
    def found() -> Request | None:
        cards = [r for r in store.for_channel(CHANNEL) if r.kind is kind and r.id not in seen and r.card]
        return cards[0] if cards else None

    return found


def test_the_next_request_is_taken_during_a_watch_and_its_start_supersedes_the_watch(
    stack_env: dict[str, str], health: Health, slack_api: Any, pagerduty: Any, database_url: str,  # noqa: F811
    make_stack: Callable[[dict[str, str]], Stack], tmp_path: Path,
) -> None:
    """Scenario 4 (data lost) found right after a rollback: `recover` is taken at once (not "wait for it"), and
    when it starts it ends the rollback's watch as superseded: both threads say so, history records it, and the
    watch's open page (a regression) is resolved."""
    stack = make_stack({**watch_env(stack_env, health), "ROLLBACK_WATCH_WINDOW_SECONDS": LONG_WINDOW})
    apply_example(database_url)
    old, old_ts = watched_rollback(stack, slack_api)
    watched = stack.store.get(old.id)
    assert watched.status is RequestStatus.SUCCEEDED and watched.watching, watched  # done, and watched
    assert stack.store.active_for_target("prod") is None  # the watch holds nothing

    health.status = 503  # a regression during the window: the watch pages, and health stays down
    pagerduty.wait_for(lambda: pagerduty.incidents().get(dedup_key(old.id)), timeout=30)
    taken = wait_job(enqueue(stack.env, "workers.jobs.backup", target="prod", requester=ALICE, reason="lost"),
                     timeout=120)
    assert taken and taken["ok"], taken
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM users WHERE id BETWEEN 3 AND 6")  # rows lost, found during the watch

    answer = answered(stack, slack_api, f"recover {Path(taken['backup']['path']).name} users prod",
                      new_card(stack.store, RequestKind.RECOVER, set()))
    assert answer is None, answer  # taken: its card is posted
    new = slack_api.wait_for(new_card(stack.store, RequestKind.RECOVER, set()), timeout=30)
    assert stack.store.get(old.id).watching  # asking alone ends nothing: the watch goes on until it starts
    stack.sender.action("rollback_approve", new.id, user_id=BOB, channel_id=CHANNEL, message_ts=new.thread_ts)

    ended = slack_api.wait_for(lambda: (r := stack.store.get(old.id)).watch_ended and r, timeout=120)
    assert ended.watch_ended == "superseded" and ended.status is RequestStatus.SUCCEEDED
    assert (ended.outcome or "").endswith(f"watch superseded by {new.id}"), ended.outcome
    old_text = slack_api.wait_for(lambda: f"superseded by {new.id}" in (t := thread_text(slack_api, old_ts)) and t,
                                  timeout=30)
    assert "Its page is resolved" in old_text and "|thread>" in old_text, old_text
    new_text = slack_api.wait_for(lambda: f"the watch of {old.id}" in (t := thread_text(slack_api, new.thread_ts))
                                  and t, timeout=30)
    assert "ended, superseded by this request" in new_text and "Its page is resolved" in new_text, new_text
    assert not pagerduty.incidents()[dedup_key(old.id)].open
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT status, executed_by, details->>'by_request' FROM migration_history"
                           " WHERE operation = 'watch' AND request_id = %s", (old.id,)).fetchone()
    assert row == ("superseded", ALICE, new.id)

    done = slack_api.wait_for(lambda: (r := stack.store.get(new.id)).status.value in ("succeeded", "failed") and r,
                              timeout=120)
    assert done.status is RequestStatus.SUCCEEDED, thread_text(slack_api, new.thread_ts)
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM users WHERE id BETWEEN 3 AND 6").fetchone() == (4,)
    health.status = 200


HOLDING_KINDS = [kind for kind, record in KINDS.items() if not record.beside_target]


def test_the_next_move_covers_every_kind() -> None:
    """Every kind is either one that holds the target (parametrized below) or runs beside it (a terminate: it
    leaves the watch alone), and every one has a recipe that asks for it."""
    assert_covers_every_kind({**{k: "holds" for k in HOLDING_KINDS},
                              **{k: "beside" for k, r in KINDS.items() if r.beside_target}})


@pytest.mark.parametrize("kind", HOLDING_KINDS, ids=str)
def test_every_kind_that_holds_the_target_is_taken_during_a_watch_and_supersedes_it(
    kind: RequestKind, stack_env: dict[str, str], health: Health, slack_api: Any, database_url: str,  # noqa: F811
    digitalocean: Any, supabase: Any,  # noqa: F811
    make_stack: Callable[[dict[str, str]], Stack],
) -> None:
    """Promise 4 per kind: after a succeeded-and-watched rollback, a request of the kind is taken by the bot (not
    refused as busy), and when it starts the watch ends as superseded, said in both threads."""
    env = provider_env({**watch_env(stack_env, health, PROVIDERS), "ROLLBACK_WATCH_WINDOW_SECONDS": LONG_WINDOW},
                       supabase)
    stack = make_stack(env)
    incident_history(database_url)
    old, old_ts = watched_rollback(stack, slack_api)
    asking = Asking(env, stack.sender, stack.store, slack_api, database_url, digitalocean, supabase)
    try:
        new = asking.ask(kind)  # a card, not "busy"
        assert stack.store.get(old.id).watching  # asking alone ends nothing
        asking.approve(new)
        ended = slack_api.wait_for(lambda: (r := stack.store.get(old.id)).watch_ended and r, timeout=180)
        assert ended.watch_ended == "superseded", ended
        slack_api.wait_for(lambda: f"superseded by {new.id}" in thread_text(slack_api, old_ts), timeout=60)
        new_text = slack_api.wait_for(lambda: f"the watch of {old.id}" in (t := thread_text(slack_api, new.thread_ts))
                                      and t, timeout=60)
        assert "ended, superseded by this request" in new_text, new_text
        asking.ended(new)  # whatever its end: the test leaves nothing running
    finally:
        asking.close()


def test_cancel_of_a_watched_request_ends_its_watch(
    stack_env: dict[str, str], health: Health, slack_api: Any, database_url: str,  # noqa: F811
    make_stack: Callable[[dict[str, str]], Stack],
) -> None:
    stack = make_stack({**watch_env(stack_env, health), "ROLLBACK_WATCH_WINDOW_SECONDS": LONG_WINDOW})
    apply_example(database_url)
    request, ts = watched_rollback(stack, slack_api)

    answer = answered(stack, slack_api, f"cancel {request.id}",
                      lambda: "watch stopped" in (stack.store.get(request.id).outcome or ""))
    assert answer is None, answer  # not refused ("already running")
    done = slack_api.wait_for(lambda: (r := stack.store.get(request.id)).watch_ended and r, timeout=60)
    assert done.watch_ended == "stopped" and done.status is RequestStatus.SUCCEEDED
    assert (done.outcome or "").endswith(f"watch stopped early by {ALICE}, clean"), done.outcome
    assert f"<@{ALICE}> stops the watch of {request.id} early" in thread_text(slack_api, ts)
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT status, executed_by FROM migration_history WHERE operation = 'watch'"
                           " AND request_id = %s", (request.id,)).fetchone()
    assert row == ("stopped", ALICE)


# -- every command a busy answer suggests is taken -------------------------------------------------------

WAIT = "wait for it"
COMMAND = re.compile(r"`/rollback ([^`]+)`")


def suggestions(answer: str) -> list[str]:
    """The commands an answer suggests (`/rollback …` in code), and WAIT when it says to wait."""
    found = [c for c in COMMAND.findall(html.unescape(answer)) if "<" not in c]  # a placeholder is not a command to run as is
    return found + ([WAIT] if WAIT in answer else [])


def holder_pending(stack: Stack, slack_api: Any, database_url: str, tmp_path: Path) -> str:
    """A pending rollback request holds prod (asked through the bot); the next move reverts one more."""
    apply_example(database_url)
    dry_run_plan(stack.env, slack_api, GOOD)
    answered(stack, slack_api, "execute prod", new_card(stack.store, RequestKind.ROLLBACK, set()))
    slack_api.wait_for(new_card(stack.store, RequestKind.ROLLBACK, set()), timeout=30)
    return GOOD


def holder_running(stack: Stack, slack_api: Any, database_url: str, tmp_path: Path) -> str:
    """A rollback under way holds prod (its down script sleeps; `slow_stack` set it up); the next move reverts
    one more."""
    ts, dry = dry_run_plan(stack.env, slack_api, BAD)  # reverts the slow migration only
    open_slow_gate(database_url, seconds=20)
    request = approved_request(stack.env, thread_ts=ts, plan=dry)
    enqueue(stack.env, "workers.jobs.run_request", request_id=request.id)
    slack_api.wait_for(lambda: sleeping(database_url), timeout=90)  # inside the slow down script
    return GOOD


def sleeping(database_url: str) -> bool:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE %s AND pid <> pg_backend_pid()",
                           ("%pg_sleep%",)).fetchone()
    return bool(row and row[0])


def holder_watched(stack: Stack, slack_api: Any, database_url: str, tmp_path: Path) -> str:
    """A rollback done and in its watch window (the on-call engineer's case); the next move reverts one more."""
    apply_example(database_url)
    watched_rollback(stack, slack_api)
    return OLDER


@pytest.mark.parametrize("holder", [holder_pending, holder_running, holder_watched],
                         ids=["pending", "running", "watched"])
def test_a_busy_answer_suggests_only_commands_that_are_taken(
    holder: Callable[[Stack, Any, str, Path], str], stack_env: dict[str, str], health: Health,  # noqa: F811
    slack_api: Any, database_url: str, make_stack: Callable[[dict[str, str]], Stack], tmp_path: Path,
) -> None:
    """`execute prod` while another request is on prod: whatever the answer suggests (`/rollback cancel …`,
    waiting) is carried out through the bot and is not refused, and then the next move is taken."""
    env = {**watch_env(stack_env, health), "ROLLBACK_WATCH_WINDOW_SECONDS": LONG_WINDOW}
    if holder is holder_running:
        slow_stack(tmp_path, env, database_url)  # before the bot and worker read the configuration
    stack = make_stack(env)
    to = holder(stack, slack_api, database_url, tmp_path)
    before = {r.id for r in stack.store.for_channel(CHANNEL)}
    holding = stack.store.active_for_target("prod")
    answer = answered(stack, slack_api, "execute prod", lambda: False)
    assert answer is not None
    for suggested in suggestions(answer):
        if suggested == WAIT:
            assert holding is not None, answer
            slack_api.wait_for(lambda: stack.store.get(holding.id).is_final, timeout=120)
            continue
        reply = answered(stack, slack_api, suggested, lambda: stack.store.active_for_target("prod") is None)
        assert reply is None or not reply.startswith("Refused"), f"{answer!r} suggested {suggested!r}: {reply!r}"
    dry_run_plan(stack.env, slack_api, to)
    taken = answered(stack, slack_api, "execute prod", new_card(stack.store, RequestKind.ROLLBACK, before))
    assert taken is None, f"after following {answer!r}: {taken!r}"


# -- every command a refusal suggests is taken in the state that produced it ------------------------------

PLACEHOLDERS = {"<version>": GOOD}


def _concrete(command: str) -> str | None:
    """A suggested command with its placeholders filled in as the person would; None when one is unknown."""
    for placeholder, value in PLACEHOLDERS.items():
        command = command.replace(placeholder, value)
    return None if "<" in command else command


def _roots(slack_api: Any) -> int:
    return len([m for m in slack_api.messages(CHANNEL) if m.get("thread_ts", m["ts"]) == m["ts"]])


def no_plan(stack: Stack, slack_api: Any, database_url: str) -> str:
    apply_example(database_url)
    return "execute prod"


def empty_plan(stack: Stack, slack_api: Any, database_url: str) -> str:
    apply_example(database_url)
    dry_run_plan(stack.env, slack_api, BAD)  # the newest version: nothing to revert
    return "execute prod"


def pid_not_assessed(stack: Stack, slack_api: Any, database_url: str) -> str:
    apply_example(database_url)
    return "terminate 4242 prod"


def pid_not_among_assessed(stack: Stack, slack_api: Any, database_url: str) -> str:
    apply_example(database_url)
    before = _roots(slack_api)
    stack.sender.command("status prod", user_id=ALICE, channel_id=CHANNEL)
    slack_api.wait_for(lambda: _roots(slack_api) > before, timeout=60)
    slack_api.wait_for(lambda: "health" in thread_text(slack_api, slack_api.messages(CHANNEL)[-1]["ts"]), timeout=60)
    return "terminate 999999 prod"


@pytest.mark.parametrize("state", [no_plan, empty_plan, pid_not_assessed, pid_not_among_assessed],
                         ids=lambda f: f.__name__)
def test_a_refusal_suggests_only_commands_that_are_taken(
    state: Callable[[Stack, Any, str], str], stack_env: dict[str, str], slack_api: Any, database_url: str,
    make_stack: Callable[[dict[str, str]], Stack],
) -> None:
    """The refusals without a request in the way (bot/messages.py `no_plan`, `empty_plan`, `pid_not_assessed`):
    each command they suggest, placeholders filled in, is run through the bot in the state that produced the
    refusal, and is not refused with the same answer."""
    stack = make_stack(stack_env)
    command = state(stack, slack_api, database_url)
    answer = answered(stack, slack_api, command, lambda: False)
    assert answer is not None and (answer.startswith("Refused") or "No current" in answer or "reverts nothing" in answer)
    suggested = [c for c in (_concrete(s) for s in COMMAND.findall(html.unescape(answer))) if c]
    assert suggested, answer
    for text in suggested:
        said = len(slack_api.messages(CHANNEL))
        requests = len(stack.store.for_channel(CHANNEL))
        reply = answered(stack, slack_api, text, lambda said=said, requests=requests: (  # type: ignore[misc]
            len(slack_api.messages(CHANNEL)) > said or len(stack.store.for_channel(CHANNEL)) > requests))
        assert reply is None or (reply != answer and not reply.startswith("Refused")), \
            f"{answer!r} suggested {text!r}: {reply!r}"
        if text.startswith("dry-run"):  # carried out by a worker: the next suggestion follows its result
            slack_api.wait_for(lambda: stack.store.current_plan(CHANNEL, "prod"), timeout=90)
