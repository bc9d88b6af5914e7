"""Who typed which words where: the `/rollback` slash command and a mention of the bot alike.

Slack refuses slash commands inside threads, so in an incident thread the bot is mentioned instead
(`@rollback-bot status prod`, the same words as after `/rollback`), delivered as an Events API
`app_mention`. Both become one `Invocation`; everything after (the verb table, parsing, who may ask,
refusals, carrying the verb out) is the same code path (bot/handlers.py). A mention carries the thread it
was typed in: its answers go there instead of into a new root message.

Pure: no Slack, no Redis. The bodies were shape-checked before (bot/payloads.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# A message addressed to the bot starts with its mention: `<@U123>` (older clients: `<@U123|name>`).
LEADING_MENTION = re.compile(r"^\s*<@([A-Z0-9_]+)(?:\|[^>]*)?>")
# Subtypes of messages people write; any other (bot_message, message_changed, ...) is not a person asking.
PEOPLES_SUBTYPES = frozenset({"thread_broadcast", "file_share"})


@dataclass(frozen=True)
class Invocation:
    user: str
    channel: str
    text: str  # the words after `/rollback` or after the mention, as Slack delivered them (escaped)
    thread_ts: str | None = None  # the thread it was typed in (a mention there): everything is answered in it


@dataclass(frozen=True)
class Ignored:
    """A mention that asks nothing of the bot (a bot's own message, say); `why` is for the log."""

    why: str


@dataclass(frozen=True)
class NotAddressed:
    """A person mentioned the bot somewhere other than at the start: told how to ask, nothing else done."""

    user: str
    channel: str
    thread_ts: str | None


def from_command(command: Mapping[str, Any]) -> Invocation:
    """A slash command (never in a thread: Slack does not take them there)."""
    return Invocation(user=command["user_id"], channel=command["channel_id"], text=command.get("text") or "")


def from_mention(event: Mapping[str, Any], bot_user_id: str | None) -> Invocation | Ignored | NotAddressed:
    """An `app_mention` event: the words after the leading mention of the bot, in the event's thread.

    Bots are never taken at their word, the bot itself least of all (its messages may name it). Only a
    message that starts with the mention is a command; "don't @rollback-bot execute yet" is not."""
    user = event.get("user")
    if event.get("bot_id") or not user:
        return Ignored("a bot's message")
    subtype = event.get("subtype")
    if subtype and subtype not in PEOPLES_SUBTYPES:
        return Ignored(f"a message of subtype {subtype}")
    if bot_user_id and user == bot_user_id:
        return Ignored("the bot's own message")
    channel, thread_ts = str(event["channel"]), event.get("thread_ts") or None
    text = str(event.get("text") or "")
    lead = LEADING_MENTION.match(text)
    if lead is None or (bot_user_id is not None and lead.group(1) != bot_user_id):
        return NotAddressed(user=str(user), channel=channel, thread_ts=thread_ts)
    return Invocation(user=str(user), channel=channel, text=text[lead.end():].strip(), thread_ts=thread_ts)
