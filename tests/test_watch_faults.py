"""The watch window when its worker dies, with real forking workers (SIGKILL), PostgreSQL, Redis, the running
bot (its expiry sweeper), the Slack and PagerDuty stand-ins and a health endpoint. Whatever dies when, the
watch goes on or ends with a truthful line, the request reaches a final status (never `running` for ever)
and a watch that nobody finishes pages."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from core.requests import Request, RequestStatus, RequestStore
from tests.fixtures.bot import BotServer
from tests.fixtures.stack import (
    WorkerProcess,
    apply_example,
    approved_request,
    dry_run_plan,
    enqueue,
    thread_text,
)
from tests.test_watch_flow import GOOD, Health, health, watch_env  # noqa: F401  (health: fixture)
from workers.runtime.escalation import dedup_key


class SmokeGate:
    """A smoke command the test controls: passes at once until `hold()`; then a look that runs it stays
    inside it (its pid in `inside`) or, with `kill_parent`, kills the work-horse running the look."""

    def __init__(self, folder: Path, *, kill_parent: bool = False) -> None:
        self.gate, self.inside = folder / "smoke-gate", folder / "smoke-inside"
        script = folder / "smoke.sh"
        # The work-horse is the nearest ancestor that, like its parent (the worker), runs `python -m workers`
        # (a shell may or may not sit between it and this script).
        kill_horse = ('p=$PPID; while [ "$p" -gt 1 ]; do pp=$(cut -d" " -f4 /proc/$p/stat); '
                      'if grep -q workers /proc/$p/cmdline && grep -q workers /proc/$pp/cmdline; then '
                      'kill -9 $p; exit 0; fi; p=$pp; done')
        held = kill_horse if kill_parent else f'echo $$ > "{self.inside}"; exec sleep 300'
        script.write_text(f'#!/bin/sh\nif [ -e "{self.gate}" ]; then {held}; fi\nexit 0\n')
        script.chmod(0o755)
        self.command = str(script)

    def hold(self) -> None:
        self.gate.touch()

    def entered(self) -> int | None:
        """The pid of the smoke command a look is held in, once one is."""
        text = self.inside.read_text().strip() if self.inside.exists() else ""
        return int(text) if text else None

    def open(self) -> None:
        """Later looks pass straight through; the one held (whose look was killed) ends too."""
        self.gate.unlink(missing_ok=True)
        pid = self.entered()
        if pid:
            try:
                os.killpg(pid, signal.SIGKILL)  # the smoke command runs in a session of its own
            except ProcessLookupError:
                pass


def kill_whole(worker: WorkerProcess) -> None:
    """SIGKILL the worker and its work-horse (if a look is under way): nobody is left to report anything."""
    children = Path(f"/proc/{worker.pid}/task/{worker.pid}/children")
    horses = [int(p) for p in children.read_text().split()] if children.exists() else []
    os.kill(worker.pid, signal.SIGKILL)
    for pid in horses:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    worker.process.wait(timeout=10)


def watched_rollback(env: dict[str, str], slack_api: Any, database_url: str) -> tuple[Request, str]:
    """A rollback through its pipeline, its watch window open (the first look posted)."""
    apply_example(database_url)
    ts, dry = dry_run_plan(env, slack_api, GOOD)
    request = approved_request(env, thread_ts=ts, plan=dry)
    enqueue(env, "workers.jobs.run_request", request_id=request.id)
    slack_api.wait_for(lambda: "watch, first look: health ok" in thread_text(slack_api, ts), timeout=90)
    store = RequestStore(redis.Redis.from_url(env["REDIS_URL"]))
    slack_api.wait_for(lambda: store.get(request.id).watch.get("looks"), timeout=30)  # the look is on the record
    return request, ts


def triggers(pagerduty: Any, request_id: str) -> list[Mapping[str, Any]]:
    incident = pagerduty.incidents().get(dedup_key(request_id))
    return [e for e in incident.events if e["event_action"] == "trigger"] if incident else []


@pytest.fixture
def store(stack_env: dict[str, str]) -> Iterator[RequestStore]:
    connection = redis.Redis.from_url(stack_env["REDIS_URL"])
    yield RequestStore(connection)
    connection.close()


def test_a_look_killed_with_its_worker_is_said_and_the_watch_goes_on_when_a_worker_comes_back(
    stack_env: dict[str, str], health: Health, slack_api: Any, pagerduty: Any, database_url: str,  # noqa: F811
    start_worker: Callable[[dict[str, str]], WorkerProcess], store: RequestStore, tmp_path: Path,
) -> None:
    smoke = SmokeGate(tmp_path)
    env = {**watch_env(stack_env, health, target_extra=f'smoke_command = "{smoke.command}"'),
           "ROLLBACK_WATCH_WINDOW_SECONDS": "30"}
    worker = start_worker(env)
    request, ts = watched_rollback(env, slack_api, database_url)

    smoke.hold()
    slack_api.wait_for(smoke.entered, timeout=30)  # a look is under way, inside its smoke command
    horse = worker.horse_pid()
    os.kill(worker.pid, signal.SIGKILL)  # the worker first, so nobody is left to notice the horse
    os.kill(horse, signal.SIGKILL)
    smoke.open()
    start_worker(env)  # a worker comes back: its watchdog finds the dead look

    text = slack_api.wait_for(lambda: "did not finish" in (t := thread_text(slack_api, ts)) and t, timeout=60)
    assert "Watch look" in text and "watching on" in text, text
    done = slack_api.wait_for(lambda: (r := store.get(request.id)).watch_ended and r, timeout=120)
    assert done.status is RequestStatus.SUCCEEDED, thread_text(slack_api, ts)
    assert "watch window ended, clean" in (done.outcome or ""), done.outcome
    slack_api.wait_for(lambda: "the request is done" in thread_text(slack_api, ts), timeout=60)
    assert triggers(pagerduty, request.id) == []  # the watch went on: someone watched the rest


def test_a_look_that_keeps_killing_its_process_ends_the_watch_as_interrupted_and_pages(
    stack_env: dict[str, str], health: Health, slack_api: Any, pagerduty: Any, database_url: str,  # noqa: F811
    start_worker: Callable[[dict[str, str]], WorkerProcess], store: RequestStore, tmp_path: Path,
) -> None:
    smoke = SmokeGate(tmp_path, kill_parent=True)
    env = {**watch_env(stack_env, health, target_extra=f'smoke_command = "{smoke.command}"'),
           "ROLLBACK_WATCH_WINDOW_SECONDS": "60"}
    start_worker(env)
    request, ts = watched_rollback(env, slack_api, database_url)

    smoke.hold()  # from now on every look's smoke command SIGKILLs the work-horse running it
    done = slack_api.wait_for(lambda: (r := store.get(request.id)).watch_ended and r, timeout=90)
    text = slack_api.wait_for(lambda: "watch interrupted" in (t := thread_text(slack_api, ts)) and t, timeout=30)
    assert done.status is RequestStatus.SUCCEEDED, text  # the rollback itself succeeded and was verified
    assert "watch interrupted: 3 looks in a row did not finish" in (done.outcome or ""), done.outcome
    assert "signal 9" in text and "Last seen at" in text and "health ok" in text, text
    assert "Nobody watches the rest of the window" in text and "<@U_DBA>" in text and "PagerDuty paged" in text
    assert len(triggers(pagerduty, request.id)) == 1 and pagerduty.incidents()[dedup_key(request.id)].open
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT status FROM migration_history WHERE operation = 'watch' AND request_id = %s",
                           (request.id,)).fetchone()
    assert row == ("interrupted",)


def test_a_watch_no_worker_comes_back_to_is_ended_by_the_bot_truthfully_and_paged(
    stack_env: dict[str, str], health: Health, slack_api: Any, pagerduty: Any, database_url: str,  # noqa: F811
    start_worker: Callable[[dict[str, str]], WorkerProcess], store: RequestStore,
    make_stack_bot: Callable[[Mapping[str, str]], BotServer],
) -> None:
    env = {**watch_env(stack_env, health), "ROLLBACK_WATCH_WINDOW_SECONDS": "60",
           "ROLLBACK_WATCH_GRACE_SECONDS": "1", "ROLLBACK_SWEEP_INTERVAL_SECONDS": "0.5"}
    make_stack_bot(env)  # its expiry sweeper is what is left
    worker = start_worker(env)
    request, ts = watched_rollback(env, slack_api, database_url)

    kill_whole(worker)  # between looks or in one: no worker ever comes back

    done = slack_api.wait_for(lambda: (r := store.get(request.id)).watch_ended and r, timeout=90)
    assert done.status is RequestStatus.SUCCEEDED, thread_text(slack_api, ts)
    assert "watch interrupted: no look since" in (done.outcome or ""), done.outcome
    text = slack_api.wait_for(lambda: "watch interrupted" in (t := thread_text(slack_api, ts)) and t, timeout=30)
    assert "no worker ran the watch" in text and "Last seen: health ok" in text, text
    assert "Nobody watches the rest of the window" in text and "<@U_DBA>" in text and "PagerDuty paged" in text
    incident = pagerduty.wait_for(lambda: pagerduty.incidents().get(dedup_key(request.id)), timeout=30)
    assert incident.open and "interrupted" in incident.summary and len(triggers(pagerduty, request.id)) == 1
