"""Which requests are due for the expiry sweeper: pure rules over a request and the time.

Three ways a request ends without anyone acting: nobody approved it before `expires_at`, or it was
approved but no worker started it within `start_within_seconds` (both announced the same way: buttons
replaced, a line in the thread, the target freed), or its watch window lapsed: no look happened (or
finished) by the deadline the workers wrote on the request, so nobody is watching and the sweeper ends the
watch as interrupted and pages (bot/lapsed.py). The I/O lives in bot/sweeper.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from core.requests import Request, RequestStatus


class Due(StrEnum):
    UNANSWERED = "unanswered"  # pending past its expiry (or already marked expired while pending)
    NOT_STARTED = "not_started"  # approved, but no worker started it in time
    WATCH_LAPSED = "watch_lapsed"  # in its watch window, and no worker looked by the watch's deadline


def due(request: Request, now: float, start_within_seconds: float) -> Due | None:
    if request.status is RequestStatus.PENDING and now >= request.expires_at:
        return Due.UNANSWERED
    if request.status is RequestStatus.EXPIRED and request.approver is None:
        # expired on the way by a click or a new request for the target: announce it if nobody has
        return Due.UNANSWERED
    if (
        request.status is RequestStatus.APPROVED
        and request.started_at is None
        and now >= (request.decided_at or request.created_at) + start_within_seconds
    ):
        return Due.NOT_STARTED
    if request.watching and watch_lapsed(request.watch, now):
        return Due.WATCH_LAPSED
    return None


def watch_lapsed(watch: Mapping[str, Any], now: float) -> bool:
    """A watch whose deadline passed: its next look never came, or the look under way never finished."""
    deadline = watch.get("deadline")
    return isinstance(deadline, int | float) and now >= deadline


def watched(request: Request) -> bool:
    """Pending, approved and running requests may still become due, and a watched one (its watch may lapse);
    any other is settled."""
    return request.watching or request.status in (RequestStatus.PENDING, RequestStatus.APPROVED,
                                                  RequestStatus.RUNNING)
