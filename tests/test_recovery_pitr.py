"""`/rollback pitr` end to end in the thread (playbook Method 3A): real bot, worker, PostgreSQL and Redis,
signed requests; the Supabase Management API stand-in reached through the workers' real `requests` client.

The stand-in's `on_restore` hook makes the database really go back (the engine reverts the migrations
applied after the point), so verification after the recovery checks a database that changed."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
import redis

from core.requests import Request, RequestKind, RequestStatus, RequestStore
from sandbox.http_stub import ACCEPTED_THEN_500, REFUSED
from sandbox.pagerduty import PagerDutyServer
from sandbox.signing import SlackRequestSender
from sandbox.slack_api import SlackApiServer, message_text
from sandbox.supabase import DEFAULT_REF, SupabaseServer
from tests.fixtures.stack import (
    EXAMPLE_MIGRATIONS,
    WorkerProcess,
    apply_example,
    incident_history,
    write_config,
)
from workers.engine import Engine

CHANNEL = "C_INCIDENT"
ALICE, BOB = "U_ALICE", "U_BOB"
TOKEN = "sbp_recovery_test_token"
GOOD, BAD = "2025_10_20_120001", "2025_10_20_150000"
RESTORE_PATH = f"/v1/projects/{DEFAULT_REF}/database/backups/restore-pitr"


@pytest.fixture
def supabase() -> Iterator[SupabaseServer]:
    with SupabaseServer(token=TOKEN, polls_until_healthy=2) as server:
        yield server


@pytest.fixture
def pitr_env(stack_env: dict[str, str], supabase: SupabaseServer) -> dict[str, str]:
    """The stack with target prod as a Supabase project, short polling bounds for the tests."""
    write_config(stack_env["ROLLBACK_CONFIG"], target_extra=f'supabase_project_ref = "{DEFAULT_REF}"')
    return {**stack_env, "SUPABASE_ACCESS_TOKEN": TOKEN, "SUPABASE_API_URL": supabase.url,
            "ROLLBACK_PITR_POLL_SECONDS": "0.2", "ROLLBACK_PITR_TIMEOUT_SECONDS": "30"}


@pytest.fixture
def start(pitr_env: dict[str, str], start_worker: Callable[[dict[str, str]], WorkerProcess]) -> Callable[..., None]:
    def run(**extra: str) -> None:
        start_worker({**pitr_env, **extra})

    return run


@pytest.fixture
def store(stack_env: dict[str, str]) -> RequestStore:
    return RequestStore(redis.Redis.from_url(stack_env["REDIS_URL"]))


def _rows(database_url: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(query, params).fetchall()


def _going_back(database_url: str) -> Callable[[str, int], None]:
    """The stand-in's restore: the database as it was at the point (the bad migration undone)."""
    def restore(ref: str, point: int) -> None:
        Engine(database_url, str(EXAMPLE_MIGRATIONS), actor="supabase").rollback(to=GOOD)

    return restore


def _ask(sender: SlackRequestSender, slack_api: SlackApiServer, store: RequestStore, text: str) -> Request:
    sender.command(text, user_id=ALICE, channel_id=CHANNEL)
    return slack_api.wait_for(lambda: [r for r in store.for_channel(CHANNEL) if r.thread_ts], timeout=120)[0]


def _refusal(slack_api: SlackApiServer) -> str:
    return slack_api.wait_for(lambda: [message_text(e) for e in slack_api.ephemerals(user=ALICE)], timeout=120)[0]


def _thread(slack_api: SlackApiServer, request: Request) -> str:
    return "\n".join(message_text(m) for m in slack_api.thread(CHANNEL, request.thread_ts))


def _approve_and_wait(sender: SlackRequestSender, slack_api: SlackApiServer, store: RequestStore,
                      request: Request) -> Request:
    sender.action("rollback_approve", request.id, user_id=BOB, channel_id=CHANNEL, message_ts=request.thread_ts)
    slack_api.wait_for(lambda: store.get(request.id).status in (RequestStatus.SUCCEEDED, RequestStatus.FAILED),
                       timeout=180)
    done = store.get(request.id)
    assert done is not None
    return done


