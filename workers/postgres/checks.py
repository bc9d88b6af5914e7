"""Verification after a rollback or restore (playbook Step 5): each check with its figure, pass or fail.

Checks: migration status as expected, critical tables' row counts against the counts taken before,
the health-check URL answering 2xx, the smoke-test command exiting 0, and active connections from
pg_stat_activity (informational). A check that cannot apply (nothing configured) is marked skipped
with the reason; skipped checks do not fail the report.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import requests
from psycopg import sql

from core import defaults
from core.config import Target
from workers import messages
from workers.postgres.check_results import Check, CheckKind, VerifyReport
from workers.postgres.pg_dump import connect, describe, redact  # one redaction rule, one connect timeout
from workers.runtime import errors
from workers.runtime.errors import VerifyError

PENDING = "pending"
OUTPUT_TAIL_CHARS = 400
SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")




# --- what the checks are called, and what they found as sentences people read ---------------------


CHECK_MIGRATIONS = "migration status"
CHECK_ROW_COUNTS = "row counts"
CHECK_HEALTH = "health check"
CHECK_SMOKE = "smoke test"
CHECK_CONNECTIONS = "connections"


def row_count_check(table: str) -> str:
    """A row count's check name, as failure lists say it (`checks failed: row count users`)."""
    return f"row count {table}"


NO_EXPECTED_STATUS = "no expected status given"
NO_CRITICAL_TABLES = "no critical tables configured"
NO_HEALTH_URL = "no health_url configured"
NO_SMOKE_COMMAND = "no smoke_command configured"
NO_MIGRATIONS_TABLE = "schema_migrations does not exist on this database"


def migrations_as_expected(expected: int, matching: int, mismatches: Sequence[str], unknown: Sequence[str]) -> str:
    text = f"{matching} of {expected} as expected"
    if mismatches:
        text += ": " + "; ".join(mismatches)
    if unknown:
        text += f" (not on disk: {', '.join(unknown)})"
    return text


def migration_mismatch(version: str, actual: str, expected: str) -> str:
    return f"{version}: {actual} (expected {expected})"


def migrations_healthy(total: int, problems: Sequence[str]) -> str:
    if not problems:
        return f"{total} migration(s), none failed, running or drifted"
    return f"{len(problems)} problem(s) among {total} migration(s): " + "; ".join(problems)


def migration_problem(version: str, status: str, drift: bool) -> str:
    issues = [status] if status in ("failed", "running") else []
    if drift:
        issues.append("its file changed since it was applied (drift)")
    return f"{version} {' and '.join(issues)}"


def row_count(after: int | None, before: int | None, table: str) -> str:
    if after is None:
        return f"table {table} does not exist"
    if before is None:
        return f"{after} rows, {messages.check_skipped(messages.NO_EARLIER_COUNT)}"
    if before == after:
        return f"{after} rows ({before} before)"
    return f"{after} rows ({before} before, {after - before:+d})"


def health_answered(url: str, status: int) -> str:
    return f"HTTP {status} from {url}"


def health_no_answer(url: str, error: str) -> str:
    return f"{url} did not answer ({error})"


def smoke_exited(returncode: int, output: str) -> str:
    return f"exit {returncode}" + (f": {output}" if output else "")


def connections_counted(total: int, active: int) -> str:
    return f"{total} to this database, {active} active"


def skipped(name: str, reason: str, figure: Any = None, kind: CheckKind | None = None, subject: str = "") -> Check:
    return Check(name=name, passed=False, figure=figure, detail=messages.check_skipped(reason), skipped=True,
                 kind=kind, subject=subject)


def _table_identifier(name: str) -> sql.Identifier:
    """`schema.table` or `table` as an identifier (a name never becomes SQL text)."""
    parts = name.split(".", 1)
    return sql.Identifier(*parts)


