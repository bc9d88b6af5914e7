"""The bot's production web server (`python -m bot`: gunicorn, gthread workers; `bot/server.py`): a burst
of simultaneous signed deliveries, SIGTERM with a request in flight, and one expiry sweeper per server."""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rq import Queue
from slack_sdk.signature import SignatureVerifier

from core.requests import RequestStatus, RequestStore
from sandbox.signing import SlackRequestSender
from sandbox.slack_api import SlackApiServer
from tests.fixtures.bot import (
    ALICE,
    BOB,
    CAROL,
    CHANNEL,
    DEFAULT_BOT_CONFIG,
    SIGNING_SECRET,
    BotServer,
    ask,
    jobs,
    launch_bot,
)
from tests.fixtures.fakes import quiet

BURST = 60


class Preparer(SlackRequestSender):
    """Builds the bodies a `SlackRequestSender` would send, without sending them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bodies: list[str] = []

    def send(self, body: str, *, timestamp: int | None = None, secret: str | None = None) -> tuple[int, str]:
        self.bodies.append(body)
        return 0, ""


def signed_request(url: str, body: str) -> urllib.request.Request:
    ts = str(int(time.time()))
    return urllib.request.Request(url, data=body.encode(), method="POST", headers={
        "Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": SignatureVerifier(SIGNING_SECRET).generate_signature(timestamp=ts, body=body) or ""})


def fire_at_once(url: str, bodies: list[str]) -> list[int | str]:
    """Send every body on its own connection, all released at the same instant; HTTP status or error."""
    results: list[int | str] = [""] * len(bodies)
    start = threading.Barrier(len(bodies))

    def one(index: int, body: str) -> None:
        request = signed_request(url, body)
        start.wait()
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                results[index] = response.status
        except urllib.error.HTTPError as err:
            results[index] = err.code
        except OSError as err:  # reset, refused, timed out
            results[index] = f"{type(err).__name__}: {err}"

    threads = [threading.Thread(target=one, args=(i, b)) for i, b in enumerate(bodies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.mark.usefixtures("idle_worker")
def test_a_burst_of_deliveries_is_answered_whole_and_approves_once(
    sender: SlackRequestSender, bot_server: BotServer, slack_api: SlackApiServer, bot_queue: Queue,
    store: RequestStore
) -> None:
    request = ask(sender, slack_api, store)
    prepared = Preparer(bot_server.events_url, SIGNING_SECRET, slack_api)
    clickers = [BOB, ALICE, CAROL] * 10  # the one approver's click, again and again, and two who may not
    for user in clickers:
        prepared.action("rollback_approve", request.id, user_id=user, channel_id=CHANNEL,
                        message_ts=request.thread_ts or "")
    for _ in range(BURST - len(clickers)):
        prepared.command("status prod", user_id=ALICE, channel_id=CHANNEL)

    results = fire_at_once(bot_server.events_url, prepared.bodies)

    assert [r for r in results if r != 200] == []  # no reset, no error: every delivery answered
    status_jobs = BURST - len(clickers)
    slack_api.wait_for(lambda: bot_queue.count >= status_jobs + 1)
    quiet(slack_api)  # a second approval, had there been one, would post and be enqueued by now
    names = [name for name, _ in jobs(bot_queue)]
    assert names.count("workers.jobs.run_request") == 1 and names.count("workers.jobs.status") == status_jobs
    decided = store.get(request.id)
    assert decided is not None and decided.status is RequestStatus.APPROVED and decided.decided_by == BOB


def not_served(host: str, port: int) -> bool:
    """Whether a new connection to the bot goes unanswered (the server has stopped accepting)."""
    try:
        with socket.create_connection((host, port), timeout=1) as sock:
            sock.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
            return not sock.recv(1)
    except OSError:
        return True


def accept_queue(port: int) -> int | None:
    """Connections waiting in the kernel for the server on `port` to accept them (/proc/net/tcp)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            for line in fh.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # LISTEN
                    return int(fields[4].split(":")[1], 16)
    return None


