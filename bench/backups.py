"""P2 (backup) and restore: the product's steps against the playbook's commands and the floors.

- backup, product: `workers.postgres.pg_dump.take_backup` as the pipeline's Backup step calls it (pg_dump with
  the configured format, compression and jobs, then SHA-256 and a `pg_restore --list` read-back).
- backup, playbook: `pg_dump "$URL" | gzip > file.sql.gz` (Step 2).
- backup, floor: `pg_dump -Fc -Z0 "$URL" > /dev/null` (nothing written, nothing checked).
- restore, product: `workers.postgres.pg_restore.restore_backup(into="target")` of the product's archive onto a
  fresh copy of the database, with the restore pipeline's settings (method `auto`, jobs = CPUs, and
  sessions may be ended: the pipeline has turned maintenance on). The database a swap replaces
  (kept by the product for an undo) is dropped after each run, untimed.
- restore, playbook: `gunzip -c file.sql.gz | psql` into an empty database (Method 3, option C).
- restore, floor: `pg_restore -j <CPUs>` of the product's archive into an empty database.
Every variant times only its own command; creating or cloning the database it writes to is not timed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import dataset
from bench.stats import run_interleaved
from core import defaults
from workers.postgres.pg_dump import take_backup
from workers.postgres.pg_restore import restore_backup

BACKUP_VARIANTS = ("product", "playbook pg_dump | gzip", "floor pg_dump -Fc -Z0")
RESTORE_VARIANTS = ("product", "playbook gunzip | psql", "floor pg_restore -j")


@dataclass
class Archives:
    """The newest archive each backup variant wrote, for the restore variants."""

    product: Path | None = None
    playbook: Path | None = None
    sizes: dict[str, int] = field(default_factory=dict)


def _shell(command: str, env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    subprocess.run(["bash", "-o", "pipefail", "-c", command], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def measure_backups(url: str, work: Path, reps: int, say: dataset.Say) -> tuple[dict[str, list[float]], Archives]:
    archives = Archives()
    product_dir = work / "product-backups"

    def product(rep: int) -> float:
        shutil.rmtree(product_dir, ignore_errors=True)
        started = time.perf_counter()
        result = take_backup(url, target="bench", reason="pre-rollback", backup_dir=str(product_dir))
        seconds = time.perf_counter() - started
        archives.product = Path(result.path)
        archives.sizes["product"] = result.size_bytes
        return seconds

    def playbook(rep: int) -> float:
        out = work / "playbook.sql.gz"
        seconds = _shell(f"pg_dump --no-password {_quote(url)} | gzip > {_quote(str(out))}")
        archives.playbook = out
        archives.sizes["playbook pg_dump | gzip"] = out.stat().st_size
        return seconds

    def floor(rep: int) -> float:
        return _shell(f"pg_dump --no-password -Fc -Z0 {_quote(url)} > /dev/null")

    variants = dict(zip(BACKUP_VARIANTS, (product, playbook, floor), strict=True))
    return run_interleaved(variants, reps, say, "backup  "), archives


def measure_restores(admin_url: str, template: str, archives: Archives, work: Path, reps: int,
                     say: dataset.Say) -> dict[str, list[float]]:
    assert archives.product is not None and archives.playbook is not None
    product_archive, playbook_file = archives.product, archives.playbook
    target_db, empty_db = dataset.scratch_name("restore_target"), dataset.scratch_name("restore_empty")
    jobs = os.cpu_count() or 2
    methods: dict[str, int] = {}

    def product(rep: int) -> float:
        url = dataset.clone(admin_url, template, target_db)
        replaced: str | None = None
        try:
            started = time.perf_counter()
            result = restore_backup(url, product_archive.name, into="target", backup_dir=str(product_archive.parent),
                                    target="bench", jobs=jobs, method=defaults.RESTORE_METHOD, end_sessions=True)
            seconds = time.perf_counter() - started
            replaced = result.replaced_database
            methods[result.method] = methods.get(result.method, 0) + 1
            return seconds
        finally:
            dataset.drop(admin_url, target_db)
            if replaced:
                dataset.drop(admin_url, replaced)

    def empty() -> str:
        dataset.drop(admin_url, empty_db)
        return dataset.create_empty(admin_url, empty_db)

    def playbook(rep: int) -> float:
        url = empty()
        try:
            return _shell(f"gunzip -c {_quote(str(playbook_file))} | psql --no-password -X -q -v ON_ERROR_STOP=1"
                          f" {_quote(url)}")
        finally:
            dataset.drop(admin_url, empty_db)

    def floor(rep: int) -> float:
        url = empty()
        try:
            return _shell(f"pg_restore --no-password --no-owner -j {jobs} -d {_quote(url)}"
                          f" {_quote(str(product_archive))}")
        finally:
            dataset.drop(admin_url, empty_db)

    variants = dict(zip(RESTORE_VARIANTS, (product, playbook, floor), strict=True))
    times = run_interleaved(variants, reps, say, "restore ")
    say(f"  restore: the product's method: {', '.join(f'{m} ×{n}' for m, n in methods.items())}")
    return times
