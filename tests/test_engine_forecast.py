"""The dry run's lock-impact forecast, and its bound on how long it may block the application (issue 12).

Pure cases of the forecast arithmetic and the reorder suggestion, then real PostgreSQL: an application
thread queries the table from its own connection while the dry run holds a lock that blocks it.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from tests.engine_support import make_engine, pg_dump, query
from workers import cli
from workers.engine import measure, messages, sqltext
from workers.engine.forecast import HeldLock, StatementImpact, script_statement, suggest_reorder, table_stalls
from workers.engine.sqleffects import LockMode

BASE = "2026_01_01_000000"
BAD = "2026_01_02_000000"
ROWS = 20_000  # rows of items (written into the up script below)
SLEEP_SECONDS = 8  # what the bad down script sleeps under its strong lock: far above any budget below


# --- pure ----------------------------------------------------------------------------------------


def impact(sql: str, ms: float, *locks: tuple[str, LockMode], estimated: bool = False, segment: int = 0,
           escrow_ms: float = 0.0) -> StatementImpact:
    return StatementImpact("v", sql, ms, tuple(HeldLock(r, m) for r, m in locks), estimated, segment=segment,
                           escrow_ms=escrow_ms)


def test_writes_are_blocked_from_share_and_reads_from_access_exclusive_until_commit() -> None:
    stalls = table_stalls([
        impact("CREATE INDEX ON t (a)", 1000, ("t", LockMode.SHARE)),
        impact("UPDATE u SET a = 1", 500, ("t", LockMode.SHARE), ("u", LockMode.ROW_EXCLUSIVE)),
        impact("ALTER TABLE t DROP COLUMN b", 200, ("t", LockMode.ACCESS_EXCLUSIVE), ("u", LockMode.ROW_EXCLUSIVE)),
        impact("SELECT 1", 300, ("t", LockMode.ACCESS_EXCLUSIVE), ("u", LockMode.ROW_EXCLUSIVE)),
    ], commit_ms=10)
    assert [(s.relation, s.writes_blocked_ms, s.reads_blocked_ms, s.mode) for s in stalls] == [
        ("t", 2010, 510, LockMode.ACCESS_EXCLUSIVE)]  # u's ROW EXCLUSIVE blocks neither
    assert stalls[0].first_statement == "CREATE INDEX ON t (a)" and not stalls[0].estimated


def test_escrow_copies_count_under_the_locks_taken_before_them() -> None:
    # The real run copies what each statement destroys just before it runs: the first blocking statement's
    # copy is made before it takes its lock, every later copy while the lock is held.
    stalls = table_stalls([
        impact("DROP TABLE badges", 5, ("t", LockMode.ACCESS_EXCLUSIVE), escrow_ms=700),
        impact("UPDATE t SET a = 1", 1000, ("t", LockMode.ACCESS_EXCLUSIVE), escrow_ms=300),
    ], commit_ms=10)
    assert [(s.relation, s.reads_blocked_ms) for s in stalls] == [("t", 1315)]


def test_each_transaction_is_its_own_window_and_estimates_are_marked() -> None:
    stalls = table_stalls([
        impact("LOCK t", 100, ("t", LockMode.ACCESS_EXCLUSIVE), segment=0),
        impact("UPDATE t", 4000, ("t", LockMode.ACCESS_EXCLUSIVE), estimated=True, segment=0),
        impact("LOCK t", 300, ("t", LockMode.ACCESS_EXCLUSIVE), segment=1),
    ])
    assert [(s.writes_blocked_ms, s.estimated) for s in stalls] == [(4100, True)]
    line = messages.table_stall_line(stalls[0])
    assert line == "reads and writes of t blocked ≈4.1 s (estimated: the dry run stopped at its budget)"


def test_the_card_line_says_measured_and_separates_reads_from_writes() -> None:
    (stall,) = table_stalls([impact("CREATE INDEX", 17_200, ("users", LockMode.SHARE))])
    assert messages.table_stall_line(stall) == (
        "writes to users blocked ≈17 s; reads are not blocked (measured in the dry run)")


BENCH_DOWN = """DROP TABLE user_badges;
ALTER TABLE users DROP COLUMN plan_tier, DROP COLUMN onboarding_state;
UPDATE users SET status = 'active' WHERE status = 'migrated';
UPDATE events SET kind = replace(kind, '_', '.') WHERE kind LIKE '%\\_%';"""


def test_the_suggestion_moves_long_lock_light_statements_before_the_strong_locks() -> None:
    parsed = sqltext.parse_script(BENCH_DOWN)
    order = suggest_reorder([script_statement(p, ms) for p, ms in zip(parsed, (5, 5, 4000, 9000), strict=True)])
    assert order == (parsed[2].text, parsed[3].text, parsed[0].text, parsed[1].text)


def test_no_suggestion_when_the_long_statement_depends_on_what_runs_before_it() -> None:
    parsed = sqltext.parse_script("ALTER TABLE users DROP COLUMN plan_tier;\n"
                                  "UPDATE users SET status = 'x' WHERE plan_tier IS NULL;\n"
                                  "ALTER TABLE users ADD COLUMN z int;\nUPDATE users SET z = 1")
    statements = [script_statement(p, 5000) for p in parsed]
    assert suggest_reorder(statements) is None  # reads a dropped column; fills a column added before it
    short = [script_statement(p, 10) for p in sqltext.parse_script(BENCH_DOWN)]
    assert suggest_reorder(short) is None  # nothing long enough to be worth moving


# --- real PostgreSQL -----------------------------------------------------------------------------


def write_migrations(root: Path, down: str) -> Path:
    migrations = root / "migrations"
    base = migrations / f"{BASE}_items"
    bad = migrations / f"{BAD}_badges"
    base.mkdir(parents=True)
    bad.mkdir()
    (base / "up.sql").write_text(
        "CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL, note text);\n"
        "INSERT INTO items SELECT g, g, 'n' || g FROM generate_series(1, 20000) g;\n")  # ROWS
    (base / "down.sql").write_text("DROP TABLE items;\n")
    (bad / "up.sql").write_text(
        "ALTER TABLE items ADD COLUMN extra int;\n"
        "CREATE TABLE badges (id int PRIMARY KEY, item_id int REFERENCES items (id));\n"
        "INSERT INTO badges SELECT g, g FROM generate_series(1, 100) g;\n")
    (bad / "down.sql").write_text(down)
    return migrations


@dataclass
class AppReader:
    """An application client: reads one item by key in a loop, from its own connection; keeps the worst wait."""

    url: str
    worst: float = 0.0
    queries: int = 0
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _started: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        try:
            with psycopg.connect(self.url, autocommit=True, application_name="test-app") as conn:
                while not self._stop.is_set():
                    begun = time.perf_counter()
                    conn.execute("SELECT v FROM items WHERE id = 1").fetchone()
                    self.worst = max(self.worst, time.perf_counter() - begun)
                    self.queries += 1
                    self._started.set()
                    self._stop.wait(0.005)
        except psycopg.Error as exc:
            self.errors.append(str(exc))
            self._started.set()


@pytest.fixture
def app(database_url: str) -> Iterator[AppReader]:
    reader = AppReader(database_url)
    thread = threading.Thread(target=reader.run, daemon=True)
    yield reader
    reader._stop.set()
    if thread.is_alive():
        thread.join(timeout=30)


def start(reader: AppReader) -> threading.Thread:
    thread = threading.Thread(target=reader.run, daemon=True)
    thread.start()
    assert reader._started.wait(30)
    return thread


def stop(reader: AppReader, thread: threading.Thread) -> None:
    reader._stop.set()
    thread.join(timeout=30)
    assert not reader.errors


def test_the_dry_run_stops_within_its_budget_while_holding_a_lock_that_blocks_the_app(
        database_url: str, tmp_path: Path, app: AppReader) -> None:
    down = (f"DROP TABLE badges;\nSELECT pg_sleep({SLEEP_SECONDS});\n"
            "UPDATE items SET v = v + 1 WHERE id <= 500;\nALTER TABLE items DROP COLUMN extra;\n")
    migrations = write_migrations(tmp_path, down)
    make_engine(database_url, migrations).apply()
    before = pg_dump(database_url)
    thread = start(app)
    started = time.perf_counter()
    report = make_engine(database_url, migrations, dry_run_budget_ms=300).dry_run_rollback(BASE)
    took = time.perf_counter() - started
    stop(app, thread)
    # The old dry run held ACCESS EXCLUSIVE on items (DROP TABLE badges: its foreign key) through the sleep.
    assert took < SLEEP_SECONDS and app.worst < SLEEP_SECONDS / 2, (took, app.worst)
    assert pg_dump(database_url) == before
    forecast = report.forecast
    assert forecast is not None and forecast.stopped is not None
    assert forecast.stopped.sql == f"SELECT pg_sleep({SLEEP_SECONDS})" and forecast.stopped.budget_ms == 300
    assert [(s.tag, s.rowcount) for s in report.statements] == [
        ("DROP TABLE", None), (messages.ESTIMATED_TAG, None), (messages.ESTIMATED_TAG, 500),
        (messages.ESTIMATED_TAG, None)]
    assert [s.estimated for s in forecast.statements] == [False, True, True, True]
    (items,) = [t for t in forecast.tables if t.relation == "items"]
    assert items.estimated and items.mode is LockMode.ACCESS_EXCLUSIVE and items.reads_blocked_ms > 0
    assert any("estimated" in line for line in forecast.lines)
    assert ("UPDATE would change ≈500 row(s) of items (estimated: the dry run stopped before it finished)"
            in report.warnings)


def test_a_dry_run_within_budget_measures_every_statement(database_url: str, tmp_path: Path,
                                                         app: AppReader) -> None:
    migrations = write_migrations(tmp_path, "DROP TABLE badges;\nUPDATE items SET v = v + 1;\n"
                                            "ALTER TABLE items DROP COLUMN extra;\n")
    make_engine(database_url, migrations).apply()
    thread = start(app)
    report = make_engine(database_url, migrations, dry_run_budget_ms=600_000).dry_run_rollback(BASE)
    stop(app, thread)
    forecast = report.forecast
    assert forecast is not None and forecast.stopped is None and not forecast.estimated
    assert [s.tag for s in report.statements] == ["DROP TABLE", f"UPDATE {ROWS}", "ALTER TABLE"]
    (items,) = [t for t in forecast.tables if t.relation == "items"]
    # The real run escrows (the engine's default): its copies of items' rows run under the lock too.
    copies = [s.escrow_ms for s in forecast.statements]
    assert copies[0] > 0 and copies[1] > 0 and copies[2] > 0, copies
    total = sum(s.duration_ms for s in report.statements) + copies[1] + copies[2]
    assert items.reads_blocked_ms == pytest.approx(total) and items.first_statement == "DROP TABLE badges"
    assert any(line.startswith("these include the escrow copies") for line in forecast.lines)
    assert forecast.lines[0].startswith("reads and writes of items blocked ")
    assert forecast.lines[0].endswith("(measured in the dry run)")
    # Each statement's locks come from pg_locks of the dry run's own backend.
    assert HeldLock("items", LockMode.ACCESS_EXCLUSIVE) in forecast.statements[0].locks
    assert report.to_dict()["forecast"]["tables"][0]["relation"] == "items"


def test_run_migrations_dry_run_prints_the_forecast_line(database_url: str, tmp_path: Path, app: AppReader) -> None:
    migrations = write_migrations(tmp_path, f"DROP TABLE badges;\nSELECT pg_sleep({SLEEP_SECONDS});\n")
    make_engine(database_url, migrations).apply()
    thread = start(app)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli.main(["--rollback", "--to", BASE, "--dry-run", "--dir", str(migrations),
                         "--dry-run-budget", "200"], env={"DATABASE_URL": database_url})
    stop(app, thread)
    assert code == 0, err.getvalue()
    text = out.getvalue()
    assert "lock impact of the real run" in text
    assert "reads and writes of items blocked" in text and "(estimated: the dry run stopped at its budget)" in text
    assert "budget 0.2 s" in text and app.worst < SLEEP_SECONDS / 2
    assert query(database_url, "SELECT count(*) FROM badges") == [(100,)]


def test_run_migrations_refuses_a_negative_budget(database_url: str, tmp_path: Path) -> None:
    err = io.StringIO()
    with redirect_stderr(err), redirect_stdout(io.StringIO()):
        code = cli.main(["--rollback", "--dry-run", "--dry-run-budget", "-1"], env={"DATABASE_URL": database_url})
    assert code != 0 and "--dry-run-budget must be 0 or more ms" in err.getvalue()


def test_rows_an_update_will_change_are_counted_exactly_or_not_at_all_within_the_budget(
        database_url: str, tmp_path: Path) -> None:
    migrations = write_migrations(tmp_path, "DROP TABLE badges;\n")
    make_engine(database_url, migrations).apply()
    with psycopg.connect(database_url) as conn:
        assert measure.count_matching(conn, ("items",), "i", "i.id <= 1234", 10_000, 0) == 1234
        assert measure.count_matching(conn, ("items",), None, None, 10_000, 0) == ROWS
        # Too slow for the time allowed: no figure (the caller falls back to EXPLAIN), and the
        # transaction is still usable.
        assert measure.count_matching(conn, ("items",), None, "pg_sleep(0.01) IS NOT NULL", 50, 0) is None
        assert conn.execute("SELECT current_setting('statement_timeout')").fetchone() == ("0",)
        assert measure.explain_rows(conn, "UPDATE items SET v = 0 WHERE id <= 1234") is not None


def test_the_dry_run_rehearses_escrow_without_keeping_or_recording_anything(database_url: str,
                                                                           tmp_path: Path) -> None:
    migrations = write_migrations(tmp_path, "DROP TABLE badges;\nUPDATE items SET v = v + 1;\n"
                                            "ALTER TABLE items DROP COLUMN extra;\n")
    make_engine(database_url, migrations).apply()
    make_engine(database_url, migrations).rollback(BASE)  # a real run: the escrow schema and its manifest exist
    make_engine(database_url, migrations).apply(reapply=[BAD])  # rolled back just above: put it back
    before = pg_dump(database_url)
    report = make_engine(database_url, migrations, dry_run_budget_ms=600_000).dry_run_rollback(BASE)
    assert report.forecast is not None and all(s.escrow_ms > 0 for s in report.forecast.statements)
    assert [t.relation for t in report.forecast.tables] == ["items"]  # the copies' own tables block nobody
    assert pg_dump(database_url) == before  # no copy kept, no manifest or run row written
    assert not [w for w in report.warnings if "sequence" in w], report.warnings  # the manifest id did not move
    no_escrow = make_engine(database_url, migrations, escrow=False).dry_run_rollback(BASE)
    assert no_escrow.forecast is not None and not any(s.escrow_ms for s in no_escrow.forecast.statements)


def test_a_statement_the_dry_run_did_not_reach_gets_its_escrow_copy_estimated(
        database_url: str, tmp_path: Path) -> None:
    migrations = write_migrations(tmp_path, f"DROP TABLE badges;\nSELECT pg_sleep({SLEEP_SECONDS});\n"
                                            "UPDATE items SET v = v + 1;\n")
    make_engine(database_url, migrations).apply()
    report = make_engine(database_url, migrations, dry_run_budget_ms=300).dry_run_rollback(BASE)
    forecast = report.forecast
    assert forecast is not None and forecast.stopped is not None
    update = forecast.statements[-1]
    assert update.sql.startswith("UPDATE items") and update.estimated and update.escrow_ms > 0


def test_the_dry_run_vacuums_the_tables_its_undone_writes_touched(database_url: str, tmp_path: Path) -> None:
    migrations = write_migrations(tmp_path, "DROP TABLE badges;\nUPDATE items SET v = v + 1;\n")
    make_engine(database_url, migrations).apply()

    def vacuumed() -> int:
        return int(query(database_url, "SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'items'")[0][0])

    before = vacuumed()
    lines: list[str] = []
    make_engine(database_url, migrations, log=lines.append).dry_run_rollback(BASE)
    assert vacuumed() == before + 1
    assert any(line.startswith("dry run: VACUUM items cleared") for line in lines), lines
