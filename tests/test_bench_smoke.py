"""A smoke run of the benchmark harness (tiny data set, one repetition), so `./dev bench` cannot rot.

It times nothing: it checks that every figure's variants ran, were summarized and judged, and that
the report and its plots were written. The run uses its own database prefix and Redis database.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def db_prefix(postgres_admin_url: str) -> object:
    prefix = f"bsmoke_{uuid.uuid4().hex[:8]}_"
    yield prefix
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        names = [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s)",
                                            (prefix,))]
        for name in names:
            conn.execute(psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psycopg.sql.Identifier(name)))


@pytest.mark.timeout(300)  # ~30 s on a quiet machine, 100 s with 2 cores oversubscribed 4×
def test_the_bench_harness_runs_every_figure_on_a_tiny_data_set(
        tmp_path: Path, postgres_admin_url: str, redis_url: str, db_prefix: str) -> None:
    doc = tmp_path / "docs" / "performance.md"
    doc.parent.mkdir()
    results = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--size", "tiny", "--reps", "1", "--only", "p1,p2,restore,p3,p4,p5",
         "--reader-seconds", "1", "--admin-url", postgres_admin_url, "--redis-url", redis_url,
         "--db-prefix", db_prefix, "--results-dir", str(results), "--doc", str(doc)],
        cwd=REPO, capture_output=True, text=True, timeout=280, check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    saved = json.loads((results / "tiny.json").read_text())
    variants = {(row["figure"], row["variant"]) for row in saved["figures"]}
    assert {("P2 backup", "product"), ("P2 backup", "playbook pg_dump | gzip"), ("P2 backup", "floor pg_dump -Fc -Z0"),
            ("restore", "product"), ("restore", "playbook gunzip | psql"), ("restore", "floor pg_restore -j"),
            ("P3 rollback", "product run-migrations"), ("P3 rollback", "psql -1 -f down.sql"),
            ("P4 app stall (worst wait)", "product run-migrations"),
            ("P4 app stall (worst wait)", "naive psql -1 -f down.sql"),
            ("P5 end to end", "product (Approve → verified)"),
            ("P1 ack", "50 concurrent"), ("P1 ack", "200 concurrent")} <= variants, variants
    assert all(row["n"] >= 1 and row["low"] <= row["median"] <= row["high"] for row in saved["figures"])
    assert [v["figure"] for v in saved["verdicts"]] == ["P1 ack", "P2 backup", "restore", "P3 rollback",
                                                         "P4 app stall", "P5 end to end"]
    assert next(v for v in saved["verdicts"] if v["figure"] == "P4 app stall")["word"] == "n/a"
    assert saved["dataset"]["rows"]["events"] > saved["dataset"]["rows"]["users"] > 0
    timeline = saved["stall_timeline"]["naive psql -1 -f down.sql"]
    assert timeline["rollback_start"] < timeline["rollback_end"] and timeline["samples"]

    text = doc.read_text()
    assert "## Targets" in text and "--size tiny" in text and "P5 end to end" in text
    assert "n/a" in text
    for plot in ("performance-size.png", "performance-stall.png"):
        assert (doc.parent / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
