"""Supabase point-in-time recovery through the real HTTP client against the Management API stand-in."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from sandbox.http_stub import ACCEPTED_THEN_500, ACCEPTED_THEN_DROPPED, ACCEPTED_THEN_SILENT, REFUSED
from sandbox.supabase import DEFAULT_REF, SupabaseServer
from workers.providers.supabase import (
    OutsideWindow,
    PitrNotEnabled,
    PitrWindow,
    RestoreFailed,
    RestoreNotStarted,
    RestoreTimedOut,
    Supabase,
    SupabaseRefused,
    SupabaseUnavailable,
    check_point,
    recovery_point,
)

TOKEN = "sbp_secret_token_value"
RESTORE_PATH = f"/v1/projects/{DEFAULT_REF}/database/backups/restore-pitr"


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
    with pytest.raises(SupabaseRefused, match="HTTP 400: recovery_time_target_unix is outside") as err:
        client.restore_pitr(DEFAULT_REF, 5)
    assert api.posts[RESTORE_PATH] == 1
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


# --- sent once: restore-pitr is never resent, and a lost answer is looked up -----------------------------


def test_restore_pitr_answered_500_every_time_is_sent_once_and_reported_in_one_line(api: SupabaseServer) -> None:
    api.post_faults = [REFUSED] * 4  # every answer a 500 (our loop used to send it four times)
    with pytest.raises(RestoreNotStarted) as failed:
        _client(api).restore_pitr(DEFAULT_REF, int(time.time()) - 60)
    assert api.posts[RESTORE_PATH] == 1 and api.restores == []
    assert str(failed.value) == (
        f"Supabase gave no answer to point-in-time recovery of project {DEFAULT_REF} (HTTP 500); sent once, not "
        f"resent, and project {DEFAULT_REF} is ACTIVE_HEALTHY: nothing was started; check the Supabase dashboard, "
        "then ask again")
    assert TOKEN not in str(failed.value)


@pytest.mark.parametrize("fault", [ACCEPTED_THEN_500, ACCEPTED_THEN_DROPPED, ACCEPTED_THEN_SILENT])
def test_restore_pitr_accepted_then_answer_lost_is_followed_to_healthy(api: SupabaseServer, fault: str) -> None:
    client = _client(api, timeout_seconds=0.5)  # the silent answer: given up after the read timeout
    point = int(time.time()) - 60
    api.post_faults = [fault]
    client.restore_pitr(DEFAULT_REF, point)
    assert api.posts[RESTORE_PATH] == 1 and api.restores == [(DEFAULT_REF, point)]
    client.wait_healthy(DEFAULT_REF, timeout_seconds=30, poll_seconds=0.0)
    assert client.project_status(DEFAULT_REF) == "ACTIVE_HEALTHY"


def test_a_lost_answer_whose_lookup_fails_too_is_one_line_and_not_resent(api: SupabaseServer) -> None:
    api.post_faults = [REFUSED]
    api.on_post = lambda path: api.fail_next.extend([503] * 10)  # from the POST on, every GET is answered 503
    with pytest.raises(RestoreNotStarted, match="whether project .* started recovering is unknown") as failed:
        _client(api, attempts=2).restore_pitr(DEFAULT_REF, int(time.time()) - 60)
    assert api.posts[RESTORE_PATH] == 1 and "\n" not in str(failed.value)
