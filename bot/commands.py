"""Parsing `/rollback <verb> [args] [target]` by the verb table (bot/verbs.py): pure, no Slack, no Redis.

Arguments are recognised by their shape, so their order after the verb does not matter: a migration
version (`YYYY_MM_DD_HHMMSS`), a request id (`RB-XXXXXX`), `on`/`off`, a configured target name, and a
backup file name. A word that fits nothing is blamed on what the verb still lacks: the argument it
needs (saying what a valid one looks like), else the target.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from bot import messages, verbs
from bot.verbs import Argument, Verb, closest
from core.versions import is_version


class CommandError(ValueError):
    """Bad input; `str()` is the one line shown to the person who typed it."""


@dataclass(frozen=True)
class Command:
    verb: str
    target: str | None = None  # None: every target (read verbs with several targets) or not applicable
    version: str | None = None
    backup: str | None = None
    request_id: str | None = None
    state: str | None = None
    pid: str | None = None
    other: str | None = None  # diff: the second target
    watch: str | None = None  # watch: `stop`
    # the recovery verbs (issue 10)
    tables: str | None = None  # comma-separated, as typed
    overwrite: str | None = None  # "--overwrite" when given
    before: str | None = None
    point: str | None = None  # a UTC time
    snapshot: str | None = None
    new_name: str | None = None  # snapshot-restore --new-droplet: the new droplet's name
    topic: str | None = None  # help: the verb asked about, as typed


VersionsFor = Callable[[str], Collection[str] | None]


def parse(text: str, targets: Sequence[str], versions_for: VersionsFor | None = None) -> Command:
    """The command in `text`, with its target resolved; raises CommandError for bad input.

    `versions_for(target)`, when given, returns the versions on disk for a target (None: unknown): a
    version not among them is refused here, before anything is queued.
    """
    words = text.split()
    if not words:
        return Command(verb=verbs.HELP.name)
    verb = verbs.lookup(words[0])
    if verb is None:
        raise CommandError(messages.unknown_verb(words[0], closest(words[0], [v.word for v in verbs.VERBS])))
    if verb.action is verbs.Action.HELP:  # what follows is a verb to explain, never arguments
        return Command(verb=verb.name, topic=" ".join(words[1:]) or None)
    verb, words[1:] = verbs.chosen(verb, words[1:])

    values: dict[str, str] = {}
    target: str | None = None
    leftovers: list[str] = []
    for word in words[1:]:
        # The verb's own argument first: a request id is also a rollback id (`undo RB-...`).
        strict = next((a for a in (*verb.arguments, *verbs.ARGUMENTS) if a.strict and a.matches(word)), None)
        if strict is not None:
            if not verb.takes(strict) or strict.name in values:
                raise CommandError(messages.unexpected_argument(verb, word))
            values[strict.name] = strict.normalize(word)
        elif verb.takes_target and target is None and word in targets:
            target = word
        elif verb.takes(verbs.OTHER_TARGET) and word in targets and verbs.OTHER_TARGET.name not in values:
            if word == target:
                raise CommandError(messages.same_target_twice(verb, word))
            values[verbs.OTHER_TARGET.name] = word
        elif (loose := _loose_slot(verb, values, word, targets)) is not None:
            values[loose.name] = loose.normalize(word)
        else:
            leftovers.append(word)
    if leftovers:
        raise CommandError(_blame(verb, leftovers[0], values, target, targets))
    _give_to_required(verb, values)
    missing = next((a for a in verb.arguments if a.required and a.name not in values), None)
    if missing is not None:
        raise CommandError(messages.missing_argument(verb, missing))

    if verb.takes_target:
        target = resolve_target(verb, target, targets)
    version = values.get(verbs.VERSION.name)
    if version is not None and target is not None:
        known = versions_for(target) if versions_for is not None else None
        if known is not None and version not in known:
            raise CommandError(messages.unknown_version(version, sorted(known)))
        if known is None and not is_version(version):  # the folder is out of sight: at least a real date
            raise CommandError(messages.not_an_argument(verb, verbs.VERSION, version))
    return Command(verb=verb.name, target=target, **values)


def _give_to_required(verb: Verb, values: dict[str, str]) -> None:
    """A word an optional loose argument took, that a required loose one after it also fits and lacks, is the
    required one's (`recover users`: the tables, with no backup named)."""
    for later in verb.arguments:
        if later.strict or not later.required or later.name in values:
            continue
        earlier = next((a for a in verb.arguments if not a.strict and not a.required and a.name in values
                        and later.matches(values[a.name])), None)
        if earlier is not None:
            values[later.name] = later.normalize(values.pop(earlier.name))


def _loose_slot(verb: Verb, values: dict[str, str], word: str, targets: Sequence[str]) -> Argument | None:
    if word in targets:
        return None
    return next((a for a in verb.arguments if not a.strict and a.name not in values and a.matches(word)), None)


def _blame(verb: Verb, word: str, values: dict[str, str], target: str | None, targets: Sequence[str]) -> str:
    """The one line for a word that fits nothing: what it was probably meant to be, and what that looks like."""
    open_target = verb.takes_target and target is None
    suggestion = closest(word, targets) if open_target else None
    if suggestion is not None:
        return messages.unknown_target(word, targets, suggestion)
    missing = next((a for a in verb.arguments if a.required and a.name not in values), None)
    if missing is not None:
        return messages.not_an_argument(verb, missing, word)
    if open_target:
        return messages.unknown_target(word, targets, None)
    return messages.unexpected_argument(verb, word)


def resolve_target(verb: Verb, target: str | None, targets: Sequence[str]) -> str | None:
    """The target a verb acts on: the one named, the only one configured, or None for "all" (read verbs)."""
    if target is not None:
        return target
    if not targets:
        raise CommandError(messages.no_targets())
    if len(targets) == 1:
        return targets[0]
    if verb.writes:
        raise CommandError(messages.target_required(verb, targets))
    return None