@pytest.mark.usefixtures("idle_worker")
def test_sigterm_lets_a_request_in_flight_finish_then_exits_cleanly(
    make_bot: Callable[..., BotServer], slack_api: SlackApiServer, bot_queue: Queue
) -> None:
    bot = make_bot(env={"ROLLBACK_SWEEP_INTERVAL_SECONDS": "0.2"})
    prepared = Preparer(bot.events_url, SIGNING_SECRET, slack_api)
    prepared.command("status prod", user_id=ALICE, channel_id=CHANNEL)
    request = signed_request(bot.events_url, prepared.bodies[0])
    body = request.data
    assert isinstance(body, bytes)
    head = (f"POST /slack/events HTTP/1.1\r\nHost: bot\r\nConnection: close\r\nContent-Length: {len(body)}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in request.header_items()) + "\r\n").encode()
    host, port = bot.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(head + body[:20])  # the request is in flight: headers and part of the body
        slack_api.wait_for(lambda: accept_queue(int(port)) == 0)  # a worker has taken the connection
        bot.process.send_signal(signal.SIGTERM)
        slack_api.wait_for(lambda: not_served(host, int(port)), timeout=15)  # shutting down
        conn.sendall(body[20:])
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert bot.process.wait(timeout=30) == 0
    log = bot.log()
    # the listener's work after its ack was drained too: the job is queued, the thread root posted
    assert [name for name, _ in jobs(bot_queue)] == ["workers.jobs.status"], log[-2000:]
    assert "expiry sweeper stopped" in log and "Traceback" not in log


@pytest.mark.usefixtures("idle_worker")
def test_one_expiry_sweeper_whatever_the_processes_and_after_one_dies(
    make_bot: Callable[..., BotServer], slack_api: SlackApiServer, store: RequestStore
) -> None:
    bot = make_bot(env={"ROLLBACK_SWEEP_INTERVAL_SECONDS": "0.2", "ROLLBACK_WEB_PROCESSES": "3"})
    bot_sender = SlackRequestSender(bot.events_url, SIGNING_SECRET, slack_api)
    slack_api.wait_for(lambda: bot.log().count("Booting worker") == 3)
    workers = [int(line.rsplit(" ", 1)[1]) for line in bot.log().splitlines() if "Booting worker with pid" in line]
    os.kill(workers[0], signal.SIGKILL)  # gunicorn replaces it; the sweeper is not in it
    slack_api.wait_for(lambda: bot.log().count("Booting worker") == 4)

    pending = ask(bot_sender, slack_api, store)
    store.update(pending.id, expires_at=time.time() - 1)
    slack_api.wait_for(lambda: (r := store.get(pending.id)) is not None and r.status is RequestStatus.EXPIRED)
    slack_api.wait_for(lambda: any("Expired" in str(m) for m in slack_api.messages(CHANNEL)))
    assert bot.log().count("expiry sweeper every") == 1  # started once, in the master


def test_the_server_settings_are_typed_and_checked() -> None:
    from core.config import ConfigError, load_settings

    settings = load_settings({"SLACK_SIGNING_SECRET": "s3cret", "SLACK_APP_TOKEN": "xapp-1", "PORT": "8080",
                              "HOST": "127.0.0.1", "ROLLBACK_WEB_PROCESSES": "3", "ROLLBACK_WEB_THREADS": "8",
                              "ROLLBACK_WEB_BACKLOG": "512", "ROLLBACK_WEB_GRACEFUL_TIMEOUT_SECONDS": "7.5",
                              "ROLLBACK_SWEEP_INTERVAL_SECONDS": "0.2",
                              "ROLLBACK_WORKER_HEARTBEAT_GRACE_SECONDS": "5"}, path=os.devnull)
    assert (settings.web_port, settings.web_host, settings.web_processes, settings.web_threads,
            settings.web_backlog) == (8080, "127.0.0.1", 3, 8, 512)
    assert (settings.web_graceful_timeout_seconds, settings.sweep_interval_seconds,
            settings.worker_heartbeat_grace_seconds) == (7.5, 0.2, 5.0)
    assert "s3cret" not in repr(settings) and "xapp-1" not in repr(settings)
    defaults = load_settings({}, path=os.devnull)
    assert (defaults.web_port, defaults.web_processes, defaults.web_threads) == (3000, 2, 16)
    for name, value in [("PORT", "http"), ("ROLLBACK_WEB_THREADS", "0"), ("ROLLBACK_WEB_PROCESSES", "1.5"),
                        ("ROLLBACK_SWEEP_INTERVAL_SECONDS", "nan"), ("ROLLBACK_WEB_GRACEFUL_TIMEOUT_SECONDS", "-1")]:
        with pytest.raises(ConfigError, match=name):
            load_settings({name: value}, path=os.devnull)


# Widens a window every fork has (under load it lasts long enough to be hit, as it was in a CI round):
# between fork and the worker's own signal handlers, the child runs the master's inherited handler, which
# queued a SIGTERM in the child's copy of the master's queue, so the worker never saw it and served on.
SLOW_WORKER_START = '''
import time
import gunicorn.workers.base as base
_init_process = base.Worker.init_process
def init_process(self):
    time.sleep(1.0)
    _init_process(self)
base.Worker.init_process = init_process
'''


def test_a_sigterm_while_a_worker_is_being_forked_still_stops_that_worker(
    bot_env: dict[str, str], tmp_path: Path, slack_api: SlackApiServer
) -> None:
    hooks = tmp_path / "slow_worker_start"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SLOW_WORKER_START)
    config = tmp_path / "rollback.toml"
    config.write_text(DEFAULT_BOT_CONFIG)
    bot = launch_bot({**bot_env, "ROLLBACK_CONFIG": str(config), "PYTHONPATH": str(hooks),
                      "ROLLBACK_WEB_PROCESSES": "1", "ROLLBACK_WEB_GRACEFUL_TIMEOUT_SECONDS": "15"}, tmp_path)
    try:
        booted = slack_api.wait_for(lambda: re.search(r"Booting worker with pid: (\d+)", bot.log()), timeout=60)
        bot.process.send_signal(signal.SIGTERM)  # the worker is forked, its own handlers not yet installed
        assert bot.process.wait(timeout=60) == 0, bot.log()[-3000:]
        log = bot.log()
        assert f"Worker exiting (pid: {booted.group(1)})" in log, log[-3000:]  # it stopped, not killed
        assert "SIGKILL" not in log and "Traceback" not in log, log[-3000:]
    finally:
        bot.stop()