def _connect(conninfo: str) -> psycopg.Connection[Any]:
    try:
        return connect(conninfo)
    except psycopg.Error as exc:
        first = (str(exc).strip().splitlines() or [errors.CONNECTION_FAILED])[0]
        raise VerifyError(errors.cannot_connect(describe(conninfo), redact(first, conninfo))) from None  # the cause may quote the DSN, password included


def count_rows(conninfo: str, tables: Sequence[str]) -> dict[str, int]:
    """Exact row counts (`count(*)`) of the given tables; a missing table raises VerifyError naming it."""
    counts: dict[str, int] = {}
    with _connect(conninfo) as conn:
        for table in tables:
            try:
                row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(_table_identifier(table))).fetchone()
            except psycopg.errors.UndefinedTable as err:
                raise VerifyError(errors.row_count_missing_table(table)) from err
            counts[table] = int(row[0]) if row else 0
    return counts


def user_tables(conninfo: str) -> list[str]:
    """Every ordinary or partitioned table outside the system schemas, as `schema.table`."""
    with _connect(conninfo) as conn:
        rows = conn.execute(
            """
            SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
              AND n.nspname <> ALL(%s) AND n.nspname NOT LIKE 'pg\\_temp\\_%%'
            ORDER BY 1, 2
            """,
            (list(SYSTEM_SCHEMAS),),
        ).fetchall()
    return [f"{schema}.{table}" for schema, table in rows]


def count_all_rows(conninfo: str) -> dict[str, int]:
    """Row counts of all user tables, keyed `schema.table`."""
    return count_rows(conninfo, user_tables(conninfo))


# ----------------------------------------------------------------------------------------------
# the checks


def check_migration_status(
    conn: psycopg.Connection[Any], expected: dict[str, str] | None, migrations_dir: str
) -> Check:
    """The pipeline's check: each reverted version has the status the rollback should have left."""
    name, kind = CHECK_MIGRATIONS, CheckKind.MIGRATIONS
    if not expected:
        return skipped(name, NO_EXPECTED_STATUS, kind=kind)
    try:
        rows = conn.execute("SELECT version, status FROM schema_migrations").fetchall()
    except psycopg.errors.UndefinedTable:
        return Check(name, False, None, NO_MIGRATIONS_TABLE, kind=kind)
    actual = {str(version): str(status) for version, status in rows}
    mismatches = [
        migration_mismatch(version, actual.get(version, PENDING), status)
        for version, status in sorted(expected.items())
        if actual.get(version, PENDING) != status
    ]
    on_disk = {"_".join(p.name.split("_")[:4]) for p in Path(migrations_dir).glob("*_*") if p.is_dir()}
    unknown = sorted(v for v in expected if on_disk and v not in on_disk)
    matching = len(expected) - len(mismatches)
    figure = {"expected": len(expected), "matching": matching}
    detail = migrations_as_expected(len(expected), matching, mismatches, unknown)
    return Check(name, not mismatches, figure, detail, kind=kind)


def check_migration_health(status_report: Mapping[str, Any]) -> Check:
    """The standalone check (no rollback to compare with): no migration failed or running, none drifted.

    `status_report` is the engine's `StatusReport.to_dict()`; drift needs the files on disk, which
    the engine compares."""
    migrations = list(status_report.get("migrations") or [])
    problems = [
        migration_problem(str(m.get("version")), str(m.get("status")), bool(m.get("drift")))
        for m in migrations
        if m.get("status") in ("failed", "running") or m.get("drift")
    ]
    figure = {"migrations": len(migrations), "problems": len(problems)}
    return Check(CHECK_MIGRATIONS, not problems, figure, migrations_healthy(len(migrations), problems),
                 kind=CheckKind.MIGRATIONS)


