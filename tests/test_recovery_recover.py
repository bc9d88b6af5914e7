"""`/rollback recover` end to end in the thread (scenario 4): real bot, worker, PostgreSQL and Redis, signed
requests, the Slack and PagerDuty stand-ins. Lost rows come back, newer rows stay, `--overwrite` replaces
differing rows; refusals are one line before anything runs; a stale preview is refused at start."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from core.requests import Request, RequestKind, RequestStatus, RequestStore
from sandbox.pagerduty import PagerDutyServer
from sandbox.signing import SlackRequestSender
from sandbox.slack_api import SlackApiServer, message_text
from tests.fixtures.stack import apply_example, enqueue, incident_history, wait_job
from tests.test_restore import cut, dump_by_hand
from workers.postgres.pg_dump import manifest_path

pytestmark = pytest.mark.usefixtures("worker")

CHANNEL = "C_INCIDENT"
ALICE, BOB = "U_ALICE", "U_BOB"


def _rows(database_url: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(query, params).fetchall()


def _exec(database_url: str, statements: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(statements)


def _backup(env: dict[str, str]) -> str:
    taken = wait_job(enqueue(env, "workers.jobs.backup", target="prod", requester=ALICE, reason="before scenario 4"),
                     timeout=120)
    assert taken and taken["ok"], taken
    return Path(taken["backup"]["path"]).name


def _scenario_4(database_url: str) -> None:
    """Rows deleted by mistake (cascading to projects), one row changed, one newer row written."""
    _exec(database_url, """
        DELETE FROM users WHERE id BETWEEN 3 AND 6;
        UPDATE users SET full_name = 'Renamed' WHERE id = 2;
        INSERT INTO users (email, full_name) VALUES ('newer@example.com', 'Newer');
    """)


def _ask(sender: SlackRequestSender, slack_api: SlackApiServer, store: RequestStore, text: str) -> Request:
    sender.command(text, user_id=ALICE, channel_id=CHANNEL)
    return slack_api.wait_for(lambda: [r for r in store.for_channel(CHANNEL) if r.thread_ts], timeout=120)[0]


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


def _refusal(slack_api: SlackApiServer) -> str:
    return slack_api.wait_for(lambda: [message_text(e) for e in slack_api.ephemerals(user=ALICE)], timeout=120)[0]


def _scratch_left(database_url: str) -> list[str]:
    """This test's scratch databases: named after its live database (other runs may be recovering too)."""
    live = re.sub(r"[^a-z0-9_]", "_", str(psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]).lower())[:24]
    return [r[0] for r in _rows(database_url, "SELECT datname FROM pg_database WHERE starts_with(datname, %s)",
                                (f"rb_recover_{live}",))]


@pytest.fixture
def store(stack_env: dict[str, str]) -> RequestStore:
    return RequestStore(redis.Redis.from_url(stack_env["REDIS_URL"]))


