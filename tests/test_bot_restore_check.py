"""`/rollback restore` against the real worker's `check_backup` job: a real verified backup is requested,
a missing one is refused with the newest backups listed. Real bot, worker, PostgreSQL and Redis.

The job lives in the workers' branch (issue 8); until both branches meet, this module is skipped and
tests/test_bot_verbs.py answers the same job with a stand-in of the same contract.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from core.requests import RequestKind, RequestStore
from sandbox.signing import SlackRequestSender
from sandbox.slack_api import SlackApiServer, message_text
from tests.fixtures.stack import apply_example, enqueue, wait_job
from workers import jobs as worker_jobs

CHANNEL = "C_INCIDENT"
ALICE = "U_ALICE"

pytestmark = [
    pytest.mark.skipif(not hasattr(worker_jobs, "check_backup"), reason="needs the workers' check_backup job"),
    pytest.mark.usefixtures("worker"),
]


def test_restore_is_requested_only_for_a_backup_the_worker_verified(
    stack_sender: SlackRequestSender, slack_api: SlackApiServer, stack_env: dict[str, str], database_url: str,
) -> None:
    apply_example(database_url)
    store = RequestStore(redis.Redis.from_url(stack_env["REDIS_URL"]))
    taken = wait_job(enqueue(stack_env, "workers.jobs.backup", target="prod", requester=ALICE,
                             reason="before the restore test"), timeout=120)
    assert taken and taken["ok"], taken
    name = Path(taken["backup"]["path"]).name

    stack_sender.command("restore no-such-backup.dump prod", user_id=ALICE, channel_id=CHANNEL)
    refusal = slack_api.wait_for(lambda: [message_text(e) for e in slack_api.ephemerals(user=ALICE)], timeout=60)[0]
    assert refusal.startswith("Refused: backup `no-such-backup.dump` of `prod` cannot be restored"), refusal
    assert f"`{name}`" in refusal and "\n" not in refusal  # the newest verified backups are listed
    assert store.for_channel(CHANNEL) == [] and slack_api.messages(CHANNEL) == []

    stack_sender.command(f"restore {name} prod", user_id=ALICE, channel_id=CHANNEL)
    request = slack_api.wait_for(lambda: [r for r in store.for_channel(CHANNEL) if r.thread_ts], timeout=60)[0]
    assert request.kind is RequestKind.RESTORE and request.backup == name
    card = message_text(slack_api.thread(CHANNEL, request.thread_ts)[0])
    assert name in card and "verified" in card
