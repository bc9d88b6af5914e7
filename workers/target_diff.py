"""`/rollback diff <target> <target>` (scenario 3, the wrong database): both targets' applied versions and
table shapes compared (workers/schema_diff.py), posted with how to take a stray migration off again."""

from __future__ import annotations

import os

from core.jsontypes import JsonObject
from core.versions import versions_in
from workers import incident_messages
from workers.context import Context
from workers.errors import Refused
from workers.progress import Progress
from workers.schema_diff import compare, fingerprint


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
        raise Refused(incident_messages.diff_needs_two(target_name))
    return {"comparisons": [_diff_two(ctx, progress, target_name, other) for other in others]}


def _diff_two(ctx: Context, progress: Progress, target_name: str, other_name: str) -> JsonObject:
    a, b = ctx.target(target_name), ctx.target(other_name)
    prints = []
    for target in (a, b):
        with ctx.connect(target) as conn:
            prints.append(fingerprint(conn, target.name))
    known = {t.name: found for t in (a, b) if (found := known_versions(t.migrations_dir)) is not None}
    result = compare(prints[0], prints[1], known)
    progress.post(incident_messages.diff_text(result))
    return {"a": a.name, "b": b.name, "same": result.same,
            "stray": [s.__dict__ for s in result.stray],
            "unknown": {k: list(v) for k, v in result.unknown.items()},
            "tables": [{"table": t.table, "only_in": t.only_in, "details": list(t.details)} for t in result.tables]}