def test_lost_rows_come_back_and_newer_rows_stay(
    stack_sender: SlackRequestSender, slack_api: SlackApiServer, stack_env: dict[str, str], database_url: str,
    store: RequestStore, pagerduty: PagerDutyServer,
) -> None:
    apply_example(database_url)
    before = dict(_rows(database_url, "SELECT id, full_name FROM users"))
    projects_before = _rows(database_url, "SELECT id, owner_id, name FROM projects ORDER BY id")
    name = _backup(stack_env)
    _scenario_4(database_url)

    request = _ask(stack_sender, slack_api, store, f"recover {name} users,projects prod")
    assert request.kind is RequestKind.RECOVER and request.backup == name
    assert request.params["tables"] == ["public.users", "public.projects"] and not request.params["overwrite"]
    card = message_text(slack_api.thread(CHANNEL, request.thread_ts)[0])
    assert "`public.users`: *4* missing from live (inserted), 1 differing (kept as they are in live" in card
    assert "1 only in live (kept)" in card and "Preview hash" in card and request.plan_hash[:12] in card
    assert "`public.projects`: *2* missing from live" in card  # users 4 and 6 owned projects (cascade)
    samples = slack_api.wait_for(lambda: "Sample keys" in _thread(slack_api, request) and _thread(slack_api, request))
    assert "Sample keys" in samples and "missing: `3`, `4`, `5`, `6`" in samples and "differing: `2`" in samples

    done = _approve_and_wait(stack_sender, slack_api, store, request)
    assert done.status is RequestStatus.SUCCEEDED, _thread(slack_api, request)
    # The worker sets the status, then posts the outcome line: wait for that line, not only the status.
    thread = slack_api.wait_for(lambda: "table recovery of *prod* done" in _thread(slack_api, request)
                                and _thread(slack_api, request))
    assert "*Backup of the tables* finished" in thread and "*Recovery* finished" in thread and "table recovery of *prod* done" in thread
    after = dict(_rows(database_url, "SELECT id, full_name FROM users"))
    assert {i: after[i] for i in (3, 4, 5, 6)} == {i: before[i] for i in (3, 4, 5, 6)}  # back
    assert after[2] == "Renamed"  # differing rows are kept without --overwrite
    assert "Newer" in after.values()  # written after the backup: kept
    assert _rows(database_url, "SELECT id, owner_id, name FROM projects ORDER BY id") == projects_before
    recorded = _rows(database_url, "SELECT status, details->'inserted' FROM migration_history "
                                   "WHERE operation = 'recover' AND request_id = %s", (request.id,))
    assert recorded == [("completed", {"public.users": 4, "public.projects": 2})]
    assert _scratch_left(database_url) == []
    table_backups = [p for p in Path(stack_env["BACKUP_DIR"]).iterdir() if f"pre-recover-{request.id.lower()}" in
                     p.name.lower() and not p.name.endswith(".json")]
    assert table_backups, list(Path(stack_env["BACKUP_DIR"]).iterdir())
    assert pagerduty.events == []


def test_overwrite_replaces_the_differing_rows(
    stack_sender: SlackRequestSender, slack_api: SlackApiServer, stack_env: dict[str, str], database_url: str,
    store: RequestStore,
) -> None:
    apply_example(database_url)
    original = _rows(database_url, "SELECT full_name FROM users WHERE id = 2")[0][0]
    name = _backup(stack_env)
    _scenario_4(database_url)

    request = _ask(stack_sender, slack_api, store, f"recover {name} users --overwrite prod")
    assert request.params["overwrite"] is True
    card = message_text(slack_api.thread(CHANNEL, request.thread_ts)[0])
    assert "1 differing (overwritten (--overwrite))" in card
    done = _approve_and_wait(stack_sender, slack_api, store, request)
    assert done.status is RequestStatus.SUCCEEDED, _thread(slack_api, request)
    assert _rows(database_url, "SELECT full_name FROM users WHERE id = 2")[0][0] == original
    assert _rows(database_url, "SELECT count(*) FROM users WHERE full_name = 'Newer'")[0][0] == 1


def test_a_table_without_a_primary_key_is_refused_before_anything_runs(
    stack_sender: SlackRequestSender, slack_api: SlackApiServer, stack_env: dict[str, str], database_url: str,
    store: RequestStore,
) -> None:
    apply_example(database_url)
    _exec(database_url, "CREATE TABLE page_views (user_id bigint, at timestamptz DEFAULT now());"
                        "INSERT INTO page_views (user_id) VALUES (1), (2);")
    name = _backup(stack_env)
    stack_sender.command(f"recover {name} page_views prod", user_id=ALICE, channel_id=CHANNEL)
    refusal = _refusal(slack_api)
    assert refusal.startswith("Refused: `/rollback recover` on `prod` cannot run: table public.page_views has no "
                              "primary key"), refusal
    assert "\n" not in refusal and "Nothing was requested" in refusal
    assert store.for_channel(CHANNEL) == [] and slack_api.messages(CHANNEL) == []
    assert _scratch_left(database_url) == []


