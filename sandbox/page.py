"""The sandbox's channel page: the static page, its live state, and its commands and clicks.

Served by the SlackApiServer next to the Web API. What a person does on the page reaches the bot
exactly as Slack would deliver it: a signed slash command, a signed `block_actions` payload, or, for a
message starting with `@rollback` (in the channel, or replying in a thread, where Slack takes no slash
command), the message itself and its signed `app_mention` event.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import urllib.error
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler
from importlib import resources
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from sandbox import messages
from sandbox.http_stub import send_bytes, send_json
from sandbox.signing import SlackRequestSender
from sandbox.slack_api import BOT_MENTION, BOT_USER_ID, SlackApiError, SlackApiServer, SlackUser

LONG_POLL_SECONDS = 20.0
# `@rollback status` or `@rollback-bot status`: the words after it are the command
TYPED_MENTION = re.compile(rf"^{re.escape(messages.MENTION_PREFIX)}(?:-bot)?(?=\s|$)\s*(.*)$", re.IGNORECASE | re.DOTALL)


class WorkerControl(Protocol):
    """The sandbox's worker as the page shows and drives it (sandbox.launcher.Sandbox)."""

    def worker_status(self) -> dict[str, Any]: ...

    def stop_worker(self) -> dict[str, Any]: ...

    def restart_worker(self) -> dict[str, Any]: ...


def _static(name: str) -> bytes:
    return resources.files("sandbox").joinpath("static", name).read_bytes()


