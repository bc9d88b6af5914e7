"""Each Slack delivery is handled once: a retry (X-Slack-Retry-Num after a timeout) or a replay of the
same signed body within the signature's window runs nothing a second time.

A bolt middleware, after bolt's signature check: the body's digest (the envelope's payload in Socket
Mode, where Slack redelivers with `retry_attempt`) is recorded with SET NX; a body
seen before is acked and dropped. Two clicks are two bodies (each has its own trigger_id and
action_ts), so only true redeliveries are dropped. An Events API delivery (a mention of the bot) is
recorded by its `event_id` instead, which Slack keeps across its retries of the event, whatever the bytes.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable

from redis import Redis
from redis.exceptions import RedisError
from slack_bolt import BoltRequest, BoltResponse
from slack_bolt.middleware import Middleware

from core import defaults

log = logging.getLogger("rollback.bot")


def delivery_key(prefix: str, req: BoltRequest) -> str:
    event_id = req.body.get("event_id") if req.body.get("type") == "event_callback" else None
    if isinstance(event_id, str) and event_id:
        return f"{prefix}:delivery:event:{hashlib.sha256(event_id.encode('utf-8')).hexdigest()}"
    # HTTP: the signed body as sent. Socket Mode hands over the parsed payload only (raw_body is empty).
    body = req.raw_body or json.dumps(req.body, sort_keys=True)
    return f"{prefix}:delivery:{hashlib.sha256(body.encode('utf-8')).hexdigest()}"


class OncePerDelivery(Middleware):
    """A `Middleware` class rather than a function: for a function bolt builds every listener argument
    from the body on each request (a millisecond on the ack's path)."""

    def __init__(self, redis: Redis, prefix: str, memory_seconds: int) -> None:
        self.redis = redis
        self.prefix = prefix
        self.memory_seconds = memory_seconds

    def process(self, *, req: BoltRequest, resp: BoltResponse,
                next: Callable[[], BoltResponse]) -> BoltResponse | None:  # noqa: A002 - bolt's name
        try:
            first = self.redis.set(delivery_key(self.prefix, req), "1", nx=True, ex=self.memory_seconds)
        except RedisError:
            return next()  # the handler says that Redis is unreachable
        if first:
            return next()
        retry = (req.headers.get("x-slack-retry-num") or ["-"])[0]
        log.info("dropped a repeated delivery (retry %s, reason %s)", retry,
                 (req.headers.get("x-slack-retry-reason") or ["-"])[0])
        return BoltResponse(status=200, body="")


def once_per_delivery(
    redis: Redis, prefix: str = "rollback", memory_seconds: int = defaults.DELIVERY_MEMORY_SECONDS
) -> Middleware:
    return OncePerDelivery(redis, prefix, memory_seconds)
