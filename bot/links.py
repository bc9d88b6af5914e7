"""Links to Slack threads, for cards, refusals and pages: a courtesy, never a reason to fail."""

from __future__ import annotations

import logging

from slack_sdk import WebClient

log = logging.getLogger("rollback.bot")


def permalink(client: WebClient, channel: str, ts: str | None) -> str | None:
    """The permalink of the message `ts` in `channel`, or None (no ts, or Slack would not say)."""
    if not ts:
        return None
    try:
        return str(client.chat_getPermalink(channel=channel, message_ts=ts)["permalink"])
    except Exception:  # the answer, the refusal or the page goes out without it
        log.warning("no permalink for %s in %s", ts, channel)
        return None
