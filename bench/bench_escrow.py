"""Benchmark: what data-loss escrow costs, against a plain `CREATE TABLE AS` copy of the same data. Run by hand:

    python -m bench.bench_escrow [--size 0.3g] [--reps 5] [--admin-url postgresql://postgres@127.0.0.1:5432/postgres]

On a clone of bench/'s realistic data set, inside one transaction that is always rolled back, it walks the
bench migrations' down scripts newest first, as a rollback of everything would: the bad migration (a dropped
table keyed to users, two dropped columns, two big UPDATEs), the index and key migrations, then the schema
migration's DROP TABLE of every table. Before each destructive statement it times

- escrow: what the engine does before the statement (`escrow.Recorder.before`: parse with the live catalog,
  copy, measure, write the manifest row), and
- plain copy: a hand-written `CREATE TABLE ... AS SELECT` of the same rows and columns, nothing else,

in alternating order per repetition (no parallel workers for either), then runs the statement. It prints
each statement's medians and the totals (fastest round and median round); the issue's bar is escrow ≤ 1.2 ×
plain copy. On a shared machine the rounds vary by tens of percent: use enough repetitions.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any, LiteralString

import psycopg
from psycopg import sql

from bench import dataset
from workers.engine import escrow, scripts

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BAR = 1.2

# The destroyed data of each destructive statement of the down scripts, copied by hand (what escrow must match).
PLAIN_COPIES: dict[str, tuple[LiteralString, ...]] = {
    "DROP TABLE user_badges": ("SELECT * FROM user_badges",),
    "ALTER TABLE users DROP COLUMN plan_tier": ("SELECT id, plan_tier FROM users",
                                                "SELECT id, onboarding_state FROM users"),
    "UPDATE users SET status": ("SELECT id, status FROM users WHERE status = 'migrated'",),
    "UPDATE events SET kind": ("SELECT id, kind FROM events WHERE kind LIKE '%\\_%'",),
    "DROP TABLE attachments": ("SELECT * FROM attachments", "SELECT * FROM audit_log", "SELECT * FROM comments",
                               "SELECT * FROM events", "SELECT * FROM projects", "SELECT * FROM users"),
}


def _plain(statement: str) -> tuple[LiteralString, ...]:
    text = " ".join(statement.split())
    for prefix, copies in PLAIN_COPIES.items():
        if text.startswith(prefix):
            return copies
    return ()


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def one_round(url: str, escrow_first: bool, round_no: int) -> dict[str, tuple[float, float, int]]:
    """{statement: (escrow seconds, plain copy seconds, bytes escrowed)} for one walk, rolled back at the end."""
    disk = scripts.load(dataset.MIGRATIONS_DIR)
    out: dict[str, tuple[float, float, int]] = {}
    with psycopg.connect(url) as conn:
        conn.execute("SET statement_timeout = 0")
        # Parallel workers are shared with everything else on the server: whichever copy gets them would win.
        conn.execute("SET max_parallel_workers_per_gather = 0")
        recorder = escrow.Recorder(conn, f"bench-{round_no}", required=False)
        recorder.begin(target_version=None, versions=sorted(disk.migrations), plan_hash="bench", executed_by="bench",
                       approved_by=None)
        for version in sorted(disk.migrations, reverse=True):
            down = disk.migrations[version].down
            assert down is not None
            for index, statement in enumerate(down.statements):
                copies = _plain(statement)
                if copies:
                    def plain(copies: tuple[LiteralString, ...] = copies) -> None:
                        for n, query in enumerate(copies):
                            conn.execute(sql.SQL("CREATE TABLE {} AS {}").format(
                                sql.Identifier(f"plain_{round_no}_{len(out)}_{n}"), sql.SQL(query)))

                    def escrowed(version: str = version, index: int = index, statement: str = statement) -> None:
                        recorder.before(version, index, statement)
                    if escrow_first:
                        e, p = _timed(escrowed), _timed(plain)
                    else:
                        p, e = _timed(plain), _timed(escrowed)
                    key = " ".join(statement.split())[:60]
                    out[key] = (e, p, sum(h.bytes for h in recorder.held if h.version == version
                                          and h.statement_index == index))
                cur = conn.execute(statement.encode())
                recorder.after(cur.rowcount if cur.rowcount >= 0 else None)
        conn.rollback()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--size", default="0.3g", choices=sorted(dataset.SIZES))
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--admin-url", default=os.environ.get("BENCH_POSTGRES_URL", DEFAULT_ADMIN_URL))
    parser.add_argument("--db-prefix", default="bench_")
    args = parser.parse_args(argv)
    dataset.use_prefix(args.db_prefix)
    size = dataset.SIZES[args.size]
    template = dataset.ensure_template(args.admin_url, size)
    name = dataset.scratch_name(f"escrow_{args.size.replace('.', '_')}")
    url = dataset.clone(args.admin_url, template, name)
    try:
        print(f"data set {size.name}: {dataset.size_on_disk(args.admin_url, name) / 1e9:.2f} GB on disk; "
              f"{args.reps} repetitions, alternating which copy runs first")
        rounds = [one_round(url, escrow_first=(r % 2 == 0), round_no=r) for r in range(args.reps)]
    finally:
        dataset.drop(args.admin_url, name)
    print(f"{'statement':<62} {'escrowed':>10} {'escrow s':>9} {'plain s':>9} {'ratio':>6}")
    totals_e, totals_p = [], []
    for key in rounds[0]:
        e = statistics.median(r[key][0] for r in rounds)
        p = statistics.median(r[key][1] for r in rounds)
        print(f"{key:<62} {rounds[0][key][2] / 1e6:>8.1f}MB {e:>9.3f} {p:>9.3f} {e / p:>6.2f}")
    for r in rounds:
        totals_e.append(sum(v[0] for v in r.values()))
        totals_p.append(sum(v[1] for v in r.values()))
    e, p = statistics.median(totals_e), statistics.median(totals_p)
    held = sum(v[2] for v in rounds[0].values())
    print(f"{'total, fastest round of each':<62} {held / 1e6:>8.1f}MB {min(totals_e):>9.3f} {min(totals_p):>9.3f}"
          f" {min(totals_e) / min(totals_p):>6.2f}")
    print(f"{'total, median of the rounds':<62} {held / 1e6:>8.1f}MB {e:>9.3f} {p:>9.3f} {e / p:>6.2f}")
    print(f"escrow / plain copy = {e / p:.2f} (bar: <= {BAR}) -> {'MEETS' if e / p <= BAR else 'MISSES'} the bar")


if __name__ == "__main__":
    main()
