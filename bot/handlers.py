"""The slash command and the Approve/Reject clicks: ack, check, record, enqueue by dotted path.

Every handler acks first (bad input is answered in the ack itself: parsing is pure and takes
microseconds), then does its Redis and Slack calls; the workers answer in the request's thread.
Nothing here touches a database: the plan-changed check happens in the worker's `execute` job,
which re-plans and compares the approved plan hash before anything runs.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Collection, Mapping
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Queue
from slack_sdk import WebClient

from bot import approval, commands, liveness, messages
from bot.approval import Refusal
from bot.commands import Command, CommandError
from bot.plans import PlanSummary, summarize
from core import defaults, jobs
from core.config import Settings
from core.requests import AlreadyDecided, Request, RequestExpired, RequestStore, TargetBusy

log = logging.getLogger("rollback.bot")

MIGRATION_DIR = re.compile(r"^(\d{4}_\d{2}_\d{2}_\d{6})(_|$)")
EXPIRY_NOTICE_STEP = "expiry_notice"  # RequestStore.claim step: the expiry is announced once
READ_JOBS = {"status": jobs.STATUS, "backups": jobs.BACKUPS, "verify": jobs.VERIFY, "history": jobs.HISTORY}
Ack = Callable[..., Any]
Respond = Callable[..., Any]


def versions_on_disk(migrations_dir: str) -> set[str] | None:
    """Versions found in a migrations directory; None when the bot cannot see it (the workers will check)."""
    try:
        names = os.listdir(migrations_dir)
    except OSError:
        return None
    return {m.group(1) for m in map(MIGRATION_DIR.match, names) if m}


def plan_of(request: Request) -> PlanSummary | None:
    if request.kind != "rollback":
        return None
    return PlanSummary(request.target, request.plan_hash, request.to_version, tuple(request.versions),
                       tuple(request.warnings))


class Handlers:
    """Bolt listeners bound to the settings, the request store, the queue and the Web API client."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: RequestStore,
        queue: Queue,
        client: WebClient,
        clock: Callable[[], float],
        heartbeat_grace_seconds: float = defaults.WORKER_HEARTBEAT_GRACE_SECONDS,
    ) -> None:
        self.settings = settings
        self.heartbeat_grace_seconds = heartbeat_grace_seconds
        self.policy = settings.policy
        self.store = store
        self.queue = queue
        self.client = client
        self.clock = clock
        self.target_names = sorted(settings.targets)

    # -- plumbing -------------------------------------------------------------------------------------

    def worker_listening(self) -> bool:
        return bool(liveness.listening_workers(self.queue, self.heartbeat_grace_seconds))

    def enqueue(self, path: str, **kwargs: Any) -> None:
        job = self.queue.enqueue(
            path, kwargs=kwargs, job_timeout=defaults.JOB_TIMEOUT_SECONDS, description=f"{path} {kwargs}"
        )
        log.info("enqueued %s as job %s", path, job.id)

    def post(self, channel: str, text: str, *, thread_ts: str | None = None, **extra: Any) -> str:
        response = self.client.chat_postMessage(channel=channel, text=text, thread_ts=thread_ts, **extra)
        return str(response["ts"])

    def ephemeral(self, channel: str, user: str, text: str) -> None:
        self.client.chat_postEphemeral(channel=channel, user=user, text=text)

    def permalink(self, request: Request) -> str | None:
        if not request.thread_ts:
            return None
        try:
            return str(self.client.chat_getPermalink(channel=request.channel, message_ts=request.thread_ts)["permalink"])
        except Exception:  # a link is a courtesy: the refusal is answered without it
            log.warning("no permalink for %s", request.id)
            return None

    def group_members(self, user: str) -> Collection[str]:
        group = self.policy.approver_group
        if group is None or not approval.needs_group_lookup(user, self.policy):
            return ()
        response = self.client.usergroups_users_list(usergroup=group)
        return tuple(response.get("users") or ())

    # -- the slash command ----------------------------------------------------------------------------

    def command(self, ack: Ack, command: Mapping[str, Any], respond: Respond) -> None:
        user, channel = command["user_id"], command["channel_id"]
        refused = approval.may_request(user, channel, self.policy)
        if refused is not None:
            ack(text=messages.refusal(refused))
            return
        try:
            parsed = commands.parse(command.get("text") or "", self.target_names, self.versions_for)
        except CommandError as err:
            ack(text=str(err))
            return
        if parsed.verb == "help":
            ack(text=messages.help_text())
            return
        ack()
        log.info("command %s target=%s user=%s channel=%s", parsed.verb, parsed.target, user, channel)
        try:
            answer = self.run(parsed, user, channel)
        except (RedisConnectionError, RedisTimeoutError) as err:
            log.error("command %s: Redis unreachable: %s", parsed.verb, type(err).__name__)
            answer = messages.queue_unreachable()
        except Exception:
            log.exception("command %s failed", parsed.verb)
            answer = messages.internal_error()
        if answer:
            respond(text=answer, response_type="ephemeral")

    def versions_for(self, target: str) -> set[str] | None:
        return versions_on_disk(self.settings.targets[target].migrations_dir)

    def run(self, cmd: Command, user: str, channel: str) -> str | None:
        """Carry out a parsed command; returns the ephemeral answer, if any."""
        if cmd.verb == "cancel":
            return self.cancel(cmd, user, channel)
        if not self.worker_listening():
            return messages.no_worker(self.queue.name)
        if cmd.verb in READ_JOBS:
            self.read(cmd, user, channel)
            return None
        if cmd.verb == "dry-run":
            assert cmd.target and cmd.version
            ts = self.post(channel, messages.dry_run_root(cmd.target, cmd.version, user))
            self.enqueue(jobs.DRY_RUN, target=cmd.target, version=cmd.version, channel=channel, thread_ts=ts,
                         requester=user)
            return None
        if cmd.verb == "backup":
            assert cmd.target
            ts = self.post(channel, messages.backup_root(cmd.target, user))
            self.enqueue(jobs.BACKUP, target=cmd.target, channel=channel, thread_ts=ts, requester=user,
                         reason=messages.backup_reason(user))
            return None
        if cmd.verb in ("execute", "restore"):
            return self.ask(cmd, user, channel)
        if cmd.verb == "report":
            return self.report(cmd, user, channel)
        raise AssertionError(f"unhandled verb {cmd.verb}")

    def read(self, cmd: Command, user: str, channel: str) -> None:
        targets = [cmd.target] if cmd.target else self.target_names
        ts = self.post(channel, messages.read_root(cmd.verb, targets, user))
        for target in targets:
            extra = {"requester": user} if cmd.verb == "verify" else {}
            self.enqueue(READ_JOBS[cmd.verb], target=target, channel=channel, thread_ts=ts, **extra)

    def ask(self, cmd: Command, user: str, channel: str) -> str | None:
        """execute / restore: record a pending request and post it with Approve and Reject buttons."""
        assert cmd.target
        plan: PlanSummary | None = None
        if cmd.verb == "execute":
            saved = self.store.current_plan(channel, cmd.target)
            if saved is None:
                return messages.no_plan(cmd.target)
            plan = summarize(cmd.target, saved)
            if plan.empty:
                return messages.empty_plan(cmd.target)
        try:
            request = self.store.create(
                kind="rollback" if plan else "restore",
                target=cmd.target,
                channel=channel,
                thread_ts="",
                requester=user,
                plan_hash=plan.hash if plan else None,
                to_version=plan.to_version if plan else None,
                versions=list(plan.versions) if plan else [],
                summary=plan.summary() if plan else f"restore {cmd.backup} into {cmd.target}",
                ttl_seconds=self.policy.request_ttl_seconds,
                backup=cmd.backup,
                warnings=list(plan.warnings) if plan else [],
                now=self.clock(),
            )
        except TargetBusy as busy:
            return messages.target_busy(busy.active, self.permalink(busy.active))
        try:
            ts = self.post(channel, messages.request_text(request, plan), blocks=messages.request_blocks(request, plan))
        except Exception:
            self.store.set_status(request.id, "cancelled", outcome="the request message could not be posted")
            raise
        self.store.update(request.id, thread_ts=ts)
        log.info("request %s (%s of %s) pending, by %s", request.id, request.kind, request.target, user)
        return None

    def find_request(self, cmd: Command, channel: str, *, pending: bool) -> Request | None:
        if cmd.request_id:
            return self.store.get(cmd.request_id)
        found = self.store.pending_for_channel(channel, now=self.clock()) if pending else self.store.for_channel(channel, 1)
        return found[0] if found else None

    def cancel(self, cmd: Command, user: str, channel: str) -> str | None:
        request = self.find_request(cmd, channel, pending=True)
        if request is None:
            return messages.unknown_request(cmd.request_id) if cmd.request_id else messages.nothing_to_cancel()
        refused = approval.may_cancel(request, user, channel, self.clock(), self.policy, self.group_members(user))
        if refused is None:
            return self.decide(request, user, "cancelled")
        self.record_refusal(request, user, "cancel", refused)
        return messages.refusal(refused, request)

    def report(self, cmd: Command, user: str, channel: str) -> str | None:
        request = self.find_request(cmd, channel, pending=False)
        if request is None or not request.thread_ts:
            return messages.unknown_request(cmd.request_id) if cmd.request_id else messages.nothing_to_report()
        if request.channel != channel:
            return messages.refusal(Refusal.WRONG_CHANNEL)
        self.post(request.channel, messages.report_requested(user, request.id), thread_ts=request.thread_ts)
        self.enqueue(jobs.REPORT, channel=request.channel, thread_ts=request.thread_ts, requester=user)
        return None

    # -- the buttons ----------------------------------------------------------------------------------

    def approve(self, ack: Ack, body: Mapping[str, Any]) -> None:
        ack()
        self.click(body, "approved")

    def reject(self, ack: Ack, body: Mapping[str, Any]) -> None:
        ack()
        self.click(body, "rejected")

    def click(self, body: Mapping[str, Any], decision: str) -> None:
        user = body["user"]["id"]
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id", "")
        request_id = str(body["actions"][0].get("value") or "")
        message_ts = (body.get("container") or {}).get("message_ts") or (body.get("message") or {}).get("ts")
        log.info("click %s on %s by %s in %s", decision, request_id, user, channel)
        try:
            answer = self.click_checked(request_id, user, channel, decision, message_ts)
        except (RedisConnectionError, RedisTimeoutError) as err:
            log.error("click on %s: Redis unreachable: %s", request_id, type(err).__name__)
            answer = messages.queue_unreachable()
        except Exception:
            log.exception("click %s on %s failed", decision, request_id)
            answer = messages.internal_error()
        if answer:
            self.ephemeral(channel, user, answer)

    def click_checked(
        self, request_id: str, user: str, channel: str, decision: str, message_ts: str | None
    ) -> str | None:
        request = self.store.get(request_id)
        if request is None:
            return messages.unknown_request(request_id)
        if not request.thread_ts and message_ts and channel == request.channel:
            # clicked in the instant between posting the request and recording its message
            request = self.store.update(request.id, thread_ts=message_ts)
        rule = approval.may_approve if decision == "approved" else approval.may_reject
        refused = rule(request, user, channel, self.clock(), self.policy, self.group_members(user))
        action = "approve" if decision == "approved" else "reject"
        if refused is None and decision == "approved" and not self.worker_listening():
            answer = messages.no_worker(self.queue.name)
            self.post(request.channel, answer, thread_ts=request.thread_ts or None)
            return answer
        if refused is Refusal.EXPIRED:
            self.expire(request)
        if refused is not None:
            self.record_refusal(request, user, action, refused)
            return messages.refusal(refused, request)
        return self.decide(request, user, decision)

    def decide(self, request: Request, user: str, decision: str) -> str | None:
        """The atomic transition; only its single winner enqueues and rewrites the message."""
        try:
            decided = self.store.decide(request.id, decision, by=user, now=self.clock())
        except AlreadyDecided as err:
            self.record_refusal(err.request, user, decision, Refusal.ALREADY_DECIDED)
            return messages.refusal(Refusal.ALREADY_DECIDED, err.request)
        except RequestExpired as err:
            self.announce_expiry(err.request)
            self.record_refusal(err.request, user, decision, Refusal.EXPIRED)
            return messages.refusal(Refusal.EXPIRED)
        if decided.status.value == "approved":
            path = jobs.EXECUTE if decided.kind == "rollback" else jobs.RESTORE
            try:
                self.enqueue(path, request_id=decided.id)
            except Exception:
                # Approved but not queued: close the request so that it cannot sit approved forever.
                failed = self.store.set_status(decided.id, "failed", outcome=messages.not_queued(decided.id))
                self.show_decision(failed)
                if failed.thread_ts:
                    self.post(failed.channel, messages.not_queued(failed.id), thread_ts=failed.thread_ts)
                raise
            line = messages.approved_thread_line(decided)
        else:
            line = messages.decided_thread_line(decided)
        log.info("request %s %s by %s", decided.id, decided.status.value, user)
        self.show_decision(decided)
        if decided.thread_ts:
            self.post(decided.channel, line, thread_ts=decided.thread_ts)
        return None

    def expire(self, request: Request) -> None:
        expired = self.store.expire_if_due(request.id, now=self.clock())
        if expired.status.value == "expired":
            self.announce_expiry(expired)

    def announce_expiry(self, request: Request) -> None:
        """Buttons replaced by the expiry and a line in the thread, once per request (whoever notices
        first: a click or the sweeper)."""
        if not self.store.claim(request.id, EXPIRY_NOTICE_STEP):
            return
        self.show_decision(request)
        if request.thread_ts:
            self.post(request.channel, messages.expired_thread_line(request), thread_ts=request.thread_ts)
        log.info("request %s expired (%s)", request.id, "approved, not started" if request.approver else "unanswered")

    def show_decision(self, request: Request) -> None:
        """Replace the buttons by the decision (who, when)."""
        if not request.thread_ts:
            return
        plan = plan_of(request)
        self.client.chat_update(
            channel=request.channel,
            ts=request.thread_ts,
            text=f"{messages.request_text(request, plan)}\n{messages.decision_line(request)}",
            blocks=messages.decided_blocks(request, plan),
        )

    def record_refusal(self, request: Request, user: str, action: str, refused: Refusal) -> None:
        """A refused click is answered to the clicker and recorded in the thread, except a repeat click
        (double click, Slack retry) by the person whose decision already stands."""
        if refused is Refusal.ALREADY_DECIDED and request.decided_by == user:
            return
        if request.thread_ts:
            self.post(request.channel, messages.refusal_line(user, action, request.id, refused, request),
                      thread_ts=request.thread_ts)
