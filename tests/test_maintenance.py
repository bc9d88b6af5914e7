"""Maintenance hooks: a real shell command and a real HTTP call to a local server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.config import Hook
from tests.test_verify import StatusServer, http_server  # noqa: F401  (fixture)
from workers.verbs.maintenance import run_hook


def test_no_hook_is_skipped_with_a_note() -> None:
    result = run_hook(None, target="prod", state="on")
    assert result.skipped and result.ok and "maintenance_on" in result.detail and "prod" in result.detail


def test_command_hook_gets_state_and_target(tmp_path: Path) -> None:
    seen = tmp_path / "seen"
    hook = Hook(command=f'echo "$MAINTENANCE_STATE $ROLLBACK_TARGET" > {seen}; echo switched')
    result = run_hook(hook, target="prod", state="on")
    assert result.ok and not result.skipped and result.kind == "command" and result.figure == 0
    assert seen.read_text().strip() == "on prod" and "switched" in result.detail
    assert run_hook(hook, target="staging", state="off").ok and seen.read_text().strip() == "off staging"


def test_failing_or_slow_command_is_reported() -> None:
    failed = run_hook(Hook(command="echo no maintenance page >&2; exit 3"), target="prod", state="on")
    assert not failed.ok and failed.figure == 3 and "no maintenance page" in failed.detail
    slow = run_hook(Hook(command="sleep 30; true"), target="prod", state="on", timeout=0.2)
    assert not slow.ok and "did not finish" in slow.detail


def test_url_hook_posts_target_and_state(http_server: StatusServer) -> None:  # noqa: F811
    result = run_hook(Hook(url=f"{http_server.url}/maintenance?key=secret"), target="prod", state="off")
    assert result.ok and result.kind == "url" and result.figure == 200 and "secret" not in result.detail
    ((method, path, body),) = http_server.requests
    assert method == "POST" and path == "/maintenance?key=secret"
    assert json.loads(body) == {"target": "prod", "state": "off"}
    put = run_hook(Hook(url=http_server.url, method="put"), target="prod", state="on")
    assert put.ok and http_server.requests[-1][0] == "PUT"


def test_url_hook_failure_is_reported(http_server: StatusServer) -> None:  # noqa: F811
    http_server.status = 503
    result = run_hook(Hook(url=http_server.url), target="prod", state="on")
    assert not result.ok and result.figure == 503 and "503" in result.detail
    down = run_hook(Hook(url="http://127.0.0.1:1/maintenance"), target="prod", state="on")
    assert not down.ok and "failed" in down.detail


def test_unknown_state_is_refused() -> None:
    with pytest.raises(ValueError, match="'on' or 'off'"):
        run_hook(None, target="prod", state="maybe")
