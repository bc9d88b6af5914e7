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

import difflib
import re
from collections.abc import Callable, Sequence
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
# A droplet's name as DigitalOcean takes it (a hostname: letters, digits, '.', '-').
DROPLET_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$")
DROPLET_NAME = Argument(
    name="new_name", placeholder="[name]", matches=lambda w: DROPLET_NAME_PATTERN.match(w) is not None,
    what="droplet name", hint="droplet names are letters, digits, '.' and '-', like restored-db", strict=False,
    required=False,
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


class Group(StrEnum):
    """The playbook's steps, in order: `/rollback help` lists the verbs under them (a person under stress reads
    down the page in the order the playbook acts)."""

    ASSESS = "Assess"  # Step 1 and the pre-rollback checklist
    PROTECT = "Protect"  # Steps 2-3: a backup, maintenance mode, what is in the way
    ROLL_BACK = "Roll back"  # Step 4, Methods 1-2
    RECOVER = "Recover"  # Method 3 and scenario 4: from a backup, a snapshot, a point in time
    AFTER = "After"  # Steps 5-8: verify, watch, report, undo


# The playbook's main path, shown first in `/rollback help`: assess, plan, run.
MAIN_PATH = ("status", "dry-run", "execute")


class Who(StrEnum):
    """Who may run a verb, on top of the incident channels ([bot] channels)."""

    REQUESTERS = "requesters"  # the configured requesters ([bot] requesters; empty: anyone in the channels)
    REQUESTER_OR_APPROVER = "requester_or_approver"  # of the request it acts on, or an approver


@dataclass(frozen=True)
class Verb:
    """One verb. A variant of another verb is named `<verb> <flag>` (`snapshot-restore --new-droplet`): the
    flag among the words chooses it, and its usage line says where the flag goes."""

    name: str
    help: str  # its short line in `/rollback help` (the line stays under ~70 characters)
    action: Action
    group: Group | None  # the playbook step it serves (None: help itself, shown last)
    details: str  # `/rollback help <verb>`: what it does, what it needs, what it leaves alone
    example: str  # `/rollback help <verb>`: one real command, as typed
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

    @property
    def word(self) -> str:
        """The word typed after `/rollback` (a variant's flag comes among the arguments)."""
        return self.name.split()[0]

    @property
    def flag(self) -> str | None:
        return self.name.split()[1] if " " in self.name else None


VERBS: tuple[Verb, ...] = (
    Verb("status", "where the migrations stand; what blocks a rollback", Action.THREAD_JOB, Group.ASSESS,
         "migration table, current version, drift and failures, the server reached, and the sessions in a "
         "rollback's way (the playbook's Step 1)",
         "/rollback status prod", job="workers.jobs.status"),
    Verb("dry-run", "plan a rollback to <version>; changes nothing", Action.THREAD_JOB, Group.ROLL_BACK,
         "runs the rollback's SQL in a transaction that is always rolled back and shows each statement's effect "
         "and what it destroys; the plan becomes this channel's current plan, which `execute` asks to run",
         "/rollback dry-run 2025_10_20_120001 prod",
         arguments=(VERSION,), aliases=("dryrun", "dry_run", "plan"), writes=True,
         job="workers.jobs.dry_run", job_kwargs=("target", "version", "channel", "thread_ts", "requester")),
    Verb("execute", "run the current plan once a second person approves", Action.REQUEST, Group.ROLL_BACK,
         "asks a second person to approve running the channel's current dry-run plan (the request uses it up): "
         "backup, maintenance on, the rollback in one transaction, verify, maintenance off",
         "/rollback execute prod", aliases=("rollback",), writes=True, approval=RequestKind.ROLLBACK),
    Verb("backup", "take a verified backup now", Action.THREAD_JOB, Group.PROTECT,
         "a pg_dump of the target, checksummed and read back by pg_restore --list (the playbook's Step 2)",
         "/rollback backup prod", writes=True,
         job="workers.jobs.backup", job_kwargs=("target", "channel", "thread_ts", "requester", "reason")),
    Verb("backups", "list backups and snapshots", Action.THREAD_JOB, Group.PROTECT,
         "the backups in the backup folder, newest first, and the droplet's DigitalOcean snapshots",
         "/rollback backups prod", job="workers.jobs.backups"),
    Verb("verify", "run the post-rollback checks", Action.THREAD_JOB, Group.AFTER,
         "migration status, the critical tables' row counts, the health URL and the smoke test (Step 5)",
         "/rollback verify prod",
         job="workers.jobs.verify", job_kwargs=("target", "channel", "thread_ts", "requester")),
    Verb("history", "recent migration history", Action.THREAD_JOB, Group.ASSESS,
         "the newest rows of migration_history: what ran, who ran it, how it ended",
         "/rollback history prod", job="workers.jobs.history"),
    Verb("restore", "put a verified backup back into the target", Action.REQUEST, Group.RECOVER,
         "restores a backup that exists and verifies, after a fresh backup; the card shows what goes back "
         "(needs a second person's approval)",
         "/rollback restore prod-pre-rollback-20251020T120000Z.dump prod",
         arguments=(BACKUP,), writes=True, approval=RequestKind.RESTORE, check_job="workers.jobs.check_backup"),
    Verb("recover", "get lost rows of some tables back from a backup", Action.REQUEST, Group.RECOVER,
         "gets the lost rows of <table>[,<table>…] back from a verified backup (none named: the newest taken before "
         "the newest migration, or before <version>, was applied), newer rows kept (--overwrite: differing rows "
         "replaced too; needs a second person's approval)",
         "/rollback recover users,projects prod",
         arguments=(OPTIONAL_BACKUP, TABLES, OVERWRITE, BEFORE, OPTIONAL_VERSION), writes=True,
         approval=RequestKind.RECOVER, check_job="workers.jobs.check_recover",
         check_kwargs=("backup", "tables", "overwrite", "version"),
         usage_arguments="[<backup>] <table>[,<table>…] [--overwrite] [before <version>]"),
    Verb("pitr", "Supabase point-in-time recovery", Action.REQUEST, Group.RECOVER,
         "Supabase point-in-time recovery to just before a migration (default: the newest) or to a UTC time; "
         "everything written after it is lost (needs a second person's approval)",
         "/rollback pitr before 2025_10_20_150000 prod",
         arguments=(BEFORE, OPTIONAL_VERSION, POINT), writes=True, approval=RequestKind.PITR,
         check_job="workers.jobs.check_pitr", check_kwargs=("version", "point"),
         usage_arguments="[before <version> | <UTC time>]"),
    Verb("snapshot-restore", "restore the droplet in place from a snapshot", Action.REQUEST, Group.RECOVER,
         "restores the target's droplet in place from one of its DigitalOcean snapshots: everything written "
         "after the snapshot is lost (needs a second person's approval); `--new-droplet` leaves it alone",
         "/rollback snapshot-restore 182947561 prod",
         arguments=(SNAPSHOT,), aliases=("snapshot_restore",), writes=True,
         approval=RequestKind.SNAPSHOT_RESTORE,
         check_job="workers.jobs.check_snapshot", check_kwargs=("snapshot",)),
    Verb("snapshot-restore --new-droplet", "a new droplet from a snapshot; old kept",
         Action.REQUEST, Group.RECOVER,
         "creates a new droplet from any snapshot of the account, with the source droplet's size and region and "
         "the name given (default <target>-restored-<time>), then says its IP and the exact switch: the "
         "DATABASE_URL line and the DNS record (playbook Method 3B; needs a second person's approval)",
         "/rollback snapshot-restore 182947561 --new-droplet restored-db prod",
         arguments=(SNAPSHOT, DROPLET_NAME), writes=True, approval=RequestKind.NEW_DROPLET,
         check_job="workers.jobs.check_new_droplet", check_kwargs=("snapshot", "new_name"),
         usage_arguments="<snapshot> --new-droplet [name]"),
    Verb("cluster-restore", "a new managed cluster from a backup", Action.REQUEST, Group.RECOVER,
         "a new managed DigitalOcean cluster from the target's newest backup (or the newest before a UTC "
         "time); the target is left as it is (needs a second person's approval)",
         "/rollback cluster-restore 2025-10-20T14:59:00Z prod",
         arguments=(POINT,), aliases=("cluster_restore",), writes=True,
         approval=RequestKind.CLUSTER_RESTORE,
         check_job="workers.jobs.check_cluster", check_kwargs=("point",)),
    Verb("escrow", "what past rollbacks' escrow holds", Action.THREAD_JOB, Group.AFTER,
         "what the data-loss escrow of past rollbacks holds (request, tables, rows, size, age)",
         "/rollback escrow prod", job="workers.jobs.escrow"),
    Verb("undo", "reverse a rollback from its escrow", Action.REQUEST, Group.AFTER,
         "reverses a rollback from its escrow: a dry run, then a second person's approval",
         "/rollback undo RB-7K3F9Q prod",
         arguments=(ROLLBACK_ID,), writes=True, approval=RequestKind.UNDO, check_job="workers.jobs.check_undo"),
    Verb("maintenance", "switch maintenance mode on or off", Action.MAINTENANCE, Group.PROTECT,
         "runs the target's maintenance hook (the playbook's Step 3 and Step 6); the latest request's requester "
         "or an approver",
         "/rollback maintenance on prod",
         arguments=(STATE,), writes=True, who=Who.REQUESTER_OR_APPROVER,
         job="workers.jobs.maintenance", job_kwargs=("target", "state", "channel", "thread_ts", "requester")),
    Verb("terminate", "end a session in a rollback's way", Action.REQUEST, Group.PROTECT,
         "ends a session that `status` named in a rollback's way (needs a second person's approval)",
         "/rollback terminate 48213 prod",
         arguments=(PID,), aliases=("kill",), writes=True, approval=RequestKind.TERMINATE),
    Verb("repair", "clean up a failed or stuck migration", Action.REQUEST, Group.ROLL_BACK,
         "brings a failed or stuck migration back to a clean state: its dry run, then a second person's approval",
         "/rollback repair 2025_10_20_150000 prod",
         arguments=(VERSION,), writes=True, approval=RequestKind.REPAIR, check_job="workers.jobs.plan_repair"),
    Verb("watch", "stop the watch after a change early", Action.WATCH, Group.AFTER,
         "stop: ends the watch window after a rollback or restore early (its requester or an approver)",
         "/rollback watch stop prod",
         arguments=(WATCH_ACTION,), writes=True, who=Who.REQUESTER_OR_APPROVER,
         job="workers.jobs.watch_stop", job_kwargs=("request_id", "requester")),
    Verb("diff", "compare two targets' versions and schemas", Action.THREAD_JOB, Group.ASSESS,
         "compares two targets (one named: with each other one): versions on one and not the other, each "
         "table's schema; flags stray migrations (the playbook's scenario 3, wrong database)",
         "/rollback diff prod staging",
         arguments=(OTHER_TARGET,), job="workers.jobs.diff", job_kwargs=("target", "other", "channel", "thread_ts")),
    Verb("cancel", "cancel this channel's pending request", Action.CANCEL, Group.ROLL_BACK,
         "cancels this channel's pending request (or the one named); its requester or an approver",
         "/rollback cancel RB-7K3F9Q",
         arguments=(REQUEST_ID,), takes_target=False, who=Who.REQUESTER_OR_APPROVER, needs_worker=False),
    Verb("report", "the incident record of a request, as a file", Action.REPORT, Group.AFTER,
         "posts the incident record of a request's thread as a file (the playbook's Step 8)",
         "/rollback report RB-7K3F9Q",
         arguments=(REQUEST_ID,), takes_target=False,
         job="workers.jobs.report", job_kwargs=("channel", "thread_ts", "requester")),
    Verb("help", "this list; help <verb> gives details and an example", Action.HELP, None,
         "lists the verbs by the playbook's steps; `/rollback help <verb>` shows one verb's usage, what it does "
         "and an example",
         "/rollback help dry-run", takes_target=False, needs_worker=False),
)

BY_NAME: dict[str, Verb] = {verb.name: verb for verb in VERBS}
BY_WORD: dict[str, Verb] = {**{a: v for v in VERBS for a in v.aliases}, **BY_NAME}
HELP = BY_NAME["help"]


def verb(name: str) -> Verb:
    return BY_NAME[name]


def lookup(word: str) -> Verb | None:
    """The verb a word names (its name or an alias, any case)."""
    return BY_WORD.get(word.lower())


def closest(word: str, choices: Sequence[str]) -> str | None:
    found = difflib.get_close_matches(word.lower(), list(choices), n=1, cutoff=0.5)
    return found[0] if found else None


def chosen(verb_: Verb, words: list[str]) -> tuple[Verb, list[str]]:
    """The variant of a verb that a flag among its words chooses (`snapshot-restore ... --new-droplet`), with
    the flag taken out; else the verb and its words as they are."""
    lowered = [w.lower() for w in words]
    for variant in VERBS:
        if variant.word == verb_.name and variant.flag in lowered:
            return variant, [w for w in words if w.lower() != variant.flag]
    return verb_, words


def topic(text: str) -> Verb | None:
    """The verb `/rollback help <text>` asks about: a name, an alias, or a variant with its flag."""
    words = text.split()
    named = lookup(words[0]) if words else None
    if named is None:
        return None
    variant, rest = chosen(named, words[1:])
    return None if rest else variant


def grouped() -> list[tuple[Group | None, list[Verb]]]:
    """`/rollback help`'s order: the main path first, then each playbook step's other verbs, help last."""
    rest = [v for v in VERBS if v.name not in MAIN_PATH]
    return [(None, [BY_NAME[name] for name in MAIN_PATH]),
            *((group, [v for v in rest if v.group is group]) for group in Group),
            (None, [v for v in rest if v.group is None])]


def for_kind(kind: RequestKind) -> Verb:
    """The verb that asks for requests of this kind."""
    return BY_NAME[kinds.of(kind).verb]


def usage(verb_: Verb) -> str:
    """`/rollback dry-run <version> [target]` (unescaped: bot/messages.py escapes what it shows)."""
    words = ["/rollback", verb_.word]  # a variant's usage_arguments say where its flag goes
    if verb_.usage_arguments is not None:
        words.append(verb_.usage_arguments)
    else:
        words += [a.placeholder if a.required else f"[{a.placeholder}]" for a in verb_.arguments]
    if verb_.takes_target:
        words.append("[target]")
    return " ".join(words)
