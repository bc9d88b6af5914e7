"""The workers' paging: a failed step's page and the escalation mention in the thread. The PagerDuty client
itself (one incident per request, retried on 429/5xx) is core/paging.py, shared with the bot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from core.paging import Pager, PageResult, dedup_key, pager_from
from workers import messages
from workers.runtime.progress import Progress

__all__ = ["Pager", "PageResult", "check_key", "check_page_summary", "dedup_key", "escalate", "page_summary", "pager_from"]


def page_summary(target: str, version: str | None, step: str, error: str) -> str:
    text = f"rollback-bot: {messages.step_name(step)} failed on {target}"
    if version:
        text += f" (rolling back to {version})"
    text += f": {error}"
    return text[:1000]  # PagerDuty truncates summaries at 1024 characters


def check_page_summary(what: str, target: str, error: str) -> str:
    return f"rollback-bot: {what} of {target} cannot even be asked for, its provider's API is failing: {error}"[:1000]


def check_key(target: str, kind: str) -> str:
    """Per target and recovery kind: everyone who asks again while the provider's API is down meets one incident."""
    return f"rollback-bot/check/{kind}/{target}"


def escalate(
    pager: Pager,
    progress: Progress,
    *,
    key: str,
    target: str,
    version: str | None,
    step: str,
    error: str,
    contacts: Sequence[str],
    details: Mapping[str, Any] | None = None,
) -> PageResult:
    """Page (with a link to the thread) and mention the escalation contacts in the thread."""
    links = []
    permalink = progress.permalink()
    if permalink:
        links.append({"href": permalink, "text": "Slack incident thread"})
    result = pager.trigger(
        key,
        page_summary(target, version, step, error),
        component=target,
        links=links,
        details={"target": target, "version": version, "failed_step": step, "error": error, **(details or {})},
    )
    progress.post(messages.escalation_mention(contacts, step, result.ok, result.detail))
    return result
