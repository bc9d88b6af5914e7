"""`python -m bot` (the Procfile's `web` line): load settings once, then serve.

HTTP on $PORT at /slack/events when SLACK_SIGNING_SECRET is set, served by gunicorn (`bot/server.py`);
Socket Mode when SLACK_APP_TOKEN is set (it wins when both are: no public URL is needed then).
"""

from __future__ import annotations

import logging
import sys

from bot.app import build_bot
from core.config import ConfigError, Settings, load_settings

log = logging.getLogger("rollback.bot")


def socket_mode(settings: Settings) -> int:
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    bot = build_bot(settings)
    bot.sweeper.start(settings.sweep_interval_seconds)
    log.info("rollback-bot: Socket Mode, queue %s", settings.queue_name)
    # apps.connections.open goes to SLACK_API_URL through the app's client
    SocketModeHandler(bot.app, settings.slack_app_token, web_client=bot.app.client).start()
    return 0


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = load_settings()
    except ConfigError as err:
        print(f"rollback-bot: {err}", file=sys.stderr)
        return 2
    if not settings.slack_bot_token:
        print("rollback-bot: SLACK_BOT_TOKEN is not set", file=sys.stderr)
        return 2
    if settings.slack_app_token:
        return socket_mode(settings)
    if not settings.slack_signing_secret:
        print("rollback-bot: set SLACK_SIGNING_SECRET (HTTP) or SLACK_APP_TOKEN (Socket Mode)", file=sys.stderr)
        return 2
    from bot.server import BotServer

    BotServer(settings).run()  # exits the process itself (status 0 after a clean SIGTERM)
    return 0


if __name__ == "__main__":
    sys.exit(main())
