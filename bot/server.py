"""The bot's web server in HTTP mode: gunicorn with gthread workers serving `bot/wsgi.py`.

Processes (why gunicorn and these numbers: docs/bot.md, "The web server"):
- the master binds the socket (`web_backlog` connections may wait in it while every thread is busy),
  forks `web_processes` workers and replaces any that dies. It also runs the expiry sweeper, so there is
  one sweeper per server whatever the number of workers. Each sweep pass holds a lock that the master
  also takes before it forks (`os.register_at_fork`), so a worker is never forked while the sweeper is
  inside a lock (logging, a socket buffer) that the worker would then inherit held.
- each worker builds its own bolt app after the fork (its own Redis pool, Slack client and listener
  threads) and serves `web_threads` requests at a time.

SIGTERM: the master closes the socket and passes SIGTERM on; each worker stops accepting, finishes the
requests in flight, then drains its listeners' work after their acks (`worker_exit`), all within
`web_graceful_timeout_seconds`; then the master stops the sweeper (a pass under way finishes) and exits 0.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
from typing import Any

from gunicorn.app.base import BaseApplication

from bot.app import Bot, build_bot
from bot.sweeper import Sweeping
from bot.wsgi import EVENTS_PATH, WsgiApp, wsgi_app
from core.config import Settings

log = logging.getLogger("rollback.bot")

# A fork waits at most this long for a sweep pass to end (Slack slow to answer the sweeper's announcements)
# before it goes ahead anyway: replacing a dead worker matters more.
FORK_WAIT_SECONDS = 5.0
# On exit, a sweep pass under way gets this long to finish.
SWEEPER_STOP_SECONDS = 10.0
# The signals that stop gunicorn's master and its workers (graceful and not).
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGQUIT})


def bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class BotServer(BaseApplication):
    """`BotServer(settings).run()`: serve until SIGTERM / SIGINT, then exit (status 0 when clean)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sweep_lock = threading.Lock()
        self.sweeping: Sweeping | None = None
        self.bot: Bot | None = None  # in a worker: its own bot, built after the fork
        self._fork_holds_lock = False
        super().__init__()

    # -- gunicorn's application interface --------------------------------------------------------------

    def load_config(self) -> None:
        s = self.settings
        options: dict[str, Any] = {
            "bind": [bind_address(s.web_host, s.web_port)],
            "worker_class": "gthread",
            "workers": s.web_processes,
            "threads": s.web_threads,
            "backlog": s.web_backlog,
            "graceful_timeout": max(1, math.ceil(s.web_graceful_timeout_seconds)),
            "proc_name": "rollback-bot",
            "errorlog": "-",
            "loglevel": "info",
            # no runtime control socket: one per host path, and nothing here needs it
            "control_socket_disable": True,
            "when_ready": self.when_ready,
            "post_worker_init": self.post_worker_init,
            "worker_exit": self.worker_exit,
            "on_exit": self.on_exit,
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> WsgiApp:
        """Called in each worker after the fork: the worker's own bot."""
        self.bot = build_bot(self.settings)
        return wsgi_app(self.bot.app, signing_secret=self.settings.slack_signing_secret or "")

    # -- hooks -----------------------------------------------------------------------------------------

    def when_ready(self, arbiter: Any) -> None:
        """In the master, once the socket is bound and before the first fork: start the sweeper."""
        os.register_at_fork(before=self._before_fork, after_in_parent=self._after_fork_in_parent)
        sweeper = build_bot(self.settings).sweeper
        self.sweeping = sweeper.start(self.settings.sweep_interval_seconds, busy=self.sweep_lock)
        log.info("rollback-bot: listening on http://%s%s, queue %s, %d processes x %d threads; "
                 "expiry sweeper every %ss in the master (pid %d)",
                 bind_address(self.settings.web_host, self.settings.web_port), EVENTS_PATH,
                 self.settings.queue_name, self.settings.web_processes, self.settings.web_threads,
                 self.settings.sweep_interval_seconds, os.getpid())

    def post_worker_init(self, worker: Any) -> None:
        """In a new worker, once its own signal handlers are in: the stop signals held since the fork arrive now."""
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)

    def worker_exit(self, arbiter: Any, worker: Any) -> None:
        """In a worker that stops: its requests are answered; let its listeners finish what follows the ack."""
        if self.bot is not None:
            self.bot.listeners.shutdown(wait=True)

    def on_exit(self, arbiter: Any) -> None:
        """In the master, after the workers have stopped."""
        if self.sweeping is None:
            return
        if self.sweeping.stop(SWEEPER_STOP_SECONDS):
            log.info("rollback-bot: expiry sweeper stopped")
        else:
            log.error("rollback-bot: expiry sweeper still busy after %ss; exiting anyway", SWEEPER_STOP_SECONDS)
        self.sweeping = None

    def _before_fork(self) -> None:
        # Held across the fork: until the child has its own handlers it runs the master's, which would queue
        # a SIGTERM in the child's copy of the master's queue, lost (the worker would serve on). Blocked,
        # it stays pending: the master gets it after the fork, the child in `post_worker_init`.
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        self._fork_holds_lock = self.sweep_lock.acquire(timeout=FORK_WAIT_SECONDS)

    def _after_fork_in_parent(self) -> None:
        if self._fork_holds_lock:
            self._fork_holds_lock = False
            self.sweep_lock.release()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
