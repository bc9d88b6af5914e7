"""The sandbox survives its worker: a stopped or killed worker is reported on the page and in the
terminal, requests meet "no worker is listening" (the path to rehearse), and the page restarts it."""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from rq import Queue, Worker

from sandbox.launcher import Sandbox, start_sandbox
from sandbox.people import INCIDENT_CHANNEL
from sandbox.slack_api import SlackApiServer, message_text
from tests.fixtures.fakes import WAIT_SECONDS
from tests.fixtures.isolation import PostgresRun

ALICE = "U_ALICE"
OUTER_PREFIXES = ("SLACK_", "PAGERDUTY_", "DIGITALOCEAN_", "ROLLBACK_", "BACKUP_DIR")


@pytest.fixture
def sandbox(postgres_admin_url: str, redis_url: str, postgres_run: PostgresRun) -> Iterator[Sandbox]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(OUTER_PREFIXES) and not k.endswith("_DATABASE_URL")}
    started = start_sandbox(database_url=postgres_admin_url, redis_url=redis_url, env=env,
                            database_name=postgres_run.database_name("sandbox_"))
    yield started
    started.close()


def _page(sandbox: Sandbox, path: str, body: dict[str, str] | None = None) -> Any:
    url = f"{sandbox.page_url}{path.lstrip('/')}"
    data = None if body is None else json.dumps(body).encode()
    with urllib.request.urlopen(urllib.request.Request(url, data=data, method="GET" if body is None else "POST"),
                                timeout=WAIT_SECONDS) as response:
        return json.loads(response.read())


def _state(sandbox: Sandbox) -> dict[str, Any]:
    return _page(sandbox, f"/sandbox/state?user={ALICE}&since=-1")  # type: ignore[no-any-return]


def _registered_pids(sandbox: Sandbox) -> set[int]:
    connection = redis.Redis.from_url(sandbox.redis_url)
    queue = Queue(sandbox._queue_name, connection=connection)
    return {w.pid for w in Worker.all(connection=connection, queue=queue)}


def _ephemeral_texts(slack: SlackApiServer) -> str:
    return "\n".join(message_text(e) for e in slack.ephemerals(user=ALICE))


def test_a_stopped_or_killed_worker_leaves_the_sandbox_running_and_comes_back(sandbox: Sandbox) -> None:
    slack = sandbox.slack
    assert slack is not None
    first = sandbox.processes["worker"]
    assert _state(sandbox)["worker"] == {"running": True, "exit": None, "restarts": 0}

    # Stopped from the page (as a deploy stops it): the bot answers "no worker is listening" at once.
    stopped = _page(sandbox, "/sandbox/worker/stop", {})
    assert stopped["worker"]["running"] is False and first.poll() is not None
    assert sandbox.check_running() and sandbox.check_running() == []  # reported once, not fatal
    assert _page(sandbox, "/sandbox/command", {"user": ALICE, "text": "/rollback status"})["ok"]
    slack.wait_for(lambda: "No worker is listening" in _ephemeral_texts(slack), timeout=WAIT_SECONDS)
    state = _state(sandbox)
    assert state["bot_connected"] and state["worker"]["running"] is False

    # Restarted from the page: a new worker registers and takes the next request.
    restarted = _page(sandbox, "/sandbox/worker/restart", {})["worker"]
    assert restarted["running"] is True and restarted["restarts"] == 1
    second = sandbox.processes["worker"]
    assert second.pid != first.pid
    slack.wait_for(lambda: second.pid in _registered_pids(sandbox), timeout=WAIT_SECONDS)

    # Killed outright (the worker's host dies): still no end of the sandbox, the page says how it ended.
    os.kill(second.pid, signal.SIGKILL)
    second.wait()
    notes = sandbox.check_running()
    assert len(notes) == 1 and "killed by SIGKILL" in notes[0]
    assert _state(sandbox)["worker"] == {"running": False, "exit": "killed by SIGKILL", "restarts": 1}
    third = _page(sandbox, "/sandbox/worker/restart", {})["worker"]
    assert third == {"running": True, "exit": None, "restarts": 2}
    third_pid = sandbox.processes["worker"].pid
    slack.wait_for(lambda: third_pid in _registered_pids(sandbox), timeout=WAIT_SECONDS)
    before = len(slack.messages(INCIDENT_CHANNEL))
    assert _page(sandbox, "/sandbox/command", {"user": ALICE, "text": "/rollback status"})["ok"]
    # the worker answers in the request's thread
    slack.wait_for(lambda: any(m.get("thread_ts") and m["ts"] != m["thread_ts"]
                               for m in slack.messages(INCIDENT_CHANNEL)[before:]), timeout=WAIT_SECONDS)
