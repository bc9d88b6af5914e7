"""Escrow and undo through the workers: a real forking worker, real PostgreSQL and Redis, local Slack and DigitalOcean."""

from __future__ import annotations

import os

from core.config import load_settings
from tests.engine_support import BOOKKEEPING, pg_dump, rows_sorted
from tests.fixtures.stack import (
    CHANNEL,
    REQUESTER,
    apply_example,
    approved_request,
    decide,
    dry_run_plan,
    enqueue,
    post_root,
    request_ended,
    request_store,
    run_request,
    thread_text,
    wait_job,
    write_config,
)
from workers.engine import Engine

GOOD = "2025_10_20_120001"
NOT_APP = (*BOOKKEEPING, "rollback_target_identity")  # the engine's and the workers' own tables
BAD = "2025_10_20_150000"


def _undo_request(env: dict[str, str], slack_api, target: str, rollback_id: str):  # type: ignore[no-untyped-def]
    """What the bot does for `/rollback undo <id>`: the worker's dry run first, then the request, approved."""
    check = wait_job(enqueue(env, "workers.jobs.check_undo", target=target, request_id=rollback_id))
    assert check and check["ok"], check
    store = request_store(env)
    ts = post_root(slack_api, f"undo {rollback_id}")
    request = store.create(kind="undo", target=target, channel=CHANNEL, thread_ts=ts, requester=REQUESTER,
                           plan_hash=check["hash"], to_version=None, versions=check["versions"],
                           summary="test undo", ttl_seconds=900, undoes=rollback_id)
    return check, decide(env, request.id)


def test_rollback_escrows_escrow_lists_it_and_an_approved_undo_gives_the_database_back(
        stack_env, database_url, slack_api, pagerduty, worker):
    apply_example(database_url)
    before = rows_sorted(pg_dump(database_url, exclude=NOT_APP))
    ts, dry = dry_run_plan(stack_env, slack_api, GOOD)
    assert dry["net"] == "full backup (pg_dump) + data-loss escrow (undo with `/rollback undo`)"
    assert "Safety net: full backup" in thread_text(slack_api, ts)
    rollback = approved_request(stack_env, thread_ts=ts, plan=dry)
    assert run_request(stack_env, slack_api, rollback.id) == "succeeded", thread_text(slack_api, ts)
    assert "3 table(s)" in thread_text(slack_api, ts) and f"`{rollback.id}`" in thread_text(slack_api, ts)

    listed = wait_job(enqueue(stack_env, "workers.jobs.escrow", target="prod", channel=CHANNEL, thread_ts=ts))
    assert listed["ok"] and [h["request_id"] for h in listed["held"]] == [rollback.id]
    assert f"`{rollback.id}`: new_feature_table, users" in thread_text(slack_api, ts)

    check, undo = _undo_request(stack_env, slack_api, "prod", rollback.id)
    assert check["versions"] == [BAD] and [r["rows"] for r in check["restored"]] == [16, 20, 16]
    enqueue(stack_env, "workers.jobs.run_request", request_id=undo.id)
    status = request_ended(stack_env, slack_api, undo.id, timeout=90)
    assert status == "succeeded", request_store(stack_env).get(undo.id).outcome
    assert rows_sorted(pg_dump(database_url, exclude=NOT_APP)) == before

    # A second undo of the same rollback is refused by its dry run: nothing to approve.
    again = wait_job(enqueue(stack_env, "workers.jobs.check_undo", target="prod", request_id=rollback.id))
    assert again["ok"] is False and "already undone" in again["error"]


def test_policy_escrow_skips_the_dump_but_not_when_a_statement_is_not_escrowed(
        stack_env, database_url, slack_api, start_worker):
    write_config(stack_env["ROLLBACK_CONFIG"], target_extra='backup_policy = "escrow"\ndo_droplet_id = 4242')
    start_worker(stack_env)  # reads the config above
    apply_example(database_url)
    ts, dry = dry_run_plan(stack_env, slack_api, GOOD)
    assert dry["net"] == "data-loss escrow (undo with `/rollback undo`) + DigitalOcean snapshot"
    rollback = approved_request(stack_env, thread_ts=ts, plan=dry)
    assert run_request(stack_env, slack_api, rollback.id) == "succeeded", thread_text(slack_api, ts)
    text = thread_text(slack_api, ts)
    assert "no pg_dump of prod" in text and "Snapshot" in text
    assert not os.listdir(stack_env["BACKUP_DIR"])

    # The same policy with a statement escrow cannot hold: the full backup is taken after all.
    store = request_store(stack_env)
    Engine(database_url, load_settings(stack_env).target("prod").migrations_dir, actor="setup").apply()
    ts2, dry2 = dry_run_plan(stack_env, slack_api, GOOD)
    request = store.create(kind="rollback", target="prod", channel=CHANNEL, thread_ts=ts2, requester=REQUESTER,
                           plan_hash=dry2["plan"]["hash"], to_version=GOOD, versions=dry2["plan"]["versions"],
                           summary="test", ttl_seconds=900,
                           warnings=["not escrowed: UPDATE t SET x = 1 WHERE CURRENT OF c (WHERE CURRENT OF a cursor)"])
    decide(stack_env, request.id)
    assert run_request(stack_env, slack_api, request.id) == "succeeded", thread_text(slack_api, ts2)
    assert "no pg_dump" not in thread_text(slack_api, ts2) and os.listdir(stack_env["BACKUP_DIR"])

