"""Paging (PagerDuty Events v2 stand-in) and thread progress (Slack Web API stand-in), with the real clients."""

from __future__ import annotations

import threading

from slack_sdk import WebClient

from tests.fixtures.fakes import SLACK_TOKEN, WAIT_SECONDS
from tests.fixtures.stack import CHANNEL, post_root, thread_text
from workers.runtime.escalation import Pager, dedup_key, escalate
from workers.runtime.progress import Progress, make_client

KEY = "R0UT1NGKEY0000000000000000000000"


def _pager(pagerduty, **kw) -> Pager:
    return Pager(routing_key=KEY, events_url=pagerduty.url, backoff_s=0.01, **kw)


def test_trigger_retries_429_and_5xx_then_succeeds(pagerduty):
    pagerduty.fail_next(1, 429)
    pagerduty.fail_next(1, 503)
    result = _pager(pagerduty).trigger(dedup_key("RB-1"), "rollback-bot: Rollback failed on prod")
    assert result.ok and result.attempts == 3
    assert pagerduty.attempts == 3 and len(pagerduty.events) == 1


def test_retries_are_bounded(pagerduty):
    pagerduty.fail_next(10, 500)
    result = _pager(pagerduty, max_attempts=3).trigger(dedup_key("RB-2"), "summary")
    assert not result.ok and result.attempts == 3 and pagerduty.attempts == 3
    assert "after 3 attempts" in result.detail


def test_a_400_is_never_retried(pagerduty):
    result = _pager(pagerduty).trigger(dedup_key("RB-3"), "")  # an empty summary is an invalid event
    assert not result.ok and result.status == 400 and pagerduty.attempts == 1


def test_one_incident_per_request_resolved_by_the_later_success(pagerduty):
    pager = _pager(pagerduty)
    pager.trigger(dedup_key("RB-4"), "first failure")
    pager.trigger(dedup_key("RB-4"), "retried, failed again")
    assert len(pagerduty.open_incidents()) == 1
    assert pager.resolve(dedup_key("RB-4")).ok
    assert pagerduty.open_incidents() == []


def test_without_a_routing_key_nothing_is_sent(pagerduty):
    result = Pager(routing_key=None, events_url=pagerduty.url).trigger("k", "s")
    assert result.skipped and not result.ok and pagerduty.attempts == 0


def test_escalate_links_the_thread_and_mentions_the_contacts(slack_api, pagerduty):
    ts = post_root(slack_api, "root")
    progress = Progress(make_client(SLACK_TOKEN, slack_api.api_url), CHANNEL, ts)
    escalate(_pager(pagerduty), progress, key=dedup_key("RB-5"), target="prod", version="2025_10_20_120001",
             step="verify", error="health check failed", contacts=["U_DBA", "S_ONCALL"])
    event = pagerduty.events[0]
    assert event["links"][0]["href"].startswith("http") and ts.replace(".", "") in event["links"][0]["href"]
    assert "prod" in event["payload"]["summary"] and "2025_10_20_120001" in event["payload"]["summary"]
    assert event["payload"]["custom_details"]["failed_step"] == "verify"
    text = thread_text(slack_api, ts)
    assert "<@U_DBA>" in text and "<!subteam^S_ONCALL>" in text and "PagerDuty paged" in text


def test_progress_posts_into_the_thread_and_logs(slack_api):
    ts = post_root(slack_api, "root")
    logged: list[str] = []
    progress = Progress(make_client(SLACK_TOKEN, slack_api.api_url), CHANNEL, ts, logged.append)
    started = progress.start("backup", "pg_dump")
    progress.finish("backup", started, {"size": "1.0 MB"})
    text = thread_text(slack_api, ts)
    assert "*Backup* started: pg_dump" in text and "size 1.0 MB" in text
    assert len(logged) == 2


def test_heartbeat_posts_while_a_long_step_runs(slack_api):
    ts = post_root(slack_api, "root")
    progress = Progress(make_client(SLACK_TOKEN, slack_api.api_url), CHANNEL, ts, interval_s=0.2)
    with progress.heartbeat("rollback") as beat:
        beat("3 of 5 statements")
        slack_api.wait_for(lambda: thread_text(slack_api, ts).count("still running") >= 2, timeout=WAIT_SECONDS)
    assert "3 of 5 statements" in thread_text(slack_api, ts)
    after = thread_text(slack_api, ts).count("still running")
    # the step's end stops and joins the heartbeat thread: nothing can post after this
    assert not [t for t in threading.enumerate() if t.name == "heartbeat-rollback"]
    assert thread_text(slack_api, ts).count("still running") == after  # stopped with the step


def test_slack_failures_never_break_the_job():
    unreachable = WebClient(token="xoxb-x", base_url="http://127.0.0.1:9/api/", timeout=1)
    logged: list[str] = []
    progress = Progress(unreachable, CHANNEL, "1.2", logged.append)
    assert progress.post("still works") is None
    assert progress.permalink() is None
    assert logged == ["still works"]


def test_wrong_token_is_logged_not_raised(slack_api):
    progress = Progress(make_client("xoxb-wrong", slack_api.api_url), CHANNEL, None)
    assert progress.post("hello") is None
