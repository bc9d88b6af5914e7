"""The verb table: one record per `/rollback` verb drives parsing, help, authorization and dispatch.

Adding a verb is one record here plus its worker job (and, if it needs its own, its wording in
bot/messages.py). Everything else reads the table:
- bot/commands.py parses by it (the verb's name and aliases, the arguments it takes and their shapes,
  whether it takes a target and whether it must name one);
- bot/messages.py renders usage and help from it;
- bot/approval.py decides who may run it from `who`;
- bot/handlers.py carries it out by its `action`, enqueueing its `job` (for a verb that asks for
  approval, the job the approval enqueues for its request kind).

Pure: no Slack, no Redis.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum

from core import kinds
from core.kinds import RequestKind
from core.versions import EXAMPLE as VERSION_EXAMPLE
from core.versions import FORMAT as VERSION_FORMAT
from core.versions import looks_like_version

REQUEST_ID_PATTERN = re.compile(r"^RB-[0-9A-Z]{6}$", re.IGNORECASE)
RUN_ID_PATTERN = re.compile(r"^run-[0-9]{8}-[0-9]{6}-[0-9a-f]{4}$", re.IGNORECASE)  # a run-migrations rollback
BACKUP_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
STATES = ("on", "off")


@dataclass(frozen=True)
class Argument:
    """An argument recognised by its shape, wherever it stands after the verb.

    `strict` shapes are unmistakable (a version, a request id, on/off): such a word is never taken
    for a target or a backup name. A loose shape (a backup name) takes a word only when it is not a
    target. `what` and `hint` say, in a parse error, what a valid one looks like.
    """

    name: str  # the Command field it fills
    placeholder: str  # in usage lines
    matches: Callable[[str], bool]
    what: str
    hint: str
    required: bool = True
    strict: bool = True
    normalize: Callable[[str], str] = str


VERSION = Argument(
    name="version", placeholder="<version>", matches=looks_like_version, what="migration version",
    hint=f"versions look like {VERSION_EXAMPLE} ({VERSION_FORMAT})",
)
BACKUP = Argument(
    name="backup", placeholder="<backup>", matches=lambda w: BACKUP_NAME_PATTERN.match(w) is not None,
    what="backup name", hint="backup names look like prod-pre-rollback-20251020T120000Z.dump; "
    "`/rollback backups` lists them", strict=False,
)
REQUEST_ID = Argument(
    name="request_id", placeholder="RB-XXXXXX", matches=lambda w: REQUEST_ID_PATTERN.match(w) is not None,
    what="request id", hint="request ids look like RB-7K3F9Q", required=False, normalize=str.upper,
)
ROLLBACK_ID = Argument(
    name="request_id", placeholder="<RB-XXXXXX|run-id>",
    matches=lambda w: REQUEST_ID_PATTERN.match(w) is not None or RUN_ID_PATTERN.match(w) is not None,
    what="rollback id", hint="name the rollback's request (RB-7K3F9Q) or a run-migrations run id "
    "(run-20251020-150102-a1b2); `/rollback escrow` lists them",
    normalize=lambda w: w.upper() if w.upper().startswith("RB-") else w.lower(),
)
STATE = Argument(
    name="state", placeholder="on|off", matches=lambda w: w.lower() in STATES, what="maintenance state",
    hint="say `on` or `off`", normalize=str.lower,
)
PID = Argument(
    name="pid", placeholder="<pid>", matches=lambda w: w.isdigit() and 0 < len(w) <= 10, what="session pid",
    hint="pids are numbers; `/rollback status` lists the sessions in a rollback's way with theirs",
    strict=False,  # a number is a pid only for a verb that takes one (a bad version stays a bad version)
)
# The second target of `diff`: any configured target name after the first (bot/commands.py fills it;
# never recognised by shape alone).
OTHER_TARGET = Argument(
    name="other", placeholder="<target>", matches=lambda w: False, what="second target",
    hint="name two configured targets, e.g. `/rollback diff prod staging`", strict=False, required=False,
)
WATCH_ACTION = Argument(
    name="watch", placeholder="stop", matches=lambda w: w.lower() == "stop", what="watch action",
    hint="say `stop`", normalize=str.lower,
)
# The recovery verbs' arguments (issue 10).
TABLE_NAME = r"[A-Za-z_][A-Za-z0-9_$]*(?:\.[A-Za-z_][A-Za-z0-9_$]*)?"
TABLE_LIST_PATTERN = re.compile(rf"^{TABLE_NAME}(?:,{TABLE_NAME}){{0,19}},?$")
UTC_TIME_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2})?Z?$", re.IGNORECASE)
SNAPSHOT_ID_PATTERN = re.compile(r"^\d{1,19}$")
TABLES = Argument(
    name="tables", placeholder="<table>[,<table>…]", matches=lambda w: TABLE_LIST_PATTERN.match(w) is not None,
    what="table list", hint="tables look like users or users,public.projects (commas, no spaces)", strict=False,
)
OVERWRITE = Argument(
    name="overwrite", placeholder="--overwrite", matches=lambda w: w.lower() == "--overwrite", what="flag",
    hint="the only flag is --overwrite", required=False, normalize=str.lower,
)
BEFORE = Argument(
    name="before", placeholder="before", matches=lambda w: w.lower() == "before", what="word",
    hint="say `before <version>`", required=False, normalize=str.lower,
)
POINT = Argument(
    name="point", placeholder="<UTC time>", matches=lambda w: UTC_TIME_PATTERN.match(w) is not None,
    what="UTC time", hint="UTC times look like 2025-10-20T14:59:00Z", required=False, normalize=str.upper,
)
SNAPSHOT = Argument(
    name="snapshot", placeholder="<snapshot>", matches=lambda w: SNAPSHOT_ID_PATTERN.match(w) is not None,
    what="snapshot id", hint="snapshot ids are numbers; `/rollback backups` lists them", strict=False,
)
OPTIONAL_VERSION = replace(VERSION, required=False)
OPTIONAL_BACKUP = replace(BACKUP, required=False)
ARGUMENTS = (VERSION, BACKUP, REQUEST_ID, ROLLBACK_ID, STATE, PID, WATCH_ACTION, OVERWRITE, BEFORE, POINT, SNAPSHOT,
             TABLES)


class Action(StrEnum):
    """How bot/handlers.py carries a verb out (one handler method per action)."""

    HELP = "help"  # answered in the ack
    THREAD_JOB = "thread_job"  # a root message in the channel, then its job per target, answered in that thread
    REQUEST = "request"  # a pending request with Approve / Reject; the approval enqueues `job`
    CANCEL = "cancel"  # the channel's pending request (or the one named) is cancelled
    REPORT = "report"  # its job, in the thread of the channel's latest request (or the one named)
    MAINTENANCE = "maintenance"  # its job, recorded in the thread of the target's latest request
    WATCH = "watch"  # `watch stop`: its job on the target's latest request, recorded in that request's thread


class Who(StrEnum):
    """Who may run a verb, on top of the incident channels ([bot] channels)."""

    REQUESTERS = "requesters"  # the configured requesters ([bot] requesters; empty: anyone in the channels)
    REQUESTER_OR_APPROVER = "requester_or_approver"  # of the request it acts on, or an approver


@dataclass(frozen=True)
class Verb:
    name: str
    help: str  # one line for `/rollback help` (may name placeholders such as <version>)
    action: Action
    arguments: tuple[Argument, ...] = ()  # in usage order
    aliases: tuple[str, ...] = ()
    takes_target: bool = True  # False: acts on the channel's requests, never on a target by name
    writes: bool = False  # changes (or plans to change) a database: must name its target when several exist
    approval: RequestKind | None = None  # needs a second person's approval: the kind of request it creates
    job: str | None = None  # dotted path of the worker job (a REQUEST's approval runs core/kinds.py's one runner)
    check_job: str | None = None  # a job whose answer the bot waits for before it creates the request
    check_kwargs: tuple[str, ...] = ()  # what that check is given from the command (besides target and channel)
    job_kwargs: tuple[str, ...] = ("target", "channel", "thread_ts")  # what the job is given (THREAD_JOB)
    who: Who = Who.REQUESTERS
    needs_worker: bool = True  # refused at once when no worker is listening
    usage_arguments: str | None = None  # the usage line's arguments, when the placeholders say it badly

    def takes(self, argument: Argument) -> bool:
        return any(a.name == argument.name for a in self.arguments)


VERBS: tuple[Verb, ...] = (
    Verb("status", "migration table, current version, drift and failures, the server reached",
         Action.THREAD_JOB, job="workers.jobs.status"),
    Verb("dry-run", "plan a rollback to <version>; it becomes this channel's current plan",
         Action.THREAD_JOB, arguments=(VERSION,), aliases=("dryrun", "dry_run", "plan"), writes=True,
         job="workers.jobs.dry_run", job_kwargs=("target", "version", "channel", "thread_ts", "requester")),
    Verb("execute", "ask a second person to approve running the current plan (the request uses it up)",
         Action.REQUEST, aliases=("rollback",), writes=True, approval=RequestKind.ROLLBACK),
    Verb("backup", "take a verified backup now",
         Action.THREAD_JOB, writes=True,
         job="workers.jobs.backup", job_kwargs=("target", "channel", "thread_ts", "requester", "reason")),
    Verb("backups", "list backups and snapshots",
         Action.THREAD_JOB, job="workers.jobs.backups"),
    Verb("verify", "run the post-rollback checks",
         Action.THREAD_JOB, job="workers.jobs.verify", job_kwargs=("target", "channel", "thread_ts", "requester")),
    Verb("history", "recent migration history",
         Action.THREAD_JOB, job="workers.jobs.history"),
    Verb("restore", "restore a backup that exists and verifies (needs a second person's approval)",
         Action.REQUEST, arguments=(BACKUP,), writes=True, approval=RequestKind.RESTORE, check_job="workers.jobs.check_backup"),
    Verb("recover", "get the lost rows of <table>[,<table>…] back from a verified backup (none named: the newest "
         "taken before the newest migration, or before <version>), newer rows kept (--overwrite: differing rows "
         "replaced too; needs a second person's approval)",
         Action.REQUEST, arguments=(OPTIONAL_BACKUP, TABLES, OVERWRITE, BEFORE, OPTIONAL_VERSION), writes=True,
         approval=RequestKind.RECOVER, check_job="workers.jobs.check_recover",
         check_kwargs=("backup", "tables", "overwrite", "version"),
         usage_arguments="[<backup>] <table>[,<table>…] [--overwrite] [before <version>]"),
    Verb("pitr", "Supabase point-in-time recovery to just before a migration (default: the newest) or to a "
         "UTC time; everything written after it is lost (needs a second person's approval)",
         Action.REQUEST, arguments=(BEFORE, OPTIONAL_VERSION, POINT), writes=True, approval=RequestKind.PITR, check_job="workers.jobs.check_pitr", check_kwargs=("version", "point"),
         usage_arguments="[before <version> | <UTC time>]"),
    Verb("snapshot-restore", "restore the target's droplet from a DigitalOcean snapshot (needs a second "
         "person's approval)",
         Action.REQUEST, arguments=(SNAPSHOT,), aliases=("snapshot_restore",), writes=True,
         approval=RequestKind.SNAPSHOT_RESTORE,
         check_job="workers.jobs.check_snapshot", check_kwargs=("snapshot",)),
    Verb("cluster-restore", "a new managed DigitalOcean cluster from the target's newest backup (or the newest "
         "before a UTC time); the target is left as it is (needs a second person's approval)",
         Action.REQUEST, arguments=(POINT,), aliases=("cluster_restore",), writes=True,
         approval=RequestKind.CLUSTER_RESTORE,
         check_job="workers.jobs.check_cluster", check_kwargs=("point",)),
    Verb("escrow", "what the data-loss escrow of past rollbacks holds (request, tables, rows, size, age)",
         Action.THREAD_JOB, job="workers.jobs.escrow"),
    Verb("undo", "reverse a rollback from its escrow: a dry run, then a second person's approval",
         Action.REQUEST, arguments=(ROLLBACK_ID,), writes=True, approval=RequestKind.UNDO, check_job="workers.jobs.check_undo"),
    Verb("maintenance", "switch the target's maintenance mode (the latest request's requester or an approver)",
         Action.MAINTENANCE, arguments=(STATE,), writes=True, who=Who.REQUESTER_OR_APPROVER,
         job="workers.jobs.maintenance", job_kwargs=("target", "state", "channel", "thread_ts", "requester")),
    Verb("terminate", "end a session that status named in a rollback's way (needs a second person's approval)",
         Action.REQUEST, arguments=(PID,), aliases=("kill",), writes=True, approval=RequestKind.TERMINATE),
    Verb("repair", "bring a failed or stuck migration back to a clean state: its dry run, then a second person's approval",
         Action.REQUEST, arguments=(VERSION,), writes=True, approval=RequestKind.REPAIR, check_job="workers.jobs.plan_repair"),
    Verb("watch", "stop: end the watch window after a rollback or restore early (its requester or an approver)",
         Action.WATCH, arguments=(WATCH_ACTION,), writes=True, who=Who.REQUESTER_OR_APPROVER,
         job="workers.jobs.watch_stop", job_kwargs=("request_id", "requester")),
    Verb("diff", "compare two targets (one named: with each other one): versions on one and not the other, each table's schema; flags stray migrations",
         Action.THREAD_JOB, arguments=(OTHER_TARGET,), job="workers.jobs.diff",
         job_kwargs=("target", "other", "channel", "thread_ts")),
    Verb("cancel", "cancel this channel's pending request",
         Action.CANCEL, arguments=(REQUEST_ID,), takes_target=False, who=Who.REQUESTER_OR_APPROVER,
         needs_worker=False),
    Verb("report", "post the incident record of a request's thread as a file",
         Action.REPORT, arguments=(REQUEST_ID,), takes_target=False,
         job="workers.jobs.report", job_kwargs=("channel", "thread_ts", "requester")),
    Verb("help", "this help",
         Action.HELP, takes_target=False, needs_worker=False),
)

BY_NAME: dict[str, Verb] = {verb.name: verb for verb in VERBS}
BY_WORD: dict[str, Verb] = {**{a: v for v in VERBS for a in v.aliases}, **BY_NAME}
HELP = BY_NAME["help"]


def verb(name: str) -> Verb:
    return BY_NAME[name]


def lookup(word: str) -> Verb | None:
    """The verb a word names (its name or an alias, any case)."""
    return BY_WORD.get(word.lower())


def for_kind(kind: RequestKind) -> Verb:
    """The verb that asks for requests of this kind."""
    return BY_NAME[kinds.of(kind).verb]


def usage(verb_: Verb) -> str:
    """`/rollback dry-run <version> [target]` (unescaped: bot/messages.py escapes what it shows)."""
    words = ["/rollback", verb_.name]
    if verb_.usage_arguments is not None:
        words.append(verb_.usage_arguments)
    else:
        words += [a.placeholder if a.required else f"[{a.placeholder}]" for a in verb_.arguments]
    if verb_.takes_target:
        words.append("[target]")
    return " ".join(words)