def test_a_backup_that_does_not_verify_is_refused(
    stack_sender: SlackRequestSender, slack_api: SlackApiServer, stack_env: dict[str, str], database_url: str,
    store: RequestStore,
) -> None:
    apply_example(database_url)
    name = _backup(stack_env)
    archive = Path(stack_env["BACKUP_DIR"]) / name
    damaged = archive / "toc.dat" if archive.is_dir() else archive  # a parallel backup is a directory
    damaged.write_bytes(damaged.read_bytes()[:-40] + b"\0" * 40)  # its checksum no longer matches
    stack_sender.command(f"recover {name} users prod", user_id=ALICE, channel_id=CHANNEL)
    refusal = _refusal(slack_api)
    assert "cannot run" in refusal and "corrupted" in refusal and "\n" not in refusal, refusal
    assert store.for_channel(CHANNEL) == []


def test_a_stale_preview_is_refused_at_start(
    stack_sender: SlackRequestSender, slack_api: SlackApiServer, stack_env: dict[str, str], database_url: str,
    store: RequestStore, pagerduty: PagerDutyServer,
) -> None:
    apply_example(database_url)
    name = _backup(stack_env)
    _scenario_4(database_url)
    request = _ask(stack_sender, slack_api, store, f"recover {name} users prod")
    _exec(database_url, "DELETE FROM users WHERE id = 7")  # the live table moves on after the preview
    count = _rows(database_url, "SELECT count(*) FROM users")[0][0]

    done = _approve_and_wait(stack_sender, slack_api, store, request)
    thread = _thread(slack_api, request)
    assert done.status is RequestStatus.FAILED and done.outcome == "preview changed", thread
    assert "refused: the database changed since the preview that was approved" in thread
    assert _rows(database_url, "SELECT count(*) FROM users")[0][0] == count  # nothing was changed
    assert pagerduty.events == []  # a refusal is an outcome, not an incident


def test_a_table_that_is_not_in_the_backup_is_refused_before_anything_runs(
    stack_sender: SlackRequestSender, slack_api: SlackApiServer, stack_env: dict[str, str], database_url: str,
    store: RequestStore,
) -> None:
    apply_example(database_url)
    name = _backup(stack_env)
    _exec(database_url, "CREATE TABLE invoices (id bigint PRIMARY KEY, total numeric);"  # created after the backup
                        "INSERT INTO invoices VALUES (1, 10), (2, 20);")
    stack_sender.command(f"recover {name} users,invoices prod", user_id=ALICE, channel_id=CHANNEL)
    refusal = _refusal(slack_api)
    assert refusal.startswith("Refused: `/rollback recover` on `prod` cannot run: table public.invoices is not "
                              f"in backup {name}"), refusal
    assert "\n" not in refusal and "Nothing was requested" in refusal
    assert store.for_channel(CHANNEL) == [] and slack_api.messages(CHANNEL) == []
    assert _scratch_left(database_url) == []
    assert _rows(database_url, "SELECT count(*) FROM invoices") == [(2,)]


def test_a_plain_sql_dump_made_by_hand_is_recovered_from(
    stack_sender: SlackRequestSender, slack_api: SlackApiServer, stack_env: dict[str, str], database_url: str,
    store: RequestStore, pagerduty: PagerDutyServer,
) -> None:
    apply_example(database_url)
    before = dict(_rows(database_url, "SELECT id, full_name FROM users"))
    name = "prod-pre-migration-20251020T145900Z.sql"  # scenario 4 of the playbook, backed up by hand
    dump_by_hand(database_url, Path(stack_env["BACKUP_DIR"]) / name, "plain")
    _scenario_4(database_url)

    request = _ask(stack_sender, slack_api, store, f"recover {name} users,projects prod")
    card = message_text(slack_api.thread(CHANNEL, request.thread_ts)[0])
    assert "`public.users`: *4* missing from live (inserted)" in card, card
    assert f"• File `{name}`: plain SQL, made by hand, not ours" in card and "`public.users` 20" in card

    done = _approve_and_wait(stack_sender, slack_api, store, request)
    thread = _thread(slack_api, request)
    assert done.status is RequestStatus.SUCCEEDED, thread
    after = dict(_rows(database_url, "SELECT id, full_name FROM users"))
    assert {i: after[i] for i in (3, 4, 5, 6)} == {i: before[i] for i in (3, 4, 5, 6)} and after[2] == "Renamed"
    assert _scratch_left(database_url) == [] and pagerduty.events == []


