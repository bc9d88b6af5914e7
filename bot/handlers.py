"""The slash command, a mention of the bot and the Approve/Reject clicks: ack, check, record, enqueue by
dotted path.

Every handler acks first (a slash command's bad input is answered in the ack itself: parsing is pure and
takes microseconds), then does its Redis and Slack calls; the workers answer in the request's thread. A
mention (bot/invocations.py) goes through exactly the slash command's path; typed in a thread, everything
it posts goes into that thread and its answers are ephemeral there.
Nothing here touches a database: the plan-changed check happens in the worker's `execute` job,
which re-plans and compares the approved plan hash before anything runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from redis import ConnectionPool, Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Queue
from rq.exceptions import InvalidJobOperation
from rq.job import Job
from rq.results import Result
from slack_sdk import WebClient

from bot import approval, commands, invocations, links, liveness, messages, verbs
from bot.approval import Refusal
from bot.commands import Command, CommandError
from bot.invocations import Ignored, Invocation, NotAddressed
from bot.plans import DryRunPlan, PlanSummary
from bot.verbs import Action, Verb
from core import assessments, defaults, kinds, stall_policy
from core.config import Settings, Target
from core.kinds import Draft
from core.prechecks import BackupCheck, PreviewCheck, RepairPlanCheck, UndoCheck
from core.requests import (
    AlreadyDecided,
    PlanGone,
    Request,
    RequestExpired,
    RequestStatus,
    RequestStore,
    SavedPlan,
    TargetBusy,
)
from core.versions import versions_in

log = logging.getLogger("rollback.bot")

EXPIRY_NOTICE_STEP = "expiry_notice"  # RequestStore.claim step: the expiry is announced once
# The word for a click's decision in the thread's record of a refused one ("tried to approve").
DECISION_WORDS = {RequestStatus.APPROVED: "approve", RequestStatus.REJECTED: "reject",
                  RequestStatus.CANCELLED: "cancel"}
Ack = Callable[..., Any]
Respond = Callable[..., Any]
Answer = str | None  # the ephemeral answer to the person who typed the command, if any
Reply = Callable[[str], None]  # how that answer reaches them (the slash command's response_url, an ephemeral)


def versions_on_disk(migrations_dir: str) -> set[str] | None:
    """Versions found in a migrations directory; None when the bot cannot see it (the workers will check)."""
    try:
        names = os.listdir(migrations_dir)
    except OSError:
        return None
    return versions_in(names)


def plan_of(request: Request, target: Target | None = None) -> PlanSummary | None:
    if kinds.of(request.kind).draft is not Draft.PLAN:  # only a plan's request shows its plan
        return None
    return PlanSummary(request.target, request.plan_hash, request.to_version, tuple(request.versions),
                       tuple(request.warnings), tuple(request.forecast), request.stall_ms,
                       stall_policy.decide(target, request.stall_ms) if target else None)


@dataclass(frozen=True)
class RequestDraft:
    """What a REQUEST verb asks approval for, before the request exists."""

    summary: str
    plan: PlanSummary | None = None  # a rollback's plan, shown on the card
    saved: SavedPlan | None = None  # the saved plan the request uses up
    backup: str | None = None
    subject: str | None = None  # what a terminate or repair request acts on
    plan_hash: str | None = None  # a repair's or an undo's plan hash (a rollback's is its plan's)
    source_link: str | None = None  # a rollback's dry run, linked from the card
    sql: str | None = None  # the SQL a rollback will run
    # a recovery's: the preview's hash (the request's plan_hash), what the workers need, and the
    # preview's detail posted in the request's thread (sample keys)
    digest: str | None = None
    params: Mapping[str, Any] | None = None
    to_version: str | None = None
    thread_note: str | None = None
    undoes: str | None = None  # an undo: the rollback it reverses
    versions: tuple[str, ...] = ()  # an undo: the migrations it re-applies


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
        # One method per action of the verb table (bot/verbs.py); HELP is answered in the ack.
        self.actions: dict[Action, Callable[[Verb, Command, Invocation], Answer]] = {
            Action.THREAD_JOB: self.thread_job,
            Action.REQUEST: self.ask,
            Action.CANCEL: self.cancel,
            Action.REPORT: self.report,
            Action.MAINTENANCE: self.maintenance,
            Action.WATCH: self.watch,
        }
        # What a REQUEST verb needs before its request exists, by its kind's draft (core/kinds.py).
        self.drafts: dict[Draft, Callable[[Verb, Command, str], RequestDraft | str]] = {
            Draft.PLAN: self.rollback_draft,
            Draft.BACKUP_CHECK: self.restore_draft,
            Draft.ASSESSED_SESSION: self.terminate_draft,
            Draft.REPAIR_PLAN: self.repair_draft,
            Draft.PREVIEW_CHECK: self.recovery_draft,
            Draft.UNDO_CHECK: self.undo_draft,
        }

    # -- plumbing -------------------------------------------------------------------------------------

    def worker_listening(self) -> bool:
        return bool(liveness.listening_workers(self.queue, self.heartbeat_grace_seconds))

    def enqueue(self, path: str, *, job_timeout: int = defaults.JOB_TIMEOUT_SECONDS, **kwargs: Any) -> Job:
        job = self.queue.enqueue(path, kwargs=kwargs, job_timeout=job_timeout, description=f"{path} {kwargs}")
        log.info("enqueued %s as job %s", path, job.id)
        return job

    def post(self, channel: str, text: str, *, thread_ts: str | None = None, **extra: Any) -> str:
        response = self.client.chat_postMessage(channel=channel, text=text, thread_ts=thread_ts, **extra)
        return str(response["ts"])

    def ephemeral(self, channel: str, user: str, text: str, *, thread_ts: str | None = None) -> None:
        self.client.chat_postEphemeral(channel=channel, user=user, text=text, thread_ts=thread_ts)

    def whisper(self, asked: Invocation, text: str) -> None:
        """An answer to the person who asked alone, in the thread they asked in."""
        self.ephemeral(asked.channel, asked.user, text, thread_ts=asked.thread_ts)

    def open_thread(self, asked: Invocation, text: str) -> str:
        """The thread a verb is answered in: a new root message `text`, or, asked inside a thread, that
        thread (with `text` as a reply, so the record says who asked what). Returns the thread's ts."""
        if asked.thread_ts:
            self.post(asked.channel, text, thread_ts=asked.thread_ts)
            return asked.thread_ts
        return self.post(asked.channel, text)

    def permalink(self, request: Request) -> str | None:
        return links.permalink(self.client, request.channel, request.thread_ts)

    def group_members(self, user: str) -> Collection[str]:
        group = self.policy.approver_group
        if group is None or not approval.needs_group_lookup(user, self.policy):
            return ()
        response = self.client.usergroups_users_list(usergroup=group)
        return tuple(response.get("users") or ())

    # -- the slash command and a mention of the bot ----------------------------------------------------

    # Each is two listeners (bolt's ack + lazy): the ack answers Slack from the request's own thread with
    # nothing but pure checks, and the work does the Redis and Slack calls afterwards on the listener
    # pool, so a burst of commands never holds up the next ack. Both carry out an `Invocation` the same way.

    def accepted(self, asked: Invocation) -> tuple[verbs.Verb, Command] | str:
        """The verb and command to carry out, or the one-line answer that refuses it (pure but for
        listing the migrations folder)."""
        words = asked.text.split()
        named = verbs.lookup(words[0]) if words else None
        refused = approval.may_request(asked.user, asked.channel, self.policy,
                                       named.who if named else verbs.Who.REQUESTERS)
        if refused is not None:
            return messages.refusal(refused)
        try:
            parsed = commands.parse(asked.text, self.target_names, self.versions_for)
        except CommandError as err:
            return str(err)
        verb = verbs.verb(parsed.verb)
        if verb.action is Action.HELP:
            return messages.verb_help(parsed.topic) if parsed.topic else messages.help_text()
        return verb, parsed

    def command_ack(self, ack: Ack, command: Mapping[str, Any]) -> None:
        verdict = self.accepted(invocations.from_command(command))
        if isinstance(verdict, str):
            ack(text=verdict)
        else:
            ack()

    def command_work(self, command: Mapping[str, Any], respond: Respond) -> None:
        asked = invocations.from_command(command)
        verdict = self.accepted(asked)
        if isinstance(verdict, str):
            return  # answered in the ack
        self.carry_out(asked, *verdict, reply=lambda text: respond(text=text, response_type="ephemeral"))

    @staticmethod
    def ack_mention(ack: Ack) -> None:
        ack()  # an event's ack carries no answer: the work answers with an ephemeral in the thread

    def mention_work(self, event: Mapping[str, Any], context: Mapping[str, Any]) -> None:
        asked = invocations.from_mention(event, context.get("bot_user_id"))
        if isinstance(asked, Ignored):
            log.info("mention ignored: %s", asked.why)
            return
        if isinstance(asked, NotAddressed):
            self.ephemeral(asked.channel, asked.user, messages.mention_first(), thread_ts=asked.thread_ts)
            return
        verdict = self.accepted(asked)
        if isinstance(verdict, str):
            self.whisper(asked, verdict)
            return
        self.carry_out(asked, *verdict, reply=lambda text: self.whisper(asked, text))

    def carry_out(self, asked: Invocation, verb: Verb, parsed: Command, *, reply: Reply) -> None:
        """Run an accepted command; its answer, if any, goes to the person alone (`reply`)."""
        log.info("command %s target=%s user=%s channel=%s%s", parsed.verb, parsed.target, asked.user, asked.channel,
                 f" thread={asked.thread_ts}" if asked.thread_ts else "")
        try:
            answer = self.run(verb, parsed, asked)
        except (RedisConnectionError, RedisTimeoutError) as err:
            log.error("command %s: Redis unreachable: %s", parsed.verb, type(err).__name__)
            answer = messages.queue_unreachable()
        except Exception:
            log.exception("command %s failed", parsed.verb)
            answer = messages.internal_error()
        if answer:
            reply(answer)

    def versions_for(self, target: str) -> set[str] | None:
        return versions_on_disk(self.settings.targets[target].migrations_dir)

    def run(self, verb: Verb, cmd: Command, asked: Invocation) -> Answer:
        """Carry out a parsed command by its verb's action; returns the ephemeral answer, if any."""
        if verb.needs_worker and not self.worker_listening():
            return messages.no_worker(self.queue.name)
        return self.actions[verb.action](verb, cmd, asked)

    @staticmethod
    def job_kwargs(verb: Verb, cmd: Command, **context: Any) -> dict[str, Any]:
        """The kwargs the verb's job is given (`Verb.job_kwargs`), from the command and its context."""
        values = {**asdict(cmd), "reason": messages.job_reason(verb.name, context.get("requester", "")), **context}
        return {name: values[name] for name in verb.job_kwargs}

    def thread_job(self, verb: Verb, cmd: Command, asked: Invocation) -> Answer:
        """A root message (asked in a thread: a line there), then the verb's job for each target (read
        verbs without one: every target), answered in that thread."""
        assert verb.job
        user, channel = asked.user, asked.channel
        targets = [cmd.target] if cmd.target else self.target_names
        ts = self.open_thread(asked, messages.thread_root(verb.name, targets, cmd.version, user))
        for target in targets:
            self.enqueue(verb.job, **self.job_kwargs(verb, cmd, target=target, channel=channel, thread_ts=ts,
                                                     requester=user))
        return None

    def ask(self, verb: Verb, cmd: Command, asked: Invocation) -> Answer:
        """A two-person verb: record a pending request and post it with Approve and Reject buttons (its
        card): a new root message, whose thread is the request's, or, asked in a thread, a reply there, and
        that thread is the request's (its pipeline and outcome are posted there)."""
        assert cmd.target and verb.approval
        user, channel, in_thread = asked.user, asked.channel, asked.thread_ts
        # A terminate runs beside the target's request (it changes no schema), one per session at a time.
        subject = cmd.pid if kinds.of(verb.approval).beside_target else None
        active = self.store.active_for(verb.approval, cmd.target, subject, now=self.clock())
        if active is not None:  # said first: who holds the target matters more than what this one lacks
            return messages.target_busy(active, self.permalink(active))
        draft = self.drafts[kinds.of(verb.approval).draft](verb, cmd, channel)
        if isinstance(draft, str):
            return draft
        try:
            request = self.store.create(
                kind=verb.approval,
                target=cmd.target,
                channel=channel,
                thread_ts=in_thread or "",
                card_ts="" if in_thread else None,  # "": the card is a reply in the thread, not posted yet
                requester=user,
                plan_hash=draft.plan.hash if draft.plan else (draft.digest or draft.plan_hash),
                to_version=draft.plan.to_version if draft.plan else draft.to_version,
                versions=draft.plan.versions if draft.plan else draft.versions,
                warnings=draft.plan.warnings if draft.plan else (),
                forecast=draft.plan.forecast if draft.plan else (),
                stall_ms=draft.plan.stall_ms if draft.plan else None,
                summary=draft.summary,
                backup=draft.backup,
                plan=draft.saved,
                subject=draft.subject,
                source_link=draft.source_link,
                sql=draft.sql,
                params=draft.params,
                undoes=draft.undoes,
                ttl_seconds=self.policy.request_ttl_seconds,
                now=self.clock(),
            )
        except TargetBusy as busy:
            return messages.target_busy(busy.active, self.permalink(busy.active))
        except PlanGone:  # another request used the plan up, or a change cleared it, since it was read
            return messages.no_plan(cmd.target)
        try:
            card = self.post(channel, messages.request_text(request, draft.plan),
                             blocks=messages.request_blocks(request, draft.plan), thread_ts=in_thread)
        except Exception:
            self.store.set_status(request.id, RequestStatus.CANCELLED,
                                  outcome="the request message could not be posted")
            raise
        self.store.update(request.id, **({"card_ts": card} if in_thread else {"thread_ts": card}))
        ts = in_thread or card
        contacts = self.settings.contacts_for(self.settings.targets[request.target])
        if contacts:  # the team hears of a change when it is asked for, not only when it fails
            self.post(channel, messages.team_told(request, contacts), thread_ts=ts)
        if request.sql:  # the whole SQL as a file in the card's thread (the card shows its first lines)
            try:
                self.client.files_upload_v2(channel=channel, thread_ts=ts, content=request.sql,
                                            filename=f"{request.id}-rollback.sql", title=messages.sql_file_title(request))
            except Exception:  # a courtesy: the dry run's thread has the whole SQL too
                log.warning("could not attach the SQL of %s", request.id)
        if draft.thread_note:
            self.post(channel, draft.thread_note, thread_ts=ts)
        log.info("request %s (%s of %s) pending, by %s", request.id, request.kind, request.target, user)
        return None

    def rollback_draft(self, verb: Verb, cmd: Command, channel: str) -> RequestDraft | str:
        """The channel's current plan for the target: shown on the card and used up by the request."""
        assert cmd.target
        saved = self.store.saved_plan(channel, cmd.target)
        if saved is None:
            return messages.no_plan(cmd.target)
        dry_run = DryRunPlan.from_dict(saved.plan)
        plan = dry_run.summary(cmd.target)
        if plan.empty:
            return messages.empty_plan(cmd.target)
        plan = replace(plan, maintenance=stall_policy.decide(self.settings.targets[cmd.target], plan.stall_ms))
        if plan.maintenance is not None and plan.maintenance.refused:
            return messages.maintenance_required_without_hook(cmd.target, plan.maintenance)
        return RequestDraft(summary=plan.summary(), plan=plan, saved=saved, source_link=self.source_link(dry_run),
                            sql=dry_run.sql)

    def source_link(self, dry_run: DryRunPlan) -> str | None:
        """A permalink to the thread the dry run was answered in (None: unknown, or Slack would not say)."""
        return links.permalink(self.client, dry_run.source_channel, dry_run.source_thread_ts)

    def restore_draft(self, verb: Verb, cmd: Command, channel: str) -> RequestDraft | str:
        """Only a backup that exists and verifies may be requested: a worker checks it first."""
        assert cmd.target and cmd.backup
        checked = self.check_backup(verb, cmd.target, cmd.backup)
        if isinstance(checked, str):
            return checked
        shown = (messages.preview_summary(checked.preview, checked.digest) if checked.preview and checked.digest
                 else messages.restore_preview_missing(checked.preview_error))
        return RequestDraft(summary=messages.restore_summary(cmd.target, cmd.backup, checked.backup),
                            backup=cmd.backup, digest=checked.digest, params={"preview_text": shown})

    def terminate_draft(self, verb: Verb, cmd: Command, channel: str) -> RequestDraft | str:
        """Only a session the channel's current assessment named (`/rollback status`) may be ended."""
        assert cmd.target and cmd.pid
        saved = assessments.current(self.store.redis, channel, cmd.target, prefix=self.store.prefix)
        session = saved.session(int(cmd.pid)) if saved else None
        if session is None:
            return messages.pid_not_assessed(cmd.target, cmd.pid, saved is not None)
        if session.get("application") == defaults.WORKER_APPLICATION_NAME:
            # rollback-bot's own work (the very rollback a terminate runs beside): it ends with its job
            return messages.own_session(cmd.target, cmd.pid)
        return RequestDraft(summary=messages.session_summary(session), subject=cmd.pid)

    def undo_draft(self, verb: Verb, cmd: Command, channel: str) -> RequestDraft | str:
        """An undo is asked for only after its dry run: a worker runs it (rolled back) and the card shows it."""
        assert cmd.target and cmd.request_id
        answer = self.wait_for_check(verb, cmd.target, request_id=cmd.request_id)
        if answer is None:
            return messages.undo_check_unanswered(cmd.target, cmd.request_id)
        check = UndoCheck.from_dict(answer)
        if not check.ok:
            return messages.undo_refused(cmd.target, cmd.request_id, check.error)
        return RequestDraft(summary=messages.undo_summary(cmd.target, cmd.request_id, check.versions, check.restored),
                            undoes=cmd.request_id, plan_hash=check.hash, versions=check.versions)

    def wait_for_check(self, verb: Verb, target: str, **kwargs: Any) -> Any:
        """The return value of the verb's check job, or None when no worker answered in time or it crashed."""
        result = self.wait_check(verb, target, **kwargs)
        if result is None:
            return None
        if result.type is not Result.Type.SUCCESSFUL:
            log.error("%s of %s failed on the worker (%s)", verb.check_job, target, result.type.name)
            return None
        return result.return_value

    def recovery_draft(self, verb: Verb, cmd: Command, channel: str) -> RequestDraft | str:
        """A recovery (recover, pitr, snapshot-restore): a worker checks it and computes its restore
        preview first; the card shows the preview and the request binds its hash."""
        assert cmd.target and verb.approval
        if cmd.version and cmd.point:  # `pitr`: a migration or a time, not both
            return messages.pitr_version_and_time(cmd.target)
        asked = {name: getattr(cmd, name) for name in verb.check_kwargs}
        # the channel rides along for the page a provider's API failing triggers (no thread exists yet)
        result = self.wait_check(verb, cmd.target, channel=channel, **asked)
        if result is None:
            return messages.recovery_check_timed_out(verb.name, cmd.target, self.check_timeout())
        if result.type is not Result.Type.SUCCESSFUL:
            log.error("check of %s on %s failed on the worker (%s)", verb.name, cmd.target, result.type.name)
            return messages.recovery_check_refused(verb.name, cmd.target, None)
        check = PreviewCheck.from_dict(result.return_value)
        if not check.ok or check.digest is None or check.preview is None:
            return messages.recovery_check_refused(verb.name, cmd.target, check.error)
        return RequestDraft(
            summary=messages.preview_summary(check.preview, check.digest), digest=check.digest,
            backup=cmd.backup or check.backup, params=dict(check.params or {}),
            thread_note=messages.preview_samples(check.preview),
            to_version=check.preview.bad_version or None,
        )

    def check_timeout(self) -> int:
        return max(1, int(self.policy.backup_check_timeout_seconds))

    def wait_check(self, verb: Verb, target: str, **kwargs: Any) -> Result | None:
        """Enqueue the verb's check job and wait for its result (RQ blocks on the result stream, bounded);
        None when no worker answered in time (the job is then cancelled)."""
        assert verb.check_job
        timeout = self.check_timeout()
        job = self.enqueue(verb.check_job, job_timeout=timeout + defaults.BACKUP_CHECK_GRACE_SECONDS,
                           target=target, **kwargs)
        # The wait blocks on Redis (XREAD on the job's result stream) longer than the shared connection's
        # socket timeout allows (RQ sets it to a few seconds), so it has a connection of its own.
        shared = self.queue.connection.connection_pool
        pool = ConnectionPool(connection_class=shared.connection_class, **{
            **shared.connection_kwargs, "socket_timeout": timeout + defaults.BACKUP_CHECK_GRACE_SECONDS})
        try:
            result = Job.fetch(job.id, connection=Redis(connection_pool=pool)).latest_result(timeout=timeout)
        finally:
            pool.disconnect()
        if result is None:
            with contextlib.suppress(InvalidJobOperation):
                job.cancel()  # a worker that frees up later has nothing to answer
            log.warning("check %s of %s: no answer within %d s", verb.name, target, timeout)
        return result

    def repair_draft(self, verb: Verb, cmd: Command, channel: str) -> RequestDraft | str:
        """The repair's dry run comes first: a worker plans it (which statements run, which are skipped)
        and the card shows that plan; the approval runs exactly it (the worker compares its hash)."""
        assert verb.check_job and cmd.target and cmd.version
        result = self.wait_check(verb, cmd.target, version=cmd.version)
        if result is None:
            return messages.repair_plan_timed_out(cmd.target, cmd.version, self.check_timeout())
        check = RepairPlanCheck.from_dict(result.return_value if result.type is Result.Type.SUCCESSFUL else None)
        if not check.ok:
            return messages.repair_refused(cmd.target, cmd.version, check.error)
        return RequestDraft(summary=check.text, subject=cmd.version, plan_hash=check.hash)

    def check_backup(self, verb: Verb, target: str, backup: str) -> BackupCheck | str:
        """The verb's check job's answer about `backup`, or the one-line refusal."""
        result = self.wait_check(verb, target, backup=backup)
        if result is None:
            return messages.backup_check_timed_out(target, backup, self.check_timeout())
        if result.type is not Result.Type.SUCCESSFUL:
            log.error("backup check %s of %s failed on the worker (%s)", backup, target, result.type.name)
            return messages.backup_check_failed(target, backup)
        check = BackupCheck.from_dict(result.return_value)
        if not check.ok:
            return messages.backup_refused(target, backup, check)
        return check

    def find_request(self, cmd: Command, channel: str, *, pending: bool) -> Request | None:
        if cmd.request_id:
            return self.store.get(cmd.request_id)
        found = self.store.pending_for_channel(channel, now=self.clock()) if pending else self.store.for_channel(channel, 1)
        return found[0] if found else None

    def cancel(self, verb: Verb, cmd: Command, asked: Invocation) -> Answer:
        user, channel = asked.user, asked.channel
        request = self.find_request(cmd, channel, pending=True)
        if request is None:
            return messages.unknown_request(cmd.request_id) if cmd.request_id else messages.nothing_to_cancel()
        if request.watching:  # its change is done: what is left to cancel is its watch
            refused = approval.may_stop_watch(request, user, channel, self.policy, self.group_members(user))
            return messages.refusal(refused, request) if refused else self.stop_watch(request, user)
        refused = approval.may_cancel(request, user, channel, self.clock(), self.policy, self.group_members(user))
        if refused is None:
            return self.decide(request, user, RequestStatus.CANCELLED)
        self.record_refusal(request, user, DECISION_WORDS[RequestStatus.CANCELLED], refused)
        return messages.refusal(refused, request)

    def report(self, verb: Verb, cmd: Command, asked: Invocation) -> Answer:
        assert verb.job
        user, channel = asked.user, asked.channel
        if asked.thread_ts and not cmd.request_id:  # asked in a thread: the record of that very thread
            self.post(channel, messages.thread_report_requested(user), thread_ts=asked.thread_ts)
            self.enqueue(verb.job, **self.job_kwargs(verb, cmd, channel=channel, thread_ts=asked.thread_ts,
                                                     requester=user))
            return None
        request = self.find_request(cmd, channel, pending=False)
        if request is None or not request.thread_ts:
            return messages.unknown_request(cmd.request_id) if cmd.request_id else messages.nothing_to_report()
        if request.channel != channel:
            return messages.refusal(Refusal.WRONG_CHANNEL)
        self.post(request.channel, messages.report_requested(user, request.id), thread_ts=request.thread_ts)
        self.enqueue(verb.job, **self.job_kwargs(verb, cmd, channel=request.channel, thread_ts=request.thread_ts,
                                                 requester=user))
        return None

    def maintenance(self, verb: Verb, cmd: Command, asked: Invocation) -> Answer:
        """Switch a target's maintenance: recorded in the thread it was asked in, else in the thread of the
        target's latest request (made here), else in a new message, and answered there by the worker."""
        assert verb.job and cmd.target and cmd.state
        user, channel = asked.user, asked.channel
        latest = self.store.latest_for_target(cmd.target)
        refused = approval.may_switch_maintenance(latest, user, self.policy, self.group_members(user))
        if refused is not None:
            return messages.refusal(refused, latest)
        active = self.store.active_for_target(cmd.target, now=self.clock())
        if active is not None and active.status in (RequestStatus.APPROVED, RequestStatus.RUNNING):
            return messages.maintenance_while_running(active)  # its pipeline switches maintenance itself
        line = messages.maintenance_line(cmd.target, cmd.state, user)
        if not asked.thread_ts and latest is not None and latest.channel == channel and latest.thread_ts:
            asked = replace(asked, thread_ts=latest.thread_ts)
        ts = self.open_thread(asked, line)
        self.enqueue(verb.job, **self.job_kwargs(verb, cmd, channel=channel, thread_ts=ts, requester=user))
        return None

    def watch(self, verb: Verb, cmd: Command, asked: Invocation) -> Answer:
        """`watch stop`: the request being watched on the target (its change done, its watch running) ends
        its window now; recorded in its thread by the worker."""
        assert cmd.target
        user = asked.user
        watched = self.store.watched_for_target(cmd.target)
        if watched is None:
            return messages.no_watch(cmd.target)
        refused = approval.may_switch_maintenance(watched, user, self.policy, self.group_members(user))
        if refused is not None:
            return messages.refusal(refused, watched)
        return self.stop_watch(watched, user)

    def stop_watch(self, request: Request, user: str) -> Answer:
        """End a request's watch now (`watch stop`, or `cancel` of a watched request): a line in its thread,
        then the worker's job, which closes it once and records it."""
        if request.thread_ts:
            self.post(request.channel, messages.watch_stop_line(request.id, user), thread_ts=request.thread_ts)
        job = verbs.verb("watch").job  # the one job that ends a watch, whichever verb asked
        assert job
        self.enqueue(job, request_id=request.id, requester=user)
        return None

    # -- the buttons ----------------------------------------------------------------------------------

    # Clicks are acked at once (`ack_click`); the decision is made on the listener pool.

    @staticmethod
    def ack_click(ack: Ack) -> None:
        ack()

    def approve(self, body: Mapping[str, Any]) -> None:
        self.click(body, RequestStatus.APPROVED)

    def reject(self, body: Mapping[str, Any]) -> None:
        self.click(body, RequestStatus.REJECTED)

    def click(self, body: Mapping[str, Any], decision: RequestStatus) -> None:
        user = body["user"]["id"]
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id", "")
        request_id = str(body["actions"][0].get("value") or "")
        message_ts = (body.get("container") or {}).get("message_ts") or (body.get("message") or {}).get("ts")
        # a card that is a reply in an incident thread: the clicker's answer goes into that thread too
        thread_ts = (body.get("container") or {}).get("thread_ts") or (body.get("message") or {}).get("thread_ts")
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
            self.ephemeral(channel, user, answer, thread_ts=thread_ts or None)

    def click_checked(
        self, request_id: str, user: str, channel: str, decision: RequestStatus, message_ts: str | None
    ) -> Answer:
        request = self.store.get(request_id)
        if request is None:
            return messages.unknown_request(request_id)
        if request.card is None and message_ts and channel == request.channel:
            # clicked in the instant between posting the request's card and recording it
            request = self.store.update(request.id, **({"thread_ts": message_ts} if request.card_ts is None
                                                       else {"card_ts": message_ts}))
        approving = decision is RequestStatus.APPROVED
        rule = approval.may_approve if approving else approval.may_reject
        refused = rule(request, user, channel, self.clock(), self.policy, self.group_members(user))
        action = DECISION_WORDS[decision]
        if refused is None and approving and not self.worker_listening():
            answer = messages.no_worker(self.queue.name)
            self.post(request.channel, answer, thread_ts=request.thread_ts or None)
            return answer
        if refused is Refusal.EXPIRED:
            self.expire(request)
        if refused is not None:
            self.record_refusal(request, user, action, refused)
            return messages.refusal(refused, request)
        return self.decide(request, user, decision)

    def decide(self, request: Request, user: str, decision: RequestStatus) -> Answer:
        """The atomic transition; only its single winner enqueues and rewrites the message."""
        try:
            decided = self.store.decide(request.id, decision, by=user, now=self.clock())
        except AlreadyDecided as err:
            self.record_refusal(err.request, user, DECISION_WORDS[decision], Refusal.ALREADY_DECIDED)
            return messages.refusal(Refusal.ALREADY_DECIDED, err.request)
        except RequestExpired as err:
            self.announce_expiry(err.request)
            self.record_refusal(err.request, user, DECISION_WORDS[decision], Refusal.EXPIRED)
            return messages.refusal(Refusal.EXPIRED, err.request)
        if decided.status is RequestStatus.APPROVED:
            path = kinds.of(decided.kind).job  # the one runner of every kind
            try:
                self.enqueue(path, request_id=decided.id)
            except Exception:
                # Approved but not queued: close the request so that it cannot sit approved forever.
                failed = self.store.set_status(decided.id, RequestStatus.FAILED,
                                               outcome=messages.not_queued(decided.id))
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
        if expired.status is RequestStatus.EXPIRED:
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
        if request.card is None:
            return
        plan = plan_of(request, self.settings.targets.get(request.target))
        self.client.chat_update(
            channel=request.channel,
            ts=request.card,
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
