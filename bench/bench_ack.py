"""Ack latency of the bot under a burst: N signed deliveries (slash commands and Approve clicks) released at
the same instant, each on its own connection, against `python -m bot` (gunicorn, gthread workers) as
production runs it. The floor is measured in the same run: a WSGI app that reads the body and answers 200,
under the same server with the same settings and the same load. Prints p50 / p99 / max, errors and
resets for both, and the bot's figures as a multiple of the floor's.

The Slack Web API stand-in runs in a process of its own, so that the bot's calls after each ack do not
compete with the load generator for this process's interpreter lock. Slack's limit for an ack: 3000 ms.

    python bench/bench_ack.py [-n 200] [--clicks 50] [--rounds 3] [--redis-url redis://127.0.0.1:6379/4]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import redis
from rq import Queue, Worker

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core.requests import RequestStore  # noqa: E402
from sandbox.people import INCIDENT_CHANNEL  # noqa: E402
from sandbox.slack_api import TEAM_ID  # noqa: E402
from tests.fixtures.bot import DEFAULT_BOT_CONFIG, PLAN, SIGNING_SECRET, free_port  # noqa: E402

TARGET_P99_MS = 50.0
APPROVERS_AND_OTHERS = ["U_BOB", "U_ALICE", "U_CAROL"]  # bob approves; alice asked; carol may not
START_TIMEOUT_SECONDS = 30.0


# -- the load ------------------------------------------------------------------------------------------

def signed(body: str, host: str) -> bytes:
    """A raw HTTP/1.1 request carrying `body`, signed as Slack signs (v0, HMAC-SHA256)."""
    ts = str(int(time.time()))
    digest = hmac.new(SIGNING_SECRET.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    data = body.encode()
    return (f"POST /slack/events HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(data)}\r\n"
            f"X-Slack-Request-Timestamp: {ts}\r\nX-Slack-Signature: v0={digest}\r\n\r\n").encode() + data


def command_body(text: str, user: str, response_url: str) -> str:
    return urlencode({"token": "t", "team_id": TEAM_ID, "team_domain": "sandbox", "channel_id": INCIDENT_CHANNEL,
                      "channel_name": "incident", "user_id": user, "user_name": user.lower(), "command": "/rollback",
                      "text": text, "api_app_id": "A_ROLLBACK", "response_url": response_url,
                      "trigger_id": uuid.uuid4().hex})


def click_body(request_id: str, message_ts: str, user: str, response_url: str) -> str:
    payload = {
        "type": "block_actions", "team": {"id": TEAM_ID, "domain": "sandbox"},
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": TEAM_ID},
        "api_app_id": "A_ROLLBACK", "token": "t", "trigger_id": uuid.uuid4().hex,
        "container": {"type": "message", "message_ts": message_ts, "channel_id": INCIDENT_CHANNEL},
        "channel": {"id": INCIDENT_CHANNEL, "name": "incident"}, "message": {"type": "message", "ts": message_ts},
        "response_url": response_url,
        "actions": [{"type": "button", "action_id": "rollback_approve", "block_id": "actions", "value": request_id,
                     "action_ts": f"{time.time():.6f}"}],
    }
    return urlencode({"payload": json.dumps(payload)})


async def deliver(host: str, port: int, request: bytes) -> tuple[float, str]:
    """Milliseconds until the whole answer was read (connect included), and the status or the error."""
    started = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(request)
        await writer.drain()
        answer = await reader.read()
        writer.close()
        outcome = answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/") else "no answer"
    except OSError as err:  # ConnectionResetError, ConnectionRefusedError, ...
        outcome = type(err).__name__
    return (time.perf_counter() - started) * 1000, outcome


async def burst(host: str, port: int, requests: list[bytes]) -> list[tuple[float, str]]:
    return await asyncio.gather(*(deliver(host, port, r) for r in requests))


# -- figures -------------------------------------------------------------------------------------------

def percentile(values: list[float], fraction: float) -> float:
    """Nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


@dataclass
class Figures:
    name: str
    latencies: list[float] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)

    def add(self, results: Iterable[tuple[float, str]]) -> None:
        for ms, outcome in results:
            self.latencies.append(ms)
            self.outcomes.append(outcome)

    @property
    def errors(self) -> int:
        return sum(1 for o in self.outcomes if o != "200")

    def line(self) -> str:
        kinds = sorted({o for o in self.outcomes if o != "200"})
        return (f"{self.name:>6}: n={len(self.latencies)} p50={percentile(self.latencies, 0.5):6.1f} ms "
                f"p99={percentile(self.latencies, 0.99):6.1f} ms max={max(self.latencies):6.1f} ms "
                f"errors/resets={self.errors}{' (' + ', '.join(kinds) + ')' if kinds else ''}")


# -- processes -----------------------------------------------------------------------------------------

def serve_slack() -> int:
    """Child mode: the Slack Web API stand-in, until stdin closes."""
    from sandbox.people import SANDBOX_USERGROUPS, SANDBOX_USERS
    from sandbox.slack_api import SlackApiServer

    with SlackApiServer(token="xoxb-bench", users=SANDBOX_USERS, usergroups=SANDBOX_USERGROUPS) as slack:
        print(json.dumps({"api_url": slack.api_url, "url": slack.url}), flush=True)
        sys.stdin.read()
    return 0


def serve_floor() -> int:
    """Child mode: the floor, a WSGI app that reads the body and answers 200, under the bot's server."""
    from bot.server import BotServer
    from core.config import load_settings

    def floor(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "0")])
        return [b""]

    class FloorServer(BotServer):
        def load(self) -> Any:
            return floor

        def when_ready(self, arbiter: Any) -> None:  # no sweeper: nothing to sweep
            pass

    FloorServer(load_settings(path=os.devnull)).run()
    return 0