def test_a_table_missing_from_a_plain_dump_or_a_cut_dump_is_refused_before_anything(
    stack_sender: SlackRequestSender, slack_api: SlackApiServer, stack_env: dict[str, str], database_url: str,
    store: RequestStore,
) -> None:
    apply_example(database_url)
    backups = Path(stack_env["BACKUP_DIR"])
    whole = dump_by_hand(database_url, backups / "whole.sql", "plain")
    _exec(database_url, "CREATE TABLE newer (id int PRIMARY KEY)")
    stack_sender.command(f"recover {whole.name} newer prod", user_id=ALICE, channel_id=CHANNEL)
    assert "table public.newer is not in backup whole.sql" in _refusal(slack_api)
    damaged = dump_by_hand(database_url, backups / "damaged.sql", "plain")
    cut(damaged, "copy")
    stack_sender.command(f"recover {damaged.name} users prod", user_id=ALICE, channel_id=CHANNEL)
    refusal = slack_api.wait_for(lambda: [message_text(e) for e in slack_api.ephemerals(user=ALICE)
                                          if "damaged.sql" in message_text(e)], timeout=120)[0]
    assert "backup damaged.sql is damaged: line" in refusal and "broken COPY block" in refusal, refusal
    assert "\n" not in refusal and store.for_channel(CHANNEL) == [] and _scratch_left(database_url) == []


def _taken_an_hour_ago(backup_dir: str, name: str) -> None:
    """The nightly backup: its manifest says it was taken an hour ago (before the bad migration ten minutes ago)."""
    manifest = manifest_path(Path(backup_dir) / name)
    data = json.loads(manifest.read_text())
    data["created_at"] = (datetime.now(UTC) - timedelta(hours=1)).isoformat(timespec="seconds")
    manifest.write_text(json.dumps(data))


def test_with_no_backup_named_the_newest_taken_before_the_migration_is_used_and_the_card_says_which(
    stack_sender: SlackRequestSender, slack_api: SlackApiServer, stack_env: dict[str, str], database_url: str,
    store: RequestStore,
) -> None:
    """Scenario 4 as it happens: the bad migration lost the rows; the backup to recover from is the newest taken
    before it was applied, not a newer one (which has lost them too)."""
    incident_history(database_url)  # the good migrations two hours ago, the bad one ten minutes ago
    before = dict(_rows(database_url, "SELECT id, full_name FROM users"))
    nightly = _backup(stack_env)
    _taken_an_hour_ago(stack_env["BACKUP_DIR"], nightly)
    _exec(database_url, "DELETE FROM users WHERE id BETWEEN 3 AND 6")
    _backup(stack_env)  # taken after the loss: holds no lost row, and must not be chosen

    request = _ask(stack_sender, slack_api, store, "recover users prod")
    assert request.kind is RequestKind.RECOVER and request.backup == nightly
    card = message_text(slack_api.thread(CHANNEL, request.thread_ts)[0])
    assert f"From backup `{nightly}`" in card and "`public.users`: *4* missing from live" in card
    assert "No backup named: this is the newest that verifies taken before `2025_10_20_150000` was applied" in card

    done = _approve_and_wait(stack_sender, slack_api, store, request)
    assert done.status is RequestStatus.SUCCEEDED, _thread(slack_api, request)
    after = dict(_rows(database_url, "SELECT id, full_name FROM users"))
    assert {i: after[i] for i in (3, 4, 5, 6)} == {i: before[i] for i in (3, 4, 5, 6)}


def test_with_no_backup_taken_before_the_migration_recover_is_refused_in_one_line(
    stack_sender: SlackRequestSender, slack_api: SlackApiServer, stack_env: dict[str, str], database_url: str,
    store: RequestStore,
) -> None:
    incident_history(database_url)
    _backup(stack_env)  # only after the bad migration
    stack_sender.command("recover users before 2025_10_20_150000 prod", user_id=ALICE, channel_id=CHANNEL)
    refusal = _refusal(slack_api)
    assert "no backup of prod that verifies was taken before 2025_10_20_150000 was applied" in refusal, refusal
    assert "\n" not in refusal.strip() and store.for_channel(CHANNEL) == []
