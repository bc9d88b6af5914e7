"""The watch window after a verified rollback, with a real forking worker (its RQ scheduler runs the
ticks), real PostgreSQL and Redis, the Slack and PagerDuty stand-ins and a health endpoint the test
flips: a health regression pages once (the request's dedup key), the recovery is a line, the window
ends clean, the page is resolved and only then is the request done."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from core.requests import Request, RequestKind, RequestStatus, RequestStore
from sandbox.digitalocean import DEFAULT_DATABASE_ID
from sandbox.signing import SlackRequestSender
from tests.fixtures.stack import (
    APPROVER,
    CHANNEL,
    REQUESTER,
    apply_example,
    approved_request,
    dry_run_plan,
    enqueue,
    thread_text,
    wait_job,
    write_config,
)
from workers.runtime.escalation import dedup_key

GOOD = "2025_10_20_120001"
WINDOW_SECONDS = 20
ALICE, BOB = REQUESTER, APPROVER


class Health:
    """An app health endpoint whose answer the test sets."""

    def __init__(self) -> None:
        self.status = 200
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                self.send_response(outer.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/health"


@pytest.fixture
def health() -> Iterator[Health]:
    server = Health()
    yield server
    server.server.shutdown()


def watch_env(stack_env: dict[str, str], health: Health, target_extra: str = "") -> dict[str, str]:
    """The stack with a health URL and a short watch window (looks every half second)."""
    write_config(stack_env["ROLLBACK_CONFIG"], target_extra=f'health_url = "{health.url}"\n{target_extra}')
    return {**stack_env, "ROLLBACK_WATCH_WINDOW_SECONDS": str(WINDOW_SECONDS), "ROLLBACK_WATCH_INTERVAL_SECONDS": "0.5"}


def regress_and_recover(slack_api: Any, pagerduty: Any, health: Health, store: RequestStore, database_url: str,
                        request_id: str, ts: str) -> Request:
    """Health fails during the window and comes back: one page (the request's), resolved by the first healthy
    look; the window ends clean. The request is done (`succeeded`, holding nothing) from the first look on.
    Returns the request as the watch left it."""
    slack_api.wait_for(lambda: "watch, first look: health ok" in thread_text(slack_api, ts), timeout=90)
    watched = store.get(request_id)
    assert watched.status is RequestStatus.SUCCEEDED and watched.watching  # done, and watched
    assert store.active_for_target("prod") is None  # the watch holds nothing

    health.status = 503
    slack_api.wait_for(lambda: "watch: health ok → failing" in thread_text(slack_api, ts), timeout=30)
    incident = pagerduty.wait_for(lambda: pagerduty.incidents().get(dedup_key(request_id)), timeout=30)
    assert incident.open and "regressed" in incident.summary
    health.status = 200
    slack_api.wait_for(lambda: "watch: health failing → ok" in thread_text(slack_api, ts), timeout=30)
    # the healthy look resolves the page (said in the thread), before the window's end
    slack_api.wait_for(lambda: "everything is healthy again; the page is resolved" in thread_text(slack_api, ts),
                       timeout=30)
    assert not pagerduty.incidents()[dedup_key(request_id)].open

    done = slack_api.wait_for(lambda: (r := store.get(request_id)).watch_ended and r, timeout=WINDOW_SECONDS + 30)
    assert done.status is RequestStatus.SUCCEEDED and "watch window ended, clean" in (done.outcome or ""), \
        thread_text(slack_api, ts)
    # the closing line is posted after the record is final: wait for it, not for a moment
    text = slack_api.wait_for(lambda: "ended, clean; the request is done." in (t := thread_text(slack_api, ts))
                              and t, timeout=60)
    assert text.index("health failing → ok") < text.index("the page is resolved") < text.index("ended, clean"), text
    assert not pagerduty.incidents()[dedup_key(request_id)].open
    triggers = [e for e in pagerduty.incidents()[dedup_key(request_id)].events if e["event_action"] == "trigger"]
    assert len(triggers) == 1  # one regression, one page
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT status, details->>'clean', details->>'regressed' FROM migration_history"
                           " WHERE operation = 'watch' AND request_id = %s", (request_id,)).fetchone()
    assert row == ("completed", "true", "true")
    return done


def test_a_health_regression_pages_and_the_recovery_resolves_it_when_the_window_ends(
    stack_env: dict[str, str], health: Health, slack_api: Any, pagerduty: Any, database_url: str,
    start_worker: Callable[[dict[str, str]], object],
) -> None:
    env = watch_env(stack_env, health)
    start_worker(env)
    apply_example(database_url)
    store = RequestStore(redis.Redis.from_url(env["REDIS_URL"]))
    ts, dry = dry_run_plan(env, slack_api, GOOD)
    request = approved_request(env, thread_ts=ts, plan=dry)
    enqueue(env, "workers.jobs.run_request", request_id=request.id)
    regress_and_recover(slack_api, pagerduty, health, store, database_url, request.id, ts)


def test_rows_put_back_by_recover_are_watched_like_a_rollback(
    stack_env: dict[str, str], health: Health, slack_api: Any, pagerduty: Any, database_url: str,
    start_worker: Callable[[dict[str, str]], object], stack_sender: SlackRequestSender,
) -> None:
    """`recover` changes the live target: after its verified recovery the window runs, a regression pages
    (the request's incident) and the clean end resolves it; the request is done only then."""
    env = watch_env(stack_env, health)
    start_worker(env)
    apply_example(database_url)
    store = RequestStore(redis.Redis.from_url(env["REDIS_URL"]))
    taken = wait_job(enqueue(env, "workers.jobs.backup", target="prod", requester=ALICE, reason="before"), timeout=120)
    assert taken and taken["ok"], taken
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM users WHERE id BETWEEN 3 AND 6")  # rows lost by mistake
    request = ask(stack_sender, slack_api, store, f"recover {Path(taken['backup']['path']).name} users,projects prod")
    assert request.kind is RequestKind.RECOVER
    stack_sender.action("rollback_approve", request.id, user_id=BOB, channel_id=CHANNEL, message_ts=request.thread_ts)

    done = regress_and_recover(slack_api, pagerduty, health, store, database_url, request.id, request.thread_ts)
    assert (done.outcome or "").startswith("rows recovered and verified; watch window ended, clean")
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM users WHERE id BETWEEN 3 AND 6").fetchone() == (4,)


def test_a_new_cluster_is_not_watched_and_the_outcome_says_so(
    stack_env: dict[str, str], health: Health, slack_api: Any, pagerduty: Any, database_url: str,
    start_worker: Callable[[dict[str, str]], object], stack_sender: SlackRequestSender,
) -> None:
    """`cluster-restore` creates a new cluster the application does not use yet: nothing to watch, the request
    is done with its outcome, and the outcome line says the new cluster is not watched."""
    env = watch_env(stack_env, health, target_extra=f'do_database_id = "{DEFAULT_DATABASE_ID}"')
    start_worker({**env, "ROLLBACK_DO_POLL_SECONDS": "0.1"})
    apply_example(database_url)
    store = RequestStore(redis.Redis.from_url(env["REDIS_URL"]))
    request = ask(stack_sender, slack_api, store, "cluster-restore prod")
    assert request.kind is RequestKind.CLUSTER_RESTORE
    stack_sender.action("rollback_approve", request.id, user_id=BOB, channel_id=CHANNEL, message_ts=request.thread_ts)

    done = slack_api.wait_for(lambda: (r := store.get(request.id)).is_final and r, timeout=120)
    text = slack_api.wait_for(lambda: "Not watched: the application does not use the new cluster yet" in
                              (t := thread_text(slack_api, request.thread_ts)) and t, timeout=30)
    assert done.status is RequestStatus.SUCCEEDED and "not watched" in (done.outcome or ""), text
    assert "watching *prod*" not in text and "watch, first look" not in text
    assert pagerduty.events == []


def ask(sender: SlackRequestSender, slack_api: Any, store: RequestStore, text: str) -> Request:
    """A two-person request asked in the channel, once its card is posted."""
    sender.command(text, user_id=ALICE, channel_id=CHANNEL)
    return slack_api.wait_for(lambda: [r for r in store.for_channel(CHANNEL) if r.thread_ts], timeout=120)[0]


def test_watch_stop_ends_the_window_early_recorded(
    stack_env: dict[str, str], health: Health, slack_api: Any, pagerduty: Any, database_url: str,
    start_worker: Callable[[dict[str, str]], object], stack_sender: SlackRequestSender,
) -> None:
    env = {**watch_env(stack_env, health), "ROLLBACK_WATCH_WINDOW_SECONDS": "600"}
    start_worker(env)
    apply_example(database_url)
    store = RequestStore(redis.Redis.from_url(env["REDIS_URL"]))
    ts, dry = dry_run_plan(env, slack_api, GOOD)
    request = approved_request(env, thread_ts=ts, plan=dry)
    enqueue(env, "workers.jobs.run_request", request_id=request.id)
    slack_api.wait_for(lambda: "watch, first look: health ok" in thread_text(slack_api, ts), timeout=90)

    stack_sender.command("watch stop prod", user_id=ALICE, channel_id=CHANNEL)
    done = slack_api.wait_for(lambda: (r := store.get(request.id)).watch_ended and r, timeout=60)
    assert done.status is RequestStatus.SUCCEEDED and done.watch_ended == "stopped"
    assert (done.outcome or "").endswith(f"watch stopped early by {ALICE}, clean"), done.outcome
    text = slack_api.wait_for(lambda: "stopped early by" in (t := thread_text(slack_api, ts)) and t, timeout=30)
    assert f"<@{ALICE}> stops the watch of {request.id} early" in text
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT status, executed_by FROM migration_history WHERE operation = 'watch'"
                           " AND request_id = %s", (request.id,)).fetchone()
    assert row == ("stopped", ALICE)
