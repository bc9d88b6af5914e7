"""`/rollback snapshot-restore <snapshot> --new-droplet [name]` end to end (playbook Method 3B as written: a new
droplet from a snapshot, the old one left alone): real bot over signed HTTP, a real worker, PostgreSQL and
Redis; the DigitalOcean stand-in reached through the workers' real pydo client."""

from __future__ import annotations

import re
from collections.abc import Callable

import psycopg
import pytest
import redis

from core.requests import Request, RequestKind, RequestStatus, RequestStore
from sandbox.digitalocean import DEFAULT_DROPLET_ID, DigitalOceanServer
from sandbox.http_stub import ACCEPTED_THEN_DROPPED
from sandbox.pagerduty import PagerDutyServer
from sandbox.signing import SlackRequestSender
from sandbox.slack_api import SlackApiServer, message_text
from tests.fixtures.stack import WorkerProcess, apply_example, write_config

CHANNEL = "C_INCIDENT"
ALICE, BOB = "U_ALICE", "U_BOB"
OTHER_DROPLET = 5151  # a droplet of the account that is not the target's


@pytest.fixture
def store(stack_env: dict[str, str]) -> RequestStore:
    return RequestStore(redis.Redis.from_url(stack_env["REDIS_URL"]))


@pytest.fixture
def do_worker(stack_env: dict[str, str], start_worker: Callable[[dict[str, str]], WorkerProcess],
              digitalocean: DigitalOceanServer) -> WorkerProcess:
    digitalocean.droplets[OTHER_DROPLET] = "db-prod-old"
    write_config(stack_env["ROLLBACK_CONFIG"], target_extra=f"do_droplet_id = {DEFAULT_DROPLET_ID}")
    return start_worker({**stack_env, "ROLLBACK_DO_POLL_SECONDS": "0.1"})


def _thread(slack_api: SlackApiServer, request: Request) -> str:
    return "\n".join(message_text(m) for m in slack_api.thread(CHANNEL, request.thread_ts))


def _ask(sender: SlackRequestSender, slack_api: SlackApiServer, store: RequestStore, text: str) -> Request:
    sender.command(text, user_id=ALICE, channel_id=CHANNEL)
    return slack_api.wait_for(lambda: [r for r in store.for_channel(CHANNEL) if r.thread_ts], timeout=120)[0]


def _approve_and_wait(sender: SlackRequestSender, slack_api: SlackApiServer, store: RequestStore,
                      request: Request) -> Request:
    sender.action("rollback_approve", request.id, user_id=BOB, channel_id=CHANNEL, message_ts=request.thread_ts)
    slack_api.wait_for(lambda: store.get(request.id).status in (RequestStatus.SUCCEEDED, RequestStatus.FAILED),
                       timeout=180)
    done = store.get(request.id)
    assert done is not None
    return done


def _history(database_url: str) -> list[tuple[str, str]]:
    with psycopg.connect(database_url) as conn:
        return [(str(o), str(s)) for o, s in conn.execute(
            "SELECT operation, status FROM migration_history WHERE operation = 'new_droplet'").fetchall()]


@pytest.mark.usefixtures("do_worker")
def test_a_new_droplet_from_any_snapshot_posts_its_ip_and_the_exact_switch_and_leaves_the_old_one(
    stack_sender: SlackRequestSender, slack_api: SlackApiServer, store: RequestStore, database_url: str,
    digitalocean: DigitalOceanServer, pagerduty: PagerDutyServer,
) -> None:
    apply_example(database_url)
    snapshot = digitalocean.add_snapshot(OTHER_DROPLET, "db-prod-old-nightly")  # not the target's droplet's

    request = _ask(stack_sender, slack_api, store, f"snapshot-restore {snapshot} --new-droplet restored-db prod")
    assert request.kind is RequestKind.NEW_DROPLET
    assert (request.params["new_name"], request.params["size"], request.params["region"]) == (
        "restored-db", "s-2vcpu-2gb", "nyc3")  # the source droplet's size and region
    card = message_text(slack_api.thread(CHANNEL, request.thread_ts)[0])
    assert f"A new droplet `restored-db` from snapshot `{snapshot}`" in card and f"`{OTHER_DROPLET}`" in card
    assert "The live droplet is left as it is" in card

    done = _approve_and_wait(stack_sender, slack_api, store, request)
    thread = _thread(slack_api, request)
    assert done.status is RequestStatus.SUCCEEDED, thread
    (created,) = digitalocean.droplets_named("restored-db")
    assert created["status"] == "active" and created["image"]["id"] == int(snapshot)
    assert (created["size_slug"], created["region"]["slug"]) == ("s-2vcpu-2gb", "nyc3")
    ip = created["networks"]["v4"][0]["ip_address"]
    dbname = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
    assert f"active at IP `{ip}`" in thread
    assert f"DATABASE_URL=postgresql://postgres:***@{ip}:5432/{dbname}" in thread, thread
    assert f"A record that points at `203.0.113.1` to `{ip}`" in thread  # the old droplet's IP, the new one
    assert "Not watched: the application does not use the new droplet yet" in thread
    # the old droplets were not touched: no action on any of them
    assert not digitalocean.actions and digitalocean.posts["/v2/droplets"] == 1
    assert not re.search(r"\*Maintenance|\*Backup\*", thread)
    assert _history(database_url) == [("new_droplet", "completed")]
    assert pagerduty.events == []


