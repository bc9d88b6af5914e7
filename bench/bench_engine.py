"""Benchmark: the engine on the example migrations with N users. Run by hand:

    python bench/bench_engine.py [--rows 100000] [--repeat 3] [--url postgresql://postgres@127.0.0.1:5432/postgres]

It creates a throwaway database, applies the first three example migrations, fills `users` and
`projects` with N rows each, applies 2025_10_20_150000 (which touches every active user), then times
`status`, `plan_rollback`, `dry_run_rollback` and `rollback` to 2025_10_20_120001 (re-applying between
rounds), and prints the median of each in milliseconds. The database is dropped at the end.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from workers.engine import Engine  # noqa: E402

KNOWN_GOOD = "2025_10_20_120001"
NEW_FEATURE = "2025_10_20_150000"
NEW_FEATURE_DIR = f"{NEW_FEATURE}_add_new_feature"


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()

    name = f"rbt_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = psycopg.conninfo.make_conninfo(args.url, dbname=name)
    workdir = Path(tempfile.mkdtemp(prefix="bench-engine-"))
    try:
        migrations = workdir / "migrations"
        shutil.copytree(REPO / "migrations", migrations)
        (migrations / NEW_FEATURE_DIR).rename(workdir / NEW_FEATURE_DIR)
        engine = Engine(url, migrations, actor="bench")
        engine.apply()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO users (email, full_name, status) SELECT 'user' || g || '@example.com', 'User ' || g,"
                " CASE WHEN g %% 10 = 0 THEN 'suspended' ELSE 'active' END FROM generate_series(1, %s) g",
                (args.rows,),
            )
            conn.execute("INSERT INTO projects (owner_id, name) SELECT id, 'Project ' || id FROM users")
            conn.execute("ANALYZE")
        (workdir / NEW_FEATURE_DIR).rename(migrations / NEW_FEATURE_DIR)

        figures: dict[str, list[float]] = {k: [] for k in
                                           ("apply 150000", "status", "plan_rollback", "dry_run_rollback", "rollback")}
        dry: list[Any] = []
        for i in range(args.repeat):
            # rolled back by the round before: it stays so unless named
            again = [NEW_FEATURE] if i else []
            figures["apply 150000"].append(timed(lambda again=again: engine.apply(reapply=again)))
            figures["status"].append(timed(engine.status))
            figures["plan_rollback"].append(timed(lambda: engine.plan_rollback(KNOWN_GOOD)))
            figures["dry_run_rollback"].append(timed(lambda: dry.append(engine.dry_run_rollback(KNOWN_GOOD))))
            figures["rollback"].append(timed(lambda: engine.rollback(KNOWN_GOOD)))

        print(f"engine on the example migrations, {args.rows} users and projects, median of {args.repeat}")
        for label, values in figures.items():
            print(f"  {label:<18} {statistics.median(values):>10.1f} ms")
        print("  dry-run warnings:", "; ".join(dry[-1].warnings))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        with psycopg.connect(args.url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


if __name__ == "__main__":
    main()
