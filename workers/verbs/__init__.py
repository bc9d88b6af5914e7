"""The worker side of each request kind, one module per kind (`workers/verbs/<kind>.py`, named by
core/kinds.py's `Kind.module`): its own steps, its start check, its promise and its outcome line.

Every module offers the same four names, which the one runner (workers/runtime/approved_requests.py) reads:
- `STEPS`: the kind's own step functions by step name (the shared ones, backup, maintenance, verify and
  finish, are the runner's);
- `start_check(ctx, request, target, progress) -> Refusal | None`: what must still hold when the approved
  request starts (its plan, its backup, its preview); a Refusal is the request's outcome, nothing changed;
- `promised(ctx, request, target, state) -> Promise` (`state`: the PipelineState,
  workers/runtime/pipeline_state.py): what the approval card promised the result would be;
  the verification compares the database with it, and "verified" is said only when it holds;
- `succeeded(request, target, state, duration_s) -> str`: the thread's outcome line.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from core import kinds
from core.config import Target
from core.jsontypes import JsonObject
from core.kinds import RequestKind
from core.requests import Request
from workers.runtime.context import Context
from workers.runtime.pipeline_state import StepResult
from workers.runtime.progress import Progress

StepFunction = Callable[[Context, Request, Target, Progress], StepResult]


@dataclass(frozen=True)
class Refusal:
    """An approved request that may not start: `text` for the thread, `outcome` for the record."""

    text: str
    outcome: str


@dataclass(frozen=True)
class Promise:
    """What the approval promised the result would be.

    `expected_status`: each reverted or re-applied version's status in schema_migrations (None: no failed,
    running or drifted migration is enough); `row_counts`: critical tables' counts that must hold;
    `mismatches`: what the kind's own comparison found different from the card (versions now → after,
    the rows put back, the droplet, project or cluster restored): any of them fails the verification."""

    expected_status: Mapping[str, str] | None = None
    row_counts: Mapping[str, int] | None = None
    mismatches: tuple[str, ...] = ()
    health_only: bool = False  # migration health from the engine's status instead of expected statuses
    details: JsonObject = field(default_factory=dict)


def module_of(kind: RequestKind | str) -> ModuleType:
    return importlib.import_module(kinds.of(kind).module)


def no_promise(*_: Any) -> Promise:
    return Promise()
