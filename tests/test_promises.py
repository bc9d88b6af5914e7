"""The product's promises, proven for every request kind in the registry (core/kinds.py), so that a kind added
tomorrow is covered the day it lands.

1. A failure is never silent: a failure at any step of any kind (an exception, a database that refuses
   connections, a statement error, a SIGKILLed work-horse) marks the request failed, says so in its thread once,
   and pages once with the request's dedup key. No request stays approved or running after its job died.

The faults are injected into real forking workers (a `sitecustomize` on the worker's path, the way
tests/test_bot_server.py widens a fork window): the steps before the faulty one pass without touching anything,
so every step of every kind is reached without each kind's own set-up. The runner, the failure report, Redis,
the Slack and PagerDuty stand-ins and the worker are the real ones. Kind-specific failures with real causes
(a repair's SQL failing, an undo whose database refuses connections as its job starts) are in
test_kind_failures below.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import psycopg.conninfo
import pytest
from psycopg import sql

from core.kinds import KINDS, START_STEP, RequestKind
from core.paging import dedup_key
from core.requests import RequestStatus
from core.steps import label
from sandbox.slack_api import message_text
from tests.fixtures.fakes import quiet
from tests.fixtures.stack import (
    APPROVER,
    CHANNEL,
    REQUESTER,
    WorkerProcess,
    apply_example,
    enqueue,
    post_root,
    request_ended,
    request_store,
)

# The faults, and a worker-side hook that injects one where a request's params say (`test_fault`: "step:mode").
MODES = ("raise", "database", "statement", "kill")
FAULTS = '''
import importlib, os, signal
import psycopg
import workers.runtime.approved_requests as runner
from core.kinds import KINDS

def _fault(mode, ctx, target):
    if mode == "raise":
        raise RuntimeError("injected fault")
    if mode == "database":  # a server that refuses connections
        psycopg.connect("host=127.0.0.1 port=1 dbname=nothing user=nobody connect_timeout=2")
    if mode == "statement":
        with ctx.connect(target) as conn:
            conn.execute("SELECT 1 / 0")
    if mode == "kill":
        os.kill(os.getpid(), signal.SIGKILL)

def _spec(request):
    fault = (request.params or {}).get("test_fault")
    return fault.split(":") if fault else None

_run = runner._run
def _faulty_run(ctx, request, target, progress, step):
    spec = _spec(request)
    if spec is None:
        return _run(ctx, request, target, progress, step)
    if step.name == spec[0]:
        _fault(spec[1], ctx, target)
    return _Passed()  # the steps before the faulty one pass, touching nothing


class _Passed:
    """A step that passed and kept nothing (what its typed result would be is not the point here)."""

    def to_dict(self):
        return {}
runner._run = _faulty_run

# The kind's own start check passes for a request with a fault (it has no plan, backup or preview of its own).
for _kind in KINDS.values():
    _module = importlib.import_module(_kind.module)
    def _check(ctx, request, target, progress, _real=_module.start_check):
        spec = _spec(request)
        if spec and spec[0] == "start":
            _fault(spec[1], ctx, target)
        return None if spec else _real(ctx, request, target, progress)
    _module.start_check = _check
'''


def _cases() -> list[tuple[RequestKind, str, str]]:
    """Every step of every kind (its start too), each with a fault; the modes rotate so each kind meets several."""
    modes = itertools.cycle(MODES)
    return [(kind, step, next(modes)) for kind, record in KINDS.items()
            for step in (START_STEP, *(s.name for s in record.steps))]


@pytest.fixture
def faulty_worker(tmp_path: Path, stack_env: dict[str, str],
                  start_worker: Callable[[dict[str, str]], WorkerProcess]) -> WorkerProcess:
    hooks = tmp_path / "faults"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(FAULTS)
    return start_worker({**stack_env, "PYTHONPATH": str(hooks)})


def _approved(env: dict[str, str], kind: RequestKind, ts: str, params: dict[str, Any]) -> Any:
    store = request_store(env)
    request = store.create(kind=kind, target="prod", channel=CHANNEL, thread_ts=ts, requester=REQUESTER,
                           plan_hash="h" * 64, to_version="2025_10_20_120001", versions=["2025_10_20_150000"],
                           summary="test request", ttl_seconds=900, params=params, backup="nothing.dump",
                           subject="4242" if KINDS[kind].beside_target else None, undoes="RB-AAAAAA")
    return store.decide(request.id, "approved", by=APPROVER)


def _failure_lines(slack_api: Any, ts: str, request_id: str) -> list[str]:
    return [message_text(m) for m in slack_api.thread(CHANNEL, ts)
            if f"Request {request_id}: *prod* —" in message_text(m) and "failed" in message_text(m)]


@pytest.mark.parametrize(("kind", "step", "mode"), _cases(), ids=lambda v: str(v))
def test_a_failure_at_any_step_of_any_kind_is_said_once_and_paged_once(
    kind: RequestKind, step: str, mode: str, stack_env: dict[str, str], database_url: str, slack_api: Any,
    pagerduty: Any, faulty_worker: WorkerProcess,
) -> None:
    apply_example(database_url)
    ts = post_root(slack_api, f"{kind} request")
    request = _approved(stack_env, kind, ts, {"test_fault": f"{step}:{mode}"})

    enqueue(stack_env, KINDS[kind].job, request_id=request.id)

    assert request_ended(stack_env, slack_api, request.id) == "failed"
    pagerduty.wait_for(lambda: [e for e in pagerduty.events if e["dedup_key"] == dedup_key(request.id)])
    quiet(slack_api)  # nothing more comes: a second report would show below
    ended = request_store(stack_env).get(request.id)
    assert ended.status is RequestStatus.FAILED and ended.finished_at
    lines = _failure_lines(slack_api, ts, request.id)
    assert len(lines) == 1, "\n".join(message_text(m) for m in slack_api.thread(CHANNEL, ts))
    assert f"— {label(step)} failed" in lines[0], lines[0]  # the step where the fault was, not an earlier one
    assert "Traceback" not in lines[0] and "password" not in lines[0]
    triggers = [e for e in pagerduty.events if e.get("event_action") == "trigger"]
    assert [e["dedup_key"] for e in triggers] == [dedup_key(request.id)]


def test_every_kind_meets_every_fault_mode_somewhere() -> None:
    """The rotation reaches every mode for the kinds as a whole, and every step of every kind is a case."""
    cases = _cases()
    assert {mode for _, _, mode in cases} == set(MODES)
    assert {(k, s) for k, s, _ in cases} == {(k, s) for k, r in KINDS.items()
                                              for s in (START_STEP, *(x.name for x in r.steps))}



@pytest.mark.parametrize("kind", list(KINDS), ids=str)
def test_a_database_that_refuses_connections_as_the_job_starts_fails_any_kind_said_once_and_paged(
    kind: RequestKind, stack_env: dict[str, str], database_url: str, postgres_admin_url: str, slack_api: Any,
    pagerduty: Any, worker: WorkerProcess,
) -> None:
    """No injection here: the target's database really refuses connections (datallowconn off) when the approved
    request's job starts. A failed repair or undo used to page nobody and stay running or approved for ever."""
    apply_example(database_url)
    ts = post_root(slack_api, f"{kind} request")
    request = _approved(stack_env, kind, ts, {})
    name = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(str(name))))
    try:
        enqueue(stack_env, KINDS[kind].job, request_id=request.id)
        assert request_ended(stack_env, slack_api, request.id) == "failed"
        pagerduty.wait_for(lambda: [e for e in pagerduty.events if e["dedup_key"] == dedup_key(request.id)])
        quiet(slack_api)
    finally:
        with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(sql.Identifier(str(name))))
    lines = _failure_lines(slack_api, ts, request.id)
    assert len(lines) == 1, "\n".join(message_text(m) for m in slack_api.thread(CHANNEL, ts))
    # said as a person reads it: the step that failed and why, never "target the target" or a job's name
    assert "— Start failed: the target's PostgreSQL is unreachable" in lines[0], lines[0]
    assert [e["dedup_key"] for e in pagerduty.events if e.get("event_action") == "trigger"] == [dedup_key(request.id)]


def test_a_state_no_reader_can_read_is_kept_as_saved_so_the_failure_report_never_fails_on_it() -> None:
    """A failure report reads the request's state; a step result its reader cannot read (a half-written step, an
    older shape) must not make the report itself fail, which would leave the failure unsaid and unpaged."""
    from workers.runtime.pipeline_state import PipelineState

    state = PipelineState.from_dict({"repair": {}, "backup": {"odd": 1}, "current_step": "repair"})
    assert state.repair is None and state.others["repair"] == {} and state.current_step == "repair"
