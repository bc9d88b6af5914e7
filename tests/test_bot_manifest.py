"""The Slack app manifest creates the app the bot expects: command, interactivity, mentions, scopes."""

from __future__ import annotations

from pathlib import Path

import yaml

from bot.app import SLASH_COMMAND
from bot.messages import APPROVE_ACTION, REJECT_ACTION
from bot.payloads import MENTION_EVENT

MANIFEST = Path(__file__).resolve().parents[1] / "slack-app-manifest.yaml"


def test_manifest_matches_the_bot() -> None:
    manifest = yaml.safe_load(MANIFEST.read_text())
    (command,) = manifest["features"]["slash_commands"]
    assert command["command"] == SLASH_COMMAND and command["url"].endswith("/slack/events")
    assert manifest["settings"]["interactivity"]["is_enabled"] is True
    assert manifest["settings"]["interactivity"]["request_url"].endswith("/slack/events")
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {"chat:write", "commands", "files:write", "channels:history", "groups:history", "usergroups:read",
            "users:read", "app_mentions:read"} <= scopes
    # a command typed in a thread is a mention of the bot (Slack refuses slash commands in threads)
    events = manifest["settings"]["event_subscriptions"]
    assert events["bot_events"] == [MENTION_EVENT] and events["request_url"].endswith("/slack/events")
    assert APPROVE_ACTION == "rollback_approve" and REJECT_ACTION == "rollback_reject"
