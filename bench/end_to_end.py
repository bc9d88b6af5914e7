"""P5: from bob's Approve click to "rolled back … and verified" in the thread, with the real bot and worker.

Per repetition: a fresh copy of the data set is the target `prod`; alice runs `/rollback dry-run
<known-good>` and `/rollback execute`, bob clicks Approve (the clock starts when his click is sent)
and the clock stops when the outcome line appears in the thread. The worker runs the production
chain (backup → maintenance on → rollback → verify → maintenance off) with the default settings
(lock timeout, compression, jobs). The floors it is compared with are the P2 floor (`pg_dump -Fc
-Z0 > /dev/null`), the P3 floor (`psql -1 -f down.sql`) and a verification floor measured here: one
psql counting the critical tables' rows and reading schema_migrations.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import tempfile
import time
from functools import partial
from pathlib import Path

import redis

from bench import dataset
from bench.stats import Summary
from core.requests import Request, RequestStore
from sandbox.pagerduty import PagerDutyServer
from sandbox.people import SANDBOX_USERGROUPS, SANDBOX_USERS
from sandbox.signing import SlackRequestSender
from sandbox.slack_api import SlackApiServer, message_text
from tests.fixtures.bot import ALICE, BOB, CHANNEL, SIGNING_SECRET, start_bot
from tests.fixtures.stack import WorkerProcess

QUEUE = "rollback-bench"
PIPELINE_TIMEOUT_SECONDS = 900.0
OUTCOME_NEEDLE = "and verified in"

CONFIG = """
[bot]
channels = ["C_INCIDENT"]
approvers = ["U_BOB"]
request_ttl_seconds = 900
start_within_seconds = 300

[escalation]
contacts = []

