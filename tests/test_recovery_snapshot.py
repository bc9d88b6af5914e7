"""`/rollback snapshot-restore` end to end in the thread (playbook Method 3B, self-hosted PostgreSQL on a
droplet: in place, or `--new-droplet`, a new droplet from any snapshot with the old one left alone), and
`/rollback cluster-restore` (managed PostgreSQL: a new cluster from a backup): real bot, worker, PostgreSQL and Redis, signed requests; the DigitalOcean API stand-in reached through the workers'
real pydo client. The stand-in's `on_droplet_restore` hook makes the database go back to the snapshot
(the engine reverts the migration applied after it)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from core.requests import Request, RequestKind, RequestStatus, RequestStore
from sandbox.digitalocean import DEFAULT_DATABASE_ID, DEFAULT_DROPLET_ID, DigitalOceanServer
from sandbox.http_stub import ACCEPTED_THEN_500, ACCEPTED_THEN_DROPPED, REFUSED
from sandbox.pagerduty import PagerDutyServer
from sandbox.signing import SlackRequestSender
from sandbox.slack_api import SlackApiServer, message_text
from tests.fixtures.bot import SIGNING_SECRET, BotServer, start_bot
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
GOOD, BAD = "2025_10_20_120001", "2025_10_20_150000"
VERSIONS_BEFORE_BAD = ["2025_10_01_090000", "2025_10_01_090500", GOOD]


def AN_HOUR_AGO() -> str:  # noqa: N802 - reads as the moment it names
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))


@pytest.fixture
def droplet_worker(stack_env: dict[str, str], start_worker: Callable[[dict[str, str]], WorkerProcess]) -> WorkerProcess:
    """The stack with target prod on a droplet; DigitalOcean polled quickly."""
    write_config(stack_env["ROLLBACK_CONFIG"], target_extra=f"do_droplet_id = {DEFAULT_DROPLET_ID}")
    return start_worker({**stack_env, "ROLLBACK_DO_POLL_SECONDS": "0.1", "ROLLBACK_PITR_POLL_SECONDS": "0.1"})


@pytest.fixture
def store(stack_env: dict[str, str]) -> RequestStore:
    return RequestStore(redis.Redis.from_url(stack_env["REDIS_URL"]))


def _rows(database_url: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(query, params).fetchall()


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


@pytest.mark.usefixtures("droplet_worker")
def test_the_droplet_is_restored_from_its_snapshot_then_checked_and_verified(
    stack_sender: SlackRequestSender, slack_api: SlackApiServer, store: RequestStore, database_url: str,
    digitalocean: DigitalOceanServer, pagerduty: PagerDutyServer,
) -> None:
    incident_history(database_url)  # the good migrations long ago, the bad one ten minutes ago
    snapshot = digitalocean.add_snapshot(DEFAULT_DROPLET_ID, "app-prod-1-nightly", created_at=AN_HOUR_AGO())
    digitalocean.on_droplet_restore = lambda droplet, taken: Engine(
        database_url, str(EXAMPLE_MIGRATIONS), actor="droplet").rollback(to=GOOD)

    request = _ask(stack_sender, slack_api, store, f"snapshot-restore {snapshot} prod")
    assert request.kind is RequestKind.SNAPSHOT_RESTORE and request.params["snapshot"] == snapshot
    assert request.params["versions_after"] == VERSIONS_BEFORE_BAD  # the card's promise, which the verification checks
    card = message_text(slack_api.thread(CHANNEL, request.thread_ts)[0])
    assert f"Droplet `{DEFAULT_DROPLET_ID}` back to snapshot `{snapshot}` (`app-prod-1-nightly`)" in card
    assert "*Everything written after" in card and "is lost.*" in card and "Preview hash" in card

    done = _approve_and_wait(stack_sender, slack_api, store, request)
    # The worker sets the status, then posts the outcome line: wait for that line, not only the status.
    thread = slack_api.wait_for(lambda: "done and verified" in (t := _thread(slack_api, request)) and t)
    assert done.status is RequestStatus.SUCCEEDED, thread
    assert ("POST", f"/v2/droplets/{DEFAULT_DROPLET_ID}/actions") in digitalocean.requests
    restores = [a for a in digitalocean.actions.values() if a.type == "restore"]
    assert [(a.image, a.status) for a in restores] == [(int(snapshot), "completed")]
    assert "*Snapshot restore* finished" in thread and "*Verification* finished" in thread
    assert "snapshot restore of *prod* done and verified" in thread
    assert _rows(database_url, "SELECT status FROM schema_migrations WHERE version = %s", (BAD,)) == [("rolled_back",)]
    assert pagerduty.events == []


def test_an_escrow_only_target_still_gets_its_full_backup_before_a_snapshot_restore(
    stack_env: dict[str, str], start_worker: Callable[[dict[str, str]], WorkerProcess],
    stack_sender: SlackRequestSender, slack_api: SlackApiServer, store: RequestStore, database_url: str,
    digitalocean: DigitalOceanServer,
) -> None:
    # Backup policy `escrow` lets a rollback go without a pg_dump; the escrow does not cover a restore.
    write_config(stack_env["ROLLBACK_CONFIG"],
                 target_extra=f'backup_policy = "escrow"\ndo_droplet_id = {DEFAULT_DROPLET_ID}')
    start_worker({**stack_env, "ROLLBACK_DO_POLL_SECONDS": "0.1"})
    incident_history(database_url)  # the good migrations long ago, the bad one ten minutes ago
    snapshot = digitalocean.add_snapshot(DEFAULT_DROPLET_ID, "app-prod-1-nightly", created_at=AN_HOUR_AGO())
    digitalocean.on_droplet_restore = lambda droplet, taken: Engine(
        database_url, str(EXAMPLE_MIGRATIONS), actor="droplet").rollback(to=GOOD)

    request = _ask(stack_sender, slack_api, store, f"snapshot-restore {snapshot} prod")
    done = _approve_and_wait(stack_sender, slack_api, store, request)
    thread = _thread(slack_api, request)
    assert done.status is RequestStatus.SUCCEEDED, thread
    assert "no pg_dump" not in thread and "*Backup* finished" in thread
    assert [f for f in os.listdir(stack_env["BACKUP_DIR"]) if f"pre-snapshot-restore-{request.id.lower()}" in f]


@pytest.mark.usefixtures("droplet_worker")
def test_an_unknown_snapshot_is_refused_before_approval(
    stack_sender: SlackRequestSender, slack_api: SlackApiServer, store: RequestStore, database_url: str,
    digitalocean: DigitalOceanServer,
) -> None:
    apply_example(database_url)
    stack_sender.command("snapshot-restore 987654321 prod", user_id=ALICE, channel_id=CHANNEL)
    refusal = slack_api.wait_for(lambda: [message_text(e) for e in slack_api.ephemerals(user=ALICE)], timeout=120)[0]
    assert refusal.startswith("Refused: `/rollback snapshot-restore` on `prod` cannot run: snapshot 987654321 "
                              "cannot be used"), refusal
    assert "\n" not in refusal and "do-test-token" not in refusal
    assert store.for_channel(CHANNEL) == [] and not [a for a in digitalocean.actions.values() if a.type == "restore"]


@pytest.mark.usefixtures("droplet_worker")
def test_a_failed_restore_action_is_paged(
    stack_sender: SlackRequestSender, slack_api: SlackApiServer, store: RequestStore, database_url: str,
    digitalocean: DigitalOceanServer, pagerduty: PagerDutyServer,
) -> None:
    incident_history(database_url)  # the good migrations long ago, the bad one ten minutes ago
    snapshot = digitalocean.add_snapshot(DEFAULT_DROPLET_ID, "app-prod-1-nightly", created_at=AN_HOUR_AGO())
    digitalocean.fail_restores = True
    request = _ask(stack_sender, slack_api, store, f"snapshot-restore {snapshot} prod")
    done = _approve_and_wait(stack_sender, slack_api, store, request)
    thread = _thread(slack_api, request)
    assert done.status is RequestStatus.FAILED, thread
    assert f"restore of droplet {DEFAULT_DROPLET_ID} from snapshot {snapshot} failed" in thread
    pagerduty.wait_for(lambda: [e for e in pagerduty.events if e.get("event_action") == "trigger"], timeout=30)


@pytest.mark.usefixtures("droplet_worker")
def test_snapshot_and_restore_accepted_then_answered_500_are_each_sent_once_and_followed_to_success(
    stack_sender: SlackRequestSender, slack_api: SlackApiServer, store: RequestStore, database_url: str,
    digitalocean: DigitalOceanServer, pagerduty: PagerDutyServer,
) -> None:
    incident_history(database_url)
    snapshot = digitalocean.add_snapshot(DEFAULT_DROPLET_ID, "app-prod-1-nightly", created_at=AN_HOUR_AGO())
    digitalocean.on_droplet_restore = lambda droplet, taken: Engine(
        database_url, str(EXAMPLE_MIGRATIONS), actor="droplet").rollback(to=GOOD)
    request = _ask(stack_sender, slack_api, store, f"snapshot-restore {snapshot} prod")
    # the backup step's snapshot, then the restore: each starts, and each answer is lost
    digitalocean.post_faults = [ACCEPTED_THEN_500, ACCEPTED_THEN_500]

    done = _approve_and_wait(stack_sender, slack_api, store, request)
    thread = _thread(slack_api, request)
    assert done.status is RequestStatus.SUCCEEDED, thread
    assert digitalocean.posts[f"/v2/droplets/{DEFAULT_DROPLET_ID}/actions"] == 2 and digitalocean.post_faults == []
    assert sorted((a.type, a.status) for a in digitalocean.actions.values()) == [("restore", "completed"),
                                                                                 ("snapshot", "completed")]
    assert "*Snapshot* finished" in thread and "*Snapshot restore* finished" in thread
    assert _rows(database_url, "SELECT status FROM schema_migrations WHERE version = %s", (BAD,)) == [("rolled_back",)]
    assert pagerduty.events == []


@pytest.mark.usefixtures("droplet_worker")
def test_a_restore_answered_500_every_time_is_sent_once_reported_in_one_line_and_paged(
    stack_sender: SlackRequestSender, slack_api: SlackApiServer, store: RequestStore, database_url: str,
    digitalocean: DigitalOceanServer, pagerduty: PagerDutyServer,
) -> None:
    apply_example(database_url)
    snapshot = digitalocean.add_snapshot(DEFAULT_DROPLET_ID, "app-prod-1-nightly")
    request = _ask(stack_sender, slack_api, store, f"snapshot-restore {snapshot} prod")
    # the backup step's snapshot starts (its answer lost); the restore is answered 500 every time
    digitalocean.post_faults = [ACCEPTED_THEN_500] + [REFUSED] * 4

    done = _approve_and_wait(stack_sender, slack_api, store, request)
    thread = _thread(slack_api, request)
    assert done.status is RequestStatus.FAILED, thread
    assert digitalocean.posts[f"/v2/droplets/{DEFAULT_DROPLET_ID}/actions"] == 2  # one snapshot, one restore
    assert not [a for a in digitalocean.actions.values() if a.type == "restore"]
    line = (f"DigitalOcean answered 500 while trying to restore droplet {DEFAULT_DROPLET_ID} from snapshot {snapshot}: "
            "Server Error; sent once, not resent, and nothing was started")
    assert line in thread, thread
    triggers = pagerduty.wait_for(lambda: [e for e in pagerduty.events if e.get("event_action") == "trigger"],
                                  timeout=30)
    assert "sent once, not resent" in triggers[0]["payload"]["summary"] and "do-test-token" not in str(triggers)


def test_a_new_cluster_accepted_then_dropped_is_sent_once_and_followed_until_online(
    stack_env: dict[str, str], start_worker: Callable[[dict[str, str]], WorkerProcess],
    stack_sender: SlackRequestSender, slack_api: SlackApiServer, store: RequestStore, database_url: str,
    digitalocean: DigitalOceanServer, pagerduty: PagerDutyServer,
) -> None:
    write_config(stack_env["ROLLBACK_CONFIG"], target_extra=f'do_database_id = "{DEFAULT_DATABASE_ID}"')
    start_worker({**stack_env, "ROLLBACK_DO_POLL_SECONDS": "0.1"})
    apply_example(database_url)
    request = _ask(stack_sender, slack_api, store, "cluster-restore prod")
    digitalocean.post_faults = [ACCEPTED_THEN_DROPPED]  # the cluster is created, the connection drops

    done = _approve_and_wait(stack_sender, slack_api, store, request)
    thread = _thread(slack_api, request)
    assert done.status is RequestStatus.SUCCEEDED, thread
    assert digitalocean.posts["/v2/databases"] == 1
    (created,) = digitalocean.clusters_named(request.params["new_name"])
    assert created["status"] == "online" and f"host `{created['connection']['host']}`" in thread
    assert pagerduty.events == []


def test_a_managed_cluster_is_restored_into_a_new_cluster_and_the_thread_says_what_to_switch(
    stack_env: dict[str, str], start_worker: Callable[[dict[str, str]], WorkerProcess],
    stack_sender: SlackRequestSender, slack_api: SlackApiServer, store: RequestStore, database_url: str,
    digitalocean: DigitalOceanServer, pagerduty: PagerDutyServer,
) -> None:
    write_config(stack_env["ROLLBACK_CONFIG"], target_extra=f'do_database_id = "{DEFAULT_DATABASE_ID}"')
    start_worker({**stack_env, "ROLLBACK_DO_POLL_SECONDS": "0.1"})
    apply_example(database_url)
    backup = digitalocean.database_backups[DEFAULT_DATABASE_ID][0]["created_at"]

    request = _ask(stack_sender, slack_api, store, "cluster-restore prod")
    assert request.kind is RequestKind.CLUSTER_RESTORE and request.params["backup_created_at"] == backup
    card = message_text(slack_api.thread(CHANNEL, request.thread_ts)[0])
    assert f"from the backup of managed cluster `{DEFAULT_DATABASE_ID}` taken `{backup}`" in card
    assert "The live cluster is left as it is" in card

    done = _approve_and_wait(stack_sender, slack_api, store, request)
    thread = _thread(slack_api, request)
    assert done.status is RequestStatus.SUCCEEDED, thread
    created = [c for c in digitalocean.clusters.values() if c["name"] == request.params["new_name"]]
    assert len(created) == 1 and created[0]["status"] == "online"
    assert f"host `{created[0]['connection']['host']}`" in thread and "/rollback verify prod-restored" in thread
    assert "stand-in-password" not in thread  # never a secret: the URL to add it as a target has the password masked
    urls = re.findall(r"postgresql://\S+", thread)
    assert urls and all(":***@" in u for u in urls), urls
    assert pagerduty.events == []


def test_a_restore_action_that_stays_in_progress_past_its_bound_fails_says_so_and_pages(
    stack_env: dict[str, str], start_worker: Callable[[dict[str, str]], WorkerProcess],
    stack_sender: SlackRequestSender, slack_api: SlackApiServer, store: RequestStore, database_url: str,
    digitalocean: DigitalOceanServer, pagerduty: PagerDutyServer,
) -> None:
    write_config(stack_env["ROLLBACK_CONFIG"], target_extra=f"do_droplet_id = {DEFAULT_DROPLET_ID}")
    start_worker({**stack_env, "ROLLBACK_DO_POLL_SECONDS": "0.1", "ROLLBACK_DO_ACTION_TIMEOUT_SECONDS": "1"})
    incident_history(database_url)  # the good migrations long ago, the bad one ten minutes ago
    snapshot = digitalocean.add_snapshot(DEFAULT_DROPLET_ID, "app-prod-1-nightly", created_at=AN_HOUR_AGO())
    request = _ask(stack_sender, slack_api, store, f"snapshot-restore {snapshot} prod")
    digitalocean.stuck_restores = True  # the restore action it starts never leaves in-progress

    done = _approve_and_wait(stack_sender, slack_api, store, request)
    thread = _thread(slack_api, request)
    assert done.status is RequestStatus.FAILED, thread
    (action,) = [a for a in digitalocean.actions.values() if a.type == "restore"]
    assert action.status == "in-progress"
    assert (f"restore of droplet {DEFAULT_DROPLET_ID} (action {action.id}) still in-progress after 1.0s; "
            "check it in the DigitalOcean console") in thread, thread
    assert "*Verification*" not in thread.split("*Snapshot restore* failed")[-1]  # nothing ran after it
    triggers = pagerduty.wait_for(lambda: [e for e in pagerduty.events if e.get("event_action") == "trigger"],
                                  timeout=30)
    assert "still in-progress" in triggers[0]["payload"]["summary"] and "do-test-token" not in str(triggers)


def test_digitalocean_failing_while_checking_is_answered_in_one_line_and_paged(
    stack_env: dict[str, str], start_worker: Callable[[dict[str, str]], WorkerProcess],
    stack_sender: SlackRequestSender, slack_api: SlackApiServer, store: RequestStore, database_url: str,
    digitalocean: DigitalOceanServer, pagerduty: PagerDutyServer,
) -> None:
    write_config(stack_env["ROLLBACK_CONFIG"],
                 target_extra=f'do_droplet_id = {DEFAULT_DROPLET_ID}\ndo_database_id = "{DEFAULT_DATABASE_ID}"')
    start_worker({**stack_env, "ROLLBACK_DO_POLL_SECONDS": "0.1"})
    incident_history(database_url)  # the good migrations long ago, the bad one ten minutes ago
    snapshot = digitalocean.add_snapshot(DEFAULT_DROPLET_ID, "app-prod-1-nightly", created_at=AN_HOUR_AGO())

    digitalocean.fail_next = [503] * 4  # pydo's call and its three retries
    stack_sender.command(f"snapshot-restore {snapshot} prod", user_id=ALICE, channel_id=CHANNEL)
    first = slack_api.wait_for(lambda: [message_text(e) for e in slack_api.ephemerals(user=ALICE)], timeout=120)[0]
    assert first.startswith("Refused: `/rollback snapshot-restore` on `prod` cannot run: the API is failing: "
                            f"DigitalOcean answered 503 while trying to look up snapshot {snapshot}: Service temporarily "
                            "unavailable"), first
    assert "cannot be used" not in first and "on-call has been paged (PagerDuty)" in first and "\n" not in first
    assert [p for _, p in digitalocean.requests].count(f"/v2/snapshots/{snapshot}") == 4

    digitalocean.fail_next = [503] * 4
    stack_sender.command("cluster-restore prod", user_id=ALICE, channel_id=CHANNEL)
    second = slack_api.wait_for(lambda: [message_text(e) for e in slack_api.ephemerals(user=ALICE)][1:], timeout=120)[0]
    assert second.startswith("Refused: `/rollback cluster-restore` on `prod` cannot run: the API is failing: "
                             f"DigitalOcean answered 503 while trying to list backups of database "
                             f"{DEFAULT_DATABASE_ID}"), second
    assert "on-call has been paged (PagerDuty)" in second

    assert store.for_channel(CHANNEL) == [] and digitalocean.fail_next == []
    assert not [a for a in digitalocean.actions.values() if a.type == "restore"] and len(digitalocean.clusters) == 1
    triggers = [e for e in pagerduty.events if e.get("event_action") == "trigger"]  # paged before each answer
    assert [e["dedup_key"] for e in triggers] == ["rollback-bot/check/snapshot_restore/prod",
                                                  "rollback-bot/check/cluster_restore/prod"]
    assert "do-test-token" not in json.dumps(triggers)


def _copy_database(source_url: str, into_url: str) -> None:
    """What DigitalOcean's restore does for the stand-in: the source's contents in another database."""
    dump = subprocess.Popen(["pg_dump", "--format=custom", f"--dbname={source_url}"], stdout=subprocess.PIPE)
    subprocess.run(["pg_restore", "--no-owner", "--exit-on-error", f"--dbname={into_url}"], stdin=dump.stdout,
                   check=True)
    assert dump.wait() == 0


def test_a_restored_cluster_becomes_a_target_as_the_thread_says_and_verifies(
    stack_env: dict[str, str], start_worker: Callable[[dict[str, str]], WorkerProcess], stack_bot: BotServer,
    stack_sender: SlackRequestSender, slack_api: SlackApiServer, store: RequestStore, database_url: str,
    make_database: Callable[[], str], digitalocean: DigitalOceanServer, pagerduty: PagerDutyServer, tmp_path: Path,
) -> None:
    write_config(stack_env["ROLLBACK_CONFIG"], target_extra=f'do_database_id = "{DEFAULT_DATABASE_ID}"')
    worker_env = {**stack_env, "ROLLBACK_DO_POLL_SECONDS": "0.1"}
    first_worker = start_worker(worker_env)
    apply_example(database_url)
    copy_url = make_database()
    live, copy = psycopg.conninfo.conninfo_to_dict(database_url), psycopg.conninfo.conninfo_to_dict(copy_url)
    console_password = "console-only-password"

    def restored(name: str, backup: str) -> Mapping[str, Any]:  # the new cluster is a real local database
        _copy_database(database_url, copy_url)
        return {"host": live["host"], "port": int(str(live["port"])), "user": live["user"],
                "password": console_password, "database": copy["dbname"], "ssl": False}

    digitalocean.on_cluster_restore = restored
    request = _ask(stack_sender, slack_api, store, "cluster-restore prod")
    done = _approve_and_wait(stack_sender, slack_api, store, request)
    thread = _thread(slack_api, request)
    assert done.status is RequestStatus.SUCCEEDED, thread
    section = re.search(r"```(\[targets\.prod-restored\]\n[^`]*)```", thread)
    url_line = re.search(r"```(PROD_RESTORED_DATABASE_URL)=(postgresql://\S+:\*\*\*@\S+)```", thread)
    assert section and url_line, thread
    assert f'do_database_id = "{digitalocean.clusters_named(request.params["new_name"])[0]["id"]}"' in section[1]
    assert "maintenance" not in section[1] and "not verified yet" in thread and "/rollback verify prod-restored" in thread
    assert console_password not in thread and "stand-in-password" not in thread

    # The operator, as the thread says: the section into rollback.toml, the URL with the password from the
    # console into the workers' environment, then the bot and the workers restarted.
    config = Path(stack_env["ROLLBACK_CONFIG"])
    config.write_text(config.read_text() + "\n" + section[1] + "\n")
    first_worker.stop()
    start_worker({**worker_env, url_line[1]: url_line[2].replace("***", console_password)})
    stack_bot.stop()
    bot = start_bot({k: v for k, v in stack_bot.env.items() if k != "PORT"}, tmp_path)
    try:
        sender = SlackRequestSender(bot.events_url, SIGNING_SECRET, slack_api)
        sender.command("verify prod-restored", user_id=ALICE, channel_id=CHANNEL)
        slack_api.wait_for(lambda: [t for t in map(message_text, slack_api.messages(CHANNEL))
                                    if re.search(r"\*Verification\* (finished|failed)", t)], timeout=120)
    finally:
        bot.stop()
    root = next(m for m in slack_api.messages(CHANNEL) if "*verify* of `prod-restored`" in message_text(m))
    verified = "\n".join(message_text(m) for m in slack_api.thread(CHANNEL, root["ts"]))
    assert "*Verification* finished" in verified and ", 0 failed" in verified, verified
    assert "migration status: 4 migration(s), none failed, running or drifted" in verified
    assert "users: 20 rows" in verified and "projects: 10 rows" in verified
    # the checks ran on the new cluster's database, and only there
    assert _rows(copy_url, "SELECT status FROM migration_history WHERE operation = 'verify'") == [("completed",)]
    assert _rows(database_url, "SELECT count(*) FROM migration_history WHERE operation = 'verify'") == [(0,)]
    assert pagerduty.events == []


# -- snapshot-restore --new-droplet: a new droplet from any snapshot, the old one left alone (Method 3B as written)

OTHER_DROPLET = 5151  # a droplet of the account that is not the target's


@pytest.fixture
def do_worker(stack_env: dict[str, str], start_worker: Callable[[dict[str, str]], WorkerProcess],
              digitalocean: DigitalOceanServer) -> WorkerProcess:
    digitalocean.droplets[OTHER_DROPLET] = "db-prod-old"
    write_config(stack_env["ROLLBACK_CONFIG"], target_extra=f"do_droplet_id = {DEFAULT_DROPLET_ID}")
    return start_worker({**stack_env, "ROLLBACK_DO_POLL_SECONDS": "0.1"})


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
