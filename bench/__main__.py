"""`./dev bench [--size 1g] [--reps N]`: every figure of issue 13 side by side, written to docs/performance.md.

    python -m bench --size 1g                 # P1, P2, restore, P3, P4, P5 on the 1 GB data set
    python -m bench --size tiny --reps 1 --only p2,p3 --doc /tmp/perf.md   # a quick look

The data set is built once per size (bench/dataset.py) and cloned for each run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from bench import dataset, report
from bench.stats import Summary, Verdict, check_backup, check_end_to_end, check_restore, check_rollback, ratio
from core import defaults

FIGURES = ("p1", "p2", "restore", "p3", "p4", "forecast", "p5", "fixed")
DEFAULT_REPS = {"tiny": 3, "0.3g": 3, "1g": 2, "4g": 1}
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
# The stall timeline kept in the results: every slow query, and one in ten of the others (for the plot).
SLOW_SAMPLE_SECONDS = 0.05
KEEP_EVERY_FAST_SAMPLE = 10


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="./dev bench", description=(__doc__ or "").splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(dataset.SIZES), default="1g", help="data set size (default 1g)")
    parser.add_argument("--reps", type=int, help="repetitions per variant (default: 3 up to 0.3g, 2 at 1g, 1 at 4g)")
    parser.add_argument("--only", default=",".join(FIGURES), help=f"comma-separated subset of {','.join(FIGURES)}")
    parser.add_argument("--admin-url", default=os.environ.get("BENCH_POSTGRES_URL", DEFAULT_ADMIN_URL),
                        help="a PostgreSQL superuser connection (default $BENCH_POSTGRES_URL or local postgres)")
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15"),
                        help="a Redis database the run may flush (P1, P5)")
    parser.add_argument("--results-dir", type=Path, default=report.RESULTS_DIR)
    parser.add_argument("--doc", type=Path, default=report.DOC, help="where to write performance.md (plots beside it)")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the data set even if cached")
    parser.add_argument("--merge", action="store_true",
                        help="replace only the figures measured now in the saved results of --size (the rest, "
                             "and the run's date and command, stay; the doc names the update)")
    parser.add_argument("--report-only", action="store_true",
                        help="measure nothing: write the doc and plots again from the saved results of --size")
    parser.add_argument("--db-prefix", default="bench_", help="prefix of every database the run creates")
    parser.add_argument("--reader-seconds", type=float, default=10.0,
                        help="P4: how long the reader holds users (default 10)")
    args = parser.parse_args(argv)
    args.only = [f.strip().lower() for f in args.only.split(",") if f.strip()]
    unknown = sorted(set(args.only) - set(FIGURES))
    if unknown:
        parser.error(f"--only: unknown figure {', '.join(unknown)} (choose from {', '.join(FIGURES)})")
    if args.reps is not None and args.reps < 1:
        parser.error("--reps must be at least 1")
    return args


def say(line: str) -> None:
    print(line, flush=True)


def _version(binary: str) -> str:
    try:
        return subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return f"{binary}: not found"


def machine(admin_url: str) -> dict[str, Any]:
    with psycopg.connect(admin_url) as conn:
        row = conn.execute("SELECT version()").fetchone()
    pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    return {"cpus": os.cpu_count(), "memory_gb": pages * page_size / 1e9, "platform": platform.platform(),
            "postgres": str(row[0]).split(" on ")[0] if row else "?", "pg_dump": _version("pg_dump"),
            "loadavg_start": " ".join(f"{x:.2f}" for x in os.getloadavg())}


def row_counts(url: str) -> dict[str, int]:
    tables = ("users", "projects", "events", "comments", "audit_log", "attachments")
    with psycopg.connect(url) as conn:
        return {t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in tables}  # type: ignore[index]  # noqa: S608


def summarize(figure: str, times: dict[str, list[float]], baseline: str | None = None, *,
              unit: str = "s") -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    base = Summary.of(times[baseline]).median if baseline else None
    for variant, values in times.items():
        summary = Summary.of(values)
        row: dict[str, Any] = {"figure": figure, "variant": variant, "unit": unit, **summary.to_dict()}
        if baseline is not None and base is not None and variant != baseline:
            row["ratio"] = f"{ratio(summary.median, base):.2f}× {baseline.split()[0]}"
        rows.append(row)
    return rows


def merged(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """`old` with the figures and verdicts `new` measured put in their place, and the update recorded."""
    figures = {row["figure"] for row in new["figures"]}
    verdicts = {v["figure"]: v for v in new["verdicts"]}
    result = {**old, **{k: v for k, v in new.items() if k not in (
        "figures", "verdicts", "date", "command", "machine", "reps", "duration_s", "dataset", "size",
        *(() if new.get("stall_timeline") else ("app_clients",)))}}
    result["figures"] = [r for r in old["figures"] if r["figure"] not in figures] + new["figures"]
    order = [v["figure"] for v in old["verdicts"]]
    result["verdicts"] = [verdicts.get(v["figure"], v) for v in old["verdicts"]] + [
        v for name, v in verdicts.items() if name not in order]
    result["updates"] = [*old.get("updates", []), {
        "date": new["date"], "command": new["command"], "figures": sorted(figures), "reps": new["reps"],
        "loadavg": f"{new['machine']['loadavg_start']} / {new['machine'].get('loadavg_end', '?')}"}]
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report_only:
        return write_report(json.loads(report.results_path(args.size, args.results_dir).read_text()), args)
    return run(args, argv)


def write_report(results: dict[str, Any], args: argparse.Namespace) -> int:
    plots = report.plot(report.load_all(args.results_dir), results, args.doc.parent)
    report.write_doc(results, plots, args.doc)
    say("")
    say("\n".join(report.verdict_table(results)))
    say(f"\nbench: wrote {args.doc} and {', '.join(plots) or 'no plots'}")
    return 0


def run(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    dataset.use_prefix(args.db_prefix)
    size = dataset.SIZES[args.size]
    reps = args.reps or DEFAULT_REPS[args.size]
    started = time.monotonic()
    results: dict[str, Any] = {
        "size": size.name, "reps": reps, "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "./dev bench " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "machine": machine(args.admin_url), "figures": [], "verdicts": [], "app_clients": 0,
    }
    say(f"bench: size {size.name}, {reps} repetition(s), figures {','.join(args.only)}; "
        f"load average {results['machine']['loadavg_start']}")
    template = dataset.ensure_template(args.admin_url, size, say=say, rebuild=args.rebuild)
    template_url = dataset.database_url(args.admin_url, template)
    results["dataset"] = {"size": size.name, "bytes": dataset.size_on_disk(args.admin_url, template),
                          "rows": row_counts(template_url)}
    work = Path(tempfile.mkdtemp(prefix="bench-run-"))
    medians: dict[str, dict[str, float]] = {}
    try:
        if "p1" in args.only:
            from bench import ack

            say("P1: signed slash commands and clicks through `python -m bot`")
            ack_rows, verdict = ack.measure(args.redis_url, reps, say)
            results["figures"] += ack_rows
            results["verdicts"].append(verdict.to_dict())
        if {"p2", "restore", "p5"} & set(args.only):
            from bench import backups

            say("P2: backup")
            backup_times, archives = backups.measure_backups(template_url, work, reps, say)
            results["figures"] += summarize("P2 backup", backup_times, "playbook pg_dump | gzip")
            results["archive_bytes"] = archives.sizes
            medians["P2"] = {k: Summary.of(v).median for k, v in backup_times.items()}
            product, playbook = medians["P2"]["product"], medians["P2"]["playbook pg_dump | gzip"]
            floor = medians["P2"]["floor pg_dump -Fc -Z0"]
            results["verdicts"].append(Verdict(
                "P2 backup", "≤ 0.25× the playbook",
                f"{ratio(product, playbook):.2f}× the playbook, {ratio(product, floor):.2f}× the floor",
                check_backup(product, playbook)).to_dict())
            if "restore" in args.only:
                say("restore")
                restore_times = backups.measure_restores(args.admin_url, template, archives, work, reps, say)
                results["figures"] += summarize("restore", restore_times, "playbook gunzip | psql")
                m = {k: Summary.of(v).median for k, v in restore_times.items()}
                results["verdicts"].append(Verdict(
                    "restore", "≤ 0.7× the playbook",
                    f"{ratio(m['product'], m['playbook gunzip | psql']):.2f}× the playbook, "
                    f"{ratio(m['product'], m['floor pg_restore -j']):.2f}× the floor",
                    check_restore(m["product"], m["playbook gunzip | psql"])).to_dict())
        if {"p3", "p5"} & set(args.only):
            from bench import rollbacks

            say("P3: rollback")
            rollback_times = rollbacks.measure_rollbacks(args.admin_url, template, reps, say)
            results["figures"] += summarize("P3 rollback", rollback_times, "psql -1 -f down.sql")
            m = {k: Summary.of(v).median for k, v in rollback_times.items()}
            medians["P3"] = m
            product, psql = m["product run-migrations"], m["psql -1 -f down.sql"]
            results["verdicts"].append(Verdict(
                "P3 rollback", "≤ 1.1× psql + 100 ms",
                f"{ratio(product, psql):.2f}× psql ({product - psql:+.2f} s)", check_rollback(product, psql)).to_dict())
        forecast_s: float | None = None
        if "forecast" in args.only:
            from bench import bench_forecast

            say("forecast: the dry run's lock-impact forecast against the real run's app stall (issue 12)")
            rows, verdicts, runs = bench_forecast.measure(args.admin_url, template, size.users, reps, say,
                                                          reader_seconds=args.reader_seconds)
            results["figures"] += rows
            results["verdicts"] += verdicts
            results["forecast_runs"] = [r.to_dict() for r in runs]
            forecast_s = Summary.of([r.forecast_s for r in runs]).median
        if "p4" in args.only:
            from bench import rollbacks

            say(f"P4: application stall ({rollbacks.APP_CLIENTS} clients on users, a reader holding users "
                f"{args.reader_seconds:.0f} s)")
            stall_times, last = rollbacks.measure_stalls(args.admin_url, template, size.users, reps, say,
                                                         reader_seconds=args.reader_seconds)
            results["figures"] += summarize("P4 app stall (worst wait)", stall_times, "naive psql -1 -f down.sql")
            results["app_clients"] = rollbacks.APP_CLIENTS
            results["stall_timeline"] = {
                name: {"samples": [(round(t, 3), round(latency, 4)) for i, (t, latency) in enumerate(run.samples)
                                   if latency >= SLOW_SAMPLE_SECONDS or i % KEEP_EVERY_FAST_SAMPLE == 0],
                       "rollback_start": run.rollback_start, "rollback_end": run.rollback_end,
                       "reader_start": run.reader_start, "reader_end": run.reader_end,
                       "reader_seconds": args.reader_seconds}
                for name, run in last.items()}
            m = {k: Summary.of(v).median for k, v in stall_times.items()}
            product_stall = m["product run-migrations"]
            lock_timeout_s = defaults.LOCK_TIMEOUT_MS / 1000
            forecast_text = ("forecast not measured (add `forecast` to --only)" if forecast_s is None else
                             f"forecast {forecast_s:.1f} s + lock_timeout {lock_timeout_s:g} s = "
                             f"{forecast_s + lock_timeout_s:.1f} s")
            results["verdicts"].append(Verdict(
                "P4 app stall", "worst wait ≤ lock_timeout + the forecast",
                f"{product_stall:.1f} s (naive psql {m['naive psql -1 -f down.sql']:.1f} s); {forecast_text}",
                None if forecast_s is None else product_stall <= forecast_s + lock_timeout_s).to_dict())
        if "p5" in args.only:
            from bench import end_to_end

            say("P5: Approve click → verified, real bot and worker")
            times, floors, breakdown = end_to_end.measure(args.admin_url, template, args.redis_url, reps, say,
                                               backup_floor=medians["P2"]["floor pg_dump -Fc -Z0"],
                                               rollback_floor=medians["P3"]["psql -1 -f down.sql"])
            rows = summarize("P5 end to end", times)
            floor_sum = sum(floors.values())
            median = float(rows[0]["median"])
            rows[0]["ratio"] = f"{ratio(median, floor_sum):.2f}× floors"
            results["figures"] += rows
            results["p5_floors"] = floors
            results["p5_steps"] = breakdown
            say("  P5 steps (median s): " + ", ".join(f"{k} {v:.1f}" for k, v in breakdown.items()))
            results["verdicts"].append(Verdict(
                "P5 end to end", "≤ 1.2× (P2 + P3 + verification floors)",
                f"{ratio(median, floor_sum):.2f}× ({median:.1f} s against {floor_sum:.1f} s = "
                + " + ".join(f"{k} {v:.1f}" for k, v in floors.items()) + ")",
                check_end_to_end(median, floor_sum)).to_dict())
        if "fixed" in args.only:
            from bench import fixed_cost

            say("rollback fixed cost (tiny data set)")
            results["fixed_cost"] = fixed_cost.measure(args.admin_url, say)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["machine"]["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    results["duration_s"] = round(time.monotonic() - started, 1)
    say(f"bench: {results['duration_s']:.0f} s")
    if args.merge and report.results_path(size.name, args.results_dir).exists():
        results = merged(json.loads(report.results_path(size.name, args.results_dir).read_text()), results)
    saved = report.save_results(results, args.results_dir)
    say(f"bench: results in {saved}")
    return write_report(results, args)


if __name__ == "__main__":
    sys.exit(main())
