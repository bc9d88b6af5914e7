"""A tiny run of bench/bench_forecast.py, so that the forecast harness cannot rot (no figures asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def db_prefix(postgres_admin_url: str) -> Iterator[str]:
    prefix = f"fsmoke_{uuid.uuid4().hex[:8]}_"
    yield prefix
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        names = [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s)",
                                            (prefix,))]
        for name in names:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_the_forecast_harness_prints_forecast_measured_and_dry_run_stall(
        tmp_path: Path, postgres_admin_url: str, db_prefix: str) -> None:
    out = tmp_path / "forecast.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.bench_forecast", "--size", "tiny", "--reps", "1", "--reader-seconds", "1",
         "--admin-url", postgres_admin_url, "--db-prefix", db_prefix, "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=240, check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]  # a dead helper thread is a broken figure
    assert "forecast" in done.stdout and "measured" in done.stdout and "dry-run stall" in done.stdout
    saved = json.loads(out.read_text())
    (run,) = saved["runs"]
    assert run["forecast_s"] > 0 and run["measured_stall_s"] > 0 and run["dry_run_stall_s"] >= 0
    assert any(line.startswith("reads and writes of users blocked") for line in run["lines"])
    assert [v["figure"] for v in saved["verdicts"]] == ["forecast", "dry-run stall"]