@pytest.mark.usefixtures("do_worker")
def test_the_default_name_and_a_lost_answer_looked_up_by_name_sent_once(
    stack_sender: SlackRequestSender, slack_api: SlackApiServer, store: RequestStore, database_url: str,
    digitalocean: DigitalOceanServer, pagerduty: PagerDutyServer,
) -> None:
    apply_example(database_url)
    snapshot = digitalocean.add_snapshot(DEFAULT_DROPLET_ID, "app-prod-1-nightly")
    request = _ask(stack_sender, slack_api, store, f"snapshot-restore {snapshot} --new-droplet prod")
    assert re.fullmatch(r"prod-restored-\d{12}", request.params["new_name"]), request.params
    digitalocean.post_faults = [ACCEPTED_THEN_DROPPED]  # the droplet is created, the answer is lost

    done = _approve_and_wait(stack_sender, slack_api, store, request)
    thread = _thread(slack_api, request)
    assert done.status is RequestStatus.SUCCEEDED, thread
    assert digitalocean.posts["/v2/droplets"] == 1 and digitalocean.post_faults == []
    (created,) = digitalocean.droplets_named(request.params["new_name"])
    assert created["status"] == "active" and f"`{created['networks']['v4'][0]['ip_address']}`" in thread
    assert pagerduty.events == []


@pytest.mark.usefixtures("do_worker")
def test_a_droplet_not_as_promised_fails_the_verification(
    stack_sender: SlackRequestSender, slack_api: SlackApiServer, store: RequestStore, database_url: str,
    digitalocean: DigitalOceanServer,
) -> None:
    apply_example(database_url)
    snapshot = digitalocean.add_snapshot(DEFAULT_DROPLET_ID, "app-prod-1-nightly")
    request = _ask(stack_sender, slack_api, store, f"snapshot-restore {snapshot} --new-droplet restored-db prod")
    original = digitalocean._droplet  # the droplet, read back for the verification, has been renamed

    def renamed_once_active(req, droplet_id):  # type: ignore[no-untyped-def]
        status, body = original(req, droplet_id)
        if body.get("droplet", {}).get("status") == "active" and int(droplet_id) in digitalocean.new_droplets:
            body = {"droplet": {**body["droplet"], "name": "someone-elses"}}
        return status, body

    digitalocean._droplet = renamed_once_active  # type: ignore[method-assign]
    done = _approve_and_wait(stack_sender, slack_api, store, request)
    thread = _thread(slack_api, request)
    assert done.status is RequestStatus.FAILED, thread
    assert "the new droplet's name is 'someone-elses', the approval named 'restored-db'" in thread


@pytest.mark.usefixtures("do_worker")
def test_a_snapshot_that_does_not_exist_is_refused_in_one_line_before_approval(
    stack_sender: SlackRequestSender, slack_api: SlackApiServer, store: RequestStore, database_url: str,
    digitalocean: DigitalOceanServer,
) -> None:
    apply_example(database_url)
    stack_sender.command("snapshot-restore 987654321 --new-droplet prod", user_id=ALICE, channel_id=CHANNEL)
    refusal = slack_api.wait_for(lambda: [message_text(e) for e in slack_api.ephemerals(user=ALICE)], timeout=120)[0]
    assert refusal.startswith("Refused: `/rollback snapshot-restore --new-droplet` on `prod` cannot run: snapshot "
                              "987654321 cannot be used"), refusal
    assert "\n" not in refusal and store.for_channel(CHANNEL) == [] and digitalocean.posts["/v2/droplets"] == 0
