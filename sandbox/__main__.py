"""`python -m sandbox` (`./dev sandbox`): the whole product on this machine, until Ctrl-C."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from types import FrameType

from sandbox.launcher import HINT, SandboxError, start_sandbox
from sandbox.services import ServiceUnavailable


def _real_slack_configured(env: dict[str, str]) -> bool:
    """Real Slack credentials and no local API override: connect bot and worker to Slack itself."""
    return bool(env.get("SLACK_BOT_TOKEN") and (env.get("SLACK_SIGNING_SECRET") or env.get("SLACK_APP_TOKEN"))
                and not env.get("SLACK_API_URL"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("SANDBOX_PORT", "8400")),
                        help="port of the sandbox page (default 8400, or SANDBOX_PORT)")
    parser.add_argument("--bot-port", type=int, default=None, help="port of the bot (default: a free one)")
    parser.add_argument("--logs", action="store_true", help="show the bot's and the worker's logs here")
    args = parser.parse_args(argv)

    env = dict(os.environ)
    real_slack = _real_slack_configured(env)
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("sandbox: starting PostgreSQL, Redis, the example database, a worker and the bot ...", flush=True)
    try:
        sandbox = start_sandbox(
            database_url=env.get("DATABASE_URL"),
            redis_url=env.get("REDIS_URL"),
            page_port=args.port,
            bot_port=args.bot_port,
            env=env,
            real_slack=real_slack,
            stream_logs=sys.stdout.buffer if args.logs else None,
        )
    except (SandboxError, ServiceUnavailable, OSError) as err:
        print(f"sandbox: could not start: {err}", file=sys.stderr)
        return 1
    with sandbox:
        if real_slack:
            print("sandbox: bot and worker are connected to your Slack workspace (SLACK_BOT_TOKEN is set);")
            if env.get("SLACK_APP_TOKEN"):
                print("sandbox: the bot uses Socket Mode.")
            else:
                print(f"sandbox: point the app's request URLs at this machine's port {sandbox.bot_port} (/slack/events).")
            if not env.get("SANDBOX_APPROVERS"):
                print("sandbox: SANDBOX_APPROVERS (Slack user ids) is empty: every approval will be refused.")
            print("sandbox: in your incident channel, " + HINT)
        else:
            print(f"sandbox: open {sandbox.page_url}")
            print("sandbox: " + HINT)
        print(f"sandbox: logs in {sandbox.workdir} (or run with --logs); Ctrl-C stops everything", flush=True)
        while not stopping.wait(1.0):
            try:
                sandbox.check_running()
            except SandboxError as err:
                print(f"sandbox: {err}", file=sys.stderr)
                return 1
        print("sandbox: stopping and removing throwaway data ...", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