[targets.prod]
migrations_dir = "{migrations}"
critical_tables = ["users", "projects", "events"]
escalation = ["U_DBA"]
"""


def verification_floor(url: str) -> float:
    started = time.perf_counter()
    subprocess.run(["psql", "--no-password", "-X", "-q", "-d", url,
                    "-c", "SELECT count(*) FROM users", "-c", "SELECT count(*) FROM projects",
                    "-c", "SELECT count(*) FROM events",
                    "-c", "SELECT version, status FROM schema_migrations ORDER BY version"],
                   check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def _thread(slack: SlackApiServer, ts: str) -> str:
    return "\n".join(message_text(m) for m in slack.thread(CHANNEL, ts))


def new_request(store: RequestStore, known: set[str]) -> list[Request]:
    return [r for r in store.for_channel(CHANNEL) if r.thread_ts and r.id not in known]


def finished(slack: SlackApiServer, store: RequestStore, thread_ts: str, request_id: str) -> bool:
    """The outcome line is in the thread, or the request ended otherwise (failed, refused)."""
    if OUTCOME_NEEDLE in _thread(slack, thread_ts):
        return True
    request = store.get(request_id)
    return request is not None and request.is_final and request.status.value != "succeeded"


STEP_LINE = re.compile(r"\*(?P<step>[^*]+)\* (?P<what>started|finished)")


def step_times(slack: SlackApiServer, thread_ts: str, clicked_at: float) -> dict[str, float]:
    """Seconds each pipeline step took, from its "started" and "finished" posts (their Slack ts)."""
    started: dict[str, float] = {}
    took: dict[str, float] = {}
    for message in slack.thread(CHANNEL, thread_ts):
        at = float(message["ts"]) - clicked_at
        match = STEP_LINE.search(message_text(message))
        if at < 0 or not match:
            continue
        if match["what"] == "started":
            started[match["step"]] = at
        elif match["step"] in started:
            took[match["step"]] = at - started.pop(match["step"])
    return took


def measure(admin_url: str, template: str, redis_url: str, reps: int, say: dataset.Say, *,
            backup_floor: float, rollback_floor: float,
            ) -> tuple[dict[str, list[float]], dict[str, float], dict[str, float]]:
    conn = redis.Redis.from_url(redis_url)
    conn.flushdb()
    workdir = Path(tempfile.mkdtemp(prefix="bench-p5-"))
    config = workdir / "rollback.toml"
    config.write_text(CONFIG.format(migrations=dataset.MIGRATIONS_DIR))
    backups = workdir / "backups"
    backups.mkdir()
    times: list[float] = []
    steps: dict[str, list[float]] = {}
    verify_times: list[float] = []
    target_db = dataset.scratch_name("p5_prod")
    url = dataset.database_url(admin_url, target_db)
    with SlackApiServer(token="xoxb-bench", users=SANDBOX_USERS, usergroups=SANDBOX_USERGROUPS) as slack, \
            PagerDutyServer() as pagerduty:
        env = {"PROD_DATABASE_URL": url, "REDIS_URL": redis_url, "SLACK_API_URL": slack.api_url,
               "SLACK_BOT_TOKEN": "xoxb-bench", "PAGERDUTY_EVENTS_URL": pagerduty.url,
               "PAGERDUTY_ROUTING_KEY": "R0UT1NGKEY0000000000000000000000", "BACKUP_DIR": str(backups),
               "ROLLBACK_CONFIG": str(config), "ROLLBACK_QUEUE": QUEUE}
        worker = WorkerProcess(env, workdir / "worker.log").wait_ready()
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("SLACK_", "ROLLBACK_", "PAGERDUTY_", "DIGITALOCEAN_"))
                and not k.endswith("_DATABASE_URL")}
        bot_env = {k: v for k, v in env.items() if not k.endswith("_DATABASE_URL")}
        bot = start_bot({**base, **bot_env, "SLACK_SIGNING_SECRET": SIGNING_SECRET}, workdir)
        store = RequestStore(conn)
        sender = SlackRequestSender(bot.events_url, SIGNING_SECRET, slack)
        try:
            for rep in range(reps):
                dataset.clone(admin_url, template, target_db)
                known = {r.id for r in store.for_channel(CHANNEL)}
                sender.command(f"dry-run {dataset.KNOWN_GOOD} prod", user_id=ALICE, channel_id=CHANNEL)
                slack.wait_for(lambda: store.current_plan(CHANNEL, "prod"), timeout=PIPELINE_TIMEOUT_SECONDS)
                sender.command("execute prod", user_id=ALICE, channel_id=CHANNEL)
                request = slack.wait_for(partial(new_request, store, known), timeout=60)[0]
                started, clicked_at = time.perf_counter(), time.time()
                status, _ = sender.action("rollback_approve", request.id, user_id=BOB, channel_id=CHANNEL,
                                          message_ts=str(request.thread_ts))
                if status != 200:
                    raise RuntimeError(f"the approve click got HTTP {status}")
                thread_ts = str(request.thread_ts)
                slack.wait_for(partial(finished, slack, store, thread_ts, request.id),
                               timeout=PIPELINE_TIMEOUT_SECONDS)
                seconds = time.perf_counter() - started
                if OUTCOME_NEEDLE not in _thread(slack, thread_ts):
                    raise RuntimeError(f"the request did not succeed:\n{_thread(slack, thread_ts)[-2000:]}")
                times.append(seconds)
                for step, took in step_times(slack, thread_ts, clicked_at).items():
                    steps.setdefault(step, []).append(took)
                say(f"  end to end product (Approve → verified)  rep {rep + 1}/{reps}: {seconds:8.2f} s")
                floor = verification_floor(url)
                verify_times.append(floor)
                for archive in backups.iterdir():
                    subprocess.run(["rm", "-rf", str(archive)], check=False)
        finally:
            bot.stop()
            worker.stop()
            dataset.drop(admin_url, target_db)
            conn.flushdb()
            conn.close()
    floors = {"backup floor": backup_floor, "rollback floor": rollback_floor,
              "verification floor": Summary.of(verify_times).median}
    breakdown = {step: statistics.median(values) for step, values in steps.items()}
    breakdown["between steps (queue hand-offs, posts)"] = statistics.median(times) - sum(breakdown.values())
    return {"product (Approve → verified)": times}, floors, breakdown
