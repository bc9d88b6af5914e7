"""Issue 8's bot side through really signed requests into the running bot: help that renders, parse
errors that name the wrong argument, plans used up by their request and shown with their age, restore
only of a backup that a worker has checked, and `/rollback maintenance on|off`."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest
from rq import Queue
from rq.job import Job

from bot import verbs
from core import assessments, defaults
from core.requests import RequestKind, RequestStatus, RequestStore
from sandbox.signing import SlackRequestSender
from sandbox.slack_api import SlackApiServer, message_text
from tests.bot_standins import (
    CHECK_BACKUP,
    CORRUPT_BACKUP,
    GOOD_BACKUP,
    NEWEST,
    BrokenJob,
    answer_backup_check,
)
from tests.fixtures.bot import (
    ALICE,
    BOB,
    CAROL,
    CHANNEL,
    DEFAULT_BOT_CONFIG,
    PLAN,
    ask,
    ephemeral_texts,
    pending_request,
    roots,
    settle,
    thread_texts,
)
from tests.fixtures.bot import (
    jobs as queued,
)
from tests.fixtures.fakes import quiet

pytestmark = pytest.mark.usefixtures("idle_worker")
MAINTENANCE = verbs.verb("maintenance").job


def answer(sender: SlackRequestSender, slack_api: SlackApiServer, text: str, user: str = ALICE) -> str:
    """The one ephemeral line a command gets (in the ack or as a response after it)."""
    before = len(ephemeral_texts(slack_api, user))
    status, body = sender.command(text, user_id=user, channel_id=CHANNEL)
    assert status == 200
    if body.strip():
        return body
    return slack_api.wait_for(lambda: ephemeral_texts(slack_api, user)[before:])[0]


# -- wording -----------------------------------------------------------------------------------------


def test_help_escapes_placeholders_and_shows_one_line_per_verb(
    sender: SlackRequestSender, slack_api: SlackApiServer
) -> None:
    help_text = answer(sender, slack_api, "help")
    verb_lines = [line for line in help_text.strip().splitlines() if line.startswith("`")]
    assert [line.split("`")[1] for line in verb_lines][:3] == list(verbs.MAIN_PATH)
    assert sorted(line.split("`")[1] for line in verb_lines) == sorted(v.name for v in verbs.VERBS)
    assert "<" not in help_text and ">" not in help_text  # nothing Slack would take for a link or mention
    for line in verb_lines:
        assert line.count("`") == 2 and len(line) <= 72, line  # one closed code span, short
    details = answer(sender, slack_api, "help dry-run")
    assert "`/rollback dry-run &lt;version&gt; [target]`" in details
    assert "Example: `/rollback dry-run 2025_10_20_120001 prod`" in details
    assert "`/rollback maintenance on|off [target]`" in answer(sender, slack_api, "help maintenance")
    assert "--new-droplet [name] [target]`" in answer(sender, slack_api, "help snapshot-restore --new-droplet")
    unknown = answer(sender, slack_api, "help sideways")
    assert "No verb `sideways`" in unknown and "\n" not in unknown.strip()
    assert slack_api.messages(CHANNEL) == []


def test_a_parse_error_names_the_wrong_argument(sender: SlackRequestSender, slack_api: SlackApiServer,
                                                bot_queue: Queue) -> None:
    text = answer(sender, slack_api, "dry-run nonsense prod")
    assert "`nonsense` is not a migration version: versions look like 2025_10_20_120001" in text
    assert "Unknown target" not in text and "\n" not in text.strip()
    assert "`maintenance` needs a state" in answer(sender, slack_api, "maintenance prod")
    assert "`sideways` is not a maintenance state: say `on` or `off`" in answer(sender, slack_api,
                                                                                  "maintenance sideways prod")
    assert bot_queue.count == 0 and slack_api.messages(CHANNEL) == []


def test_user_text_is_echoed_escaped(sender: SlackRequestSender, slack_api: SlackApiServer) -> None:
    text = answer(sender, slack_api, "status <!channel>")
    assert "<!channel>" not in text and "`&lt;!channel&gt;`" in text
    text = answer(sender, slack_api, "<b>&amp;")
    assert "Unknown command `&lt;b&gt;&amp;`" in text  # an entity Slack already escaped is not escaped twice


# -- plans that outlive their use ----------------------------------------------------------------------


def test_a_plan_is_used_up_by_the_request_made_from_it(
    sender: SlackRequestSender, slack_api: SlackApiServer, bot_queue: Queue, store: RequestStore
) -> None:
    request = ask(sender, slack_api, store)
    assert store.current_plan(CHANNEL, "prod") is None
    sender.command("cancel", user_id=ALICE, channel_id=CHANNEL)
    slack_api.wait_for(lambda: store.get(request.id).status is RequestStatus.CANCELLED)  # type: ignore[union-attr]
    # execute again: no second approval request for the same plan, but "run a dry run first"
    text = answer(sender, slack_api, "execute prod")
    assert "No current dry-run for `prod`" in text and "Run a dry run first" in text
    assert "/rollback dry-run &lt;version&gt; prod" in text
    assert len(roots(slack_api)) == 1 and len(store.for_channel(CHANNEL)) == 1 and bot_queue.count == 0


def test_a_plan_cleared_by_a_change_cannot_be_executed(
    sender: SlackRequestSender, slack_api: SlackApiServer, store: RequestStore
) -> None:
    store.save_plan(CHANNEL, "prod", PLAN)
    store.save_plan("C_OTHER", "prod", PLAN)
    store.clear_plans("prod")  # what a worker does after it changed prod, or after a failed dry run
    assert "Run a dry run first" in answer(sender, slack_api, "execute prod")
    assert store.for_channel(CHANNEL) == [] and slack_api.messages(CHANNEL) == []


def test_the_card_shows_the_plan_age(
    sender: SlackRequestSender, slack_api: SlackApiServer, store: RequestStore
) -> None:
    store.save_plan(CHANNEL, "prod", PLAN, now=time.time() - 7 * 60 - 5)
    sender.command("execute prod", user_id=ALICE, channel_id=CHANNEL)
    request = pending_request(slack_api, store)
    card = message_text(roots(slack_api)[0])
    assert re.search(r"Dry run of \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC, 7 min old when this request was made", card)
    assert request.plan_saved_at is not None and 7 * 60 <= request.created_at - request.plan_saved_at < 8 * 60


# -- restore only of a backup that exists and verifies -------------------------------------------------


def test_restore_of_a_missing_backup_is_refused_with_the_newest(
    sender: SlackRequestSender, slack_api: SlackApiServer, bot_queue: Queue, store: RequestStore
) -> None:
    sender.command("restore no-such-backup.dump prod", user_id=ALICE, channel_id=CHANNEL)
    answer_backup_check(slack_api, bot_queue)
    text = slack_api.wait_for(lambda: ephemeral_texts(slack_api, ALICE))[0]
    assert text.startswith("Refused: backup `no-such-backup.dump` of `prod` cannot be restored")
    assert f"Newest verified backups: `{NEWEST[0]}`, `{NEWEST[1]}`" in text and "\n" not in text
    assert store.for_channel(CHANNEL) == [] and slack_api.messages(CHANNEL) == []  # no request, no card
    assert store.active_for_target("prod") is None and bot_queue.count == 0


def test_restore_of_a_backup_that_does_not_verify_is_refused(
    sender: SlackRequestSender, slack_api: SlackApiServer, bot_queue: Queue, store: RequestStore
) -> None:
    sender.command(f"restore {CORRUPT_BACKUP} prod", user_id=ALICE, channel_id=CHANNEL)
    answer_backup_check(slack_api, bot_queue)
    text = slack_api.wait_for(lambda: ephemeral_texts(slack_api, ALICE))[0]
    assert "checksum does not match" in text and GOOD_BACKUP in text
    assert store.for_channel(CHANNEL) == []


def test_restore_of_a_verified_backup_asks_for_approval_and_says_what_was_checked(
    sender: SlackRequestSender, slack_api: SlackApiServer, bot_queue: Queue, store: RequestStore
) -> None:
    sender.command(f"restore {GOOD_BACKUP} prod", user_id=ALICE, channel_id=CHANNEL)
    answer_backup_check(slack_api, bot_queue)
    request = pending_request(slack_api, store)
    assert request.kind is RequestKind.RESTORE and request.backup == GOOD_BACKUP
    card = message_text(roots(slack_api)[0])
    assert "taken 2025-10-20T15:00:00Z" in card and "5.0 MB" in card and "verified" in card
    checked = [Job.fetch(i, connection=bot_queue.connection) for i in bot_queue.finished_job_registry.get_job_ids()]
    assert [(j.func_name, j.kwargs) for j in checked] == [(CHECK_BACKUP, {"target": "prod", "backup": GOOD_BACKUP})]
    assert bot_queue.count == 0  # nothing else is queued before the approval


def test_restore_refused_when_no_worker_answers_the_check_in_time(
    make_sender: Callable[..., SlackRequestSender], slack_api: SlackApiServer, bot_queue: Queue, store: RequestStore
) -> None:
    config = DEFAULT_BOT_CONFIG.replace("request_ttl_seconds = 900",
                                        "request_ttl_seconds = 900\nbackup_check_timeout_seconds = 1")
    sender = make_sender(config)
    sender.command(f"restore {GOOD_BACKUP} prod", user_id=ALICE, channel_id=CHANNEL)  # the idle worker takes nothing
    text = slack_api.wait_for(lambda: ephemeral_texts(slack_api, ALICE))[0]
    assert "no worker answered the check" in text and "within 1 s" in text
    assert "`[bot] backup_check_timeout_seconds`" in text and "--" not in text
    assert store.for_channel(CHANNEL) == [] and slack_api.messages(CHANNEL) == []
    assert bot_queue.count == 0  # the unanswered check is cancelled: a worker freed later runs nothing


def test_restore_refused_when_the_check_fails(
    sender: SlackRequestSender, slack_api: SlackApiServer, bot_queue: Queue, store: RequestStore
) -> None:
    sender.command(f"restore {GOOD_BACKUP} prod", user_id=ALICE, channel_id=CHANNEL)
    answer_backup_check(slack_api, bot_queue, job_class=BrokenJob)
    text = slack_api.wait_for(lambda: ephemeral_texts(slack_api, ALICE))[0]
    assert "could not check backup" in text and "Traceback" not in text and "crashed" not in text
    assert store.for_channel(CHANNEL) == []


# -- /rollback maintenance on|off [target] ------------------------------------------------------------


def test_maintenance_by_the_latest_requester_is_recorded_in_its_thread(
    sender: SlackRequestSender, slack_api: SlackApiServer, bot_queue: Queue, store: RequestStore
) -> None:
    request = ask(sender, slack_api, store)
    store.decide(request.id, "approved", by=BOB)
    store.set_status(request.id, RequestStatus.FAILED, outcome="rollback failed; maintenance left on")
    sender.command("maintenance off prod", user_id=ALICE, channel_id=CHANNEL)
    slack_api.wait_for(lambda: bot_queue.count == 1)
    assert queued(bot_queue) == [(MAINTENANCE, {"target": "prod", "state": "off", "channel": CHANNEL,
                                                     "thread_ts": request.thread_ts, "requester": ALICE})]
    texts = settle(slack_api, request, 1)
    assert "<@U_ALICE> switches maintenance *off* for `prod`" in texts[1]


def test_maintenance_by_an_approver_without_a_request_opens_a_thread(
    sender: SlackRequestSender, slack_api: SlackApiServer, bot_queue: Queue
) -> None:
    sender.command("maintenance ON staging", user_id=BOB, channel_id=CHANNEL)
    slack_api.wait_for(lambda: bot_queue.count == 1)
    root = roots(slack_api)[-1]
    assert queued(bot_queue) == [(MAINTENANCE, {"target": "staging", "state": "on", "channel": CHANNEL,
                                                     "thread_ts": root["ts"], "requester": BOB})]
    assert "<@U_BOB> switches maintenance *on* for `staging`" in message_text(root)


def test_maintenance_by_anyone_else_is_refused_in_one_line(
    sender: SlackRequestSender, slack_api: SlackApiServer, bot_queue: Queue, store: RequestStore
) -> None:
    request = ask(sender, slack_api, store)
    text = answer(sender, slack_api, "maintenance off prod", user=CAROL)
    assert text.startswith("Refused: only the requester of the target's latest request or an approver")
    assert request.id in text and "<@U_ALICE>" in text and "\n" not in text
    assert "say which one" in answer(sender, slack_api, "maintenance off", user=ALICE)  # two targets: name one
    quiet(slack_api)
    assert bot_queue.count == 0 and len(thread_texts(slack_api, request)) == 1


def test_maintenance_is_refused_while_a_pipeline_runs(
    sender: SlackRequestSender, slack_api: SlackApiServer, bot_queue: Queue, store: RequestStore
) -> None:
    request = ask(sender, slack_api, store)
    store.decide(request.id, "approved", by=BOB)
    store.set_status(request.id, RequestStatus.RUNNING, started_at=time.time())
    text = answer(sender, slack_api, "maintenance off prod", user=BOB)
    assert f"rollback request {request.id} of `prod` is running" in text
    assert bot_queue.count == 0


def test_undo_takes_a_request_id_or_a_cli_run_id_and_escrow_reads_every_target() -> None:
    from bot.commands import CommandError, parse

    assert parse("undo rb-7k3f9q prod", ["prod", "staging"]).request_id == "RB-7K3F9Q"
    assert parse("undo RUN-20251020-150102-A1B2 prod", ["prod", "staging"]).request_id == "run-20251020-150102-a1b2"
    assert parse("escrow", ["prod", "staging"]).target is None  # a reading verb asks about all targets
    with pytest.raises(CommandError, match="run-migrations run id"):
        parse("undo prod", ["prod", "staging"])
    with pytest.raises(CommandError):
        parse("undo RB-7K3F9Q", ["prod", "staging"])  # a writing verb names its target when several exist


def test_terminate_runs_beside_a_pending_rollback_never_ends_rollback_bots_own_session(
    sender: SlackRequestSender, slack_api: SlackApiServer, store: RequestStore
) -> None:
    assessments.save(store.redis, CHANNEL, "prod", [
        {"pid": 4242, "application": defaults.WORKER_APPLICATION_NAME, "user": "app", "state": "active",
         "why": ["waiting_on_lock"], "backend_start": 1.0},
        {"pid": 4343, "application": "billing-cron", "user": "app", "state": "idle in transaction",
         "why": ["idle_in_transaction"], "backend_start": 2.0},
    ])
    rollback = ask(sender, slack_api, store)  # a pending rollback holds prod
    text = answer(sender, slack_api, "terminate 4242 prod")
    assert "rollback-bot's own session" in text and "\n" not in text, text
    assert [r.id for r in store.for_channel(CHANNEL)] == [rollback.id]  # nothing created

    sender.command("terminate 4343 prod", user_id=ALICE, channel_id=CHANNEL)  # beside the pending rollback
    ended = slack_api.wait_for(lambda: [r for r in store.for_channel(CHANNEL)
                                        if r.kind is RequestKind.TERMINATE and r.thread_ts])[0]
    assert ended.subject == "4343" and ended.status is RequestStatus.PENDING
    assert store.get(rollback.id).status is RequestStatus.PENDING  # type: ignore[union-attr]
    text = answer(sender, slack_api, "terminate 4343 prod", user=CAROL)  # one per session at a time
    assert f"already has terminate request {ended.id}" in text, text
