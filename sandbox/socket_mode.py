"""Slack's Socket Mode, locally: `apps.connections.open` (through the Web API stand-in) hands out a
`ws://` URL served here; envelopes (slash commands, block actions, events) are delivered over that WebSocket
and the app's acks come back, as with Slack's own servers. Standard library only (RFC 6455 framing).

    with SlackApiServer(...) as slack_api, SocketModeServer(slack_api) as sockets:
        # run the app with SLACK_APP_TOKEN=sockets.app_token, SLACK_API_URL=slack_api.api_url
        sockets.wait_connected()
        ack = sockets.slash_command("status prod", user_id="U_ALICE", channel_id="C_INCIDENT")
"""

from __future__ import annotations

import base64
import hashlib
import json
import socketserver
import struct
import threading
import uuid
from typing import Any

from sandbox.slack_api import TEAM_ID, SlackApiServer

WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_TEXT, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x8, 0x9, 0xA
ACK_TIMEOUT_SECONDS = 10.0


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + WEBSOCKET_GUID).encode()).digest()).decode()


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """A server frame: final, unmasked."""
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x80 | opcode, size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 126, size)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 127, size)
    return header + payload


def _read_exact(stream: Any, size: int) -> bytes:
    data = stream.read(size)
    if len(data) < size:
        raise ConnectionError("the WebSocket closed")
    return bytes(data)


def read_frame(stream: Any) -> tuple[int, bytes]:
    """A client frame (masked, as RFC 6455 requires of clients): (opcode, payload)."""
    first, second = _read_exact(stream, 2)
    size = second & 0x7F
    if size == 126:
        size = struct.unpack("!H", _read_exact(stream, 2))[0]
    elif size == 127:
        size = struct.unpack("!Q", _read_exact(stream, 8))[0]
    mask = _read_exact(stream, 4) if second & 0x80 else b"\0\0\0\0"
    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(_read_exact(stream, size)))
    return first & 0x0F, payload


class _Connection(socketserver.StreamRequestHandler):
    server: _SocketServer

    def handle(self) -> None:
        headers: dict[str, str] = {}
        self.rfile.readline()  # GET /link/?ticket=... HTTP/1.1
        while (line := self.rfile.readline().decode("latin-1").strip()):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "sec-websocket-key" not in headers:
            self.wfile.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            return
        self.wfile.write(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept_key(headers['sec-websocket-key'])}\r\n\r\n".encode()
        )
        owner = self.server.owner
        owner.opened(self)
        self.send(json.dumps({"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A_ROLLBACK"}}))
        try:
            while True:
                opcode, payload = read_frame(self.rfile)
                if opcode == OP_PING:
                    self.send_frame(OP_PONG, payload)
                elif opcode == OP_CLOSE:
                    self.send_frame(OP_CLOSE, payload[:2])
                    return
                elif opcode == OP_TEXT:
                    owner.received(json.loads(payload.decode("utf-8")))
        except (ConnectionError, OSError, ValueError):
            return
        finally:
            owner.closed(self)

    def send_frame(self, opcode: int, payload: bytes) -> None:
        with self.server.owner.write_lock:
            self.wfile.write(encode_frame(opcode, payload))
            self.wfile.flush()

    def send(self, text: str) -> None:
        self.send_frame(OP_TEXT, text.encode("utf-8"))


class _SocketServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: SocketModeServer


