"""Who may ask, approve, reject and cancel, and when: pure rules over a request and the policy.

Each check returns None when allowed, or a Refusal naming the rule that said no; the wording lives in
bot/messages.py. The clicks are checked here on the server at click time: the button is only a
convenience, anyone could forge a click payload for a request id they saw.
"""

from __future__ import annotations

from collections.abc import Collection
from enum import StrEnum

from bot.verbs import Who
from core.config import Policy
from core.requests import Request, RequestStatus


class Refusal(StrEnum):
    CHANNEL_NOT_ALLOWED = "channel_not_allowed"
    REQUESTER_NOT_ALLOWED = "requester_not_allowed"
    SELF_APPROVAL = "self_approval"
    NOT_APPROVER = "not_approver"
    WRONG_CHANNEL = "wrong_channel"
    EXPIRED = "expired"
    ALREADY_DECIDED = "already_decided"
    NOT_ALLOWED_TO_CANCEL = "not_allowed_to_cancel"
    NOT_ALLOWED_MAINTENANCE = "not_allowed_maintenance"


def may_request(user: str, channel: str, policy: Policy, who: Who = Who.REQUESTERS) -> Refusal | None:
    """Commands are taken only in the incident channels; a verb for the configured requesters (if any)
    only from them. A verb for the requester of a request or an approver is checked against that
    request by its own rule (an approver need not be among the requesters)."""
    if policy.channels and channel not in policy.channels:
        return Refusal.CHANNEL_NOT_ALLOWED
    if who is Who.REQUESTERS and policy.requesters and user not in policy.requesters:
        return Refusal.REQUESTER_NOT_ALLOWED
    return None


def is_approver(user: str, policy: Policy, group_members: Collection[str] = ()) -> bool:
    return user in policy.approvers or (policy.approver_group is not None and user in group_members)


def needs_group_lookup(user: str, policy: Policy) -> bool:
    """Only ask Slack for the approver group's members when the user is not listed by id."""
    return policy.approver_group is not None and user not in policy.approvers


def _open(request: Request, now: float) -> Refusal | None:
    if request.status is not RequestStatus.PENDING:
        return Refusal.ALREADY_DECIDED
    if now >= request.expires_at:
        return Refusal.EXPIRED
    return None


def may_approve(
    request: Request, user: str, channel: str, now: float, policy: Policy, group_members: Collection[str] = ()
) -> Refusal | None:
    """Two people: the approver is an approver, not the requester, clicking in the request's channel."""
    if request.status is not RequestStatus.PENDING:
        return Refusal.ALREADY_DECIDED
    if user == request.requester:
        return Refusal.SELF_APPROVAL
    if not is_approver(user, policy, group_members):
        return Refusal.NOT_APPROVER
    if channel != request.channel:
        return Refusal.WRONG_CHANNEL
    return _open(request, now)


def _requester_or_approver(
    request: Request, user: str, channel: str, now: float, policy: Policy, group_members: Collection[str],
    otherwise: Refusal,
) -> Refusal | None:
    if request.status is not RequestStatus.PENDING:
        return Refusal.ALREADY_DECIDED
    if user != request.requester and not is_approver(user, policy, group_members):
        return otherwise
    if channel != request.channel:
        return Refusal.WRONG_CHANNEL
    return _open(request, now)


def may_reject(
    request: Request, user: str, channel: str, now: float, policy: Policy, group_members: Collection[str] = ()
) -> Refusal | None:
    """An approver, or the requester withdrawing, in the request's channel."""
    return _requester_or_approver(request, user, channel, now, policy, group_members, Refusal.NOT_APPROVER)


def may_cancel(
    request: Request, user: str, channel: str, now: float, policy: Policy, group_members: Collection[str] = ()
) -> Refusal | None:
    """The requester or an approver may cancel a pending request, from its channel."""
    return _requester_or_approver(request, user, channel, now, policy, group_members, Refusal.NOT_ALLOWED_TO_CANCEL)


def may_stop_watch(
    request: Request, user: str, channel: str, policy: Policy, group_members: Collection[str] = ()
) -> Refusal | None:
    """`cancel` of a request whose change is done ends its watch: its requester or an approver, from its channel."""
    if user != request.requester and not is_approver(user, policy, group_members):
        return Refusal.NOT_ALLOWED_TO_CANCEL
    if channel != request.channel:
        return Refusal.WRONG_CHANNEL
    return None


def may_switch_maintenance(
    latest: Request | None, user: str, policy: Policy, group_members: Collection[str] = ()
) -> Refusal | None:
    """The requester of the target's latest request (whatever became of it: a failed rollback leaves
    maintenance on) or an approver may switch the target's maintenance."""
    if is_approver(user, policy, group_members):
        return None
    if latest is not None and user == latest.requester:
        return None
    return Refusal.NOT_ALLOWED_MAINTENANCE
