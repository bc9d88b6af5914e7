"""Verification checks against the real PostgreSQL, a local HTTP server and real subprocesses."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest

from core.config import Target
from tests.test_backup import PASSWORD, build_example, with_password
from workers import messages
from workers.postgres.checks import (
    VerifyError,
    check_migration_health,
    count_all_rows,
    count_rows,
    run_checks,
)

MIGRATIONS = str(Path(__file__).resolve().parent.parent / "migrations")


class StatusServer:
    """A local HTTP server answering every request with `status`, recording (method, path, body)."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.requests: list[tuple[str, str, bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                outer.requests.append((self.command, self.path, self.rfile.read(length)))
                self.send_response(outer.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_GET = do_POST = do_PUT = _answer  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def http_server() -> Iterator[StatusServer]:
    server = StatusServer()
    yield server
    server.close()


@pytest.fixture
def example(database_url: str) -> tuple[str, dict[str, str]]:
    return database_url, build_example(database_url)


def test_count_rows_with_schema_qualified_names(example: tuple[str, dict[str, str]]) -> None:
    url, _ = example
    counts = count_rows(url, ["users", "public.projects"])
    assert counts == {"users": 60, "public.projects": 30}
    assert count_all_rows(url)["public.users"] == 60
    with pytest.raises(VerifyError, match="does not exist"):
        count_rows(url, ['users"; DROP TABLE users; --'])
    assert count_rows(url, ["users"]) == {"users": 60}


def _target(http_server: StatusServer, smoke: str = "echo smoke ok") -> Target:
    return Target(
        name="prod", database_url_env="PROD_DATABASE_URL", critical_tables=("users", "public.projects"),
        health_url=f"{http_server.url}/api/health?token=abc", smoke_command=smoke,
    )


def test_all_checks_pass_with_figures(example: tuple[str, dict[str, str]], http_server: StatusServer) -> None:
    url, statuses = example
    baseline = count_rows(url, ["users", "public.projects"])
    report = run_checks(with_password(url), _target(http_server), expected_status=statuses,
                        baseline_counts=baseline, migrations_dir=MIGRATIONS)
    by_name = {c.name: c for c in report.checks}
    assert report.passed, report.to_dict()
    assert by_name["row count users"].figure == {"before": 60, "after": 60}
    assert by_name["health check"].figure == 200 and "token" not in by_name["health check"].detail
    assert by_name["smoke test"].figure == 0 and "smoke ok" in by_name["smoke test"].detail
    assert by_name["connections"].passed and by_name["connections"].figure >= 1
    assert by_name["migration status"].figure == {"expected": 4, "matching": 4}
    assert report.to_dict()["passed"] is True and PASSWORD not in str(report.to_dict())


def test_failures_are_reported_check_by_check(example: tuple[str, dict[str, str]], http_server: StatusServer) -> None:
    url, statuses = example
    baseline = count_rows(url, ["users", "public.projects"])
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM projects WHERE id IN (SELECT id FROM projects LIMIT 3)")
    http_server.status = 500
    expected = {**statuses, "2025_10_20_150000": "rolled_back"}
    report = run_checks(url, _target(http_server, smoke="echo broken >&2; exit 1"), expected_status=expected,
                        baseline_counts=baseline, migrations_dir=MIGRATIONS)
    failed = {c.name: c for c in report.failed}
    assert not report.passed
    assert set(failed) == {"migration status", "row count public.projects", "health check", "smoke test"}
    assert failed["row count public.projects"].figure == {"before": 30, "after": 27}
    assert "completed (expected rolled_back)" in failed["migration status"].detail
    assert failed["health check"].figure == 500
    assert failed["smoke test"].figure == 1 and "broken" in failed["smoke test"].detail


def test_unconfigured_checks_are_skipped_with_a_reason(example: tuple[str, dict[str, str]]) -> None:
    url, _ = example
    bare = Target(name="staging", database_url_env="STAGING_DATABASE_URL")
    report = run_checks(url, bare, expected_status=None, baseline_counts=None, migrations_dir=MIGRATIONS)
    skipped = {c.name: c.detail for c in report.checks if c.skipped}
    assert set(skipped) == {"migration status", "row counts", "health check", "smoke test"}
    assert "health_url" in skipped["health check"] and report.passed


def test_unreachable_health_url_and_missing_table_fail(example: tuple[str, dict[str, str]]) -> None:
    url, _ = example
    target = Target(name="prod", database_url_env="X", critical_tables=("new_feature_table", "gone"),
                    health_url="http://127.0.0.1:1/health")
    report = run_checks(url, target, expected_status=None, baseline_counts={"new_feature_table": 48, "gone": 1},
                        migrations_dir=MIGRATIONS)
    failed = {c.name: c for c in report.failed}
    assert set(failed) == {"row count gone", "health check"}
    assert "did not answer" in failed["health check"].detail


def test_unreachable_database_is_a_one_line_error() -> None:
    target = Target(name="prod", database_url_env="X")
    with pytest.raises(VerifyError) as caught:
        run_checks(f"postgresql://u:{PASSWORD}@127.0.0.1:1/db", target, expected_status=None,
                   baseline_counts=None, migrations_dir=MIGRATIONS)
    assert PASSWORD not in str(caught.value) and "\n" not in str(caught.value)


def test_checks_read_as_sentences_and_skips_never_count_as_passes(
    example: tuple[str, dict[str, str]], http_server: StatusServer
) -> None:
    url, statuses = example
    baseline = count_rows(url, ["users", "public.projects"])
    target = Target(name="prod", database_url_env="X", critical_tables=("users", "public.projects"),
                    health_url=f"{http_server.url}/health")
    checks = run_checks(url, target, expected_status=statuses, baseline_counts=baseline,
                        migrations_dir=MIGRATIONS).checks
    block = messages.checks_block(checks)
    assert "migration status: 4 of 4 as expected" in block
    assert "users: 60 rows (60 before)" in block and "public.projects: 30 rows (30 before)" in block
    assert f"health check: HTTP 200 from {http_server.url}/health" in block
    assert ":fast_forward: smoke test: skipped, no smoke_command configured" in block
    assert "{" not in block and "None" not in block and "True" not in block
    assert messages.checks_summary(checks) == "5 passed, 1 skipped, 0 failed"


def test_standalone_migration_check_fails_on_failed_running_or_drifted_migrations() -> None:
    healthy = {"migrations": [{"version": "2025_10_01_090000", "status": "completed", "drift": False},
                              {"version": "2025_10_20_150000", "status": "rolled_back", "drift": False}]}
    good = check_migration_health(healthy)
    assert good.passed and good.detail == "2 migration(s), none failed, running or drifted"
    broken = check_migration_health({"migrations": [
        {"version": "2025_10_01_090000", "status": "completed", "drift": True},
        {"version": "2025_10_20_150000", "status": "failed", "drift": False},
        {"version": "2025_10_21_000000", "status": "running", "drift": False},
    ]})
    assert not broken.passed and broken.figure == {"migrations": 3, "problems": 3}
    assert "2025_10_20_150000 failed" in broken.detail and "2025_10_21_000000 running" in broken.detail
    assert "2025_10_01_090000 its file changed since it was applied (drift)" in broken.detail


def test_durations_under_a_second_print_in_milliseconds() -> None:
    assert [messages.seconds(v) for v in (0, 0.0344, 0.9994, 1.0, 4.31, 125)] == [
        "0ms", "34ms", "999ms", "1.0s", "4.3s", "2m05s"]
    assert messages.step_finished("Rollback", "3 statements", 0.012) == (
        ":white_check_mark: *Rollback* finished in 12ms — 3 statements")
