"""The lock-impact forecast against what the application really waits (issue 12), side by side.

Per repetition, on a fresh copy of the data set, with the P4 application load running (clients reading
and writing `users` by primary key):

1. the dry run (`run-migrations --rollback --to <known-good> --dry-run --json`), while a reader holds
   `users` for 10 s so that the dry run also has to queue for its lock: its own worst app wait is the
   "dry-run stall" (target: ≤ the dry run's lock_timeout + its budget);
2. once the reader is gone, the real rollback (`run-migrations --rollback --to <known-good>`): the app's
   worst wait during it is the "measured stall";
3. the forecast is the dry run's blocked time for `users` (reads or writes, whichever is longer): target
   within ±25% of the measured stall.

    python -m bench.bench_forecast --size 1g --reps 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import psycopg

from bench import dataset
from bench.rollbacks import RUN_MIGRATIONS, AppLoad, _hold_users, product_command
from bench.stats import Summary, Verdict
from core import defaults

APP_TABLE = "users"
TOLERANCE = 0.25
READER_SECONDS = 10.0


@dataclass(frozen=True)
class ForecastRun:
    forecast_s: float
    estimated: bool
    measured_stall_s: float
    dry_run_stall_s: float
    dry_run_s: float
    rollback_s: float
    dry_run_budget_s: float
    dry_run_lock_timeout_s: float
    lines: tuple[str, ...]
    statements: tuple[tuple[str, float, bool], ...] = ()  # the dry run's (statement, ms, estimated)
    measured_statements: tuple[tuple[str, float], ...] = ()  # the real run's (statement, ms)

    @property
    def error(self) -> float:
        """Forecast against measurement: +0.10 means the forecast is 10% too long."""
        return self.forecast_s / self.measured_stall_s - 1 if self.measured_stall_s else float("inf")

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "lines": list(self.lines), "error": round(self.error, 3),
                "statements": [list(s) for s in self.statements],
                "measured_statements": [list(s) for s in self.measured_statements]}


def dry_run_command(budget_ms: int) -> list[str]:
    return [str(RUN_MIGRATIONS), "--rollback", "--to", dataset.KNOWN_GOOD, "--dir", str(dataset.MIGRATIONS_DIR),
            "--actor", "bench", "--dry-run", "--json", "--dry-run-budget", str(budget_ms)]


def _run(argv: list[str], url: str) -> tuple[float, str]:
    env = {**os.environ, "DATABASE_URL": url}
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stderr.strip()[-400:]}")
    return seconds, done.stdout


def _worst_between(load: AppLoad, start: float, end: float) -> float:
    """The longest app query that was waiting at some moment between start and end (seconds since t0)."""
    with load._lock:  # noqa: SLF001  (the load's own sample lock)
        samples = list(load.samples)
    return max((latency for begun, latency in samples if begun <= end and begun + latency >= start), default=0.0)


def _forecast_of(report: dict[str, Any]) -> tuple[float, bool, tuple[str, ...]]:
    forecast = report.get("forecast") or {}
    for table in forecast.get("tables") or []:
        if table["relation"] == APP_TABLE:
            worst = max(table["reads_blocked_ms"], table["writes_blocked_ms"]) / 1000
            return worst, bool(table["estimated"]), tuple(forecast.get("lines") or ())
    return 0.0, bool(forecast.get("estimated")), tuple(forecast.get("lines") or ())


def _settle(admin_url: str) -> None:
    """Let the copy of the data set reach the disk first: its writeback would otherwise slow whichever
    of the dry run's short samples or the real run happens to overlap it (the copy is not measured)."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
    os.sync()


def once(admin_url: str, template: str, users: int, budget_ms: int, *,
         reader_seconds: float = READER_SECONDS) -> ForecastRun:
    name = dataset.scratch_name("forecast")
    url = dataset.clone(admin_url, template, name)
    try:
        _settle(admin_url)
        t0 = time.perf_counter()
        with AppLoad(url, users, t0) as load:
            time.sleep(1.0)
            ready = threading.Event()
            reader = threading.Thread(target=_hold_users, args=(url, reader_seconds, ready, []), daemon=True)
            reader.start()
            ready.wait(30)
            time.sleep(0.5)
            dry_start = time.perf_counter() - t0
            dry_s, out = _run(dry_run_command(budget_ms), url)
            dry_end = time.perf_counter() - t0
            reader.join(timeout=reader_seconds + 30)
            time.sleep(1.0)
            run_start = time.perf_counter() - t0
            rollback_s, run_out = _run([*product_command(), "--json"], url)
            run_end = time.perf_counter() - t0
            time.sleep(1.0)
        if load.errors:
            raise RuntimeError(f"the application load failed: {load.errors[0]}")
        report = json.loads(out)
        forecast_s, estimated, lines = _forecast_of(report)
        statements = tuple((s["sql"][:60], s["duration_ms"], s["estimated"])
                           for s in (report.get("forecast") or {}).get("statements") or [])
        return ForecastRun(
            forecast_s=forecast_s, estimated=estimated, measured_stall_s=_worst_between(load, run_start, run_end),
            dry_run_stall_s=_worst_between(load, dry_start, dry_end), dry_run_s=dry_s, rollback_s=rollback_s,
            dry_run_budget_s=budget_ms / 1000, dry_run_lock_timeout_s=min(defaults.LOCK_TIMEOUT_MS,
                                                                         defaults.DRY_RUN_LOCK_TIMEOUT_MS) / 1000,
            lines=lines, statements=statements,
            measured_statements=tuple((s["sql"][:60], s["duration_ms"]) for s in json.loads(run_out)["statements"]))
    finally:
        dataset.drop(admin_url, name)


