"""P1: how fast `python -m bot` acks bursts of signed deliveries (issue 8: 200 concurrent, p99 ≤ 50 ms).

Built from bench/bench_ack.py's parts (its load generator, request bodies, Slack stand-in process and
pending-request set-up): the bot runs as the Procfile runs it (`python -m bot`, whatever server that
starts) against the Slack stand-in in a process of its own and a Redis database with a registered
worker (so it enqueues instead of saying "no worker"). A burst is N deliveries sent at the same
instant, each on its own connection (asyncio): a quarter are Approve clicks on one pending request
(bob, alice, carol: the first approval wins), the rest `/rollback status prod`. Each delivery's time
to the whole HTTP answer (connect included) is its ack latency; anything but HTTP 200, or a
connection error, counts as an error.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
from rq import Queue, Worker

from bench import bench_ack
from bench.stats import Summary, Verdict, check_ack, percentile
from core.requests import RequestStore
from tests.fixtures.bot import DEFAULT_BOT_CONFIG, SIGNING_SECRET, free_port

BURSTS = (50, 200)
HOST = "127.0.0.1"


def measure(redis_url: str, reps: int, say: object) -> tuple[list[dict[str, object]], Verdict]:
    conn = redis.Redis.from_url(redis_url)
    conn.flushdb()
    queue = Queue("rollback", connection=conn)
    worker = Worker([queue], connection=conn)
    worker.register_birth()  # a listening worker that takes nothing: the jobs pile up, dropped between bursts
    store = RequestStore(conn)
    workdir = Path(tempfile.mkdtemp(prefix="bench-ack-"))
    config = workdir / "rollback.toml"
    config.write_text(DEFAULT_BOT_CONFIG)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "ROLLBACK_"))}
    base["PYTHONPATH"] = os.pathsep.join(filter(None, [str(bench_ack.REPO), base.get("PYTHONPATH")]))
    slack = subprocess.Popen([sys.executable, bench_ack.__file__, "--serve", "slack"], cwd=bench_ack.REPO,
                             env=base, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert slack.stdout is not None
    urls = json.loads(slack.stdout.readline())
    response_url = f"{urls['url']}/response/bench"
    port = free_port()
    env = {**base, "HOST": HOST, "PORT": str(port), "SLACK_SIGNING_SECRET": SIGNING_SECRET,
           "SLACK_BOT_TOKEN": "xoxb-bench", "SLACK_API_URL": urls["api_url"], "REDIS_URL": redis_url,
           "ROLLBACK_CONFIG": str(config)}
    latencies: dict[int, list[float]] = {size: [] for size in BURSTS}
    errors: dict[int, list[str]] = {size: [] for size in BURSTS}
    bot = None
    try:
        bot = bench_ack.start(["-m", "bot"], env, workdir / "bot.log", port)
        for rep in range(reps + 1):  # repetition 0 warms the server up and is not counted
            for size in BURSTS:
                request_id, message_ts = bench_ack.new_pending_request(store, queue, HOST, port, response_url)
                clicks = size // 4
                users = (bench_ack.APPROVERS_AND_OTHERS * size)[:clicks]
                bodies = [bench_ack.click_body(request_id, message_ts, u, response_url) for u in users]
                bodies += [bench_ack.command_body("status prod", "U_ALICE", response_url)
                           for _ in range(size - clicks)]
                results = asyncio.run(bench_ack.burst(HOST, port, [bench_ack.signed(b, HOST) for b in bodies]))
                time.sleep(1.0)  # the bot's posts and enqueues after its acks end before the next burst
                queue.empty()
                if rep == 0:
                    continue
                ok = [ms for ms, outcome in results if outcome == "200"]
                failed = [outcome for _, outcome in results if outcome != "200"]
                latencies[size] += [ms for ms, _ in results]
                errors[size] += failed
                say(f"  ack {size:>3} concurrent, rep {rep}/{reps}: p50 {percentile(ok, 0.5) if ok else 0:.1f} ms, "  # type: ignore[operator]
                    f"p99 {percentile([ms for ms, _ in results], 0.99):.1f} ms, max {max(ms for ms, _ in results):.1f} ms, "
                    f"errors {len(failed)}{' (' + ', '.join(sorted(set(failed))) + ')' if failed else ''}")
    finally:
        if bot is not None:
            bot.terminate()
            bot.wait(timeout=30)
        slack.communicate(timeout=10)
        worker.register_death()
        conn.flushdb()
        conn.close()
    rows: list[dict[str, object]] = []
    worst_p99, total_errors = 0.0, 0
    for size in BURSTS:
        summary = Summary.of(latencies[size])
        p99 = percentile(latencies[size], 0.99)
        kinds = sorted(set(errors[size]))
        rows.append({"figure": "P1 ack", "variant": f"{size} concurrent", "unit": "ms", **summary.to_dict(),
                     "ratio": f"p99 {p99:.1f} ms, errors {len(errors[size])}"
                              + (f" ({', '.join(kinds)})" if kinds else "")})
        worst_p99 = max(worst_p99, p99)
        total_errors += len(errors[size])
    verdict = Verdict("P1 ack", "p99 ≤ 50 ms, 0 errors (50 and 200 concurrent)",
                      f"p99 {worst_p99:.1f} ms (worst burst size), {total_errors} errors", check_ack(worst_p99, total_errors))
    return rows, verdict
