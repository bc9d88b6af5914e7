"""P1: how fast `python -m bot` acks bursts of signed deliveries (issue 8: 200 concurrent, p99 ≤ 50 ms).

The bot runs as the Procfile runs it (`python -m bot`, whatever server that starts), against the Slack
stand-in and a Redis database with a registered worker (so it enqueues instead of saying "no worker").
A burst is N threads released at once by a barrier: half send `/rollback status prod` (alice), half
click Approve on one pending request (bob; the first click wins, the rest are told it is decided).
Each delivery's time to the HTTP answer is its ack latency; anything but HTTP 200 within Slack's
3 s, or a connection error, counts as an error. The client threads share this machine's two cores
with the bot, so the latencies include client-side scheduling: they are an upper bound.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path

import redis
from rq import Queue, Worker

from bench.stats import Summary, Verdict, check_ack, percentile
from sandbox.people import SANDBOX_USERGROUPS, SANDBOX_USERS
from sandbox.signing import SlackRequestSender
from sandbox.slack_api import SlackApiServer
from tests.fixtures.bot import ALICE, BOB, CHANNEL, DEFAULT_BOT_CONFIG, PLAN, SIGNING_SECRET, start_bot

BURSTS = (50, 200)
SLACK_LIMIT_SECONDS = 3.0


def burst(sender: SlackRequestSender, request_id: str, thread_ts: str, size: int) -> tuple[list[float], int]:
    """Fire `size` deliveries at once; (latencies of the successful ones in ms, errors)."""
    barrier = threading.Barrier(size)
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        barrier.wait()
        started = time.perf_counter()
        try:
            if i % 2 == 0:
                status, _ = sender.command("status prod", user_id=ALICE, channel_id=CHANNEL)
            else:
                status, _ = sender.action("rollback_approve", request_id, user_id=BOB, channel_id=CHANNEL,
                                          message_ts=thread_ts)
        except OSError as exc:
            with lock:
                errors.append(type(exc).__name__)
            return
        seconds = time.perf_counter() - started
        with lock:
            if status != 200 or seconds > SLACK_LIMIT_SECONDS:
                errors.append(f"HTTP {status}")
            else:
                latencies.append(seconds * 1000)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, len(errors)


def measure(redis_url: str, reps: int, say: object) -> tuple[list[dict[str, object]], Verdict]:
    conn = redis.Redis.from_url(redis_url)
    conn.flushdb()
    worker = Worker([Queue("rollback", connection=conn)], connection=conn)
    worker.register_birth()  # a listening worker that takes nothing: the jobs pile up, flushed below
    workdir = Path(tempfile.mkdtemp(prefix="bench-ack-"))
    config = workdir / "rollback.toml"
    config.write_text(DEFAULT_BOT_CONFIG)
    from core.requests import RequestStore

    rows: list[dict[str, object]] = []
    worst_p99, total_errors = 0.0, 0
    with SlackApiServer(token="xoxb-bench", users=SANDBOX_USERS, usergroups=SANDBOX_USERGROUPS) as slack:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "ROLLBACK_"))}
        env.update({"SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_BOT_TOKEN": "xoxb-bench",
                    "SLACK_API_URL": slack.api_url, "REDIS_URL": redis_url, "ROLLBACK_CONFIG": str(config)})
        bot = start_bot(env, workdir)
        try:
            sender = SlackRequestSender(bot.events_url, SIGNING_SECRET, slack)
            store = RequestStore(conn)
            store.save_plan(CHANNEL, "prod", PLAN)
            sender.command("execute prod", user_id=ALICE, channel_id=CHANNEL)
            request = slack.wait_for(lambda: [r for r in store.for_channel(CHANNEL) if r.thread_ts])[0]
            sender.command("help", user_id=ALICE, channel_id=CHANNEL)  # warm up
            results: dict[int, list[float]] = {size: [] for size in BURSTS}
            errors: dict[int, int] = dict.fromkeys(BURSTS, 0)
            p99s: dict[int, list[float]] = {size: [] for size in BURSTS}
            for rep in range(reps):
                for size in BURSTS:
                    latencies, failed = burst(sender, request.id, str(request.thread_ts), size)
                    results[size] += latencies
                    errors[size] += failed
                    p99 = percentile(latencies, 0.99) if latencies else float("inf")
                    p99s[size].append(p99)
                    say(f"  ack {size:>3} concurrent, rep {rep + 1}/{reps}: p50 "  # type: ignore[operator]
                        f"{percentile(latencies, 0.5) if latencies else float('nan'):.1f} ms, p99 {p99:.1f} ms, "
                        f"max {max(latencies, default=float('nan')):.1f} ms, errors {failed}")
                    time.sleep(0.5)
        finally:
            bot.stop()
            worker.register_death()
            conn.flushdb()
            conn.close()
    for size in BURSTS:
        values = results[size]
        if values:
            summary = Summary.of(values)
            p99 = percentile(values, 0.99)
            rows.append({"figure": "P1 ack", "variant": f"{size} concurrent", "unit": "ms",
                         "median": summary.median, "low": summary.low, "high": summary.high, "n": summary.n,
                         "ratio": f"p99 {p99:.1f} ms, errors {errors[size]}"})
            worst_p99 = max(worst_p99, p99)
        else:
            worst_p99 = float("inf")
        total_errors += errors[size]
    verdict = Verdict("P1 ack", "p99 ≤ 50 ms, 0 errors (50 and 200 concurrent)",
                      f"p99 {worst_p99:.1f} ms (worst burst size), {total_errors} errors",
                      check_ack(worst_p99, total_errors))
    return rows, verdict
