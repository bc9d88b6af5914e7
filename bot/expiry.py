"""Which requests are due for the expiry sweeper: pure rules over a request and the time.

Two ways a request ends without anyone acting: nobody approved it before `expires_at`, or it was
approved but no worker started it within `start_within_seconds`. Both are announced the same way
(buttons replaced, a line in the thread, the target freed); the I/O lives in bot/sweeper.py.
"""

from __future__ import annotations

from enum import StrEnum

from core.requests import Request, RequestStatus


class Due(StrEnum):
    UNANSWERED = "unanswered"  # pending past its expiry (or already marked expired while pending)
    NOT_STARTED = "not_started"  # approved, but no worker started it in time


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
    return None


def watched(request: Request) -> bool:
    """Pending and approved requests may still become due; any other status is settled."""
    return request.status in (RequestStatus.PENDING, RequestStatus.APPROVED)
