"""The slack-bolt app: built by `build_bot(settings, ...)`, never at import time."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from redis import Redis
from rq import Queue
from slack_bolt import App
from slack_sdk import WebClient

from bot.deliveries import once_per_delivery
from bot.handlers import Handlers
from bot.lapsed import LapsedWatches
from bot.messages import APPROVE_ACTION, REJECT_ACTION
from bot.payloads import MENTION_EVENT, IgnoreMalformed
from bot.sweeper import ExpirySweeper
from core.config import Settings
from core.paging import pager_from
from core.requests import RequestStore

SLASH_COMMAND = "/rollback"
# Listener threads per web thread: a listener acks within microseconds, then keeps its thread for its
# Redis and Slack calls; spare threads let the next delivery's listener ack without waiting for those.
log = logging.getLogger("rollback.bot")


def _log_error(error: Exception) -> None:
    """Errors that escape a listener: logged by type and message (never a payload: it may quote input);
    Slack gets bolt's bare error status, never a traceback."""
    log.error("unhandled %s: %s", type(error).__name__, error)


@dataclass(frozen=True)
class Bot:
    app: App
    sweeper: ExpirySweeper
    listeners: ThreadPoolExecutor  # where listeners run; shut down with wait=True to drain their work


def build_bot(
    settings: Settings,
    *,
    signing_secret: str | None = None,
    web_client: WebClient | None = None,
    redis: Redis | None = None,
    queue: Queue | None = None,
    clock: Callable[[], float] = time.time,
    heartbeat_grace_seconds: float | None = None,
) -> Bot:
    """The bot and its expiry sweeper (not started). Signatures are always verified (bolt's request
    verification stays on); a malformed delivery is acked and ignored before any listener sees it
    (`bot/payloads.py`); a redelivered request runs nothing twice."""
    redis = redis if redis is not None else Redis.from_url(settings.redis_url)
    queue = queue if queue is not None else Queue(settings.queue_name, connection=redis)
    client = web_client or WebClient(
        token=settings.slack_bot_token, base_url=settings.slack_api_url or WebClient.BASE_URL
    )
    listeners = ThreadPoolExecutor(max_workers=settings.web_listener_threads,
                                   thread_name_prefix="listener")
    app = App(
        signing_secret=signing_secret if signing_secret is not None else settings.slack_signing_secret or "",
        client=client,
        # auth.test runs on the first request instead: the bot starts even while Slack is unreachable.
        token_verification_enabled=False,
        request_verification_enabled=True,
        # right after the signature check, before bolt's own middleware and any listener
        before_authorize=IgnoreMalformed(),
        listener_executor=listeners,
        # Each listener's ack part runs in the request's own thread and the response leaves as soon as
        # it returns; the work (lazy listeners) runs on `listeners` afterwards. No polling for the ack.
        process_before_response=True,
    )
    store = RequestStore(redis)
    grace = settings.worker_heartbeat_grace_seconds if heartbeat_grace_seconds is None else heartbeat_grace_seconds
    handlers = Handlers(settings, store=store, queue=queue, client=client, clock=clock,
                        heartbeat_grace_seconds=grace)
    app.error(_log_error)
    app.use(once_per_delivery(redis, store.prefix))
    app.command(SLASH_COMMAND)(ack=handlers.command_ack, lazy=[handlers.command_work])
    # Slack takes no slash command in a thread: there the bot is mentioned, with the same words
    app.event(MENTION_EVENT)(ack=handlers.ack_mention, lazy=[handlers.mention_work])
    app.action(APPROVE_ACTION)(ack=handlers.ack_click, lazy=[handlers.approve])
    app.action(REJECT_ACTION)(ack=handlers.ack_click, lazy=[handlers.reject])
    # A watch window no worker finished is ended by the sweeper, which pages: no worker may be left to.
    lapsed = LapsedWatches(settings, store, client, pager_from(settings), clock)
    sweeper = ExpirySweeper(store, handlers.announce_expiry, start_within_seconds=settings.policy.start_within_seconds,
                            clock=clock, close_watch=lapsed.close)
    return Bot(app=app, sweeper=sweeper, listeners=listeners)
