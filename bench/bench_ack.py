"""Ack latency of signed `/rollback` slash commands against the running bot (`python -m bot`).

Starts the Slack Web API stand-in, a real RQ worker registration on a Redis database (so the bot
enqueues instead of saying "no worker"), and the bot as a subprocess; sends N really signed commands
and prints p50 / p95 / max of the time until the HTTP answer (the ack). Slack's limit is 3000 ms.

    python bench/bench_ack.py [-n 200] [--text "status prod"] [--redis-url redis://127.0.0.1:6379/4]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import redis
from rq import Queue, Worker

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sandbox.people import INCIDENT_CHANNEL, SANDBOX_USERGROUPS, SANDBOX_USERS  # noqa: E402
from sandbox.signing import SlackRequestSender  # noqa: E402
from sandbox.slack_api import SlackApiServer  # noqa: E402
from tests.fixtures.bot import DEFAULT_BOT_CONFIG, SIGNING_SECRET, start_bot  # noqa: E402


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200, help="commands to send")
    parser.add_argument("--text", default="status prod", help="the command text after /rollback")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/4", help="a Redis database to use (flushed)")
    args = parser.parse_args()

    conn = redis.Redis.from_url(args.redis_url)
    conn.flushdb()
    queue = Queue("rollback", connection=conn)
    worker = Worker([queue], connection=conn)
    worker.register_birth()  # a listening worker that takes nothing: jobs pile up and are dropped below
    workdir = Path(tempfile.mkdtemp(prefix="bench-ack-"))
    config = workdir / "rollback.toml"
    config.write_text(DEFAULT_BOT_CONFIG)
    with SlackApiServer(token="xoxb-bench", users=SANDBOX_USERS, usergroups=SANDBOX_USERGROUPS) as slack:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "ROLLBACK_"))}
        env.update({"SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_BOT_TOKEN": "xoxb-bench",
                    "SLACK_API_URL": slack.api_url, "REDIS_URL": args.redis_url, "ROLLBACK_CONFIG": str(config)})
        bot = start_bot(env, workdir)
        try:
            sender = SlackRequestSender(bot.events_url, SIGNING_SECRET, slack)
            sender.command("help", user_id="U_ALICE", channel_id=INCIDENT_CHANNEL)  # warm up
            latencies: list[float] = []
            for _ in range(args.n):
                started = time.perf_counter()
                status, _ = sender.command(args.text, user_id="U_ALICE", channel_id=INCIDENT_CHANNEL)
                latencies.append((time.perf_counter() - started) * 1000)
                if status != 200:
                    print(f"bench: the bot answered HTTP {status}", file=sys.stderr)
                    return 1
        finally:
            bot.stop()
            worker.register_death()
            conn.flushdb()
    print(f"/rollback {args.text}: n={args.n} p50={statistics.median(latencies):.1f} ms "
          f"p95={percentile(latencies, 0.95):.1f} ms max={max(latencies):.1f} ms (Slack's limit: 3000 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
