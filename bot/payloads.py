"""What a delivery must look like before any listener sees it.

The bot handles three kinds of delivery: the `/rollback` slash command, a click on its buttons
(`block_actions`) and, from the Events API, a mention of the bot (`event_callback` carrying an
`app_mention`; plus Slack's `url_verification` of the request URL). `problem(body)` says, in a few words
naming fields but never their values, why a parsed body is not one of them, or returns None when every
field the listeners and bolt's matchers and middleware read is there with the right type. Any other event
is refused the same way: acked, so that Slack does not deliver it again, and ignored. `IgnoreMalformed` runs it as bolt middleware right after the signature check
(`App(before_authorize=...)`, so before authorization, bolt's own middleware and the listeners): a
malformed delivery is acked with an empty 200, logged once at warning, and nothing else happens (no
request, no job, no Slack call). A body that cannot even be parsed is answered in the web layer
(`bot/wsgi.py`).

It is a `Middleware` class, not a function: for a function middleware bolt first builds every listener
argument from the body (`body["actions"][0]` among them), which raises on exactly the bodies to refuse.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import BoltRequest, BoltResponse
from slack_bolt.middleware import Middleware

from core import defaults

MENTION_EVENT = "app_mention"  # the one event the bot subscribes to (slack-app-manifest.yaml)

log = logging.getLogger("rollback.bot")


def _text(value: Any, *, empty: bool = False) -> bool:
    return isinstance(value, str) and (empty or bool(value))


def depth_exceeds(body: Any, limit: int) -> bool:
    """Whether `body` nests containers deeper than `limit` (iterative: a deep body cannot blow the stack)."""
    stack: list[tuple[Any, int]] = [(body, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def slash_command_problem(body: dict[str, Any]) -> str | None:
    if "type" in body:  # Slack sends none; bolt would take it for another kind and read fields it lacks
        return "slash command with a type field"
    if not _text(body.get("command")):
        return "slash command without a command name"
    for name in ("user_id", "channel_id", "response_url"):
        if not _text(body.get(name)):
            return f"slash command without {name}"
    if "text" in body and not _text(body["text"], empty=True):
        return "slash command whose text is not a string"
    return None


def block_actions_problem(body: dict[str, Any]) -> str | None:
    user = body.get("user")
    if not isinstance(user, dict) or not _text(user.get("id")):
        return "click without user.id"
    actions = body.get("actions")
    if not isinstance(actions, list) or not actions:
        return "click without actions"
    for action in actions:
        if not isinstance(action, dict) or not _text(action.get("action_id")):
            return "click whose action has no action_id"
        if "value" in action and not _text(action["value"], empty=True):
            return "click whose action value is not a string"
        if "block_id" in action and not _text(action["block_id"], empty=True):
            return "click whose action block_id is not a string"
    for name in ("channel", "container", "message"):
        if name in body and not isinstance(body[name], dict):
            return f"click whose {name} is not an object"
    channel, container, message = body.get("channel") or {}, body.get("container") or {}, body.get("message") or {}
    if not (_text(channel.get("id")) or _text(container.get("channel_id"))):
        return "click without channel.id or container.channel_id"
    if "id" in channel and not _text(channel["id"]):
        return "click whose channel.id is not a string"
    for where, field, name in ((container, "container", "message_ts"), (container, "container", "channel_id"),
                               (container, "container", "thread_ts"), (message, "message", "ts"),
                               (message, "message", "thread_ts")):
        if name in where and not _text(where[name], empty=True):
            return f"click whose {field}.{name} is not a string"
    return None


def url_verification_problem(body: dict[str, Any]) -> str | None:
    if "event" in body:  # bolt's self-event middleware, before the URL check, reads it as an object
        return "url_verification carrying an event"
    if not _text(body.get("challenge")):
        return "url_verification without a challenge"
    return None


def event_callback_problem(body: dict[str, Any]) -> str | None:
    if "command" in body:  # bolt would match it to the slash command's listener
        return "event_callback carrying a command"
    if not _text(body.get("event_id")):
        return "event without event_id"
    for name in ("team_id", "api_app_id", "enterprise_id"):
        if body.get(name) is not None and not _text(body[name], empty=True):
            return f"event whose {name} is not a string"
    authorizations = body.get("authorizations")
    if authorizations is not None and not (isinstance(authorizations, list)
                                           and all(isinstance(a, dict) for a in authorizations)):
        return "event whose authorizations are not a list of objects"
    event = body.get("event")
    if not isinstance(event, dict):
        return "event_callback whose event is not an object"
    if event.get("type") != MENTION_EVENT:
        return "an event other than app_mention"
    for name in ("channel", "ts"):
        if not _text(event.get(name)):
            return f"mention without {name}"
    if not (_text(event.get("user")) or _text(event.get("bot_id"))):
        return "mention without user"  # a bot's message may come without one; its bot_id then
    if not _text(event.get("text"), empty=True):
        return "mention whose text is not a string"
    for name in ("user", "thread_ts", "event_ts", "bot_id", "subtype", "team", "user_team"):
        if name in event and event[name] is not None and not _text(event[name], empty=True):
            return f"mention whose {name} is not a string"
    return None


def problem(body: Any, *, max_depth: int = defaults.MAX_PAYLOAD_DEPTH) -> str | None:
    """Why `body` is not a delivery this bot handles (a few words, no values), or None when it is."""
    if not isinstance(body, dict):
        return "body is not an object"
    if depth_exceeds(body, max_depth):
        return f"body nested deeper than {max_depth} levels"
    if body.get("type") == "event_callback":
        return event_callback_problem(body)
    if body.get("type") == "url_verification":
        return url_verification_problem(body)
    if "event" in body:  # bolt's own middleware reads body["event"] as an object; commands and clicks carry none
        return "a command or click carrying an event"
    if body.get("type") == "block_actions":
        return block_actions_problem(body)
    if "command" in body:
        return slash_command_problem(body)
    return "neither a slash command, a button click nor an event"


class IgnoreMalformed(Middleware):
    """Bolt middleware: a delivery that is not well formed is acked (200) and dropped, logged once."""

    def process(self, *, req: BoltRequest, resp: BoltResponse,
                next: Callable[[], BoltResponse]) -> BoltResponse | None:  # noqa: A002 - bolt's name
        found = problem(req.body)
        if found is None:
            return next()
        log.warning("ignored a signed delivery: %s", found)
        return BoltResponse(status=200, body="")
