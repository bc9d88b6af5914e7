""""Is a worker listening?" by heartbeat freshness: the rule (pure), then a real RQ worker process
killed with SIGKILL, which RQ keeps listing until its key expires (420 s by default) but the bot no
longer counts once its heartbeat is overdue."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rq import Queue, Worker

from bot.liveness import heartbeat_fresh, listening_workers
from sandbox.signing import SlackRequestSender
from sandbox.slack_api import SlackApiServer
from tests.fixtures.bot import ALICE, CHANNEL, REPO, SIGNING_SECRET, BotServer, ephemeral_texts, roots

WORKER_TTL = 3  # RQ's idle heartbeat comes every max(1, ttl - 15) s, and the key expires at ttl + 60
GRACE = 1


@pytest.mark.parametrize(
    ("age", "expires_in", "fresh"),
    [
        (400.0, 80.0, True),  # idle worker with RQ's default ttl 420: heartbeats every 405 s
        (440.0, 40.0, False),  # ... overdue past 420 + grace
        (3.0, 62.0, True),  # busy worker: heartbeats every job-monitoring interval (5 s)
        (30.0, 35.0, False),  # ... 30 s without one: its work-horse monitor is gone
        (50.0, 55.0, True),  # `python -m workers` with WORKER_TTL_SECONDS = 45 (idle, 30 s cadence)
        (61.0, 44.0, False),  # ... dead within a minute
    ],
)
def test_heartbeat_freshness(age: float, expires_in: float, fresh: bool) -> None:
    assert heartbeat_fresh(age, expires_in, grace_seconds=15) is fresh


def created_jobs(queue: Queue) -> int:
    """Jobs created on the queue's Redis, whatever became of them (queued, taken, failed)."""
    return len(queue.connection.keys("rq:job:*"))


@pytest.fixture
def real_worker(bot_queue: Queue, redis_url: str, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A real forking RQ worker process on the bot's queue, with a short TTL."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # RQ's own Worker, forking, with short heartbeats: idle every max(1, ttl - 15) s, busy every second
    script = ("import sys; from redis import Redis; from rq import Queue, Worker; r = Redis.from_url(sys.argv[1]); "
              f"Worker([Queue(sys.argv[2], connection=r)], connection=r, worker_ttl={WORKER_TTL}, "
              "job_monitoring_interval=1).work()")
    with (tmp_path / "worker.log").open("wb") as log:
        process = subprocess.Popen([sys.executable, "-c", script, redis_url, bot_queue.name], cwd=tmp_path, env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
    yield process
    if process.poll() is None:
        process.kill()
    process.wait()


def test_a_sigkilled_worker_is_noticed(
    make_bot: Callable[..., BotServer], slack_api: SlackApiServer, bot_queue: Queue,
    real_worker: subprocess.Popen[bytes],
) -> None:
    bot = make_bot(env={"ROLLBACK_WORKER_HEARTBEAT_GRACE_SECONDS": str(GRACE)})
    sender = SlackRequestSender(bot.events_url, SIGNING_SECRET, slack_api)
    slack_api.wait_for(lambda: listening_workers(bot_queue, GRACE))
    sender.command("history prod", user_id=ALICE, channel_id=CHANNEL)
    slack_api.wait_for(lambda: created_jobs(bot_queue) == 1)  # a live worker: the command is taken

    real_worker.send_signal(signal.SIGKILL)
    real_worker.wait()
    slack_api.wait_for(lambda: not listening_workers(bot_queue, GRACE), timeout=WORKER_TTL + GRACE + 5)
    assert [w.pid for w in Worker.all(queue=bot_queue)] == [real_worker.pid]  # RQ still lists it
    sender.command("history prod", user_id=ALICE, channel_id=CHANNEL)
    answer = slack_api.wait_for(lambda: ephemeral_texts(slack_api, ALICE))[0]
    assert "No worker is listening on queue `rollback`" in answer
    assert len(roots(slack_api)) == 1 and created_jobs(bot_queue) == 1  # nothing more was queued
