"""`python -m bot` (the Procfile's `web` line): load settings once, build the app, serve it.

HTTP on $PORT at /slack/events when SLACK_SIGNING_SECRET is set; Socket Mode when SLACK_APP_TOKEN is
set (it wins when both are: no public URL is needed then).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler

from bot.app import build_bot
from core import defaults
from core.config import ConfigError, load_settings

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"
DEFAULT_PORT = 3000

log = logging.getLogger("rollback.bot")


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        log.debug("http %s", format % args)


def wsgi_app(app: App) -> Any:
    slack = SlackRequestHandler(app, path=EVENTS_PATH)

    def serve(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == HEALTH_PATH:
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        return slack(environ, start_response)

    return serve


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = load_settings()
    except ConfigError as err:
        print(f"rollback-bot: {err}", file=sys.stderr)
        return 2
    env = settings.env
    if not settings.slack_bot_token:
        print("rollback-bot: SLACK_BOT_TOKEN is not set", file=sys.stderr)
        return 2
    app_token, signing_secret = env.get("SLACK_APP_TOKEN"), env.get("SLACK_SIGNING_SECRET")
    if not app_token and not signing_secret:
        print("rollback-bot: set SLACK_SIGNING_SECRET (HTTP) or SLACK_APP_TOKEN (Socket Mode)", file=sys.stderr)
        return 2
    try:
        sweep_every = float(env.get("ROLLBACK_SWEEP_INTERVAL_SECONDS") or defaults.EXPIRY_SWEEP_INTERVAL_SECONDS)
        grace = float(env.get("ROLLBACK_WORKER_HEARTBEAT_GRACE_SECONDS") or defaults.WORKER_HEARTBEAT_GRACE_SECONDS)
    except ValueError:
        print("rollback-bot: ROLLBACK_SWEEP_INTERVAL_SECONDS and ROLLBACK_WORKER_HEARTBEAT_GRACE_SECONDS "
              "must be numbers of seconds", file=sys.stderr)
        return 2
    bot = build_bot(settings, signing_secret=signing_secret or "", heartbeat_grace_seconds=grace)
    app = bot.app
    bot.sweeper.start(sweep_every)
    if app_token:
        from slack_bolt.adapter.socket_mode import SocketModeHandler

        log.info("rollback-bot: Socket Mode, queue %s", settings.queue_name)
        SocketModeHandler(app, app_token, web_client=app.client).start()  # apps.connections.open: SLACK_API_URL
        return 0
    port = int(env.get("PORT") or DEFAULT_PORT)
    host = env.get("HOST") or "0.0.0.0"
    server = make_server(host, port, wsgi_app(app), server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)
    log.info("rollback-bot: listening on http://%s:%d%s, queue %s", host, port, EVENTS_PATH, settings.queue_name)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
