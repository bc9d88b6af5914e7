"""`python -m workers`: a forking RQ worker on the rollback queue (Procfile: `worker: python -m workers`).

`python -m workers confirm-identity <target> [--by NAME]`: an operator confirms that the database the
target reaches now is the right one (the wrong-database guard; see docs/workers.md).
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys

import redis
from rq import Queue, Worker

from core import defaults
from core.config import ConfigError
from workers.engine.messages import CLI
from workers.postgres import identity, migration_history
from workers.runtime import errors, failures, watchdog
from workers.runtime.context import Context, context
from workers.runtime.errors import describe

log = logging.getLogger("workers")

# The worker checks on its work-horse this often (heartbeats; a dead horse is noticed at once anyway).
JOB_MONITORING_INTERVAL_SECONDS = 5


# How long the worker's pub/sub thread (RQ's commands: stop a job, shut down) waits for a message per poll. RQ
# waits 60 s, and its unsubscribe at shutdown can wait out that poll: a SIGTERM'd worker then took up to a minute
# to exit, past the 30 s a process manager (Heroku, Kubernetes) grants before SIGKILL.
PUBSUB_POLL_SECONDS = 1.0


class RollbackWorker(Worker):
    """RQ's forking worker, its pub/sub thread polling every PUBSUB_POLL_SECONDS so that a stop is prompt."""

    def subscribe(self) -> None:
        self.log.info("Worker %s: subscribing to channel %s", self.name, self.pubsub_channel_name)
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(
            sleep_time=PUBSUB_POLL_SECONDS, daemon=True,
            exception_handler=self._pubsub_exception_handler)  # type: ignore[assignment]  # RQ annotates it None


def worker_started(name: str, queue: str) -> str:
    return f"rollback worker {name} listening on queue {queue}"


def confirm_usage() -> str:
    return "usage: python -m workers confirm-identity <target> [--by NAME]"


def confirm_identity(ctx: Context, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers confirm-identity", description=confirm_usage())
    parser.add_argument("target")
    parser.add_argument("--by", default=getpass.getuser(), help="who confirms (recorded in migration_history)")
    args = parser.parse_args(argv)
    try:
        target = ctx.target(args.target)
        with ctx.connect(target) as conn:
            previous = identity.check(conn, ctx.redis, target.name)
            confirmed = identity.confirm(conn, ctx.redis, target.name, by=args.by)
            migration_history.record(conn, operation="identity_confirm", status="completed", executed_by=args.by,
                           details={"identity": confirmed.to_dict(), "previous": previous.to_dict()})
    except Exception as exc:
        print(f"error: {describe(exc, advice=CLI)}", file=sys.stderr)
        return 1
    print(identity.identity_confirmed(target.name, confirmed.to_dict(), args.by))
    return 0


def run_worker(ctx: Context) -> int:
    connection = redis.Redis.from_url(ctx.settings.redis_url)
    try:
        connection.ping()
    except redis.RedisError as exc:
        print(f"error: {errors.redis_unavailable(type(exc).__name__)}", file=sys.stderr)
        return 1
    queue = Queue(ctx.settings.queue_name, connection=connection)
    worker = RollbackWorker(
        [queue], connection=connection, exception_handlers=[failures.on_exception],
        work_horse_killed_handler=failures.on_horse_killed,
        job_monitoring_interval=JOB_MONITORING_INTERVAL_SECONDS,
        maintenance_interval=defaults.WORKER_MAINTENANCE_INTERVAL_SECONDS,
        # A short TTL makes an idle worker heartbeat often, so the bot notices a dead one within a minute.
        worker_ttl=defaults.WORKER_TTL_SECONDS,
    )
    log.info(worker_started(worker.name, queue.name))
    stop = watchdog.start(ctx)
    try:
        worker.work(logging_level="INFO")
    finally:
        stop.set()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        ctx = context()  # settings loaded once, before the fork: every work-horse inherits them
    except (ConfigError, ValueError) as exc:
        print(f"error: {errors.settings_error(str(exc))}", file=sys.stderr)
        return 2
    if argv and argv[0] == "confirm-identity":
        return confirm_identity(ctx, argv[1:])
    if argv:
        print(confirm_usage(), file=sys.stderr)
        return 2
    return run_worker(ctx)


if __name__ == "__main__":
    sys.exit(main())