class ChannelPage:
    """Attach with `ChannelPage(server, channel=..., people=...)`; give it the bot with `connect()`."""

    def __init__(self, server: SlackApiServer, *, channel: str, people: Iterable[SlackUser],
                 group_handles: Mapping[str, str] | None = None) -> None:
        self.server = server
        self.channel = channel
        self.people = list(people)
        self.group_handles = dict(group_handles or {})  # user group id -> handle, for `<!subteam^ID>` mentions
        self.sender: SlackRequestSender | None = None
        self.maintenance = False  # switched by the target's maintenance hook (an HTTP call here)
        # Scenario 4 (lost rows): the example app's bad deploy deletes rows; returns how many users went.
        self.lose_rows: Callable[[], int] | None = None
        self.worker: WorkerControl | None = None  # stopped and restarted from the page's header
        self._notes: list[dict[str, Any]] = []  # per-person notes: commands typed, bot unreachable
        self._lock = threading.Lock()
        server.page = self

    def connect(self, bot_url: str, signing_secret: str) -> None:
        self.sender = SlackRequestSender(bot_url, signing_secret, self.server)

    @property
    def health_url(self) -> str:
        """The example app's health check, for the target's `health_url`."""
        return f"{self.server.url}/sandbox/health"

    @property
    def maintenance_url(self) -> str:
        """The example app's maintenance switch: POST `<url>/on` and `<url>/off`."""
        return f"{self.server.url}/sandbox/maintenance"

    @staticmethod
    def handles(path: str) -> bool:
        return path == "/" or path.startswith("/sandbox/")

    def handle(self, handler: BaseHTTPRequestHandler, verb: str, path: str, body: bytes) -> None:
        if path == "/" and verb == "GET":
            send_bytes(handler, 200, _static("index.html"), "text/html; charset=utf-8")
        elif path == "/sandbox/state" and verb == "GET":
            query = {k: v[-1] for k, v in parse_qs(urlsplit(handler.path).query).items()}
            try:
                since = int(query.get("since", "-1"))
            except ValueError:
                send_json(handler, 400, {"ok": False, "error": messages.SINCE_NOT_A_NUMBER})
                return
            self.server.workspace.wait_for_change(since, LONG_POLL_SECONDS)
            send_json(handler, 200, self.state(query.get("user", "")))
        elif path == "/sandbox/health":
            send_json(handler, 200, {"ok": True, "maintenance": self.maintenance})
        elif path in ("/sandbox/maintenance/on", "/sandbox/maintenance/off") and verb == "POST":
            self.maintenance = path.endswith("/on")
            self.changed()
            send_json(handler, 200, {"ok": True, "maintenance": self.maintenance})
        elif path == "/sandbox/scenario/lose-rows" and verb == "POST" and self.lose_rows is not None:
            try:
                user = _form(body).get("user", "")
            except BadRequest as err:
                send_json(handler, 400, {"ok": False, "error": str(err)})
                return
            lost = self.lose_rows()
            self.server.post_as_user(self.channel, user or "U_SANDBOX", messages.rows_lost(lost))
            send_json(handler, 200, {"ok": True, "deleted": lost})
        elif path in ("/sandbox/worker/stop", "/sandbox/worker/restart") and verb == "POST":
            if self.worker is None:
                send_json(handler, 404, {"ok": False, "error": messages.NO_WORKER_CONTROL})
                return
            status = self.worker.stop_worker() if path.endswith("/stop") else self.worker.restart_worker()
            send_json(handler, 200, {"ok": True, "worker": status})
        elif path in ("/sandbox/command", "/sandbox/action") and verb == "POST":
            try:
                fields = _form(body)
            except BadRequest as err:
                send_json(handler, 400, {"ok": False, "error": str(err)})
                return
            do = self.command if path == "/sandbox/command" else self.action
            send_json(handler, 200, do(**fields))
        else:
            send_json(handler, 404, {"error": "not found"})

    # -- what the page shows ---------------------------------------------------------------------------

    def state(self, user: str) -> dict[str, Any]:
        ws = self.server.workspace
        version = ws.version
        messages = ws.messages(self.channel)
        roots = [m for m in messages if m.get("thread_ts", m["ts"]) == m["ts"]]
        for root in roots:
            root["replies"] = [m for m in messages if m.get("thread_ts") == root["ts"] and m["ts"] != root["ts"]]
        with self._lock:
            notes = [n for n in self._notes if n["user"] == user]
        return {
            "version": version,
            "channel": self.channel,
            "people": [{"id": p.id, "name": p.name, "title": p.title} for p in self.people],
            "names": {uid: u.name for uid, u in ws.users.items()} | {BOT_USER_ID: "rollback-bot"},
            "groups": self.group_handles,
            "messages": roots,
            "ephemerals": ws.ephemerals(self.channel, user) + notes,
            "bot_connected": self.sender is not None and self._bot_listening(),
            "maintenance": self.maintenance,
            "worker": self.worker.worker_status() if self.worker is not None else None,
        }

    def changed(self) -> None:
        """Wake the pages waiting for a change (something outside Slack's state changed)."""
        with self.server.workspace._lock:
            self.server.workspace._changed()

    def _bot_listening(self) -> bool:
        """Whether the bot's port takes connections: the page's header says so (the bot may have died)."""
        assert self.sender is not None
        address = urlsplit(self.sender.bot_url)
        try:
            socket.create_connection((address.hostname or "127.0.0.1", address.port or 80), timeout=0.5).close()
        except OSError:
            return False
        return True

    def _note(self, user: str, text: str) -> None:
        ws = self.server.workspace
        with ws._lock:
            note = {"user": user, "ts": ws._next_ts(), "text": text, "note": True, "blocks": []}
            with self._lock:
                self._notes.append(note)
            ws._changed()

    # -- what the person does --------------------------------------------------------------------------

    def command(self, *, user: str = "", text: str = "", thread_ts: str = "", **_: Any) -> dict[str, Any]:
        """What the person typed in the composer: in the channel, or replying in the thread `thread_ts`."""
        text = text.strip()
        typed_mention = TYPED_MENTION.match(text)
        if typed_mention is not None:
            words = typed_mention.group(1).strip()
            return self._deliver(user, "mention", lambda sender: sender.app_mention(
                f"{BOT_MENTION} {words}".strip(), user_id=user, channel_id=self.channel, thread_ts=thread_ts or None))
        if not text.startswith(messages.COMMAND_PREFIX):
            return {"ok": False, "error": messages.ONLY_ROLLBACK_COMMANDS}
        command, _space, rest = text.partition(" ")
        if thread_ts:  # as Slack: no slash command inside a thread
            return {"ok": False, "error": messages.not_in_threads(command)}
        return self._deliver(user, "request", lambda sender: sender.command(
            rest.strip(), user_id=user, channel_id=self.channel, command=command), typed=text)

    def action(self, *, user: str = "", action_id: str = "", value: str = "", message_ts: str = "",
               block_id: str = "", **_: Any) -> dict[str, Any]:
        return self._deliver(user, "click", lambda sender: sender.action(
            action_id, value, user_id=user, channel_id=self.channel, message_ts=message_ts,
            block_id=block_id or None))

    def _deliver(self, user: str, what: str, send: Callable[[SlackRequestSender], tuple[int, str]],
                 typed: str | None = None) -> dict[str, Any]:
        """Send a command or a click to the bot as `user`; the page hears how it went."""
        if user not in {p.id for p in self.people}:
            return {"ok": False, "error": messages.PICK_A_PERSON}
        if self.sender is None:
            return {"ok": False, "error": messages.BOT_NOT_CONNECTED}
        if typed is not None:
            self._note(user, messages.you_ran(typed))
        try:
            status, body = send(self.sender)
        except SlackApiError:  # the message could not be posted: its thread is gone
            return {"ok": False, "error": messages.NO_SUCH_THREAD}
        except (urllib.error.URLError, OSError) as err:
            self._note(user, messages.bot_did_not_answer(err))
            return {"ok": False, "error": messages.BOT_DID_NOT_ANSWER}
        if status != 200:
            self._note(user, messages.bot_refused(what, status))
            return {"ok": False, "error": messages.http_status(status)}
        self._show_ack(user, body)
        return {"ok": True}

    def _show_ack(self, user: str, body: str) -> None:
        """An ack with a message is shown the way Slack shows it: to the person, or in the channel."""
        if not body.strip():
            return
        message: Any
        try:
            message = json.loads(body)
        except ValueError:
            message = {"text": body}
        if not isinstance(message, dict) or not (message.get("text") or message.get("blocks")):
            return
        if message.get("response_type") == "in_channel":
            self.server.workspace.post_message(self.channel, message)
        else:
            self.server.workspace.post_ephemeral(self.channel, user, message)


class BadRequest(ValueError):
    """A page request the server cannot read; answered 400 with this one line."""


def _form(body: bytes) -> dict[str, str]:
    """The page's POST body: a JSON object of strings."""
    try:
        parsed = json.loads(body.decode("utf-8") or "{}")
    except ValueError:
        raise BadRequest(messages.BODY_NOT_JSON) from None
    if not isinstance(parsed, dict):
        raise BadRequest(messages.BODY_NOT_OBJECT)
    return {str(k): "" if v is None else str(v) for k, v in parsed.items()}
