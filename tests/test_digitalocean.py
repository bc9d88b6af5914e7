"""DigitalOcean through the real pydo client, pointed at the sandbox's local DigitalOcean API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from core.jsontypes import JsonObject
from sandbox.digitalocean import DEFAULT_DATABASE_ID, DEFAULT_DROPLET_ID, DigitalOceanServer
from sandbox.http_stub import ACCEPTED_THEN_500, ACCEPTED_THEN_DROPPED, ACCEPTED_THEN_SILENT, REFUSED
from workers.providers.digitalocean import DigitalOcean, DigitalOceanError
from workers.runtime.errors import DigitalOceanUnavailable

TOKEN = "do-test-token"


def test_snapshot_is_polled_until_completed_and_listed(digitalocean: DigitalOceanServer) -> None:
    digitalocean.polls_until_complete = 3
    client = DigitalOcean(TOKEN, digitalocean.url)
    result = client.snapshot_droplet(DEFAULT_DROPLET_ID, "prod-pre-rollback-20261124T103000Z", poll_seconds=0.01)
    assert result["status"] == "completed" and result["name"] == "prod-pre-rollback-20261124T103000Z"
    polls = [path for verb, path in digitalocean.requests if path == f"/v2/actions/{result['action_id']}"]
    assert len(polls) == 3
    (mine,) = client.list_snapshots(DEFAULT_DROPLET_ID)
    assert mine["name"] == result["name"] and mine["size_gigabytes"] > 0
    assert [s["name"] for s in client.list_snapshots()] == [result["name"]]


def test_errored_snapshot_and_timeout_raise(digitalocean: DigitalOceanServer) -> None:
    client = DigitalOcean(TOKEN, digitalocean.url)
    digitalocean.fail_snapshots = True
    with pytest.raises(DigitalOceanError, match="errored"):
        client.snapshot_droplet(DEFAULT_DROPLET_ID, "x", poll_seconds=0.01)
    digitalocean.fail_snapshots = False
    digitalocean.polls_until_complete = 1000
    with pytest.raises(DigitalOceanError, match="still in-progress"):
        client.snapshot_droplet(DEFAULT_DROPLET_ID, "y", poll_seconds=0.01, timeout_s=0.05)


def test_managed_database_backups(digitalocean: DigitalOceanServer) -> None:
    (backup,) = DigitalOcean(TOKEN, digitalocean.url).database_backups(DEFAULT_DATABASE_ID)
    assert backup["size_gigabytes"] == 0.25 and backup["created_at"]


def test_errors_are_one_line_without_the_token(digitalocean: DigitalOceanServer) -> None:
    wrong = "do-wrong-token-abc123"
    with pytest.raises(DigitalOceanError) as caught:
        DigitalOcean(wrong, digitalocean.url).list_snapshots(DEFAULT_DROPLET_ID)
    assert "refused the token" in str(caught.value) and wrong not in str(caught.value)
    client = DigitalOcean(TOKEN, digitalocean.url)
    with pytest.raises(DigitalOceanError, match="not_found") as not_found:
        client.snapshot_droplet(999, "x")
    assert not isinstance(not_found.value, DigitalOceanUnavailable)  # DigitalOcean's answer, not an outage
    with pytest.raises(DigitalOceanUnavailable, match="could not be reached"):  # paged when it stops a check
        DigitalOcean(TOKEN, "http://127.0.0.1:1", retries=0).database_backups(DEFAULT_DATABASE_ID)
    with pytest.raises(DigitalOceanError, match="DIGITALOCEAN_TOKEN"):
        DigitalOcean("")
    assert TOKEN not in repr(client)


def test_a_5xx_after_the_retries_is_digitalocean_failing(digitalocean: DigitalOceanServer) -> None:
    digitalocean.fail_next = [503, 503]
    with pytest.raises(DigitalOceanUnavailable, match="answered 503 while trying to list backups"):
        DigitalOcean(TOKEN, digitalocean.url, retries=1).database_backups(DEFAULT_DATABASE_ID)
    assert digitalocean.fail_next == [] and [p for _, p in digitalocean.requests].count(
        f"/v2/databases/{DEFAULT_DATABASE_ID}/backups") == 2


# --- sent once: a POST that starts something is never resent, and a lost answer is looked up -------------

ACTIONS_PATH = f"/v2/droplets/{DEFAULT_DROPLET_ID}/actions"


def _snapshot(client: DigitalOcean, server: DigitalOceanServer) -> JsonObject:
    return client.snapshot_droplet(DEFAULT_DROPLET_ID, "prod-pre-rollback-R1", poll_seconds=0.01)


def _restore(client: DigitalOcean, server: DigitalOceanServer) -> JsonObject:
    snapshot = server.add_snapshot(DEFAULT_DROPLET_ID, "nightly")
    return client.restore_droplet(DEFAULT_DROPLET_ID, snapshot, poll_seconds=0.01)


def _new_cluster(client: DigitalOcean, server: DigitalOceanServer) -> JsonObject:
    return client.restore_cluster(DEFAULT_DATABASE_ID, "prod-restored-R1", None, poll_seconds=0.01)


# what each starts: (its POST's path, the call, what the stand-in started)
SENDS: dict[str, tuple[str, Callable[[DigitalOcean, DigitalOceanServer], JsonObject],
                       Callable[[DigitalOceanServer], list[Any]]]] = {
    "snapshot": (ACTIONS_PATH, _snapshot,
                 lambda s: [(a.id, a.status) for a in s.actions.values() if a.type == "snapshot"]),
    "restore": (ACTIONS_PATH, _restore,
                lambda s: [(a.id, a.status) for a in s.actions.values() if a.type == "restore"]),
    "cluster": ("/v2/databases", _new_cluster,
                lambda s: [(c["id"], c["status"]) for c in s.clusters_named("prod-restored-R1")]),
}


@pytest.mark.parametrize("kind", SENDS)
def test_a_post_answered_500_every_time_is_sent_once_and_reported_in_one_line(
        digitalocean: DigitalOceanServer, kind: str) -> None:
    path, send, started = SENDS[kind]
    digitalocean.post_faults = [REFUSED] * 4  # every answer a 500 (pydo used to send it four times)
    with pytest.raises(DigitalOceanUnavailable) as failed:
        send(DigitalOcean(TOKEN, digitalocean.url), digitalocean)
    assert digitalocean.posts[path] == 1
    assert "answered 500" in str(failed.value) and "sent once, not resent, and nothing was started" in str(failed.value)
    assert "\n" not in str(failed.value) and TOKEN not in str(failed.value)
    assert started(digitalocean) == []


@pytest.mark.parametrize("kind", SENDS)
@pytest.mark.parametrize("fault", [ACCEPTED_THEN_500, ACCEPTED_THEN_DROPPED])
def test_a_post_accepted_then_answered_500_or_dropped_is_followed_to_its_end(
        digitalocean: DigitalOceanServer, kind: str, fault: str) -> None:
    path, send, started = SENDS[kind]
    digitalocean.post_faults = [fault]
    result = send(DigitalOcean(TOKEN, digitalocean.url), digitalocean)
    assert digitalocean.posts[path] == 1
    ((started_id, status),) = started(digitalocean)  # the one it really started, followed to its end
    assert status in ("completed", "online") and result["status"] == status
    assert started_id in (result.get("action_id"), result.get("id"))


def test_a_post_accepted_then_never_answered_is_followed_after_the_read_timeout(
        digitalocean: DigitalOceanServer) -> None:
    digitalocean.post_faults = [ACCEPTED_THEN_SILENT]
    result = _restore(DigitalOcean(TOKEN, digitalocean.url, read_timeout_s=0.5), digitalocean)
    assert digitalocean.posts[ACTIONS_PATH] == 1
    (action,) = [a for a in digitalocean.actions.values() if a.type == "restore"]
    assert result["action_id"] == action.id and result["status"] == "completed"


def test_a_lost_answer_whose_lookup_fails_too_is_one_line_and_not_resent(digitalocean: DigitalOceanServer) -> None:
    snapshot = digitalocean.add_snapshot(DEFAULT_DROPLET_ID, "nightly")
    client = DigitalOcean(TOKEN, digitalocean.url, retries=0)
    digitalocean.post_faults = [REFUSED]

    def lookups_fail(path: str) -> None:  # from the POST on, every request is answered 503
        digitalocean.fail_next = [503] * 10

    digitalocean.on_post = lookups_fail
    with pytest.raises(DigitalOceanUnavailable) as failed:
        client.restore_droplet(DEFAULT_DROPLET_ID, snapshot, poll_seconds=0.01)
    assert digitalocean.posts[ACTIONS_PATH] == 1
    assert "whether it started is unknown" in str(failed.value) and "\n" not in str(failed.value)
