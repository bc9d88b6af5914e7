"""The team is told at the start (issue 18 item 7): when a change request is created (its card posted) and when
the approved request starts (the runner's first thread line), the target's contacts (`contacts_for`: its
escalation, then the global ones) are mentioned in the request's thread, not only on failure. Real bot over
signed HTTP, a real worker, PostgreSQL, Redis and the DigitalOcean stand-in."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis

from core.kinds import KINDS, RequestKind
from core.requests import Request, RequestStatus, RequestStore
from sandbox.digitalocean import DEFAULT_DATABASE_ID, DEFAULT_DROPLET_ID, DigitalOceanServer
from sandbox.signing import SlackRequestSender
from sandbox.slack_api import SlackApiServer, message_text
from tests.fixtures.stack import WorkerProcess, apply_example, write_config
from workers.messages import STARTED

CHANNEL = "C_INCIDENT"
ALICE, BOB = "U_ALICE", "U_BOB"
CONTACT = "<@U_DBA>"  # the stack's prod escalation contact
GOOD = "2025_10_20_120001"


def _rollback(sender: SlackRequestSender, store: RequestStore, slack_api: SlackApiServer,
              do: DigitalOceanServer) -> str:
    sender.command(f"dry-run {GOOD} prod", user_id=ALICE, channel_id=CHANNEL)
    slack_api.wait_for(lambda: store.current_plan(CHANNEL, "prod"), timeout=120)
    return "execute prod"


def _snapshot_restore(sender: SlackRequestSender, store: RequestStore, slack_api: SlackApiServer,
                      do: DigitalOceanServer) -> str:
    return f"snapshot-restore {do.add_snapshot(DEFAULT_DROPLET_ID, 'nightly')} prod"


def _new_droplet(sender: SlackRequestSender, store: RequestStore, slack_api: SlackApiServer,
                 do: DigitalOceanServer) -> str:
    return f"snapshot-restore {do.add_snapshot(DEFAULT_DROPLET_ID, 'nightly')} --new-droplet restored-db prod"


def _cluster_restore(sender: SlackRequestSender, store: RequestStore, slack_api: SlackApiServer,
                     do: DigitalOceanServer) -> str:
    return "cluster-restore prod"


# How each kind is asked for through the bot. The kinds left out need a stage of their own before they can be
# asked (a failed migration, an escrowed rollback, an assessed session, a verified backup file, a Supabase
# project); the creation and start lines are the same code for every kind (bot/handlers.py `ask`,
# workers/runtime/approved_requests.py `run_request`).
ASK: dict[str, Callable[[SlackRequestSender, RequestStore, SlackApiServer, DigitalOceanServer], str]] = {
    RequestKind.ROLLBACK.value: _rollback,
    RequestKind.SNAPSHOT_RESTORE.value: _snapshot_restore,
    RequestKind.NEW_DROPLET.value: _new_droplet,
    RequestKind.CLUSTER_RESTORE.value: _cluster_restore,
}


@pytest.fixture
def store(stack_env: dict[str, str]) -> RequestStore:
    return RequestStore(redis.Redis.from_url(stack_env["REDIS_URL"]))


def _lines(slack_api: SlackApiServer, request: Request) -> list[str]:
    return [message_text(m) for m in slack_api.thread(CHANNEL, request.thread_ts)]


@pytest.mark.parametrize("kind", [k for k in KINDS if k.value in ASK], ids=lambda k: k.value)
def test_the_contacts_are_mentioned_when_a_request_is_created_and_when_it_starts(
    kind: RequestKind, stack_env: dict[str, str], start_worker: Callable[[dict[str, str]], WorkerProcess],
    stack_sender: SlackRequestSender, slack_api: SlackApiServer, store: RequestStore, database_url: str,
    digitalocean: DigitalOceanServer,
) -> None:
    write_config(stack_env["ROLLBACK_CONFIG"],
                 target_extra=f'do_droplet_id = {DEFAULT_DROPLET_ID}\ndo_database_id = "{DEFAULT_DATABASE_ID}"')
    start_worker(stack_env)
    apply_example(database_url)
    text = ASK[kind.value](stack_sender, store, slack_api, digitalocean)
    stack_sender.command(text, user_id=ALICE, channel_id=CHANNEL)
    request = slack_api.wait_for(lambda: [r for r in store.for_channel(CHANNEL) if r.kind is kind and r.thread_ts],
                                 timeout=120)[0]
    created = slack_api.wait_for(lambda: _lines(slack_api, request)[1:], timeout=30)
    assert CONTACT in created[0] and request.id in created[0] and "waits for a second person's approval" in created[0]
    assert CONTACT not in _lines(slack_api, request)[0]  # the card itself stays as it was

    stack_sender.action("rollback_approve", request.id, user_id=BOB, channel_id=CHANNEL, message_ts=request.thread_ts)
    started = slack_api.wait_for(lambda: [t for t in _lines(slack_api, request) if t.startswith(STARTED)], timeout=120)
    assert started[0].startswith(f"{STARTED} Request {request.id}:") and started[0].endswith(f"(cc {CONTACT})")
    slack_api.wait_for(lambda: store.get(request.id).status in (RequestStatus.SUCCEEDED, RequestStatus.FAILED),
                       timeout=180)
