"""The stand-ins, driven by the real clients: slack_sdk / slack-bolt, pydo, and plain HTTP to PagerDuty."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pydo
import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError
from azure.core.pipeline.policies import HeadersPolicy
from slack_bolt import App
from slack_bolt.request import BoltRequest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from sandbox.digitalocean import DEFAULT_DATABASE_ID, DEFAULT_DROPLET_ID, DigitalOceanServer
from sandbox.pagerduty import PagerDutyServer
from sandbox.signing import SlackRequestSender
from sandbox.slack_api import BOT_USER_ID, SlackApiServer

CHANNEL = "C_INCIDENT"
SECRET = "sandbox-signing-secret"


@pytest.fixture
def web(slack_api: SlackApiServer) -> WebClient:
    return WebClient(token="xoxb-test", base_url=slack_api.api_url)


def test_api_url_is_a_slack_sdk_base_url(slack_api: SlackApiServer, web: WebClient) -> None:
    assert slack_api.api_url.endswith("/api/")
    assert web.auth_test()["user_id"] == BOT_USER_ID


def test_wrong_token_and_unknown_method_are_refused(slack_api: SlackApiServer) -> None:
    with pytest.raises(SlackApiError) as err:
        WebClient(token="xoxb-wrong", base_url=slack_api.api_url).auth_test()
    assert err.value.response["error"] == "invalid_auth"
    with pytest.raises(SlackApiError) as err:
        WebClient(token="xoxb-test", base_url=slack_api.api_url).api_call("chat.scheduleMessage")
    assert err.value.response["error"] == "unknown_method"


def test_threads_updates_and_history(slack_api: SlackApiServer, web: WebClient) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*plan*"}}]
    root = web.chat_postMessage(channel=CHANNEL, text="Rollback requested", blocks=blocks)
    first = web.chat_postMessage(channel=CHANNEL, thread_ts=root["ts"], text="backup started")
    # form-encoded body, the other way slack_sdk sends arguments
    second = web.api_call("chat.postMessage", data={"channel": CHANNEL, "thread_ts": root["ts"],
                                                     "text": "done", "reply_broadcast": "true"})
    assert float(root["ts"]) < float(first["ts"]) < float(second["ts"])
    assert root["message"]["blocks"] == blocks

    web.chat_update(channel=CHANNEL, ts=root["ts"], text="Rollback approved", blocks=[])
    replies = web.conversations_replies(channel=CHANNEL, ts=root["ts"])["messages"]
    assert [m["text"] for m in replies] == ["Rollback approved", "backup started", "done"]
    assert replies[0]["reply_count"] == 2
    assert [m["text"] for m in slack_api.thread(CHANNEL, root["ts"])] == [m["text"] for m in replies]

    history = web.conversations_history(channel=CHANNEL)["messages"]
    assert [m["text"] for m in history] == ["done", "Rollback approved"]  # broadcast reply shows in channel
    with pytest.raises(SlackApiError) as err:
        web.chat_update(channel=CHANNEL, ts="1.000000", text="x")
    assert err.value.response["error"] == "message_not_found"
    with pytest.raises(SlackApiError) as err:
        web.chat_postMessage(channel=CHANNEL, thread_ts="1.000000", text="orphan")
    assert err.value.response["error"] == "thread_not_found"
    assert len(slack_api.calls("chat.postMessage")) == 4


def test_ephemerals_permalinks_users_and_groups(slack_api: SlackApiServer, web: WebClient) -> None:
    web.chat_postEphemeral(channel=CHANNEL, user="U_CAROL", text="you are not an approver")
    assert [e["text"] for e in slack_api.ephemerals(user="U_CAROL")] == ["you are not an approver"]
    assert slack_api.ephemerals(user="U_BOB") == []
    assert slack_api.messages(CHANNEL) == []

    root = web.chat_postMessage(channel=CHANNEL, text="x")
    link = web.chat_getPermalink(channel=CHANNEL, message_ts=root["ts"])["permalink"]
    assert link.startswith(slack_api.url) and root["ts"].replace(".", "") in link

    assert web.users_info(user="U_BOB")["user"]["name"] == "bob"
    assert web.usergroups_users_list(usergroup="S_DBA")["users"] == ["U_BOB"]
    with pytest.raises(SlackApiError):
        web.users_info(user="U_NOBODY")
    with pytest.raises(SlackApiError):
        web.usergroups_users_list(usergroup="S_NONE")


def test_files_upload_v2_attaches_the_file_to_the_thread(slack_api: SlackApiServer, web: WebClient) -> None:
    root = web.chat_postMessage(channel=CHANNEL, text="incident")
    report = "# Incident report\n\n- rolled back 2025_10_20_150000\n"
    result = web.files_upload_v2(channel=CHANNEL, thread_ts=root["ts"], content=report,
                                 filename="incident.md", title="Incident report", initial_comment="Report")
    assert result["file"]["name"] == "incident.md"
    (stored,) = slack_api.files()
    assert stored.text() == report and stored.thread_ts == root["ts"]
    reply = slack_api.thread(CHANNEL, root["ts"])[-1]
    assert reply["text"] == "Report" and reply["files"][0]["id"] == stored.id
    assert requests.get(reply["files"][0]["url_private"], timeout=5).text == report


def test_wait_for_reports_the_channel_when_it_times_out(slack_api: SlackApiServer, web: WebClient) -> None:
    web.chat_postMessage(channel=CHANNEL, text="only this")
    with pytest.raises(AssertionError, match="only this"):
        slack_api.wait_for(lambda: False, timeout=0.3)
    threading.Timer(0.1, lambda: web.chat_postMessage(channel=CHANNEL, text="late")).start()
    found = slack_api.wait_for(lambda: [m for m in slack_api.messages(CHANNEL) if m["text"] == "late"], 5)
    assert found[0]["text"] == "late"


@pytest.fixture
def bolt_url(slack_api: SlackApiServer) -> Iterator[str]:
    """A real slack-bolt app behind HTTP: it verifies signatures and answers via respond()."""
    app = App(signing_secret=SECRET, client=WebClient(token="xoxb-test", base_url=slack_api.api_url))

    @app.command("/rollback")
    def command(ack: Any, respond: Any, command: dict[str, Any]) -> None:
        ack()
        kind = "in_channel" if command["text"] == "shout" else "ephemeral"
        respond(text=f"heard {command['text']} from {command['user_id']}", response_type=kind)

    @app.action("rollback_approve")
    def approve(ack: Any, respond: Any, body: dict[str, Any]) -> None:
        ack()
        value = body["actions"][0]["value"]
        respond(replace_original=True, text=f"approved {value} by {body['user']['id']} "
                f"on {body['container']['message_ts']}")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            response = app.dispatch(BoltRequest(body=body, headers={k: [v] for k, v in self.headers.items()}))
            data = response.body.encode()
            self.send_response(response.status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/slack/events"
    httpd.shutdown()
    httpd.server_close()


def test_signed_command_reaches_bolt_and_respond_lands_ephemeral(slack_api: SlackApiServer, bolt_url: str) -> None:
    sender = SlackRequestSender(bolt_url, SECRET, slack_api)
    status, _ = sender.command("status", user_id="U_ALICE", channel_id=CHANNEL)
    assert status == 200
    # bolt runs the listener after the ack, so the answer arrives a moment later
    slack_api.wait_for(lambda: slack_api.ephemerals(CHANNEL, "U_ALICE"))
    assert [e["text"] for e in slack_api.ephemerals(CHANNEL, "U_ALICE")] == ["heard status from U_ALICE"]
    sender.command("shout", user_id="U_ALICE", channel_id=CHANNEL)
    slack_api.wait_for(lambda: slack_api.messages(CHANNEL))
    assert [m["text"] for m in slack_api.messages(CHANNEL)] == ["heard shout from U_ALICE"]
    assert len(slack_api.responses()) == 2


def test_forged_and_stale_signatures_are_rejected(slack_api: SlackApiServer, bolt_url: str) -> None:
    sender = SlackRequestSender(bolt_url, SECRET, slack_api)
    assert sender.command("status", user_id="U_ALICE", channel_id=CHANNEL, secret="wrong")[0] == 401
    assert sender.command("status", user_id="U_ALICE", channel_id=CHANNEL, timestamp=1_000_000)[0] == 401
    assert slack_api.ephemerals() == []


def test_signed_button_click_replaces_the_original(slack_api: SlackApiServer, bolt_url: str, web: WebClient) -> None:
    blocks = [{"type": "actions", "block_id": "approval", "elements": [
        {"type": "button", "action_id": "rollback_approve", "value": "req-1", "text": {"type": "plain_text", "text": "Approve"}}]}]
    root = web.chat_postMessage(channel=CHANNEL, text="approve?", blocks=blocks)
    sender = SlackRequestSender(bolt_url, SECRET, slack_api)
    status, _ = sender.action("rollback_approve", "req-1", user_id="U_BOB", channel_id=CHANNEL, message_ts=root["ts"])
    assert status == 200
    expected = f"approved req-1 by U_BOB on {root['ts']}"
    slack_api.wait_for(lambda: slack_api.messages(CHANNEL)[0]["text"] == expected)
    assert len(slack_api.messages(CHANNEL)) == 1


def _event(action: str = "trigger", **extra: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"routing_key": "r" * 32, "event_action": action, **extra}
    if action == "trigger":
        event.setdefault("payload", {"summary": "rollback failed on prod", "source": "rollback-bot",
                                     "severity": "critical"})
    return event


def test_pagerduty_accepts_and_dedups_events(pagerduty: PagerDutyServer) -> None:
    first = requests.post(pagerduty.url, json=_event(dedup_key="req-1"), timeout=5)
    again = requests.post(pagerduty.url, json=_event(dedup_key="req-1"), timeout=5)
    assert first.status_code == again.status_code == 202
    assert first.json() == {"status": "success", "message": "Event processed", "dedup_key": "req-1"}
    assert len(pagerduty.open_incidents()) == 1
    requests.post(pagerduty.url, json=_event("resolve", dedup_key="req-1"), timeout=5)
    assert pagerduty.incidents()["req-1"].status == "resolved" and pagerduty.open_incidents() == []


def test_pagerduty_rejects_invalid_events(pagerduty: PagerDutyServer) -> None:
    bad = requests.post(pagerduty.url, json=_event(payload={"summary": "x"}), timeout=5)
    assert bad.status_code == 400 and bad.json()["status"] == "invalid event"
    assert any("severity" in e for e in bad.json()["errors"])
    assert requests.post(pagerduty.url, json=_event("resolve"), timeout=5).status_code == 400
    assert requests.post(pagerduty.url, data="{not json", timeout=5).status_code == 400
    assert pagerduty.events == []


def test_pagerduty_can_fail_the_next_requests(pagerduty: PagerDutyServer) -> None:
    pagerduty.fail_next(1, 429)
    pagerduty.fail_next(1, 503)
    codes = [requests.post(pagerduty.url, json=_event(), timeout=5).status_code for _ in range(3)]
    assert codes == [429, 503, 202]
    assert pagerduty.attempts == 3 and len(pagerduty.events) == 1


def _pydo_client(token: str, endpoint: str) -> pydo.Client:
    # azure-core refuses bearer tokens over plain http; a local http endpoint gets the header directly.
    return pydo.Client(token=token, endpoint=endpoint,
                       authentication_policy=HeadersPolicy({"Authorization": f"Bearer {token}"}))


def test_digitalocean_snapshot_through_pydo(digitalocean: DigitalOceanServer) -> None:
    client = _pydo_client("do-test-token", digitalocean.url)
    action = client.droplet_actions.post(DEFAULT_DROPLET_ID, {"type": "snapshot", "name": "pre-rollback"})["action"]
    assert action["status"] == "in-progress"
    assert client.actions.get(action["id"])["action"]["status"] == "completed"
    (snapshot,) = client.droplets.list_snapshots(DEFAULT_DROPLET_ID)["snapshots"]
    assert snapshot["name"] == "pre-rollback"
    assert client.snapshots.list()["snapshots"][0]["name"] == "pre-rollback"
    assert client.droplets.get(DEFAULT_DROPLET_ID)["droplet"]["snapshot_ids"] == [snapshot["id"]]
    assert client.databases.list_backups(DEFAULT_DATABASE_ID)["backups"][0]["size_gigabytes"] > 0
    assert client.droplets.get(999)["id"] == "not_found"  # pydo returns 404 bodies rather than raising


def test_digitalocean_requires_the_token_and_can_fail(digitalocean: DigitalOceanServer) -> None:
    with pytest.raises(ClientAuthenticationError):
        _pydo_client("wrong", digitalocean.url).droplets.get(DEFAULT_DROPLET_ID)
    digitalocean.fail_snapshots = True
    digitalocean.polls_until_complete = 2
    client = _pydo_client("do-test-token", digitalocean.url)
    action = client.droplet_actions.post(DEFAULT_DROPLET_ID, {"type": "snapshot", "name": "x"})["action"]
    statuses = [client.actions.get(action["id"])["action"]["status"] for _ in range(2)]
    assert statuses == ["in-progress", "errored"]
    assert json.loads(json.dumps(client.snapshots.list()))["snapshots"] == []


def _raw_post(url: str, body: bytes, content_type: str) -> requests.Response:
    return requests.post(url, data=body, headers={"Content-Type": content_type}, timeout=5)


def test_unreadable_api_bodies_get_slack_error_codes(slack_api: SlackApiServer, capfd: pytest.CaptureFixture[str]) -> None:
    url = slack_api.api_url + "chat.postMessage"
    cases = [
        (b"{not json", "application/json", "invalid_json"),
        (b"[1, 2]", "application/json", "json_not_object"),
        (b"\xff\xfe=\x00", "application/x-www-form-urlencoded", "invalid_form_data"),
        (b"channel", "application/x-www-form-urlencoded", "invalid_form_data"),
        (b"token=xoxb-test&channel=C1&limit=abc", "application/x-www-form-urlencoded", "no_text"),
    ]
    for body, content_type, error in cases:
        answer = _raw_post(url, body, content_type)
        assert (answer.status_code, answer.json()) == (200, {"ok": False, "error": error}), body
    history = _raw_post(slack_api.api_url + "conversations.history", b"token=xoxb-test&channel=C1&limit=abc",
                        "application/x-www-form-urlencoded")
    assert history.json() == {"ok": False, "error": "invalid_arguments"}
    raw = http.client.HTTPConnection(urlsplit(slack_api.url).netloc, timeout=5)
    raw.putrequest("POST", "/api/auth.test")
    raw.putheader("Content-Length", "many")
    raw.endheaders()
    bad_length = raw.getresponse()
    assert bad_length.status == 400 and json.loads(bad_length.read())["error"] == "invalid_form_data"
    raw.close()
    response = _raw_post(slack_api.url + "/response/R00000001", b"{oops", "application/json")
    assert (response.status_code, response.text) == (400, "invalid_payload")
    unknown = _raw_post(slack_api.url + "/response/R99999999", b"{}", "application/json")
    assert (unknown.status_code, unknown.text) == (404, "no_such_response_url")
    assert web_still_answers(slack_api)
    assert "Traceback" not in capfd.readouterr().err


def web_still_answers(slack_api: SlackApiServer) -> bool:
    return bool(WebClient(token="xoxb-test", base_url=slack_api.api_url).auth_test()["ok"])


def test_pagerduty_and_digitalocean_answer_garbage_with_one_line(
        pagerduty: PagerDutyServer, digitalocean: DigitalOceanServer, capfd: pytest.CaptureFixture[str]) -> None:
    for body in (b"\xff\xfe", b"[]", b'{"payload": 3}', b"null"):
        answer = _raw_post(pagerduty.url, body, "application/json")
        assert answer.status_code == 400 and answer.json()["status"] == "invalid event", body
    droplet = requests.post(f"{digitalocean.url}/v2/droplets/{DEFAULT_DROPLET_ID}/actions", data=b"{nope",
                            headers={"Authorization": f"Bearer {digitalocean.token}"}, timeout=5)
    assert droplet.status_code == 400 and "\n" not in droplet.json()["message"]
    assert pagerduty.events == [] and digitalocean.snapshots == []
    assert "Traceback" not in capfd.readouterr().err
