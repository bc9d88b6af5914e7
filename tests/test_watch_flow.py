"""The watch window after a verified rollback, with a real forking worker (its RQ scheduler runs the
ticks), real PostgreSQL and Redis, the Slack and PagerDuty stand-ins and a health endpoint the test
flips: a health regression pages once (the request's dedup key), the recovery is a line, the window
ends clean, the page is resolved and only then is the request done."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
import pytest
import redis

from core.requests import RequestStatus, RequestStore
from tests.fixtures.stack import (
    apply_example,
    approved_request,
    dry_run_plan,
    enqueue,
    thread_text,
    write_config,
)
from workers.paging import dedup_key

GOOD = "2025_10_20_120001"
WINDOW_SECONDS = 20


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


def test_a_health_regression_pages_and_the_recovery_resolves_it_when_the_window_ends(
    stack_env: dict[str, str], health: Health, slack_api: Any, pagerduty: Any, database_url: str,
    start_worker: Callable[[dict[str, str]], object],
) -> None:
    write_config(stack_env["ROLLBACK_CONFIG"], target_extra=f'health_url = "{health.url}"')
    env = {**stack_env, "ROLLBACK_WATCH_WINDOW_SECONDS": str(WINDOW_SECONDS), "ROLLBACK_WATCH_INTERVAL_SECONDS": "0.5"}
    start_worker(env)
    apply_example(database_url)
    store = RequestStore(redis.Redis.from_url(env["REDIS_URL"]))
    ts, dry = dry_run_plan(env, slack_api, GOOD)
    request = approved_request(env, thread_ts=ts, plan=dry)
    enqueue(env, "workers.jobs.execute", request_id=request.id)

    slack_api.wait_for(lambda: "watch, first look: health ok" in thread_text(slack_api, ts), timeout=90)
    assert store.get(request.id).status is RequestStatus.RUNNING  # rolled back, verified, not done yet

    health.status = 503
    slack_api.wait_for(lambda: "watch: health ok → failing" in thread_text(slack_api, ts), timeout=30)
    incident = pagerduty.wait_for(lambda: pagerduty.incidents().get(dedup_key(request.id)), timeout=30)
    assert incident.open and "regressed" in incident.summary
    health.status = 200
    slack_api.wait_for(lambda: "watch: health failing → ok" in thread_text(slack_api, ts), timeout=30)

    done = slack_api.wait_for(lambda: (r := store.get(request.id)).is_final and r, timeout=WINDOW_SECONDS + 30)
    assert done.status is RequestStatus.SUCCEEDED and "watch window ended, clean" in (done.outcome or ""), \
        thread_text(slack_api, ts)
    # the closing line is posted after the record is final: wait for it, not for a moment
    text = slack_api.wait_for(lambda: "the request is done. The page is resolved." in (t := thread_text(slack_api, ts))
                              and t, timeout=60)
    assert "the request is done. The page is resolved." in text
    assert not pagerduty.incidents()[dedup_key(request.id)].open
    triggers = [e for e in pagerduty.incidents()[dedup_key(request.id)].events if e["event_action"] == "trigger"]
    assert len(triggers) == 1  # one regression, one page
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT status, details->>'clean', details->>'regressed' FROM migration_history"
                           " WHERE operation = 'watch' AND request_id = %s", (request.id,)).fetchone()
    assert row == ("completed", "true", "true")
