"""Supabase point-in-time recovery through the real HTTP client against the Management API stand-in."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from sandbox.supabase import DEFAULT_REF, SupabaseServer
from workers.supabase import (
    OutsideWindow,
    PitrNotEnabled,
    PitrWindow,
    RestoreFailed,
    RestoreTimedOut,
    Supabase,
    SupabaseRefused,
    SupabaseUnavailable,
    check_point,
    recovery_point,
)

TOKEN = "sbp_secret_token_value"


@pytest.fixture
def api() -> Iterator[SupabaseServer]:
    with SupabaseServer(token=TOKEN, polls_until_healthy=3) as server:
        yield server


def _client(api: SupabaseServer, **kwargs: object) -> Supabase:
    return Supabase(TOKEN, api.url, backoff_seconds=0.0, **kwargs)  # type: ignore[arg-type]


def test_window_point_restore_and_follow_to_healthy(api: SupabaseServer) -> None:
    client = _client(api)
    window = client.pitr_window(DEFAULT_REF)
    assert window.enabled and window.earliest is not None and window.latest is not None
    point = recovery_point(time.time() - 600, 60)
    check_point(DEFAULT_REF, window, point)
    restored: list[tuple[str, int]] = []
    api.on_restore = lambda ref, at: restored.append((ref, at))
    client.restore_pitr(DEFAULT_REF, point)
    assert restored == [(DEFAULT_REF, point)]
    assert client.project_status(DEFAULT_REF) == "RESTORING"
    beats: list[str] = []
    client.wait_healthy(DEFAULT_REF, timeout_seconds=30, poll_seconds=0.0, heartbeat=beats.append)
    assert client.project_status(DEFAULT_REF) == "ACTIVE_HEALTHY"
    assert beats and "RESTORING" in beats[0]


def test_recovery_point_is_before_the_migration_by_the_margin() -> None:
    assert recovery_point(1_760_961_600.9, 60) == 1_760_961_540
    assert recovery_point(1_760_961_600, -5) == 1_760_961_600


def test_a_project_without_pitr_is_refused_naming_the_other_options(api: SupabaseServer) -> None:
    api.projects[DEFAULT_REF].pitr_enabled = False
    window = _client(api).pitr_window(DEFAULT_REF)
    with pytest.raises(PitrNotEnabled, match="no point-in-time recovery.*rollback restore.*rollback recover"):
        check_point(DEFAULT_REF, window, int(time.time()) - 60)


def test_a_point_outside_the_window_is_refused(api: SupabaseServer) -> None:
    window = _client(api).pitr_window(DEFAULT_REF)
    assert window.earliest is not None
    with pytest.raises(OutsideWindow, match="outside the project's recovery window"):
        check_point(DEFAULT_REF, window, window.earliest - 1)
    assert not PitrWindow(enabled=True).contains(0)


def test_a_4xx_is_final_and_never_retried(api: SupabaseServer) -> None:
    client = _client(api)
    before = len(api.requests)
    with pytest.raises(SupabaseRefused, match="HTTP 400: recovery_time_target_unix is outside") as err:
        client.restore_pitr(DEFAULT_REF, 5)
    assert len(api.requests) == before + 1
    assert TOKEN not in str(err.value)
    assert api.restores == []


def test_a_5xx_is_retried_with_backoff_then_reported(api: SupabaseServer) -> None:
    waits: list[float] = []
    client = Supabase(TOKEN, api.url, attempts=3, backoff_seconds=0.5, sleep=waits.append)
    api.fail_next = [503, 502]
    assert client.project_status(DEFAULT_REF) == "ACTIVE_HEALTHY"
    assert waits == [0.5, 1.0]
    api.fail_next = [503, 503, 503]
    with pytest.raises(SupabaseUnavailable, match="after 3 attempts \\(HTTP 503\\)") as err:
        client.project_status(DEFAULT_REF)
    assert TOKEN not in str(err.value)


def test_a_bad_token_is_a_refusal_without_the_token(api: SupabaseServer) -> None:
    with pytest.raises(SupabaseRefused, match="HTTP 401") as err:
        Supabase("sbp_wrong_token", api.url, backoff_seconds=0.0).project_status(DEFAULT_REF)
    assert "sbp_wrong_token" not in str(err.value) and "sbp_wrong_token" not in repr(err.value.args)


def test_polling_has_a_bound(api: SupabaseServer) -> None:
    client = _client(api)
    api.stuck = True
    client.restore_pitr(DEFAULT_REF, int(time.time()) - 60)
    now = [0.0]

    def clock() -> float:
        now[0] += 5.0
        return now[0]

    with pytest.raises(RestoreTimedOut, match="still RESTORING after"):
        client.wait_healthy(DEFAULT_REF, timeout_seconds=20, poll_seconds=0.0, clock=clock)


def test_a_failed_recovery_stops_the_polling(api: SupabaseServer) -> None:
    client = _client(api)
    client.restore_pitr(DEFAULT_REF, int(time.time()) - 60)
    api.projects[DEFAULT_REF].status = "RESTORE_FAILED"
    with pytest.raises(RestoreFailed, match="RESTORE_FAILED"):
        client.wait_healthy(DEFAULT_REF, timeout_seconds=30, poll_seconds=0.0)


def test_the_client_never_shows_its_token() -> None:
    assert TOKEN not in repr(Supabase(TOKEN, "http://127.0.0.1:9"))
