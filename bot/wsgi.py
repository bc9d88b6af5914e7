"""The bot's WSGI application: bolt's WSGI adapter at /slack/events plus an unsigned GET /healthz.

Bolt's adapter parses the body into a `BoltRequest` before it checks the signature, and its parser
raises on bodies that Slack never sends (a `payload` that is not JSON or not an object, bytes that are
not UTF-8, JSON nested past the interpreter's limit, odd types where bolt expects an object). Uncaught,
that is a 500 from the server. `GuardedSlackRequestHandler` reads the body itself (at most
`MAX_DELIVERY_BYTES`: 413 beyond) and answers a body bolt cannot parse with 400 when it is signed with
our secret (logged once at warning, without the body) and 401 when it is not, as bolt would; a signed
Events API delivery (a JSON object of type `event_callback`) that bolt cannot take is acked with a 200
instead, as `bot/payloads.py` acks a malformed one, since Slack delivers an event again until it is. A
timestamp or signature header that would make the verifier itself raise (not digits, not ASCII) is
answered 401 before bolt sees it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from slack_bolt import App, BoltRequest, BoltResponse
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_bolt.adapter.wsgi.http_request import WsgiHttpRequest

from core import defaults

EVENTS_PATH = "/slack/events"
SIGNATURE_MAX_AGE_SECONDS = 5 * 60  # Slack's and bolt's replay window
HEALTH_PATH = "/healthz"

log = logging.getLogger("rollback.bot")

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class BodyTooLarge(ValueError):
    pass


def read_body(environ: dict[str, Any], limit: int) -> bytes:
    """The request body, at most `limit` bytes (with or without Content-Length, e.g. chunked)."""
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    declared = environ.get("CONTENT_LENGTH") or ""
    if declared.strip():
        length = int(declared)  # ValueError: gunicorn refuses a malformed Content-Length before this
        if length < 0:
            raise ValueError(declared)
        if length > limit:
            raise BodyTooLarge(length)
        return bytes(stream.read(length))
    body = bytes(stream.read(limit + 1))
    if len(body) > limit:
        raise BodyTooLarge(len(body))
    return body


def signature_headers_usable(timestamp: Any, signature: Any) -> bool:
    """Whether slack_sdk's verifier can check these headers without raising (`int(timestamp)`,
    `hmac.compare_digest` on ASCII only). Missing headers are usable: the verifier says no."""
    if timestamp is not None and not (isinstance(timestamp, str) and timestamp.isascii()
                                      and timestamp.isdigit() and len(timestamp) <= 12):
        return False
    return signature is None or (isinstance(signature, str) and signature.isascii())


def signed_by(secret: str, raw: bytes, timestamp: str, signature: str, now: float) -> bool:
    """Slack's v0 signature over the exact bytes. slack_sdk's verifier decodes the body as UTF-8 first, so
    it raises on a body that is not; this checks any body."""
    if abs(now - int(timestamp)) > SIGNATURE_MAX_AGE_SECONDS:
        return False
    expected = hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + raw, hashlib.sha256).hexdigest()
    return hmac.compare_digest(f"v0={expected}", signature)


def is_event_callback(raw: bytes) -> bool:
    """Whether a body is an Events API delivery (its `type`), however malformed the rest."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        return False
    return isinstance(body, dict) and body.get("type") == "event_callback"


def _text_response(status: int, text: str) -> BoltResponse:
    return BoltResponse(status=status, body=text, headers={"content-type": "text/plain;charset=utf-8"})


class GuardedSlackRequestHandler(SlackRequestHandler):
    """Bolt's WSGI adapter, with the body read and parsed where a malformed one cannot raise."""

    def __init__(self, app: App, *, signing_secret: str, path: str = EVENTS_PATH,
                 max_body_bytes: int = defaults.MAX_DELIVERY_BYTES) -> None:
        super().__init__(app, path=path)
        self.signing_secret = signing_secret
        self.max_body_bytes = max_body_bytes

    def dispatch(self, request: WsgiHttpRequest) -> BoltResponse:
        try:
            raw = read_body(request.environ, self.max_body_bytes)
        except BodyTooLarge:
            return _text_response(413, "Payload Too Large")
        except ValueError:
            return _text_response(400, "malformed Content-Length")
        headers = request.get_headers()
        timestamp, signature = headers.get("x-slack-request-timestamp"), headers.get("x-slack-signature")
        if not signature_headers_usable(timestamp, signature):
            return _text_response(401, "invalid request")
        try:
            bolt_request = BoltRequest(body=raw.decode("utf-8"), query=request.query_string, headers=headers)
        except (ValueError, TypeError, AttributeError, LookupError, RecursionError) as err:
            return self.unparseable(raw, headers, err)
        return self.app.dispatch(bolt_request)

    def unparseable(self, raw: bytes, headers: dict[str, Any], err: Exception) -> BoltResponse:
        timestamp, signature = headers.get("x-slack-request-timestamp"), headers.get("x-slack-signature")
        if not (isinstance(timestamp, str) and isinstance(signature, str)
                and signed_by(self.signing_secret, raw, timestamp, signature, time.time())):  # usable: checked above
            return _text_response(401, "invalid request")
        if is_event_callback(raw):
            log.warning("ignored a signed event that bolt cannot take (%s)", type(err).__name__)
            return BoltResponse(status=200, body="")
        log.warning("refused a signed delivery whose body cannot be parsed (%s)", type(err).__name__)
        return _text_response(400, "malformed request body")


def wsgi_app(app: App, *, signing_secret: str, max_body_bytes: int = defaults.MAX_DELIVERY_BYTES) -> WsgiApp:
    """Route /healthz (unsigned, GET) and everything else to the guarded bolt adapter."""
    slack = GuardedSlackRequestHandler(app, signing_secret=signing_secret, max_body_bytes=max_body_bytes)

    def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == HEALTH_PATH:
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        return slack(environ, start_response)

    return serve
