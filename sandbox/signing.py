"""Slash commands, button clicks and Events API deliveries (a mention of the bot, the URL check) sent to the
bot as Slack sends them: really signed HTTP.

The signature is made with slack_sdk's own `SignatureVerifier.generate_signature`, so the bot's
verification is exercised exactly as in production. Timestamp and secret can be overridden to
forge stale or wrongly signed requests in tests.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from typing import Any
from urllib.parse import urlencode

from slack_sdk.signature import SignatureVerifier

from sandbox.slack_api import TEAM_ID, SlackApiServer

SEND_TIMEOUT_SECONDS = 10.0
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"  # the Events API's bodies


class SlackRequestSender:
    def __init__(self, bot_url: str, signing_secret: str, api_server: SlackApiServer) -> None:
        """`bot_url`: the bot's request URL (e.g. http://127.0.0.1:3000/slack/events)."""
        self.bot_url = bot_url
        self.signing_secret = signing_secret
        self.api_server = api_server

    def _user_name(self, user_id: str) -> str:
        user = self.api_server.workspace.users.get(user_id)
        return user.name if user else user_id.lower()

    def command(
        self,
        text: str,
        *,
        user_id: str,
        channel_id: str,
        command: str = "/rollback",
        user_name: str | None = None,
        timestamp: int | None = None,
        secret: str | None = None,
    ) -> tuple[int, str]:
        """POST a slash command; returns (HTTP status, response body)."""
        form = {
            "token": "deprecated-verification-token",
            "team_id": TEAM_ID,
            "team_domain": "sandbox",
            "channel_id": channel_id,
            "channel_name": channel_id.lower(),
            "user_id": user_id,
            "user_name": user_name or self._user_name(user_id),
            "command": command,
            "text": text,
            "api_app_id": "A_ROLLBACK",
            "response_url": self.api_server.response_url(channel=channel_id, user=user_id),
            "trigger_id": uuid.uuid4().hex,
        }
        return self.send(urlencode(form), timestamp=timestamp, secret=secret)

    def action(
        self,
        action_id: str,
        value: str,
        *,
        user_id: str,
        channel_id: str,
        message_ts: str,
        block_id: str | None = None,
        thread_ts: str | None = None,
        timestamp: int | None = None,
        secret: str | None = None,
    ) -> tuple[int, str]:
        """POST a `block_actions` payload for a button click on the message `message_ts`."""
        message: dict[str, Any] = {"type": "message", "ts": message_ts}
        for stored in self.api_server.messages(channel_id):
            if stored["ts"] == message_ts:
                message = {k: v for k, v in stored.items() if k != "channel"}
        thread_ts = thread_ts or message.get("thread_ts")
        action_ts = f"{time.time():.6f}"
        payload = {
            "type": "block_actions",
            "team": {"id": TEAM_ID, "domain": "sandbox"},
            "user": {"id": user_id, "username": self._user_name(user_id), "name": self._user_name(user_id),
                     "team_id": TEAM_ID},
            "api_app_id": "A_ROLLBACK",
            "token": "deprecated-verification-token",
            "container": {"type": "message", "message_ts": message_ts, "channel_id": channel_id,
                          "is_ephemeral": False, **({"thread_ts": thread_ts} if thread_ts else {})},
            "trigger_id": uuid.uuid4().hex,
            "channel": {"id": channel_id, "name": channel_id.lower()},
            "message": message,
            "response_url": self.api_server.response_url(channel=channel_id, user=user_id, message_ts=message_ts),
            "actions": [{
                "type": "button",
                "action_id": action_id,
                "block_id": block_id or _block_id_of(message, action_id) or "actions",
                "value": value,
                "action_ts": action_ts,
            }],
        }
        return self.send(urlencode({"payload": json.dumps(payload)}), timestamp=timestamp, secret=secret)

    def app_mention(
        self,
        text: str,
        *,
        user_id: str,
        channel_id: str,
        thread_ts: str | None = None,
        bot_id: str | None = None,
        subtype: str | None = None,
    ) -> tuple[int, str]:
        """Post a message mentioning the bot (`text` as Slack spells it: `<@U_ROLLBACKBOT> status prod`) as
        `user_id`, in the thread `thread_ts` if given, then deliver its `app_mention` event as the Events API
        does (a signed JSON `event_callback`); returns (HTTP status, response body)."""
        body = self.api_server.mention(channel_id, user_id, text, thread_ts=thread_ts, bot_id=bot_id, subtype=subtype)
        return self.send(json.dumps(body), content_type=JSON)

    def url_verification(self, challenge: str) -> tuple[int, str]:
        """The Events API's check of the request URL when it is saved in the app's settings."""
        body = {"token": "deprecated-verification-token", "challenge": challenge, "type": "url_verification"}
        return self.send(json.dumps(body), content_type=JSON)

    def send(self, body: str, *, timestamp: int | None = None, secret: str | None = None,
             content_type: str = FORM) -> tuple[int, str]:
        """POST a body to the bot, signed with `secret` (default: the right one) at `timestamp`."""
        ts = str(int(time.time()) if timestamp is None else timestamp)
        signature = SignatureVerifier(secret or self.signing_secret).generate_signature(timestamp=ts, body=body)
        request = urllib.request.Request(
            self.bot_url,
            data=body.encode("utf-8"),
            method="POST",
            headers={
                "Content-Type": content_type,
                "X-Slack-Request-Timestamp": ts,
                "X-Slack-Signature": signature or "",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=SEND_TIMEOUT_SECONDS) as response:
                return response.status, response.read().decode("utf-8", errors="replace")
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode("utf-8", errors="replace")


def _block_id_of(message: dict[str, Any], action_id: str) -> str | None:
    """The block holding the button, as Slack reports it in the payload."""
    for block in message.get("blocks") or []:
        for element in block.get("elements") or []:
            if isinstance(element, dict) and element.get("action_id") == action_id:
                return str(block.get("block_id") or "") or None
    return None
