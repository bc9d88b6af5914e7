"""Parsing `/rollback <verb> [args] [target]`: pure, no Slack and no Redis.

Arguments are recognised by their shape, so their order after the verb does not matter:
a migration version (`YYYY_MM_DD_HHMMSS`), a request id (`RB-XXXXXX`), a configured target name,
and for `restore` a backup file name.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from bot import messages

VERSION = re.compile(r"^\d{4}_\d{2}_\d{2}_\d{6}$")
REQUEST_ID = re.compile(r"^RB-[0-9A-Z]{6}$", re.IGNORECASE)
BACKUP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")

VERBS = ("status", "dry-run", "execute", "backup", "backups", "verify", "history", "restore", "cancel", "report", "help")
# A verb that changes (or plans to change) a database must name its target when several exist.
WRITE_VERBS = frozenset({"dry-run", "execute", "backup", "restore"})
# Verbs that take no target at all: they act on the channel's requests.
REQUEST_VERBS = frozenset({"cancel", "report"})
ALIASES = {"dryrun": "dry-run", "dry_run": "dry-run", "plan": "dry-run", "rollback": "execute"}


class CommandError(ValueError):
    """Bad input; `str()` is the one line shown to the person who typed it."""


@dataclass(frozen=True)
class Command:
    verb: str
    target: str | None = None  # None: every target (read verbs with several targets) or not applicable
    version: str | None = None
    backup: str | None = None
    request_id: str | None = None


def closest(word: str, choices: Sequence[str]) -> str | None:
    found = difflib.get_close_matches(word.lower(), list(choices), n=1, cutoff=0.5)
    return found[0] if found else None


VersionsFor = Callable[[str], Collection[str] | None]


def parse(text: str, targets: Sequence[str], versions_for: VersionsFor | None = None) -> Command:
    """The command in `text`, with its target resolved; raises CommandError for bad input.

    `versions_for(target)`, when given, returns the versions on disk for a target (None: unknown): a
    version not among them is refused here, before anything is queued.
    """
    words = text.split()
    if not words:
        return Command(verb="help")
    raw_verb = words[0].lower()
    verb = ALIASES.get(raw_verb, raw_verb)
    if verb not in VERBS:
        raise CommandError(messages.unknown_verb(words[0], closest(raw_verb, VERBS)))

    version = backup = request_id = target = None
    for word in words[1:]:
        if VERSION.match(word):
            if verb != "dry-run" or version is not None:
                raise CommandError(messages.unexpected_argument(verb, word))
            version = word
        elif REQUEST_ID.match(word):
            if verb not in REQUEST_VERBS or request_id is not None:
                raise CommandError(messages.unexpected_argument(verb, word))
            request_id = word.upper()
        elif word in targets and verb not in REQUEST_VERBS and target is None:
            target = word
        elif verb == "restore" and backup is None and BACKUP_NAME.match(word) and word not in targets:
            backup = word
        elif verb == "dry-run" and version is None and re.match(r"^\d", word):
            raise CommandError(messages.malformed_version(word))
        elif verb in REQUEST_VERBS or verb == "help":
            raise CommandError(messages.unexpected_argument(verb, word))
        else:
            raise CommandError(messages.unknown_target(word, targets, closest(word, targets)))

    if verb == "dry-run" and version is None:
        raise CommandError(messages.missing_argument(verb, "version"))
    if verb == "restore" and backup is None:
        raise CommandError(messages.missing_argument(verb, "backup"))

    if verb not in REQUEST_VERBS and verb != "help":
        target = resolve_target(verb, target, targets)
    if version is not None and target is not None and versions_for is not None:
        known = versions_for(target)
        if known is not None and version not in known:
            raise CommandError(messages.unknown_version(version, sorted(known)))
    return Command(verb=verb, target=target, version=version, backup=backup, request_id=request_id)


def resolve_target(verb: str, target: str | None, targets: Sequence[str]) -> str | None:
    """The target a verb acts on: the one named, the only one configured, or None for "all" (read verbs)."""
    if target is not None:
        return target
    if not targets:
        raise CommandError(messages.no_targets())
    if len(targets) == 1:
        return targets[0]
    if verb in WRITE_VERBS:
        raise CommandError(messages.target_required(verb, targets))
    return None