def test_point_from_history_window_checked_restored_to_healthy_and_verified(
    start: Callable[..., None], stack_sender: SlackRequestSender, slack_api: SlackApiServer, store: RequestStore,
    database_url: str, supabase: SupabaseServer, pagerduty: PagerDutyServer,
) -> None:
    incident_history(database_url)
    start()
    applied = _rows(database_url, "SELECT extract(epoch FROM applied_at) FROM schema_migrations WHERE version = %s", (BAD,))
    expected_point = int(float(applied[0][0])) - 60  # just before the bad migration, minus the margin
    supabase.on_restore = _going_back(database_url)

    request = _ask(stack_sender, slack_api, store, "pitr prod")
    assert request.kind is RequestKind.PITR and request.params["point_unix"] == expected_point
    assert request.to_version == BAD
    card = message_text(slack_api.thread(CHANNEL, request.thread_ts)[0])
    when = datetime.fromtimestamp(expected_point, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    assert f"Supabase project `{DEFAULT_REF}` back to {when}, just before `{BAD}` was applied" in card
    assert f"now `{BAD}` (4 applied) → after `{GOOD}` (3 applied); undone: `{BAD}`" in card
    assert f"*Everything written after {when} (11 min ago) is lost.*" in card
    assert "Rows created or updated since then: `new_feature_table` 16." in card  # not users: older than the point
    assert supabase.restores == []  # nothing ran before the approval

    done = _approve_and_wait(stack_sender, slack_api, store, request)
    assert done.status is RequestStatus.SUCCEEDED, _thread(slack_api, request)
    # The worker sets the status, then posts the outcome line: wait for that line, not only the status.
    thread = slack_api.wait_for(lambda: "done and verified" in (t := _thread(slack_api, request)) and t)
    assert supabase.restores == [(DEFAULT_REF, expected_point)]
    assert "*Point-in-time recovery* finished" in thread and "*Verification* finished" in thread
    assert "point-in-time recovery of *prod* done and verified" in thread
    assert _rows(database_url, "SELECT status FROM schema_migrations WHERE version = %s", (BAD,)) == [("rolled_back",)]
    assert _rows(database_url, "SELECT status FROM migration_history WHERE operation = 'pitr'") == [("completed",)]
    assert TOKEN not in thread and pagerduty.events == []


def test_a_project_without_pitr_is_refused_naming_the_other_options(
    start: Callable[..., None], stack_sender: SlackRequestSender, slack_api: SlackApiServer, store: RequestStore,
    database_url: str, supabase: SupabaseServer,
) -> None:
    apply_example(database_url)
    start()
    supabase.projects[DEFAULT_REF].pitr_enabled = False
    stack_sender.command("pitr prod", user_id=ALICE, channel_id=CHANNEL)
    refusal = _refusal(slack_api)
    assert "has no point-in-time recovery enabled" in refusal and "/rollback restore" in refusal, refusal
    assert "/rollback recover" in refusal and "\n" not in refusal and store.for_channel(CHANNEL) == []


def test_a_point_outside_the_window_is_refused(
    start: Callable[..., None], stack_sender: SlackRequestSender, slack_api: SlackApiServer, store: RequestStore,
    database_url: str, supabase: SupabaseServer,
) -> None:
    apply_example(database_url)
    start()
    stack_sender.command("pitr 2024-01-01T00:00:00Z prod", user_id=ALICE, channel_id=CHANNEL)
    refusal = _refusal(slack_api)
    assert "2024-01-01 00:00:00 UTC is outside the project's recovery window" in refusal, refusal
    assert "/rollback restore" in refusal and store.for_channel(CHANNEL) == [] and supabase.restores == []


def test_a_4xx_from_the_api_is_refused_in_one_line_naming_the_other_options(
    start: Callable[..., None], stack_sender: SlackRequestSender, slack_api: SlackApiServer, store: RequestStore,
    database_url: str, supabase: SupabaseServer, pagerduty: PagerDutyServer,
) -> None:
    apply_example(database_url)
    start(SUPABASE_ACCESS_TOKEN="sbp_revoked_token")
    stack_sender.command("pitr prod", user_id=ALICE, channel_id=CHANNEL)
    refusal = _refusal(slack_api)
    assert "Supabase refused the backups of project" in refusal and "HTTP 401" in refusal, refusal
    assert "/rollback restore" in refusal and "/rollback recover" in refusal and "\n" not in refusal
    assert "sbp_revoked_token" not in refusal and store.for_channel(CHANNEL) == []
    assert pagerduty.events == []  # the API's answer, not an outage: nobody is paged (sent before the answer)


def test_a_5xx_while_checking_is_retried_then_answered_in_one_line_and_paged(
    start: Callable[..., None], stack_sender: SlackRequestSender, slack_api: SlackApiServer, store: RequestStore,
    database_url: str, supabase: SupabaseServer, pagerduty: PagerDutyServer,
) -> None:
    apply_example(database_url)
    start()
    supabase.fail_next = [503] * 4  # every attempt at the window
    stack_sender.command("pitr prod", user_id=ALICE, channel_id=CHANNEL)
    refusal = _refusal(slack_api)
    assert refusal.startswith("Refused: `/rollback pitr` on `prod` cannot run: the API is failing: Supabase did not "
                              f"answer the backups of project {DEFAULT_REF} after 4 attempts (HTTP 503)"), refusal
    assert "on-call has been paged (PagerDuty)" in refusal and "/rollback restore" in refusal and "\n" not in refusal
    assert store.for_channel(CHANNEL) == [] and supabase.fail_next == [] and supabase.restores == []
    assert [p for _, p in supabase.requests].count(f"/v1/projects/{DEFAULT_REF}/database/backups") == 4
    (page,) = [e for e in pagerduty.events if e.get("event_action") == "trigger"]  # paged before the answer
    assert page["dedup_key"] == "rollback-bot/check/pitr/prod" and page["payload"]["component"] == "prod"
    assert "point-in-time recovery of prod cannot even be asked for" in page["payload"]["summary"]
    assert page["payload"]["custom_details"]["channel"] == CHANNEL and TOKEN not in json.dumps(page)


def test_a_5xx_when_the_approved_recovery_starts_fails_it_and_pages(
    start: Callable[..., None], stack_sender: SlackRequestSender, slack_api: SlackApiServer, store: RequestStore,
    database_url: str, supabase: SupabaseServer, pagerduty: PagerDutyServer,
) -> None:
    apply_example(database_url)
    start()
    request = _ask(stack_sender, slack_api, store, "pitr prod")
    supabase.fail_next = [503] * 4  # the start check's look at the window
    done = _approve_and_wait(stack_sender, slack_api, store, request)
    thread = _thread(slack_api, request)
    assert done.status is RequestStatus.FAILED, thread
    assert f"Supabase did not answer the backups of project {DEFAULT_REF} after 4 attempts" in thread
    assert supabase.restores == [] and TOKEN not in thread
    pagerduty.wait_for(lambda: [e for e in pagerduty.events if e.get("event_action") == "trigger"], timeout=30)


def test_restore_pitr_answered_500_every_time_is_sent_once_reported_in_one_line_and_paged(
    start: Callable[..., None], stack_sender: SlackRequestSender, slack_api: SlackApiServer, store: RequestStore,
    database_url: str, supabase: SupabaseServer, pagerduty: PagerDutyServer,
) -> None:
    apply_example(database_url)
    start()
    request = _ask(stack_sender, slack_api, store, "pitr prod")
    supabase.post_faults = [REFUSED] * 4  # every answer a 500 (the client used to send it four times)
    done = _approve_and_wait(stack_sender, slack_api, store, request)
    thread = _thread(slack_api, request)
    assert done.status is RequestStatus.FAILED, thread
    assert supabase.posts[RESTORE_PATH] == 1 and supabase.restores == []
    assert (f"Supabase gave no answer to point-in-time recovery of project {DEFAULT_REF} (HTTP 500); sent once, "
            f"not resent, and project {DEFAULT_REF} is ACTIVE_HEALTHY: nothing was started") in thread, thread
    assert TOKEN not in thread
    pagerduty.wait_for(lambda: [e for e in pagerduty.events if e.get("event_action") == "trigger"], timeout=30)


def test_restore_pitr_accepted_then_answered_500_is_followed_to_healthy_and_verified(
    start: Callable[..., None], stack_sender: SlackRequestSender, slack_api: SlackApiServer, store: RequestStore,
    database_url: str, supabase: SupabaseServer, pagerduty: PagerDutyServer,
) -> None:
    incident_history(database_url)
    start()
    supabase.on_restore = _going_back(database_url)
    request = _ask(stack_sender, slack_api, store, "pitr prod")
    supabase.post_faults = [ACCEPTED_THEN_500]  # the recovery starts, its answer is lost
    done = _approve_and_wait(stack_sender, slack_api, store, request)
    thread = _thread(slack_api, request)
    assert done.status is RequestStatus.SUCCEEDED, thread
    assert supabase.posts[RESTORE_PATH] == 1 and supabase.restores == [(DEFAULT_REF, request.params["point_unix"])]
    assert "*Point-in-time recovery* finished" in thread and "*Verification* finished" in thread
    assert _rows(database_url, "SELECT status FROM schema_migrations WHERE version = %s", (BAD,)) == [("rolled_back",)]
    assert pagerduty.events == []


def test_a_recovery_that_stays_unhealthy_past_the_bound_is_paged(
    start: Callable[..., None], stack_sender: SlackRequestSender, slack_api: SlackApiServer, store: RequestStore,
    database_url: str, supabase: SupabaseServer, pagerduty: PagerDutyServer,
) -> None:
    apply_example(database_url)
    start(ROLLBACK_PITR_TIMEOUT_SECONDS="1")
    supabase.stuck = True
    request = _ask(stack_sender, slack_api, store, f"pitr before {BAD} prod")
    started = time.monotonic()
    done = _approve_and_wait(stack_sender, slack_api, store, request)
    thread = _thread(slack_api, request)
    assert done.status is RequestStatus.FAILED, thread
    assert f"project {DEFAULT_REF} is still RESTORING after" in thread and "verification has not run" in thread
    assert supabase.restores and time.monotonic() - started < 120
    pagerduty.wait_for(lambda: [e for e in pagerduty.events if e.get("event_action") == "trigger"], timeout=30)


def test_a_target_that_is_not_a_supabase_project_is_refused(
    stack_env: dict[str, str], start_worker: Callable[[dict[str, str]], WorkerProcess],
    stack_sender: SlackRequestSender, slack_api: SlackApiServer, store: RequestStore, database_url: str,
) -> None:
    apply_example(database_url)
    start_worker(stack_env)
    stack_sender.command("pitr prod", user_id=ALICE, channel_id=CHANNEL)
    refusal = _refusal(slack_api)
    assert "target prod is not a Supabase project" in refusal and "supabase_project_ref" in refusal, refusal
    assert store.for_channel(CHANNEL) == []
