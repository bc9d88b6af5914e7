"""Maintenance mode on/off (playbook Steps 3 and 6) through the target's configured hook.

A hook is a shell command (run with MAINTENANCE_STATE=on|off and ROLLBACK_TARGET in its environment)
or an HTTP call (JSON body {"target", "state"}; any 2xx answer is success). No hook configured:
the step is skipped with a note, never failed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

import psycopg
import requests

from core import defaults
from core.config import Hook
from core.jsontypes import JsonObject
from workers import messages
from workers.postgres import migration_history
from workers.postgres.checks import display_url, run_shell
from workers.runtime import errors
from workers.runtime.context import Context
from workers.runtime.errors import StepFailed
from workers.runtime.progress import Progress

STATES = ("on", "off")


def no_maintenance_hook(state: str, target: str) -> str:
    return f"no maintenance_{state} hook configured for {target}"


def hook_exited(returncode: int, output: str) -> str:
    return f"command exited {returncode}" + (f": {output}" if output else "")


def hook_timed_out(timeout_s: float) -> str:
    return f"command {messages.command_timed_out(timeout_s)}"


def hook_call_failed(method: str, url: str, error: str) -> str:
    return f"{method.upper()} {url} failed: {error}"


def hook_answered(method: str, url: str, status: int) -> str:
    return f"{method.upper()} {url} answered {status}"


@dataclass(frozen=True)
class HookResult:
    state: str
    skipped: bool
    ok: bool
    detail: str
    kind: str = ""  # "command", "url", or "" when skipped
    figure: Any = None  # exit status or HTTP status
    duration_s: float = 0.0

    def to_dict(self) -> JsonObject:
        return asdict(self)


def run_hook(
    hook: Hook | None,
    *,
    target: str,
    state: str,
    timeout: float = defaults.HOOK_TIMEOUT_SECONDS,
) -> HookResult:
    """Run the hook for `state` ("on" or "off"); never raises for a failing hook, it reports it."""
    if state not in STATES:
        raise ValueError(errors.maintenance_state_invalid(state))
    if hook is None or not (hook.command or hook.url):
        return HookResult(state, skipped=True, ok=True, detail=no_maintenance_hook(state, target))
    started = time.monotonic()
    if hook.command:
        result = _run_command(hook.command, target=target, state=state, timeout=timeout)
    else:
        assert hook.url is not None
        result = _call_url(hook.url, hook.method, target=target, state=state, timeout=timeout)
    return HookResult(**{**result.to_dict(), "duration_s": round(time.monotonic() - started, 3)})


def _run_command(command: str, *, target: str, state: str, timeout: float) -> HookResult:
    done = run_shell(command, env={"MAINTENANCE_STATE": state, "ROLLBACK_TARGET": target}, timeout=timeout)
    if done is None:
        return HookResult(state, False, False, hook_timed_out(timeout), "command")
    returncode, output = done
    return HookResult(state, False, returncode == 0, hook_exited(returncode, output), "command", returncode)


def _call_url(url: str, method: str, *, target: str, state: str, timeout: float) -> HookResult:
    shown = display_url(url)
    try:
        response = requests.request(method.upper(), url, json={"target": target, "state": state}, timeout=timeout)
    except requests.RequestException as exc:
        return HookResult(state, False, False, hook_call_failed(method, shown, type(exc).__name__), "url")
    ok = 200 <= response.status_code < 300
    detail = hook_answered(method, shown, response.status_code)
    return HookResult(state, False, ok, detail, "url", response.status_code)


logger = logging.getLogger("workers.verbs.maintenance")


def maintenance(ctx: Context, progress: Progress, target_name: str, state: str, requester: str) -> JsonObject:
    """Maintenance mode on or off by hand, through the target's hook (after a failed rollback left it
    on): posted in the thread and recorded in migration_history. A failing hook raises."""
    if state not in STATES:
        raise StepFailed(errors.maintenance_state_invalid(state))
    target = ctx.target(target_name)
    step = f"maintenance_{state}"
    hook = target.maintenance_on if state == "on" else target.maintenance_off
    started = progress.start(step, target.name) if hook else None
    result = run_hook(hook, target=target.name, state=state)
    if result.skipped:
        progress.skip(step, result.detail)
        return {"target": target.name, "maintenance": result.to_dict()}
    ctx.store().clear_plans(target.name)
    try:  # the database may be the very thing that is down: the hook's outcome still counts
        with ctx.connect(target) as conn:
            migration_history.record(conn, operation=step, status="completed" if result.ok else "failed",
                           executed_by=requester, error_message=None if result.ok else result.detail,
                           details=result.to_dict())
    except psycopg.Error as exc:
        logger.warning("could not record %s of %s in history: %s", step, target.name, type(exc).__name__)
    if not result.ok:
        raise StepFailed(errors.maintenance_failed(state, result.detail))
    progress.finish(step, started, messages.maintenance_figures(result.detail))
    return {"target": target.name, "maintenance": result.to_dict()}
