"""A local stand-in for the Slack Web API, and the server of the sandbox's channel page.

It speaks exactly the methods listed in docs/ARCHITECTURE.md, in the shapes slack_sdk's `WebClient`
expects, so the bot and the workers run unchanged with `SLACK_API_URL` pointed at `api_url`.
Slash-command `response_url` posts land at `/response/<id>`. The channel page (sandbox/static/index.html)
and its JSON endpoints are served from the same address (see sandbox/page.py).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from sandbox.http_stub import QuietHTTPServer, one_line, read_body, send_bytes, send_json, send_text

BOT_USER_ID = "U_ROLLBACKBOT"
BOT_ID = "B_ROLLBACKBOT"
BOT_MENTION = f"<@{BOT_USER_ID}>"  # how a message that mentions the bot spells it
TEAM_ID = "T_SANDBOX"
APP_ID = "A_ROLLBACK"

T = TypeVar("T")


@dataclass
class SlackUser:
    id: str
    name: str
    real_name: str = ""
    title: str = ""

    def to_api(self) -> dict[str, Any]:
        real_name = self.real_name or self.name
        return {
            "id": self.id,
            "team_id": TEAM_ID,
            "name": self.name,
            "real_name": real_name,
            "is_bot": False,
            "deleted": False,
            "tz": "UTC",
            "profile": {"display_name": self.name, "real_name": real_name, "title": self.title},
        }


@dataclass
class StoredFile:
    id: str
    filename: str
    title: str = ""
    content: bytes = b""
    channel: str | None = None
    thread_ts: str | None = None
    completed: bool = False

    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def to_api(self, root_url: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.filename,
            "title": self.title or self.filename,
            "size": len(self.content),
            "mimetype": "text/plain",
            "url_private": f"{root_url}/files/{self.id}/{self.filename}",
            "permalink": f"{root_url}/files/{self.id}/{self.filename}",
        }


@dataclass
class Response:
    """A post to a slash command's or an action's `response_url`."""

    id: str
    channel: str
    user: str
    message_ts: str | None
    body: dict[str, Any] = field(default_factory=dict)


class SlackApiError(Exception):
    """An API error answered as `{"ok": false, "error": code}`."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def _as_list(value: Any) -> Any:
    """Blocks and attachments arrive as JSON strings in form bodies and as lists in JSON bodies."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise SlackApiError("invalid_blocks") from None
    return value


def _truthy(value: Any) -> bool:
    return value in (True, 1, "1", "true", "True")


class SlackWorkspace:
    """The channel state behind the emulator: messages, threads, ephemerals, files. Thread-safe."""

    def __init__(self, users: Iterable[SlackUser], usergroups: Mapping[str, Iterable[str]]) -> None:
        self.users = {u.id: u for u in users}
        self.usergroups = {k: list(v) for k, v in usergroups.items()}
        self._lock = threading.Condition()
        self._messages: dict[str, list[dict[str, Any]]] = {}
        self._ephemerals: list[dict[str, Any]] = []
        self._responses: dict[str, Response] = {}
        self._files: dict[str, StoredFile] = {}
        self._calls: list[tuple[str, dict[str, Any]]] = []
        self._last_us = 0
        self._ids = itertools.count(1)
        self.version = 0  # bumped on every change, so the page can long-poll

    # -- bookkeeping -------------------------------------------------------------------------------

    def _changed(self) -> None:
        self.version += 1
        self._lock.notify_all()

    def _next_ts(self) -> str:
        # Unique and increasing, in Slack's "seconds.microseconds" shape.
        self._last_us = max(self._last_us + 100, int(time.time() * 1_000_000))
        return f"{self._last_us // 1_000_000}.{self._last_us % 1_000_000:06d}"

    def next_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):08d}"

    def record_call(self, method: str, args: dict[str, Any]) -> None:
        with self._lock:
            self._calls.append((method, args))

    def wait_for_change(self, since: int, timeout: float) -> int:
        with self._lock:
            self._lock.wait_for(lambda: self.version > since, timeout=timeout)
            return self.version

    def _find(self, channel: str, ts: str) -> dict[str, Any] | None:
        for message in self._messages.get(channel, []):
            if message["ts"] == ts:
                return message
        return None

    # -- operations behind the API -----------------------------------------------------------------

    def post_message(self, channel: str, args: Mapping[str, Any], *, user: str = BOT_USER_ID,
                     bot_id: str | None = None) -> dict[str, Any]:
        with self._lock:
            thread_ts = args.get("thread_ts") or None
            message: dict[str, Any] = {
                "type": "message",
                "channel": channel,
                "ts": self._next_ts(),
                "user": user,
                "text": args.get("text") or "",
                "blocks": _as_list(args.get("blocks")) or [],
            }
            if user == BOT_USER_ID or bot_id:
                message["bot_id"] = bot_id or BOT_ID
            if args.get("attachments"):
                message["attachments"] = _as_list(args["attachments"])
            if args.get("files"):
                message["files"] = list(args["files"])
            if thread_ts:
                root = self._find(channel, thread_ts)
                if root is None or root.get("thread_ts", root["ts"]) != root["ts"]:
                    raise SlackApiError("thread_not_found")
                message["thread_ts"] = thread_ts
                message["parent_user_id"] = root["user"]
                if _truthy(args.get("reply_broadcast")):
                    message["subtype"] = "thread_broadcast"
                    message["reply_broadcast"] = True
                root["thread_ts"] = root["ts"]
                root["reply_count"] = root.get("reply_count", 0) + 1
                root["latest_reply"] = message["ts"]
            self._messages.setdefault(channel, []).append(message)
            self._changed()
            return dict(message)

    def update_message(self, channel: str, ts: str, args: Mapping[str, Any]) -> dict[str, Any]:
        with self._lock:
            message = self._find(channel, ts)
            if message is None:
                raise SlackApiError("message_not_found")
            if "text" in args:
                message["text"] = args.get("text") or ""
            if "blocks" in args:
                message["blocks"] = _as_list(args.get("blocks")) or []
            message["edited"] = {"user": BOT_USER_ID, "ts": self._next_ts()}
            self._changed()
            return dict(message)

    def delete_message(self, channel: str, ts: str) -> None:
        with self._lock:
            messages = self._messages.get(channel, [])
            self._messages[channel] = [m for m in messages if m["ts"] != ts]
            self._changed()

    def post_ephemeral(self, channel: str, user: str, args: Mapping[str, Any]) -> dict[str, Any]:
        with self._lock:
            ephemeral = {
                "type": "message",
                "channel": channel,
                "user": user,
                "ts": self._next_ts(),
                "text": args.get("text") or "",
                "blocks": _as_list(args.get("blocks")) or [],
                "thread_ts": args.get("thread_ts") or None,
            }
            self._ephemerals.append(ephemeral)
            self._changed()
            return dict(ephemeral)

    def history(self, channel: str) -> list[dict[str, Any]]:
        """Channel-level messages (roots and broadcast replies), newest first, like the API."""
        with self._lock:
            visible = [
                dict(m) for m in self._messages.get(channel, [])
                if m.get("thread_ts", m["ts"]) == m["ts"] or m.get("reply_broadcast")
            ]
        return list(reversed(visible))

    def replies(self, channel: str, ts: str) -> list[dict[str, Any]]:
        with self._lock:
            root = self._find(channel, ts)
            if root is None:
                raise SlackApiError("thread_not_found")
            return [dict(root)] + [
                dict(m) for m in self._messages.get(channel, []) if m.get("thread_ts") == ts and m["ts"] != ts
            ]

    def register_response_url(self, *, channel: str, user: str, message_ts: str | None = None) -> str:
        with self._lock:
            response_id = self.next_id("R")
            self._responses[response_id] = Response(response_id, channel, user, message_ts)
            return response_id

    def respond(self, response_id: str, body: dict[str, Any]) -> None:
        """What Slack does with a `response_url` post: ephemeral, in channel, replace or delete."""
        with self._lock:
            target = self._responses.get(response_id)
            if target is None:
                raise SlackApiError("no_such_response_url")
            posted = Response(target.id, target.channel, target.user, target.message_ts, body)
            self._responses[f"{response_id}#{self.next_id('')}"] = posted
            if _truthy(body.get("delete_original")) and target.message_ts:
                self.delete_message(target.channel, target.message_ts)
            elif _truthy(body.get("replace_original")) and target.message_ts:
                self.update_message(target.channel, target.message_ts, body)
            elif body.get("response_type") == "in_channel":
                self.post_message(target.channel, {k: v for k, v in body.items() if k != "response_type"})
            else:
                self.post_ephemeral(target.channel, target.user, body)

    def add_file(self, filename: str, title: str) -> StoredFile:
        with self._lock:
            stored = StoredFile(id=self.next_id("F"), filename=filename, title=title)
            self._files[stored.id] = stored
            return stored

    def upload(self, file_id: str, content: bytes) -> None:
        with self._lock:
            stored = self._files.get(file_id)
            if stored is None:
                raise SlackApiError("file_not_found")
            stored.content = content

    def file(self, file_id: str) -> StoredFile | None:
        with self._lock:
            return self._files.get(file_id)

    # -- read-only views for tests and the page -----------------------------------------------------

    def messages(self, channel: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(m) for m in self._messages.get(channel, [])]

    def ephemerals(self, channel: str | None = None, user: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [
                dict(e) for e in self._ephemerals
                if (channel is None or e["channel"] == channel) and (user is None or e["user"] == user)
            ]

    def responses(self) -> list[Response]:
        with self._lock:
            return [r for key, r in self._responses.items() if "#" in key]

    def calls(self, method: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [args for name, args in self._calls if method is None or name == method]

    def files(self) -> list[StoredFile]:
        with self._lock:
            return [f for f in self._files.values() if f.completed]

    def channels(self) -> list[str]:
        with self._lock:
            return list(self._messages)


def _permalink(root_url: str, channel: str, ts: str) -> str:
    return f"{root_url}/archives/{channel}/p{ts.replace('.', '')}"


class _Api:
    """The Web API methods: each takes the merged arguments and returns the JSON answer."""

    def __init__(self, workspace: SlackWorkspace, root_url: Callable[[], str]) -> None:
        self.ws = workspace
        self.root_url = root_url

    def call(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        handler = getattr(self, "m_" + method.replace(".", "_"), None)
        if handler is None:
            return {"ok": False, "error": "unknown_method"}
        try:
            return {"ok": True, **handler(args)}
        except SlackApiError as err:
            return {"ok": False, "error": err.code}
        except (ValueError, TypeError, AttributeError):  # an argument of the wrong shape, e.g. limit=abc
            return {"ok": False, "error": "invalid_arguments"}

    @staticmethod
    def _required(args: Mapping[str, Any], *names: str) -> list[Any]:
        values = [args.get(name) for name in names]
        if any(v in (None, "") for v in values):
            raise SlackApiError("invalid_arguments")
        return values

    @staticmethod
    def _require_content(args: Mapping[str, Any]) -> None:
        if not (args.get("text") or args.get("blocks") or args.get("attachments")):
            raise SlackApiError("no_text")

    def m_auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"url": self.root_url() + "/", "team": "Sandbox", "user": "rollback-bot", "team_id": TEAM_ID,
                "user_id": BOT_USER_ID, "bot_id": BOT_ID, "is_enterprise_install": False}

    def m_chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        (channel,) = self._required(args, "channel")
        self._require_content(args)
        message = self.ws.post_message(channel, args)
        return {"channel": channel, "ts": message["ts"], "message": message}

    def m_chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts = self._required(args, "channel", "ts")
        message = self.ws.update_message(channel, ts, args)
        return {"channel": channel, "ts": ts, "text": message["text"], "message": message}

    def m_chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, user = self._required(args, "channel", "user")
        self._require_content(args)
        ephemeral = self.ws.post_ephemeral(channel, user, args)
        return {"message_ts": ephemeral["ts"]}

    def m_chat_getPermalink(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts = self._required(args, "channel", "message_ts")
        return {"channel": channel, "permalink": _permalink(self.root_url(), channel, ts)}

    def m_conversations_replies(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts = self._required(args, "channel", "ts")
        return {"messages": self.ws.replies(channel, ts), "has_more": False}

    def m_conversations_history(self, args: dict[str, Any]) -> dict[str, Any]:
        (channel,) = self._required(args, "channel")
        limit = int(args.get("limit") or 100)
        return {"messages": self.ws.history(channel)[:limit], "has_more": False}

    def m_usergroups_users_list(self, args: dict[str, Any]) -> dict[str, Any]:
        (group,) = self._required(args, "usergroup")
        if group not in self.ws.usergroups:
            raise SlackApiError("no_such_subteam")
        return {"users": list(self.ws.usergroups[group])}

    def m_users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        (user_id,) = self._required(args, "user")
        user = self.ws.users.get(user_id)
        if user is None:
            raise SlackApiError("user_not_found")
        return {"user": user.to_api()}

    def m_files_getUploadURLExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        filename, _length = self._required(args, "filename", "length")
        stored = self.ws.add_file(filename, str(args.get("title") or filename))
        return {"upload_url": f"{self.root_url()}/upload/{stored.id}", "file_id": stored.id}

    def m_files_completeUploadExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        (files,) = self._required(args, "files")
        completed = []
        for entry in _as_list(files):
            stored = self.ws.file(str(entry.get("id")))
            if stored is None:
                raise SlackApiError("file_not_found")
            stored.title = entry.get("title") or stored.filename
            stored.completed = True
            completed.append(stored)
        channel = args.get("channel_id") or (str(args.get("channels") or "").split(",")[0] or None)
        if channel:
            thread_ts = args.get("thread_ts") or None
            for stored in completed:
                stored.channel, stored.thread_ts = channel, thread_ts
            self.ws.post_message(channel, {
                "text": args.get("initial_comment") or "",
                "thread_ts": thread_ts,
                "files": [f.to_api(self.root_url()) for f in completed],
            })
        return {"files": [f.to_api(self.root_url()) for f in completed]}


def _read_args(handler: BaseHTTPRequestHandler, body: bytes) -> dict[str, Any]:
    """Query string, form body and JSON body merged, the way Slack accepts all three.

    A body that cannot be read raises SlackApiError with Slack's own code for it.
    """
    args: dict[str, Any] = {k: v[-1] for k, v in parse_qs(urlsplit(handler.path).query).items()}
    content_type = handler.headers.get("Content-Type", "")
    if body and "application/json" in content_type:
        try:
            parsed = json.loads(body.decode("utf-8"))
        except ValueError:
            raise SlackApiError("invalid_json") from None
        if not isinstance(parsed, dict):
            raise SlackApiError("json_not_object")
        args.update(parsed)
    elif body:
        try:
            form = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
        except ValueError:
            raise SlackApiError("invalid_form_data") from None
        args.update({k: v[-1] for k, v in form.items()})
    return args


class SlackApiServer:
    """The Slack Web API on 127.0.0.1 in a daemon thread. Use as a context manager or start()/stop()."""

    def __init__(
        self,
        *,
        token: str = "xoxb-test",
        users: Iterable[SlackUser] | Mapping[str, str] | None = None,
        usergroups: Mapping[str, Iterable[str]] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if isinstance(users, Mapping):
            users = [SlackUser(id=uid, name=name) for uid, name in users.items()]
        self.token = token
        self.workspace = SlackWorkspace(users or [], usergroups or {})
        self.page: Any = None  # sandbox.page.ChannelPage when the page is attached
        self.socket_mode: Any = None  # sandbox.socket_mode.SocketModeServer when attached: apps.connections.open
        self._api = _Api(self.workspace, lambda: self.url)
        self._httpd = QuietHTTPServer((host, port), _handler_for(self))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def api_url(self) -> str:
        """The base URL for `WebClient(base_url=...)` and `SLACK_API_URL` (ends with '/')."""
        return f"{self.url}/api/"

    def start(self) -> SlackApiServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="slack-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:  # shutdown() would wait forever for a loop that never started
            self._httpd.shutdown()
            self._thread = None
        self._httpd.server_close()
        with self.workspace._lock:
            self.workspace._changed()  # wake long-polls so their threads end

    def __enter__(self) -> SlackApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- response_url ---------------------------------------------------------------------------------

    def response_url(self, *, channel: str, user: str, message_ts: str | None = None) -> str:
        """A fresh `response_url` for a command or action sent by `user` in `channel`."""
        return f"{self.url}/response/{self.workspace.register_response_url(channel=channel, user=user, message_ts=message_ts)}"

    # -- test helpers ---------------------------------------------------------------------------------

    def messages(self, channel: str) -> list[dict[str, Any]]:
        """Every message in the channel (roots and replies), oldest first."""
        return self.workspace.messages(channel)

    def thread(self, channel: str, ts: str) -> list[dict[str, Any]]:
        """The root message and its replies, oldest first."""
        return self.workspace.replies(channel, ts)

    def ephemerals(self, channel: str | None = None, user: str | None = None) -> list[dict[str, Any]]:
        return self.workspace.ephemerals(channel, user)

    def responses(self) -> list[Response]:
        return self.workspace.responses()

    def calls(self, method: str | None = None) -> list[dict[str, Any]]:
        return self.workspace.calls(method)

    def files(self) -> list[StoredFile]:
        return self.workspace.files()

    def post_as_user(self, channel: str, user: str, text: str, *, thread_ts: str | None = None) -> dict[str, Any]:
        """A message typed by a person (the page's plain chat, or a test's setup), in a thread if given."""
        return self.workspace.post_message(channel, {"text": text, "thread_ts": thread_ts}, user=user)

    def mention(self, channel: str, user: str, text: str, *, thread_ts: str | None = None,
                bot_id: str | None = None, subtype: str | None = None) -> dict[str, Any]:
        """A message mentioning the bot, posted by `user` (a bot's when `bot_id` is given) in the channel or
        in the thread `thread_ts`; returns the Events API body Slack delivers for it (`event_callback` with
        an `app_mention` event, its own `event_id`)."""
        message = self.workspace.post_message(channel, {"text": text, "thread_ts": thread_ts}, user=user,
                                              bot_id=bot_id)
        event: dict[str, Any] = {"type": "app_mention", "user": user, "text": text, "ts": message["ts"],
                                 "channel": channel, "event_ts": message["ts"], "team": TEAM_ID}
        if thread_ts:
            event["thread_ts"] = thread_ts
        if bot_id:
            event["bot_id"] = bot_id
        if subtype:
            event["subtype"] = subtype
        return {
            "token": "deprecated-verification-token", "team_id": TEAM_ID, "api_app_id": APP_ID, "event": event,
            "type": "event_callback", "event_id": f"Ev{uuid.uuid4().hex[:12].upper()}", "event_time": int(time.time()),
            "authorizations": [{"enterprise_id": None, "team_id": TEAM_ID, "user_id": BOT_USER_ID, "is_bot": True,
                                "is_enterprise_install": False}],
            "is_ext_shared_channel": False, "event_context": f"4-{uuid.uuid4().hex}",
        }

    def wait_for(self, predicate: Callable[[], T], timeout: float = 10.0, *, channel: str | None = None) -> T:
        """Poll `predicate` until it returns something truthy; fail with a dump of the channel(s)."""
        deadline = time.monotonic() + timeout
        version = -1
        while True:
            value = predicate()
            if value:
                return value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"condition not met within {timeout}s; Slack state:\n{self.dump(channel)}")
            version = self.workspace.wait_for_change(version if version >= 0 else self.workspace.version,
                                                     min(remaining, 0.2))

    def dump(self, channel: str | None = None) -> str:
        lines = []
        for name in [channel] if channel else self.workspace.channels():
            for m in self.workspace.messages(name):
                indent = "    " if m.get("thread_ts", m["ts"]) != m["ts"] else ""
                lines.append(f"{indent}[{name} {m['ts']} {m['user']}] {message_text(m)}")
        for e in self.workspace.ephemerals(channel):
            lines.append(f"(ephemeral to {e['user']} in {e['channel']}) {message_text(e)}")
        return "\n".join(lines) or "(no messages)"

    # -- HTTP ----------------------------------------------------------------------------------------

    def _authorized(self, handler: BaseHTTPRequestHandler, args: Mapping[str, Any]) -> str | None:
        """None when the token is right, else Slack's error code."""
        header = handler.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else args.get("token")
        if not token:
            return "not_authed"
        return None if token == self.token else "invalid_auth"

    def _handle(self, handler: BaseHTTPRequestHandler, verb: str) -> None:
        """Every request: a Slack-style answer, never a dropped connection or a traceback."""
        path = urlsplit(handler.path).path
        try:
            body = read_body(handler)
        except ValueError:
            send_json(handler, 400, {"ok": False, "error": "invalid_form_data"})
            return
        try:
            self._route(handler, verb, path, body)
        except Exception as err:  # a bug in the stand-in: one line for the caller, the server keeps serving
            send_json(handler, 500, {"ok": False, "error": "internal_error", "detail": one_line(err)})

    def _route(self, handler: BaseHTTPRequestHandler, verb: str, path: str, body: bytes) -> None:
        if path.startswith("/api/"):
            send_json(handler, 200, self._api_answer(handler, path[len("/api/"):], body))
        elif path.startswith("/upload/") and verb == "POST":
            try:
                self.workspace.upload(path.split("/")[2], body)
            except SlackApiError:
                send_text(handler, 404, "file not found")
                return
            send_text(handler, 200, f"OK - {len(body)}")
        elif path.startswith("/response/") and verb == "POST":
            self._respond(handler, path.split("/")[2], body)
        elif path.startswith("/files/") and verb == "GET":
            stored = self.workspace.file(path.split("/")[2])
            if stored is None:
                send_text(handler, 404, "file not found")
                return
            send_bytes(handler, 200, stored.content, "text/plain; charset=utf-8")
        elif self.page is not None and self.page.handles(path):
            self.page.handle(handler, verb, path, body)
        else:
            send_text(handler, 404, "not found")

    def _api_answer(self, handler: BaseHTTPRequestHandler, method: str, body: bytes) -> dict[str, Any]:
        try:
            args = _read_args(handler, body)
        except SlackApiError as err:
            return {"ok": False, "error": err.code}
        self.workspace.record_call(method, args)
        if method == "apps.connections.open":  # authorised by the app-level token, not the bot's
            if self.socket_mode is None:
                return {"ok": False, "error": "unknown_method"}
            answer: dict[str, Any] = self.socket_mode.connections_open(handler.headers.get("Authorization", ""))
            return answer
        problem = self._authorized(handler, args)
        return {"ok": False, "error": problem} if problem else self._api.call(method, args)

    def _respond(self, handler: BaseHTTPRequestHandler, response_id: str, body: bytes) -> None:
        """A `response_url` post: Slack answers a body it cannot read with 400 `invalid_payload`."""
        try:
            payload = json.loads(body.decode("utf-8") or "{}")
        except ValueError:
            send_text(handler, 400, "invalid_payload")
            return
        if not isinstance(payload, dict):
            send_text(handler, 400, "invalid_payload")
            return
        try:
            self.workspace.respond(response_id, payload)
        except SlackApiError as err:
            send_text(handler, 404, err.code)
            return
        send_text(handler, 200, "ok")


def message_text(message: Mapping[str, Any]) -> str:
    """Text and every text inside its blocks, flattened: what a reader of the channel sees."""
    parts = [str(message.get("text") or "")]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "text" and isinstance(value, str):
                    parts.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(message.get("blocks") or [])
    for f in message.get("files") or []:
        parts.append(f"[file {f.get('name')}]")
    return " | ".join(p for p in parts if p)


def _handler_for(server: SlackApiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            server._handle(self, "GET")

        def do_POST(self) -> None:  # noqa: N802
            server._handle(self, "POST")

        def log_message(self, format: str, *args: Any) -> None:  # quiet: tests and the sandbox print their own
            pass

    return Handler
