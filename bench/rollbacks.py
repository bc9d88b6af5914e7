"""P3 (rollback time) and P4 (how long the application stalls during a rollback).

- P3, product: `run-migrations --rollback --to <known-good>` as an operator types it (a new process).
- P3, psql: `psql -1 -f down.sql` plus the playbook's bookkeeping (UPDATE schema_migrations, INSERT
  into migration_history) in the same single transaction (Method 2).
- P4: an application load (clients reading and writing `users` by primary key, pgbench-style) and a
  reader that holds `users` for 10 s (a report, a long transaction) are running when the rollback
  starts; each application query's latency is recorded. The worst wait is the figure.
Each run gets a fresh copy of the data set (cloning is not timed).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from bench import dataset
from bench.stats import run_interleaved

RUN_MIGRATIONS = Path(sys.executable).with_name("run-migrations")
ROLLBACK_VARIANTS = ("product run-migrations", "psql -1 -f down.sql")
STALL_VARIANTS = ("product run-migrations", "naive psql -1 -f down.sql")
APP_CLIENTS = 8
APP_THINK_SECONDS = 0.01
READER_HOLD_SECONDS = 10


def bad_down_script() -> Path:
    return next(dataset.MIGRATIONS_DIR.glob(f"{dataset.BAD_VERSION}_*")) / "down.sql"


def product_command() -> list[str]:
    return [str(RUN_MIGRATIONS), "--rollback", "--to", dataset.KNOWN_GOOD, "--dir", str(dataset.MIGRATIONS_DIR),
            "--actor", "bench"]


def psql_command(url: str) -> list[str]:
    """The playbook's Method 2 as one psql run: the down script and the bookkeeping in one transaction."""
    version = sql.Literal(dataset.BAD_VERSION)
    mark = sql.SQL("UPDATE schema_migrations SET status = 'rolled_back', rolled_back_at = now()"
                   " WHERE version = {}").format(version)
    record = sql.SQL("INSERT INTO migration_history (version, operation, status, executed_by, executed_at)"
                     " VALUES ({}, 'rollback', 'completed', 'bench', now())").format(version)
    return ["psql", "--no-password", "-X", "-q", "-1", "-v", "ON_ERROR_STOP=1", "-d", url,
            "-f", str(bad_down_script()), "-c", mark.as_string(None), "-c", record.as_string(None)]


def _run(argv: list[str], url: str) -> float:
    env = {**os.environ, "DATABASE_URL": url}
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stderr.strip()[-400:]}")
    return seconds


def _rolled_back(url: str) -> bool:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT status FROM schema_migrations WHERE version = %s", (dataset.BAD_VERSION,)).fetchone()
        migrated = conn.execute("SELECT count(*) FROM users WHERE status = 'migrated'").fetchone()
    return bool(row and row[0] == "rolled_back" and migrated and migrated[0] == 0)


def measure_rollbacks(admin_url: str, template: str, reps: int, say: dataset.Say) -> dict[str, list[float]]:
    def variant(build_argv: object) -> object:
        def run(rep: int) -> float:
            url = dataset.clone(admin_url, template, dataset.scratch_name("rollback"))
            try:
                seconds = _run(build_argv(url), url)  # type: ignore[operator]
                if not _rolled_back(url):
                    raise RuntimeError("the rollback did not leave the database rolled back")
                return seconds
            finally:
                dataset.drop(admin_url, dataset.scratch_name("rollback"))
        return run

    variants = {ROLLBACK_VARIANTS[0]: variant(lambda url: product_command()),
                ROLLBACK_VARIANTS[1]: variant(psql_command)}
    return run_interleaved(variants, reps, say, "rollback ")  # type: ignore[arg-type]


# --- P4: the application's view --------------------------------------------------------------------