def measure(admin_url: str, template: str, users: int, reps: int, say: dataset.Say, *,
            budget_ms: int = defaults.DRY_RUN_BUDGET_MS, reader_seconds: float = READER_SECONDS) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                                                  list[ForecastRun]]:
    """(figure rows, verdicts, runs) in the shape bench/__main__.py writes to the results."""
    runs: list[ForecastRun] = []
    for rep in range(reps):
        run = once(admin_url, template, users, budget_ms, reader_seconds=reader_seconds)
        runs.append(run)
        say(f"  forecast rep {rep + 1}/{reps}: forecast {run.forecast_s:.1f} s"
            f"{' (estimated)' if run.estimated else ''}, measured stall {run.measured_stall_s:.1f} s "
            f"({run.error:+.0%}), dry-run stall {run.dry_run_stall_s:.1f} s, dry run {run.dry_run_s:.1f} s, "
            f"rollback {run.rollback_s:.1f} s")
    rows = []
    for variant, values in (("forecast (dry run, users)", [r.forecast_s for r in runs]),
                            ("measured app stall (real run)", [r.measured_stall_s for r in runs]),
                            ("dry run's own app stall", [r.dry_run_stall_s for r in runs])):
        rows.append({"figure": "forecast", "variant": variant, "unit": "s", **Summary.of(values).to_dict()})
    worst_error = max((abs(r.error) for r in runs), default=float("inf"))
    bound = runs[0].dry_run_lock_timeout_s + runs[0].dry_run_budget_s if runs else 0.0
    worst_dry = max((r.dry_run_stall_s for r in runs), default=0.0)
    verdicts = [
        Verdict("forecast", "within ±25% of the measured app stall",
                ", ".join(f"{r.forecast_s:.1f} s against {r.measured_stall_s:.1f} s ({r.error:+.0%})" for r in runs),
                worst_error <= TOLERANCE).to_dict(),
        Verdict("dry-run stall", f"≤ lock_timeout + budget = {bound:.0f} s",
                f"worst {worst_dry:.1f} s", worst_dry <= bound).to_dict(),
    ]
    return rows, verdicts, runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_forecast", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--size", choices=sorted(dataset.SIZES), default="1g")
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--budget-ms", type=int, default=defaults.DRY_RUN_BUDGET_MS)
    parser.add_argument("--admin-url", default=os.environ.get("BENCH_POSTGRES_URL",
                                                              "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--db-prefix", default="bench_")
    parser.add_argument("--reader-seconds", type=float, default=READER_SECONDS,
                        help="how long the reader holds users during the dry run (default 10)")
    parser.add_argument("--json", metavar="PATH", help="also write the runs as JSON here")
    args = parser.parse_args(argv)
    dataset.use_prefix(args.db_prefix)
    size = dataset.SIZES[args.size]

    def say(line: str) -> None:
        print(line, flush=True)

    template = dataset.ensure_template(args.admin_url, size, say=say)
    rows, verdicts, runs = measure(args.admin_url, template, size.users, args.reps, say, budget_ms=args.budget_ms,
                                   reader_seconds=args.reader_seconds)
    say("")
    say(f"{'rep':>3}  {'forecast':>9}  {'measured':>9}  {'error':>6}  {'dry-run stall':>13}  bound")
    for i, r in enumerate(runs, 1):
        say(f"{i:>3}  {r.forecast_s:>8.1f}s  {r.measured_stall_s:>8.1f}s  {r.error:>+6.0%}  "
            f"{r.dry_run_stall_s:>12.1f}s  {r.dry_run_lock_timeout_s + r.dry_run_budget_s:.0f} s")
    for v in verdicts:
        say(f"{v['figure']}: {v['measured']} — target {v['target']}: {'met' if v['met'] else 'MISSED'}")
    if runs:
        say("card lines of the last dry run:")
        for line in runs[-1].lines:
            say(f"  {line}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"size": size.name, "runs": [r.to_dict() for r in runs], "rows": rows, "verdicts": verdicts},
                      f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
