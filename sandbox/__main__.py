"""`python -m sandbox` (`./dev sandbox`): the whole product on this machine, until Ctrl-C."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from types import FrameType

from sandbox import messages
from sandbox.launcher import KNOWN_GOOD_VERSION, SandboxError, start_sandbox
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
    parser.add_argument("--scenario", choices=["half-done"], default=None,
                        help="prepare a playbook scenario: half-done = scenario 1, a CREATE INDEX CONCURRENTLY "
                        "migration failed halfway (try `/rollback status`, then `/rollback repair`)")
    args = parser.parse_args(argv)

    env = dict(os.environ)
    real_slack = _real_slack_configured(env)
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(messages.STARTING, flush=True)
    try:
        sandbox = start_sandbox(
            database_url=env.get("DATABASE_URL"),
            redis_url=env.get("REDIS_URL"),
            page_port=args.port,
            bot_port=args.bot_port,
            env=env,
            real_slack=real_slack,
            stream_logs=sys.stdout.buffer if args.logs else None,
            scenario=args.scenario,
        )
    except (SandboxError, ServiceUnavailable, OSError) as err:
        print(messages.could_not_start(err), file=sys.stderr)
        return 1
    with sandbox:
        if real_slack:
            print(messages.REAL_SLACK)
            if env.get("SLACK_APP_TOKEN"):
                print(messages.SOCKET_MODE)
            else:
                print(messages.request_urls(sandbox.bot_port))
            if not env.get("SANDBOX_APPROVERS"):
                print(messages.NO_APPROVERS)
            print(messages.in_your_channel(KNOWN_GOOD_VERSION))
        else:
            print(messages.open_page(sandbox.page_url, KNOWN_GOOD_VERSION))
        print(messages.logs_in(sandbox.workdir), flush=True)
        while not stopping.wait(1.0):
            try:
                for note in sandbox.check_running():  # a dead worker is reported, not fatal
                    print(note, flush=True)
            except SandboxError as err:
                print(messages.stopped_because(err), file=sys.stderr)
                return 1
        print(messages.STOPPING, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
