"""The channel's current assessment of a target (Step 1), kept in Redis like a plan.

`/rollback status` saves what it found per (channel, target): the sessions that matter to a rollback,
each with its pid. `/rollback terminate <pid>` may name only a pid listed there: the bot checks before
it creates the request, and the worker checks again (the same pid, still the same session) before it
ends it. Used by the bot and the workers; pure Redis, no database driver.

Key: `<prefix>:assessment:<channel>:<target>`: JSON `{"saved_at", "sessions": [{pid, application, user,
state, age_s, query, why, tables, blocked_by, backend_start}]}`, expiring after `ttl_seconds`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis

from core import defaults


@dataclass(frozen=True)
class SavedAssessment:
    saved_at: float
    sessions: tuple[Mapping[str, Any], ...]

    def session(self, pid: int) -> Mapping[str, Any] | None:
        """The listed session with this pid, if the assessment named it."""
        return next((s for s in self.sessions if s.get("pid") == pid), None)


def _key(prefix: str, channel: str, target: str) -> str:
    return f"{prefix}:assessment:{channel}:{target}"


def save(conn: redis.Redis, channel: str, target: str, sessions: list[Mapping[str, Any]], *,
         prefix: str = "rollback", ttl_seconds: int = defaults.ASSESSMENT_TTL_SECONDS, now: float | None = None) -> None:
    payload = {"saved_at": time.time() if now is None else now, "sessions": list(sessions)}
    conn.set(_key(prefix, channel, target), json.dumps(payload, default=str), ex=ttl_seconds)


def current(conn: redis.Redis, channel: str, target: str, *, prefix: str = "rollback") -> SavedAssessment | None:
    raw = conn.get(_key(prefix, channel, target))
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        return SavedAssessment(float(data["saved_at"]), tuple(s for s in data["sessions"] if isinstance(s, dict)))
    except (ValueError, KeyError, TypeError):
        return None
