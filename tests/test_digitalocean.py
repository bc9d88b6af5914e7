"""DigitalOcean through the real pydo client, pointed at the sandbox's local DigitalOcean API."""

from __future__ import annotations

import pytest

from sandbox.digitalocean import DEFAULT_DATABASE_ID, DEFAULT_DROPLET_ID, DigitalOceanServer
from workers.digitalocean import DigitalOcean, DigitalOceanError
from workers.errors import DigitalOceanUnavailable

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
