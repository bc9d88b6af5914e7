"""The run's results: a JSON file per data-set size (bench/results/), docs/performance.md and its plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "bench" / "results"
DOCS_DIR = REPO / "docs"
DOC = DOCS_DIR / "performance.md"
SIZE_PLOT = "performance-size.png"
STALL_PLOT = "performance-stall.png"

# Why a target is missed, when it is: what the figure is made of (read with the numbers above it).
WHY = {
    "P1 ack": "P1 measures `python -m bot` as it is at this commit (gunicorn, gthread workers, since issue 8). "
              "Errors would be resets or late answers when a burst overflows the listen queue; the latency "
              "includes connection set-up and queueing behind up to 200 simultaneous connections on 2 CPUs "
              "shared with the load generator, the Slack stand-in and, on a busy machine, other work. "
              "`python bench/bench_ack.py` also times a do-nothing WSGI app under the same server (the floor), "
              "to tell the server's share from the bot's.",
    "P2 backup": "the product compresses (gzip level 1) and writes a directory archive with 2 jobs, then reads "
                 "it back twice (SHA-256 of every file, `pg_restore --list`); on 2 shared cores the jobs gain "
                 "little. The floor writes nothing and checks nothing; the playbook's `pg_dump | gzip` is "
                 "single-threaded gzip -6 of plain SQL.",
    "restore": "the product checks the archive first (SHA-256, `pg_restore --list`), then either swaps "
               "(`pg_restore -j` into a new database, switched in by one renaming transaction) or, where it "
               "may not, restores in ONE transaction, which is serial; then it counts every table's rows. "
               "On 2 shared CPUs `-j` gains little over the playbook's single psql.",
    "P3 rollback": "the product is a Python process: interpreter start and imports, a connection, the "
                   "advisory lock, reading the bookkeeping, planning with checksums, and history rows; "
                   "psql starts in milliseconds. The fixed cost is measured separately below.",
    "P4 app stall": "the rollback holds ACCESS EXCLUSIVE on users (DROP TABLE with an FK to users) while its "
                    "two big UPDATEs run; lock_timeout bounds only the wait in the queue (issue 12).",
    "forecast": "the forecast extrapolates the statements the bounded dry run did not finish from at most "
                "2 s of each (EXPLAIN row counts and the rate measured so far); on 2 shared cores the rate of a "
                "2 s sample and the real run's own duration both vary with the other work on the machine.",
    "P5 end to end": "the product's chain adds a verified backup (compression, checksum and read-back: P2), "
                     "row counts of the critical tables before and after, RQ hand-offs between steps and "
                     "Slack posts; see where its time goes below.",
}


def results_path(size: str, directory: Path = RESULTS_DIR) -> Path:
    return directory / f"{size}.json"


def save_results(results: dict[str, Any], directory: Path = RESULTS_DIR) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{results['size']}.json"
    path.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    return path


def load_all(directory: Path = RESULTS_DIR) -> list[dict[str, Any]]:
    """Every saved run, one per size, smallest database first (the plot's x axis)."""
    runs = []
    for path in sorted(directory.glob("*.json")):
        try:
            runs.append(json.loads(path.read_text()))
        except ValueError:
            continue
    return sorted(runs, key=lambda r: r.get("dataset", {}).get("bytes", 0))


def _seconds(value: float) -> str:
    if value < 1:
        return f"{value * 1000:.0f} ms"
    return f"{value:.2f} s"


def cell(text: object) -> str:
    """Text for a Markdown table cell (a `|` in `pg_dump | gzip` would end the cell)."""
    return str(text).replace("|", "\\|")


def figures_table(results: dict[str, Any]) -> list[str]:
    lines = ["| figure | variant | median | min | max | ratio | n |", "|---|---|---:|---:|---:|---:|---:|"]
    order = ("P1", "P2", "restore", "P3", "P4", "P5")
    rank = {row["figure"]: next((i for i, p in enumerate(order) if row["figure"].startswith(p)), len(order))
            for row in results["figures"]}
    for row in sorted(results["figures"], key=lambda r: rank[r["figure"]]):  # stable: variants keep their order
        unit = row.get("unit", "s")
        if unit == "ms":
            cells = [f"{row[k]:.1f} ms" for k in ("median", "low", "high")]
        else:
            cells = [_seconds(row[k]) for k in ("median", "low", "high")]
        lines.append(f"| {cell(row['figure'])} | {cell(row['variant'])} | {cells[0]} | {cells[1]} | {cells[2]} | "
                     f"{cell(row.get('ratio', ''))} | {row.get('n', '')} |")
    return lines


def verdict_table(results: dict[str, Any]) -> list[str]:
    lines = ["| figure | target | measured | verdict |", "|---|---|---|---|"]
    for v in results["verdicts"]:
        lines.append(f"| {cell(v['figure'])} | {cell(v['target'])} | {cell(v['measured'])} | **{v['word']}** |")
    return lines


def noise_note(results: dict[str, Any]) -> list[str]:
    """A warning when the machine was oversubscribed: how far apart the repetitions were."""
    machine = results["machine"]
    loads = [float(x) for x in str(machine.get("loadavg_start", "0")).split()[:1] +
             str(machine.get("loadavg_end", "0")).split()[:1]]
    spread = max((row["high"] / row["low"] for row in results["figures"]
                  if row.get("unit", "s") == "s" and row["low"] > 0 and row["n"] > 1), default=1.0)
    if max(loads, default=0) <= (machine.get("cpus") or 1):
        return []
    return [f"> **Noisy run.** The 1-minute load average ({' → '.join(f'{x:.1f}' for x in loads)}) exceeded the "
            f"{machine.get('cpus')} CPUs: other work shared the machine, and repetitions of one variant differ "
            f"by up to {spread:.1f}× (min against max below). Ratios within the run cancel some of it, not all; "
            "re-run on a quiet machine before quoting a figure.", ""]


def write_doc(results: dict[str, Any], plots: list[str], path: Path = DOC) -> Path:
    machine, data = results["machine"], results["dataset"]
    lines = [
        "# Performance",
        "",
        "Written by `./dev bench` (bench/__main__.py); do not edit by hand, re-run it. Targets are issue 13's.",
        "",
        f"- **Date:** {results['date']}",
        f"- **Command:** `{results['command']}`",
        f"- **Machine:** {machine['cpus']} CPUs, {machine['memory_gb']:.0f} GB RAM, {machine['postgres']}, "
        f"{machine['pg_dump']}",
        f"- **Load average at start / end:** {machine['loadavg_start']} / {machine.get('loadavg_end', '?')} "
        f"(the machine is shared: other work ran at the same time; ratios within the run cancel most of it)",
        f"- **Data set:** `{data['size']}`, {data['bytes'] / 1e9:.2f} GB on disk "
        f"({', '.join(f'{t} {n:,}' for t, n in data['rows'].items())} rows); "
        f"built by bench/dataset.py, migrations in bench/migrations/",
        f"- **Repetitions:** {results['reps']} per variant, interleaved (A, B, A, B); median, min and max",
        *[f"- **Re-measured later:** {', '.join(u['figures'])} on {u['date']} with `{u['command']}` "
          f"({u['reps']} repetition(s), load average {u['loadavg']})" for u in results.get("updates", [])],
        "",
        *noise_note(results),
        "## Data set",
        "",
        "A SaaS-like application (bench/migrations/): `users` (uuid, email, name, status, country, bio, jsonb "
        "settings, inet, timestamps), `projects`, and per user about 6 `events` (jsonb payloads of four "
        "shapes), 3 `comments` (free text, tags), 4 `audit_log` rows (inet, user agent) and 0.25 "
        "`attachments` (random bytea); btree and GIN indexes, foreign keys. Text is drawn from ~220k "
        "made-up words with a Zipf-like skew. The rollback reverts `2026_02_10_150000`, whose down script "
        "drops `user_badges` (a foreign key to users: ACCESS EXCLUSIVE on users), drops two columns of "
        "users, puts every migrated user back to active (~70% of users) and reverts a backfill on "
        "events (~all rows).",
        "",
        "## Targets",
        "",
        *verdict_table(results),
        "",
        "When a target is missed, why:",
        "",
        *[f"- **{v['figure']}**: {WHY.get(v['figure'], '')}" for v in results["verdicts"] if v["met"] is False],
        "",
        "## All figures",
        "",
        "Ratios are the product's median over the other variant's median, both from this run.",
        "",
        *figures_table(results),
        "",
    ]
    if results.get("p5_steps"):
        lines += ["## Where P5's time goes", "",
                  "Median seconds of each step of the pipeline, from its *started* and *finished* posts in the "
                  "thread; the floors it is compared with: "
                  + ", ".join(f"{k} {v:.1f} s" for k, v in results.get("p5_floors", {}).items()) + ".", "",
                  "| step | seconds |", "|---|---:|",
                  *[f"| {step} | {took:.1f} |" for step, took in results["p5_steps"].items()], ""]
    if results.get("fixed_cost"):
        lines += ["## Where a rollback's fixed cost goes", "", *results["fixed_cost"], ""]
    for plot in plots:
        lines += [f"![{plot}]({plot})", ""]
    lines += [
        "## How to reproduce",
        "",
        "```bash",
        f"./dev bench --size {data['size']}        # add --reps N; --only p2,restore,p3 for a subset",
        "./dev bench --size 0.3g && ./dev bench --size 1g && ./dev bench --size 4g   # the size plot's points",
        "```",
        "",
        "The data set is built once per size and kept as the database `bench_tpl_<size>` (rebuilt when the",
        "generator or bench/migrations change; `--rebuild` forces it). Each run clones it, so every",
        "repetition starts from the same state. Results per size are kept in bench/results/<size>.json; the",
        "size plot draws every size found there. The benchmarks are not part of `./dev test`; a smoke run",
        "of the harness is (tests/test_bench_smoke.py).",
        "",
    ]
    path.write_text("\n".join(lines))
    return path


def plot(results_by_size: list[dict[str, Any]], latest: dict[str, Any], directory: Path = DOCS_DIR) -> list[str]:
    """The size plot (backup and restore variants against database size) and the stall plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    series: dict[str, list[tuple[float, float]]] = {}
    for run in results_by_size:
        gb = run["dataset"]["bytes"] / 1e9
        for row in run["figures"]:
            if row["figure"] in ("P2 backup", "restore"):
                series.setdefault(f"{row['figure']}: {row['variant']}", []).append((gb, row["median"]))
    if series:
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
        for ax, figure in zip(axes, ("P2 backup", "restore"), strict=True):
            for label, points in sorted(series.items()):
                if not label.startswith(figure + ":"):
                    continue
                xs, ys = zip(*sorted(points), strict=True)
                ax.plot(xs, ys, marker="o", label=label.split(": ", 1)[1])
                ax.annotate(f"{ys[-1]:.1f} s", (xs[-1], ys[-1]), textcoords="offset points", xytext=(6, 0),
                            fontsize=8, va="center")
            ax.set_title(f"{'Backup' if figure == 'P2 backup' else 'Restore'}: time against database size")
            ax.set_xlabel("database size on disk (GB)")
            ax.set_ylabel("seconds (median)")
            ax.set_xlim(0, max((p[0] for pts in series.values() for p in pts), default=1) * 1.15)
            ax.set_ylim(bottom=0)
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8, loc="upper left")
        fig.suptitle(f"rollback-bot benchmarks, {latest['machine']['cpus']} CPUs, {latest['date'][:10]}",
                     fontsize=10)
        fig.tight_layout()
        fig.savefig(directory / SIZE_PLOT, dpi=110)
        plt.close(fig)
        written.append(SIZE_PLOT)

    stall = latest.get("stall_timeline") or {}
    if stall:
        fig, axes = plt.subplots(len(stall), 1, figsize=(12, 3.2 * len(stall) + 0.6), sharex=True, sharey=True,
                                 squeeze=False)
        colors = {"product run-migrations": "tab:blue", "naive psql -1 -f down.sql": "tab:red"}
        ordered = sorted(stall.items(), key=lambda item: not item[0].startswith("product"))  # product on top
        for ax, (name, run) in zip(axes[:, 0], ordered, strict=True):
            color = colors.get(name, "tab:gray")
            starts = [t for t, _ in run["samples"]]
            waits = [latency for _, latency in run["samples"]]
            ax.scatter(starts, [w * 1000 for w in waits], s=5, alpha=0.5, color=color)
            # A query that waited is drawn as a bar from when it was sent to when it was answered.
            for t, w in run["samples"]:
                if w >= 0.1:
                    ax.plot([t, t + w], [w * 1000, w * 1000], color=color, linewidth=1.2, alpha=0.7)
            ax.axvspan(run["rollback_start"], run["rollback_end"], color=color, alpha=0.08)
            reader_end = run.get("reader_end") or run["reader_start"] + run.get("reader_seconds", 10)
            ax.axvspan(run["reader_start"], reader_end, ymin=0, ymax=0.04, color="gray", alpha=0.5)
            ax.set_yscale("log")
            ax.set_ylim(0.05, max(20_000, max(waits, default=0) * 1500))
            ax.grid(alpha=0.3, which="both")
            ax.set_title(f"{name}: worst wait {max(waits, default=0):.1f} s "
                         f"(shaded: the rollback runs; gray bar: the reader holds users)", fontsize=10)
            ax.set_ylabel("query latency (ms)")
        axes[-1, 0].set_xlabel("seconds since the application load started "
                               "(a line: a query's wait, from sent to answered)")
        fig.suptitle(f"Application latency during a rollback: {latest['dataset']['size']} data set, "
                     f"{latest.get('app_clients', 8)} clients reading and writing users by id", fontsize=11)
        fig.tight_layout()
        fig.savefig(directory / STALL_PLOT, dpi=110)
        plt.close(fig)
        written.append(STALL_PLOT)
    return written
