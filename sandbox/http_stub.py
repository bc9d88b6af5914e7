"""Small HTTP servers in daemon threads: the common ground of the Slack, PagerDuty and DigitalOcean stand-ins.

`QuietHTTPServer` keeps the stand-ins from printing tracebacks: a client that hangs up (a closed
page's long-poll) is not an error, and anything else is one line on stderr. `send_*` answer a
request; `read_body` reads one, refusing a malformed Content-Length.

A `JsonHttpServer` counts the POSTs to each path (`posts`) and can lose the answer to the next POSTs
(`post_faults`, one entry per POST): an int answers that status without acting (`REFUSED` = 500);
`ACCEPTED_THEN_500` acts, then answers 500; `ACCEPTED_THEN_DROPPED` acts, then closes the connection
without an answer; `ACCEPTED_THEN_SILENT` acts, then answers nothing until the client gives up.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit


class QuietHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default listen backlog is 5: a burst of calls from the bot (tests, bench) got resets
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        err = sys.exc_info()[1]
        if isinstance(err, ConnectionError | TimeoutError):
            return  # the client went away (a page closed mid long-poll): nothing to report
        print(f"sandbox: {type(self).__name__} on port {self.server_address[1]}: "
              f"{type(err).__name__}: {err}", file=sys.stderr)


def read_body(handler: BaseHTTPRequestHandler) -> bytes:
    """The request's body; ValueError when its Content-Length is not a number."""
    length = int(handler.headers.get("Content-Length") or 0)
    if length < 0:
        raise ValueError("negative Content-Length")
    return handler.rfile.read(length) if length else b""


def send_bytes(handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    handler.send_header("Cache-Control", "no-store")
    handler.end_headers()
    handler.wfile.write(body)


def send_json(handler: BaseHTTPRequestHandler, status: int, payload: Any) -> None:
    send_bytes(handler, status, json.dumps(payload).encode("utf-8"), "application/json; charset=utf-8")


def send_text(handler: BaseHTTPRequestHandler, status: int, text: str) -> None:
    send_bytes(handler, status, text.encode("utf-8"), "text/plain; charset=utf-8")


def one_line(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}".splitlines()[0]


class JsonRequest:
    def __init__(self, verb: str, path: str, query: dict[str, str], headers: Any, body: bytes) -> None:
        self.verb = verb
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8")) if self.body else None


# What the next POST meets (`JsonHttpServer.post_faults`): an int is answered without acting.
REFUSED = 500
ACCEPTED_THEN_500 = "accepted-then-500"
ACCEPTED_THEN_DROPPED = "accepted-then-dropped"
ACCEPTED_THEN_SILENT = "accepted-then-silent"
PostFault = int | str
# How long a silent answer is held at most (a client's read timeout gives up long before).
SILENT_SECONDS = 120.0


class JsonHttpServer:
    """Subclasses implement `route(request) -> (status, payload)`; payload is JSON-encoded."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.lock = threading.RLock()
        self._httpd = QuietHTTPServer((host, port), _handler_for(self))
        self._started = False
        self.posts: Counter[str] = Counter()  # path -> POSTs received, whatever they were answered
        self.post_faults: list[PostFault] = []
        self.on_post: Callable[[str], None] | None = None  # called with each POST's path as it arrives
        self._released = threading.Event()  # ends every silent answer (at stop)

    @property
    def root_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Self:
        self._started = True
        threading.Thread(target=self._httpd.serve_forever, name=type(self).__name__, daemon=True).start()
        return self

    def stop(self) -> None:
        self._released.set()
        if self._started:  # shutdown() would wait forever for a loop that never started
            self._httpd.shutdown()
            self._started = False
        self._httpd.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def route(self, request: JsonRequest) -> tuple[int, Any]:
        raise NotImplementedError

    def next_post_fault(self, path: str) -> PostFault | None:
        """Count a POST to `path`; the fault its answer meets, if one is queued."""
        with self.lock:
            self.posts[path] += 1
            if self.on_post is not None:
                self.on_post(path)
            return self.post_faults.pop(0) if self.post_faults else None

    def hold_silent_answer(self) -> None:
        self._released.wait(SILENT_SECONDS)


def _handler_for(server: JsonHttpServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self, verb: str) -> None:
            parts = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            fault = server.next_post_fault(parts.path) if verb == "POST" else None
            try:
                body = read_body(self)
                if isinstance(fault, int):  # refused before anything was done
                    status, payload = fault, {"id": "server_error", "message": "Server Error"}
                else:
                    status, payload = server.route(JsonRequest(verb, parts.path, query, self.headers, body))
            except ValueError as err:  # malformed JSON and the like: what a real API answers with a 400
                status, payload = 400, {"message": f"bad request: {err}"}
            except Exception as err:  # a request the stand-in did not foresee: an answer, not a traceback
                status, payload = 500, {"message": f"stand-in error: {one_line(err)}"}
            if fault == ACCEPTED_THEN_500:
                status, payload = 500, {"id": "server_error", "message": "Server Error"}
            elif fault in (ACCEPTED_THEN_DROPPED, ACCEPTED_THEN_SILENT):
                if fault == ACCEPTED_THEN_SILENT:
                    server.hold_silent_answer()
                self._drop()
                return
            send_json(self, status, payload)

        def _drop(self) -> None:
            """Close the connection without a word: what the client sees as a reset or a timeout."""
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # the client already gave up

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self._serve("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._serve("POST")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
