"""The sandbox's channel page in headless Chromium, against the Slack stand-in and a small slack-bolt app.

The bot here is a stand-in too (the real one is exercised by test_sandbox_browser.py): it posts the
kinds of message the real bot posts, so the page's rendering and its signed requests are tested alone.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient

from sandbox.page import ChannelPage
from sandbox.people import INCIDENT_CHANNEL, SANDBOX_USERGROUP_HANDLES, SANDBOX_USERS
from sandbox.slack_api import SlackApiServer

SECRET = "page-test-secret"
APPROVAL_BLOCKS: list[dict[str, Any]] = [
    {"type": "header", "text": {"type": "plain_text", "text": "Rollback approval needed"}},
    {"type": "section", "fields": [{"type": "mrkdwn", "text": "*Target*\nprod"},
                                   {"type": "mrkdwn", "text": "*Requested by*\n<@U_ALICE>"}]},
    {"type": "actions", "block_id": "approval", "elements": [
        {"type": "button", "action_id": "rollback_approve", "value": "req-1", "style": "primary",
         "text": {"type": "plain_text", "text": "Approve"},
         "confirm": {"title": {"type": "plain_text", "text": "Approve this rollback?"},
                     "text": {"type": "mrkdwn", "text": "This reverts *2025_10_20_150000* on prod."},
                     "confirm": {"type": "plain_text", "text": "Approve"},
                     "deny": {"type": "plain_text", "text": "Cancel"}}},
        {"type": "button", "action_id": "rollback_reject", "value": "req-1", "style": "danger",
         "text": {"type": "plain_text", "text": "Reject"}}]},
]


REPORT = """# Incident report
rolled back by **bob**

| field | value |
|---|---|
| target | `prod` |
| note | a \\| pipe and <b>not bold</b> |

```sql
DROP TABLE new_feature_table;
```

- first
- second

_Generated for alice (U_ALICE)._
"""


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def page_server() -> Iterator[SlackApiServer]:
    with SlackApiServer(users=SANDBOX_USERS) as server:
        page = ChannelPage(server, channel=INCIDENT_CHANNEL, people=SANDBOX_USERS,
                           group_handles=SANDBOX_USERGROUP_HANDLES)
        app = App(signing_secret=SECRET, client=WebClient(token="xoxb-test", base_url=server.api_url))

        @app.command("/rollback")
        def command(ack: Any, respond: Any, command: dict[str, Any], client: WebClient) -> None:
            ack()
            channel = command["channel_id"]
            if command["text"] == "plan":
                root = client.chat_postMessage(channel=channel, text="Rollback plan for *prod*", blocks=APPROVAL_BLOCKS)
                client.chat_postMessage(channel=channel, thread_ts=root["ts"],
                                        text="Down SQL:\n```DROP TABLE new_feature_table;```\ncc <@U_BOB> <!subteam^S_DBA>")
            elif command["text"] == "report":
                root = client.conversations_history(channel=channel)["messages"][-1]
                client.files_upload_v2(channel=channel, thread_ts=root["ts"], filename="incident.md",
                                       title="Incident report", content=REPORT)
            else:
                respond(f"Unknown verb `{command['text']}`: try `/rollback help`")

        @app.event("app_mention")
        def mentioned(event: dict[str, Any], client: WebClient) -> None:
            client.chat_postMessage(channel=event["channel"], thread_ts=event.get("thread_ts"),
                                    text=f"heard `{event['text']}` from <@{event['user']}>")

        @app.action("rollback_approve")
        def approve(ack: Any, body: dict[str, Any], client: WebClient) -> None:
            ack()
            client.chat_update(channel=body["channel"]["id"], ts=body["container"]["message_ts"],
                               text=f"Approved by <@{body['user']['id']}>", blocks=[])

        httpd = make_server("127.0.0.1", 0, SlackRequestHandler(app), handler_class=_Quiet)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        page.connect(f"http://127.0.0.1:{httpd.server_port}/slack/events", SECRET)
        yield server
        httpd.shutdown()


def test_page_renders_the_channel_and_delivers_signed_commands_and_clicks(page_server: SlackApiServer,
                                                                          chromium: Any) -> None:
    page = chromium.new_page()
    page.goto(page_server.url + "/")
    page.get_by_label("alice").check()
    page.fill("#command", "/rollback plan")
    page.press("#command", "Enter")

    page.get_by_text("Rollback approval needed").wait_for()
    assert page.locator(".fields").first.inner_text().startswith("Target")
    assert page.locator(".mention", has_text="@alice").count() >= 1
    assert page.locator(".thread pre.code").inner_text() == "DROP TABLE new_feature_table;"
    assert page.locator(".thread .mention").all_inner_texts() == ["@bob", "@dba"]
    assert page.get_by_text("You ran /rollback plan").is_visible()

    page.fill("#command", "/rollback frobnicate")
    page.press("#command", "Enter")
    page.get_by_text("Unknown verb frobnicate").wait_for()  # ephemeral through response_url
    page.get_by_label("carol").check()
    page.get_by_text("Only visible to you").first.wait_for(state="detached")
    assert page.get_by_text("Unknown verb").count() == 0

    page.get_by_label("bob").check()
    page.get_by_role("button", name="Approve").click()
    dialog = page.get_by_role("dialog", name="Approve this rollback?")
    assert "This reverts 2025_10_20_150000 on prod." in dialog.inner_text()
    dialog.get_by_role("button", name="Approve").click()
    page.get_by_text("Approved by @bob").wait_for()
    (click,) = page_server.calls("chat.update")
    assert click["text"] == "Approved by <@U_BOB>"

    urllib.request.urlopen(urllib.request.Request(page_server.page.maintenance_url + "/on", method="POST"), timeout=5)
    assert page.locator("header .pill.maint").inner_text() == "app in maintenance mode"
    urllib.request.urlopen(urllib.request.Request(page_server.page.maintenance_url + "/off", method="POST"), timeout=5)
    page.locator("header .pill.maint").wait_for(state="detached")

    page.fill("#command", "/rollback report")
    page.press("#command", "Enter")
    page.get_by_role("button", name="Incident report").click()
    report = page.get_by_role("dialog", name="Incident report")
    assert report.locator(".md h1").inner_text() == "Incident report"
    assert report.locator(".md p b").inner_text() == "bob"
    assert report.locator(".md th").all_inner_texts() == ["field", "value"]
    assert report.locator(".md td").all_inner_texts() == ["target", "prod", "note", "a | pipe and <b>not bold</b>"]
    assert report.locator(".md td code").inner_text() == "prod"
    assert report.locator(".md pre.code").inner_text() == "DROP TABLE new_feature_table;"
    assert report.locator(".md li").all_inner_texts() == ["first", "second"]
    assert report.locator(".md p i").inner_text() == "Generated for alice (U_ALICE)."
    assert report.locator(".md td b").count() == 0  # HTML in the file is shown, never interpreted
    page.close()


def test_page_mentions_the_bot_in_a_thread(page_server: SlackApiServer, chromium: Any) -> None:
    """Replying in a thread, `@rollback …` is the person's message there and its `app_mention` event (with
    the thread's ts); a slash command there is refused as Slack refuses it."""
    page = chromium.new_page()
    page.goto(page_server.url + "/")
    page.get_by_label("alice").check()
    page.fill("#command", "/rollback plan")
    page.press("#command", "Enter")
    page.get_by_text("Rollback approval needed").wait_for()
    root = page_server.messages(INCIDENT_CHANNEL)[0]["ts"]
    page.locator(f'.reply-toggle[data-reply="{root}"]').click()
    page.get_by_text("Replying in the thread of").wait_for()

    page.fill("#command", "/rollback status")
    page.press("#command", "Enter")
    page.get_by_text("/rollback is not supported in threads").wait_for()
    page.fill("#command", "@rollback status prod")
    page.press("#command", "Enter")
    page.locator(".thread").get_by_text("heard @rollback-bot status prod from @alice").wait_for()
    mine, heard = page_server.thread(INCIDENT_CHANNEL, root)[-2:]
    assert (mine["user"], mine["text"]) == ("U_ALICE", "<@U_ROLLBACKBOT> status prod")
    assert heard["text"] == "heard `<@U_ROLLBACKBOT> status prod` from <@U_ALICE>" and heard["thread_ts"] == root

    page.get_by_role("button", name="Stop replying in the thread").click()
    page.fill("#command", "@rollback-bot help")  # in the channel: a new message, its event without a thread
    page.press("#command", "Enter")
    page.get_by_text("heard @rollback-bot help from @alice").wait_for()
    assert page_server.messages(INCIDENT_CHANNEL)[-1].get("thread_ts") is None
    page.close()