@dataclass
class StallRun:
    samples: list[tuple[float, float]] = field(default_factory=list)  # (start s since t0, latency s)
    rollback_start: float = 0.0
    rollback_end: float = 0.0
    reader_start: float = 0.0
    reader_end: float = 0.0

    @property
    def worst_wait(self) -> float:
        return max((latency for _, latency in self.samples), default=0.0)


class AppLoad:
    """APP_CLIENTS threads, each on its own connection: a read or a write of one user by id, in turn."""

    def __init__(self, url: str, users: int, t0: float) -> None:
        self.url, self.users, self.t0 = url, users, t0
        self.samples: list[tuple[float, float]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(APP_CLIENTS)]

    def __enter__(self) -> AppLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=120)

    def _client(self, number: int) -> None:
        rng = random.Random(number)
        try:
            with psycopg.connect(self.url, autocommit=True, application_name="bench-app") as conn:
                write = False
                while not self._stop.is_set():
                    user_id = rng.randint(1, self.users)
                    started = time.perf_counter()
                    if write:
                        conn.execute("UPDATE users SET last_login_at = now() WHERE id = %s", (user_id,))
                    else:
                        conn.execute("SELECT id, email, status FROM users WHERE id = %s", (user_id,)).fetchone()
                    ended = time.perf_counter()
                    with self._lock:
                        self.samples.append((started - self.t0, ended - started))
                    write = not write
                    self._stop.wait(APP_THINK_SECONDS)
        except psycopg.Error as exc:
            self.errors.append(str(exc).splitlines()[0])


def _hold_users(url: str, seconds: float, started: threading.Event, ended: list[float]) -> None:
    with psycopg.connect(url, application_name="bench-reader") as conn:
        conn.execute("SELECT count(*) FROM users").fetchone()
        started.set()
        conn.execute("SELECT pg_sleep(%s)", (seconds,))
        conn.rollback()
        ended.append(time.perf_counter())


def stall_once(admin_url: str, template: str, users: int, argv_of: object, *,
               reader_seconds: float = READER_HOLD_SECONDS) -> StallRun:
    url = dataset.clone(admin_url, template, dataset.scratch_name("rollback"))
    try:
        t0 = time.perf_counter()
        run = StallRun()
        with AppLoad(url, users, t0) as load:
            time.sleep(1.0)
            reader_ready = threading.Event()
            reader_ended: list[float] = []
            reader = threading.Thread(target=_hold_users, args=(url, reader_seconds, reader_ready, reader_ended),
                                      daemon=True)
            run.reader_start = time.perf_counter() - t0
            reader.start()
            reader_ready.wait(30)
            time.sleep(0.5)
            run.rollback_start = time.perf_counter() - t0
            _run(argv_of(url), url)  # type: ignore[operator]
            run.rollback_end = time.perf_counter() - t0
            reader.join(timeout=reader_seconds + 30)
            run.reader_end = (reader_ended[0] if reader_ended else time.perf_counter()) - t0
            time.sleep(1.0)
        if load.errors:
            raise RuntimeError(f"the application load failed: {load.errors[0]}")
        run.samples = sorted(load.samples)
        return run
    finally:
        dataset.drop(admin_url, dataset.scratch_name("rollback"))


def measure_stalls(admin_url: str, template: str, users: int, reps: int, say: dataset.Say, *,
                   reader_seconds: float = READER_HOLD_SECONDS) -> tuple[dict[str, list[float]], dict[str, StallRun]]:
    last: dict[str, StallRun] = {}
    argv = {STALL_VARIANTS[0]: lambda url: product_command(), STALL_VARIANTS[1]: psql_command}

    def variant(name: str) -> object:
        def run(rep: int) -> float:
            result = stall_once(admin_url, template, users, argv[name], reader_seconds=reader_seconds)
            last[name] = result
            return result.worst_wait
        return run

    times = run_interleaved({name: variant(name) for name in STALL_VARIANTS}, reps, say,  # type: ignore[misc]
                            "app stall ")
    return times, last