class SocketModeServer:
    """The WebSocket side of Socket Mode, attached to a SlackApiServer for `apps.connections.open`."""

    def __init__(self, slack_api: SlackApiServer, *, app_token: str = "xapp-1-test", host: str = "127.0.0.1") -> None:
        self.slack_api = slack_api
        self.app_token = app_token
        self.write_lock = threading.Lock()
        self._changed = threading.Condition()
        self._connections: list[_Connection] = []
        self._acks: dict[str, dict[str, Any]] = {}
        self.sent: list[dict[str, Any]] = []  # every envelope delivered, so a test can redeliver one
        self._server = _SocketServer((host, 0), _Connection, bind_and_activate=True)
        self._server.owner = self
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"ws://{host!s}:{port}/link/"

    def start(self) -> SocketModeServer:
        self.slack_api.socket_mode = self
        self._thread = threading.Thread(target=self._server.serve_forever, name="socket-mode", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread = None
        self._server.server_close()
        if self.slack_api.socket_mode is self:
            self.slack_api.socket_mode = None

    def __enter__(self) -> SocketModeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- apps.connections.open (called by the Web API stand-in) ----------------------------------------

    def connections_open(self, authorization: str) -> dict[str, Any]:
        token = authorization[7:] if authorization.startswith("Bearer ") else ""
        if not token:
            return {"ok": False, "error": "not_authed"}
        if token != self.app_token:
            return {"ok": False, "error": "invalid_auth"}
        return {"ok": True, "url": f"{self.url}?ticket={uuid.uuid4().hex}"}

    # -- connection events -----------------------------------------------------------------------------

    def opened(self, connection: _Connection) -> None:
        with self._changed:
            self._connections.append(connection)
            self._changed.notify_all()

    def closed(self, connection: _Connection) -> None:
        with self._changed:
            if connection in self._connections:
                self._connections.remove(connection)
            self._changed.notify_all()

    def received(self, message: dict[str, Any]) -> None:
        envelope_id = message.get("envelope_id")
        if isinstance(envelope_id, str):
            with self._changed:
                self._acks[envelope_id] = message
                self._changed.notify_all()

    def wait_connected(self, timeout: float = 10.0) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: self._connections, timeout):
                raise AssertionError(f"no Socket Mode connection within {timeout}s")

    # -- delivering envelopes --------------------------------------------------------------------------

    def deliver(self, kind: str, payload: dict[str, Any], *, timeout: float = ACK_TIMEOUT_SECONDS,
                retry_attempt: int = 0) -> dict[str, Any]:
        """Send an envelope on the newest connection and wait for the app's ack (returned)."""
        self.wait_connected(timeout)
        envelope_id = str(uuid.uuid4())
        envelope = {"envelope_id": envelope_id, "type": kind, "payload": payload,
                    "accepts_response_payload": kind != "events_api", "retry_attempt": retry_attempt,
                    "retry_reason": "timeout" if retry_attempt else ""}
        with self._changed:
            connection = self._connections[-1]
            self.sent.append(envelope)
        connection.send(json.dumps(envelope))
        with self._changed:
            if not self._changed.wait_for(lambda: envelope_id in self._acks, timeout):
                raise AssertionError(f"envelope {envelope_id} ({kind}) was not acked within {timeout}s")
            return self._acks.pop(envelope_id)

    def slash_command(self, text: str, *, user_id: str, channel_id: str, command: str = "/rollback") -> dict[str, Any]:
        user = self.slack_api.workspace.users.get(user_id)
        payload = {
            "token": "deprecated-verification-token", "team_id": TEAM_ID, "team_domain": "sandbox",
            "channel_id": channel_id, "channel_name": channel_id.lower(), "user_id": user_id,
            "user_name": user.name if user else user_id.lower(), "command": command, "text": text,
            "api_app_id": "A_ROLLBACK", "is_enterprise_install": "false",
            "response_url": self.slack_api.response_url(channel=channel_id, user=user_id),
            "trigger_id": uuid.uuid4().hex,
        }
        return self.deliver("slash_commands", payload)


    def app_mention(self, text: str, *, user_id: str, channel_id: str, thread_ts: str | None = None) -> dict[str, Any]:
        """A message mentioning the bot, posted by `user_id` (in the thread `thread_ts`), delivered as its
        `events_api` envelope."""
        return self.deliver("events_api", self.slack_api.mention(channel_id, user_id, text, thread_ts=thread_ts))