def test_page_refuses_what_is_not_a_rollback_command(page_server: SlackApiServer, chromium: Any) -> None:
    page = chromium.new_page()
    page.goto(page_server.url + "/")
    page.fill("#command", "hello")
    page.press("#command", "Enter")
    page.get_by_text("only /rollback commands reach the bot here").wait_for()
    assert page_server.messages(INCIDENT_CHANNEL) == []
    page.close()


def test_page_answers_unreadable_posts_with_one_line(page_server: SlackApiServer,
                                                     capfd: pytest.CaptureFixture[str]) -> None:
    for path in ("/sandbox/command", "/sandbox/action"):
        for body in (b"user=U_ALICE&text=/rollback+help", b"[1]", b"\xff"):
            request = urllib.request.Request(page_server.url + path, data=body, method="POST",
                                             headers={"Content-Type": "application/json"})
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(request, timeout=5)
            answer = json.loads(err.value.read())
            assert err.value.code == 400 and answer["ok"] is False, body
            assert answer["error"].startswith("the request body must be") and "\n" not in answer["error"]
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(page_server.url + "/sandbox/state?since=soon", timeout=5)
    assert err.value.code == 400
    assert page_server.messages(INCIDENT_CHANNEL) == [] and page_server.ephemerals() == []
    assert "Traceback" not in capfd.readouterr().err


def test_page_state_names_groups_and_whether_the_bot_listens(page_server: SlackApiServer) -> None:
    page = page_server.page
    page.group_handles = {"S_DBA": "dba"}
    with urllib.request.urlopen(page_server.url + "/sandbox/state?user=U_ALICE", timeout=5) as answer:
        state = json.loads(answer.read())
    assert state["groups"] == {"S_DBA": "dba"} and state["bot_connected"] is True
    page.connect("http://127.0.0.1:9/slack/events", SECRET)  # the discard port: nobody listens
    assert page.state("U_ALICE")["bot_connected"] is False
    assert page.command(user="U_ALICE", text="/rollback status") == {"ok": False, "error": "the bot did not answer"}
