"""A watch window nobody finished: ended by the bot's expiry sweeper, truthfully, and paged.

At every look the workers write a deadline on the request (`Request.watch`, workers/verbs/watch.py): past it,
the next look never came or the one under way never finished, because its worker died, or every worker did.
A worker that comes back carries on before the deadline; after it the bot ends the watch, since no worker may
come back at all: it claims the close (`core.requests.WATCH_CLOSE_STEP`, the claim the workers close with, so
exactly one closes it), pages with the request's dedup key (the same incident as any earlier page of the
request), says in the thread what was last seen and that nobody watches the rest, mentions the escalation
contacts, and marks the watch ended (the request is done: its change succeeded and was verified; the outcome
says the watch was interrupted). Paged first and made final last: a bot that dies half-way leaves it for the next sweep once the
claim lapses. The bot holds no database credentials, so this ending is in the thread and the request record,
not in migration_history.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from slack_sdk import WebClient

from bot import links, messages
from core import defaults
from core.config import Settings
from core.paging import Pager, dedup_key
from core.requests import WATCH_CLOSE_STEP, Request, RequestStore

log = logging.getLogger("rollback.bot")


class LapsedWatches:
    def __init__(self, settings: Settings, store: RequestStore, client: WebClient, pager: Pager,
                 clock: Callable[[], float]) -> None:
        self.settings = settings
        self.store = store
        self.client = client
        self.pager = pager
        self.clock = clock

    def close(self, request: Request) -> Request:
        """End a lapsed watch as interrupted (the sweeper found its deadline passed); returns the record."""
        if not self.store.claim(request.id, WATCH_CLOSE_STEP, defaults.WATCH_CLOSE_CLAIM_SECONDS):
            return request  # a worker (or another bot process) is closing it right now
        current = self.store.get(request.id)
        if current is None or not current.watching:
            return current or request  # closed between the sweep's read and the claim
        watch = current.watch
        target = self.settings.targets.get(current.target)
        contacts = self.settings.contacts_for(target) if target else self.settings.escalation
        reason = messages.watch_lapsed_reason(watch)
        seen = messages.watch_last_seen(watch)
        link = links.permalink(self.client, current.channel, current.thread_ts)
        result = self.pager.trigger(
            dedup_key(current.id), messages.watch_lapsed_summary(current, reason), component=current.target,
            links=[{"href": link, "text": "Slack incident thread"}] if link else [],
            details={"request_id": current.id, "reason": reason, "last_seen": seen},
        )
        if current.thread_ts:
            self.client.chat_postMessage(
                channel=current.channel, thread_ts=current.thread_ts, reply_broadcast=True,
                text=messages.watch_lapsed_line(current, reason, seen, contacts, result.ok, result.detail))
        log.warning("watch of %s lapsed (%s); paged: %s", current.id, reason, result.ok)
        return self.store.end_watch(current.id, "interrupted",
                                    outcome=f"{current.outcome or 'done'}; {messages.watch_lapsed_outcome(reason)}")

