"""`/rollback diff <target> <target>` (scenario 3, the wrong database): both targets' applied versions and
table shapes compared (workers/postgres/schema.py), posted with how to take a stray migration off again."""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from core.jsontypes import JsonObject
from core.versions import versions_in
from workers.messages import DONE, WARNING
from workers.postgres.schema import Fingerprint, TableShape, fingerprint
from workers.runtime.context import Context
from workers.runtime.errors import Refused
from workers.runtime.progress import Progress


def known_versions(migrations_dir: str) -> set[str] | None:
    """The versions in a migrations folder; None when the worker cannot read it (nothing is flagged as unknown)."""
    try:
        return versions_in(os.listdir(migrations_dir))
    except OSError:
        return None


def diff(ctx: Context, progress: Progress, target_name: str, other_name: str | None) -> JsonObject:
    """`target` against `other`; without `other`, against each other configured target."""
    others = [other_name] if other_name else [n for n in sorted(ctx.settings.targets) if n != target_name]
    if not others or target_name in others:
        raise Refused(diff_needs_two(target_name))
    return {"comparisons": [_diff_two(ctx, progress, target_name, other) for other in others]}


def _diff_two(ctx: Context, progress: Progress, target_name: str, other_name: str) -> JsonObject:
    a, b = ctx.target(target_name), ctx.target(other_name)
    prints = []
    for target in (a, b):
        with ctx.connect(target) as conn:
            prints.append(fingerprint(conn, target.name))
    known = {t.name: found for t in (a, b) if (found := known_versions(t.migrations_dir)) is not None}
    result = compare(prints[0], prints[1], known)
    progress.post(diff_text(result))
    return {"a": a.name, "b": b.name, "same": result.same,
            "stray": [s.__dict__ for s in result.stray],
            "unknown": {k: list(v) for k, v in result.unknown.items()},
            "tables": [{"table": t.table, "only_in": t.only_in, "details": list(t.details)} for t in result.tables]}


def diff_needs_two(target: str) -> str:
    return f"diff compares two different targets: name a second one beside {target}"


def _stray_line(stray: Any, unknown_on_its_target: bool) -> str:
    back_to = stray.roll_back_to or "before the first migration"
    line = (f"{WARNING} {stray.version} is applied on *{stray.on}* but not on *{stray.missing_on}*: "
            f"to take it off {stray.on}, `/rollback dry-run {stray.roll_back_to} {stray.on}` then `/rollback execute "
            f"{stray.on}` (rolls {stray.on} back to {back_to})")
    if stray.also_reverts:
        line += f"; that also reverts {', '.join(stray.also_reverts)}"
    if unknown_on_its_target:
        line += (f". {stray.on}'s migrations folder does not know {stray.version}: its down script is in the "
                 f"folder it came from (copy it there first)")
    return line


def diff_text(result: Any) -> str:
    """A schema_diff.Comparison: stray versions with their way back, unknown versions, table differences."""
    if result.same:
        return f"{DONE} *{result.a}* and *{result.b}*: same applied versions and the same schema, table by table."
    lines = [f"*Diff* of *{result.a}* and *{result.b}*:"]
    for stray in result.stray:
        lines.append(_stray_line(stray, stray.version in result.unknown.get(stray.on, ())))
    for target, versions in result.unknown.items():
        if versions:
            lines.append(f"{WARNING} *{target}* has version(s) its migrations folder does not know: "
                         f"{', '.join(versions)} (applied from another target's folder?)")
    for table in result.tables:
        if table.only_in:
            lines.append(f"• table {table.table}: only on {table.only_in}")
        else:
            lines.append(f"• table {table.table}: " + "; ".join(table.details))
    return "\n".join(lines)


@dataclass(frozen=True)
class TableDifference:
    table: str
    only_in: str | None = None  # the target that has the table, when the other lacks it
    details: tuple[str, ...] = ()  # "column email: text not null on prod, varchar(80) on staging", ...


@dataclass(frozen=True)
class StrayVersion:
    version: str
    on: str  # the target that has it
    missing_on: str
    roll_back_to: str | None  # the version to roll `on` back to, to take it off (None: before the first)
    also_reverts: tuple[str, ...] = ()  # newer versions on `on` that the same rollback reverts


@dataclass(frozen=True)
class Comparison:
    a: str
    b: str
    stray: tuple[StrayVersion, ...] = ()
    unknown: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # target -> versions not in its folder
    tables: tuple[TableDifference, ...] = ()

    @property
    def same(self) -> bool:
        return not (self.stray or any(self.unknown.values()) or self.tables)


def _column_map(shape: TableShape) -> dict[str, str]:
    return {c.split(" ", 1)[0]: c.split(" ", 1)[1] if " " in c else "" for c in shape.columns}


def table_details(table: str, a: Fingerprint, b: Fingerprint) -> tuple[str, ...]:
    """Each difference between one table on two targets, named."""
    sa, sb = a.tables[table], b.tables[table]
    details = []
    ca, cb = _column_map(sa), _column_map(sb)
    for name in [*ca, *(n for n in cb if n not in ca)]:
        if name not in cb:
            details.append(f"column {name} only on {a.target}")
        elif name not in ca:
            details.append(f"column {name} only on {b.target}")
        elif ca[name] != cb[name]:
            details.append(f"column {name}: {ca[name]} on {a.target}, {cb[name]} on {b.target}")
    for kind, la, lb in (("index", sa.indexes, sb.indexes), ("constraint", sa.constraints, sb.constraints)):
        details += [f"{kind} only on {a.target}: {x}" for x in la if x not in lb]
        details += [f"{kind} only on {b.target}: {x}" for x in lb if x not in la]
    return tuple(details)


def _stray(version: str, on: Fingerprint, missing_on: Fingerprint) -> StrayVersion:
    older = [v for v in on.versions if v < version]
    newer = tuple(v for v in on.versions if v > version)
    return StrayVersion(version, on.target, missing_on.target, older[-1] if older else None, newer)


def compare(a: Fingerprint, b: Fingerprint, known: Mapping[str, Collection[str]] | None = None) -> Comparison:
    """`known[target]`: the versions in that target's migrations folder (a version applied there but
    unknown to its folder came from somewhere else)."""
    known = known or {}
    stray = [_stray(v, a, b) for v in a.versions if v not in b.versions]
    stray += [_stray(v, b, a) for v in b.versions if v not in a.versions]
    unknown = {
        fp.target: tuple(v for v in fp.versions if v not in known[fp.target])
        for fp in (a, b) if fp.target in known
    }
    tables = []
    for table in sorted(set(a.tables) | set(b.tables)):
        if table not in b.tables:
            tables.append(TableDifference(table, only_in=a.target))
        elif table not in a.tables:
            tables.append(TableDifference(table, only_in=b.target))
        elif a.tables[table].digest != b.tables[table].digest:
            tables.append(TableDifference(table, details=table_details(table, a, b)))
    return Comparison(a=a.target, b=b.target, stray=tuple(stray), unknown=unknown, tables=tuple(tables))