def check_row_counts(
    conn: psycopg.Connection[Any], tables: Sequence[str], baseline: dict[str, int] | None
) -> list[Check]:
    kind = CheckKind.ROW_COUNT
    if not tables:
        return [skipped(CHECK_ROW_COUNTS, NO_CRITICAL_TABLES, kind=kind)]
    checks: list[Check] = []
    for table in tables:
        name = row_count_check(table)
        before = baseline.get(table) if baseline else None
        try:
            row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(_table_identifier(table))).fetchone()
        except psycopg.errors.UndefinedTable:
            figure: dict[str, int | None] = {"before": before, "after": None}
            checks.append(Check(name, False, figure, row_count(None, before, table), kind=kind, subject=table))
            continue
        after = int(row[0]) if row else 0
        figure = {"before": before, "after": after}
        detail = row_count(after, before, table)
        checks.append(Check(name, before == after, figure, detail, skipped=before is None, kind=kind, subject=table))
    return checks


def display_url(url: str) -> str:
    """Scheme, host and path only: a query string or userinfo may hold a token."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"


def check_health(url: str | None, timeout: float) -> Check:
    name, kind = CHECK_HEALTH, CheckKind.HEALTH
    if not url:
        return skipped(name, NO_HEALTH_URL, kind=kind)
    shown = display_url(url)
    try:
        response = requests.get(url, timeout=timeout)
    except requests.RequestException as exc:
        return Check(name, False, None, health_no_answer(shown, type(exc).__name__), kind=kind)
    ok = 200 <= response.status_code < 300
    return Check(name, ok, response.status_code, health_answered(shown, response.status_code), kind=kind)


def tail(text: str, limit: int = OUTPUT_TAIL_CHARS) -> str:
    text = text.strip()
    return text if len(text) <= limit else "…" + text[-limit:]


def check_smoke(command: str | None, target: str, timeout: float) -> Check:
    name, kind = CHECK_SMOKE, CheckKind.SMOKE
    if not command:
        return skipped(name, NO_SMOKE_COMMAND, kind=kind)
    done = run_shell(command, env={"ROLLBACK_TARGET": target}, timeout=timeout)
    if done is None:
        return Check(name, False, None, messages.command_timed_out(timeout), kind=kind)
    returncode, output = done
    return Check(name, returncode == 0, returncode, smoke_exited(returncode, output), kind=kind)


def run_shell(command: str, *, env: dict[str, str], timeout: float) -> tuple[int, str] | None:
    """Run a configured shell command with extra environment; (exit status, output tail), or None when
    it outlived `timeout` (then its whole process group is killed, so no child keeps running)."""
    process = subprocess.Popen(
        command, shell=True, env={**os.environ, **env}, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return None
    return process.returncode, tail(output or "")


def check_connections(conn: psycopg.Connection[Any]) -> Check:
    row = conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE state = 'active') FROM pg_stat_activity WHERE datname = current_database()"
    ).fetchone()
    total, active = (int(row[0]), int(row[1])) if row else (0, 0)
    return Check(CHECK_CONNECTIONS, True, total, connections_counted(total, active), kind=CheckKind.CONNECTIONS)


def run_checks(
    conninfo: str,
    target: Target,
    *,
    expected_status: dict[str, str] | None,
    baseline_counts: dict[str, int] | None,
    migrations_dir: str,
    status_report: Mapping[str, Any] | None = None,
    http_timeout: float = defaults.HTTP_TIMEOUT_SECONDS,
    smoke_timeout: float = defaults.SMOKE_TIMEOUT_SECONDS,
) -> VerifyReport:
    """Run every check and return the report; raises VerifyError only when the database is unreachable.

    Migration status: against `expected_status` (after a rollback) when given, else the engine's
    `status_report` must show no failed, running or drifted migration, else it is skipped."""
    started = time.monotonic()
    with _connect(conninfo) as conn:
        if expected_status is None and status_report is not None:
            checks = [check_migration_health(status_report)]
        else:
            checks = [check_migration_status(conn, expected_status, migrations_dir)]
        checks += check_row_counts(conn, target.critical_tables, baseline_counts)
        checks.append(check_connections(conn))
    checks.insert(-1, check_health(target.health_url, http_timeout))
    checks.insert(-1, check_smoke(target.smoke_command, target.name, smoke_timeout))
    return VerifyReport(target=target.name, checks=checks, duration_s=round(time.monotonic() - started, 3))