def wait_until_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    import urllib.request

    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        if process.poll() is not None:
            raise SystemExit(f"bench: a server exited with {process.returncode}:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"bench: no answer on port {port}:\n{log.read_text()[-2000:]}") from None
            time.sleep(0.1)


def start(args: list[str], env: dict[str, str], log: Path, port: int) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, *args], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    wait_until_listening(port, process, log)
    return process


# -- the run -------------------------------------------------------------------------------------------

def new_pending_request(store: RequestStore, queue: Queue, host: str, port: int, response_url: str) -> tuple[str, str]:
    """Free the target, save a plan, ask for an execute, and wait for the pending request's message."""
    for request in store.for_channel(INCIDENT_CHANNEL):
        if request.status.value in ("pending", "approved"):
            store.set_status(request.id, "succeeded", outcome="bench")
    store.save_plan(INCIDENT_CHANNEL, "prod", PLAN)
    before = {r.id for r in store.for_channel(INCIDENT_CHANNEL)}
    asyncio.run(burst(host, port, [signed(command_body("execute prod", "U_ALICE", response_url), host)]))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        fresh = [r for r in store.for_channel(INCIDENT_CHANNEL) if r.id not in before and r.thread_ts]
        if fresh:
            queue.empty()
            return fresh[0].id, fresh[0].thread_ts
        time.sleep(0.05)
    raise SystemExit("bench: the bot did not post the approval request")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200, help="deliveries per burst")
    parser.add_argument("--clicks", type=int, default=50, help="of which Approve clicks (the rest: /rollback status)")
    parser.add_argument("--text", default="status prod", help="the slash command's text (`help`: acked, no work after)")
    parser.add_argument("--rounds", type=int, default=3, help="bursts per server, bot and floor alternating")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/4", help="a Redis database to use (flushed)")
    parser.add_argument("--serve", choices=["slack", "floor"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve == "slack":
        return serve_slack()
    if args.serve == "floor":
        return serve_floor()

    conn = redis.Redis.from_url(args.redis_url)
    conn.flushdb()
    queue = Queue("rollback", connection=conn)
    worker = Worker([queue], connection=conn)
    worker.register_birth()  # a listening worker that takes nothing: the bot enqueues; dropped between bursts
    store = RequestStore(conn)
    workdir = Path(tempfile.mkdtemp(prefix="bench-ack-"))
    config = workdir / "rollback.toml"
    config.write_text(DEFAULT_BOT_CONFIG)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "ROLLBACK_"))}
    base["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), base.get("PYTHONPATH")]))
    slack = subprocess.Popen([sys.executable, __file__, "--serve", "slack"], cwd=REPO, env=base,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert slack.stdout is not None
    urls = json.loads(slack.stdout.readline())
    response_url = f"{urls['url']}/response/bench"
    bot_port, floor_port = free_port(), free_port()
    server_env = {**base, "HOST": "127.0.0.1", "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_BOT_TOKEN": "xoxb-bench",
                  "SLACK_API_URL": urls["api_url"], "REDIS_URL": args.redis_url, "ROLLBACK_CONFIG": str(config)}
    processes: list[subprocess.Popen[bytes]] = []
    bot, floor = Figures("bot"), Figures("floor")
    load_before = os.getloadavg()
    try:
        processes.append(start(["-m", "bot"], {**server_env, "PORT": str(bot_port)}, workdir / "bot.log", bot_port))
        processes.append(start([__file__, "--serve", "floor"], {**server_env, "PORT": str(floor_port)},
                               workdir / "floor.log", floor_port))
        host = "127.0.0.1"
        for round_number in range(args.rounds + 1):  # round 0 warms both up and is not counted
            request_id, message_ts = new_pending_request(store, queue, host, bot_port, response_url)
            users = (APPROVERS_AND_OTHERS * args.n)[: args.clicks]
            bodies = [click_body(request_id, message_ts, u, response_url) for u in users]
            bodies += [command_body(args.text, "U_ALICE", response_url) for _ in range(args.n - len(bodies))]
            floor_results = asyncio.run(burst(host, floor_port, [signed(b, host) for b in bodies]))
            bot_results = asyncio.run(burst(host, bot_port, [signed(b, host) for b in bodies]))
            if round_number:
                bot.add(bot_results)
                floor.add(floor_results)
            # the bot's work after its acks (Slack posts, enqueues) ends before the next burst starts
            deadline = time.monotonic() + 30
            expected = (args.n - args.clicks if args.text.startswith("status") else 0) + (1 if args.clicks else 0)
            while queue.count < expected and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(1.0)
            approvals = [j.func_name for j in queue.jobs].count("workers.jobs.run_request")
            if approvals != (1 if args.clicks else 0):
                print(f"bench: round {round_number}: {approvals} approvals enqueued, expected exactly 1", file=sys.stderr)
                return 1
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
        slack.communicate(timeout=10)
        worker.register_death()
        conn.flushdb()
    load_after = os.getloadavg()

    print(f"{args.rounds} bursts of {args.n} simultaneous signed deliveries ({args.clicks} Approve clicks on one "
          f"request, {args.n - args.clicks} `/rollback {args.text}`), one connection each; "
          f"{os.cpu_count()} CPUs, load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    print(bot.line())
    print(floor.line())
    ratio_p50 = percentile(bot.latencies, 0.5) / percentile(floor.latencies, 0.5)
    ratio_p99 = percentile(bot.latencies, 0.99) / percentile(floor.latencies, 0.99)
    print(f" ratio: bot/floor p50 x{ratio_p50:.1f}, p99 x{ratio_p99:.1f}; "
          f"target: 0 errors and p99 <= {TARGET_P99_MS:.0f} ms (Slack's limit: 3000 ms)")
    return 0 if bot.errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
