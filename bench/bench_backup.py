"""Benchmark: the playbook's `pg_dump | gzip` against the formats take_backup can use. Run by hand:

    python bench/bench_backup.py [--rows 200000] [--url postgresql://postgres@127.0.0.1:5432/postgres]

It creates a throwaway database shaped like the example migrations (users, projects, new_feature_table)
with realistic text, dumps it each way, and prints seconds and MB. The default in core/defaults.py
(BACKUP_COMPRESS_LEVEL, BACKUP_JOBS) is picked from these figures; see docs/backups.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workers.postgres.pg_dump import archive_size, client_env, split_password, take_backup  # noqa: E402

SCHEMA = """
CREATE TABLE users (id bigserial PRIMARY KEY, email text NOT NULL UNIQUE, full_name text NOT NULL,
    status text NOT NULL DEFAULT 'active', bio text, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE projects (id bigserial PRIMARY KEY, owner_id bigint NOT NULL REFERENCES users (id),
    name text NOT NULL, settings jsonb, created_at timestamptz NOT NULL DEFAULT now());
CREATE INDEX projects_owner_id_idx ON projects (owner_id);
CREATE TABLE new_feature_table (id bigserial PRIMARY KEY, user_id bigint NOT NULL REFERENCES users (id),
    enabled boolean NOT NULL DEFAULT true, created_at timestamptz NOT NULL DEFAULT now());
"""

FILL = """
INSERT INTO users (email, full_name, status, bio)
  SELECT 'user' || g || '@example.com', 'User ' || md5(g::text),
         (ARRAY['active','suspended','migrated'])[1 + g %% 3],
         repeat(md5(g::text) || ' ', 1 + g %% 4)
  FROM generate_series(1, %(users)s) g;
INSERT INTO projects (owner_id, name, settings)
  SELECT 1 + g %% %(users)s, 'project ' || md5((g * 7)::text),
         jsonb_build_object('theme', (ARRAY['dark','light'])[1 + g %% 2], 'seats', g %% 50)
  FROM generate_series(1, %(projects)s) g;
INSERT INTO new_feature_table (user_id, enabled) SELECT 1 + g %% %(users)s, g %% 2 = 0
  FROM generate_series(1, %(features)s) g;
"""


def build(admin_url: str, rows: int) -> str:
    name = f"bench_backup_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = psycopg.conninfo.make_conninfo(admin_url, dbname=name)
    users = rows // 2
    with psycopg.connect(url) as conn:
        conn.execute(SCHEMA)
        params = {"users": users, "projects": rows // 4, "features": rows // 4}
        for statement in FILL.split(";"):
            if statement.strip():
                conn.execute(statement, params if "%(" in statement else None)
    return url


def drop(admin_url: str, url: str) -> None:
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(str(name))))


def playbook_baseline(url: str, out: Path) -> tuple[float, int]:
    """`pg_dump "$URL" | gzip > file.sql.gz`, exactly as the playbook's Step 2 does it."""
    dbname, password = split_password(url)
    started = time.monotonic()
    with out.open("wb") as fh:
        dump = subprocess.Popen(["pg_dump", "--no-password", dbname], stdout=subprocess.PIPE, env=client_env(password))
        gzip = subprocess.run(["gzip"], stdin=dump.stdout, stdout=fh, check=True)
        assert dump.stdout is not None
        dump.stdout.close()
        if dump.wait() != 0 or gzip.returncode != 0:
            raise SystemExit("baseline pg_dump | gzip failed")
    return time.monotonic() - started, out.stat().st_size


def ours(url: str, backup_dir: Path, *, compress: int, jobs: int) -> tuple[float, int]:
    started = time.monotonic()
    result = take_backup(url, target="bench", reason=f"z{compress}-j{jobs}", backup_dir=str(backup_dir),
                         compress=compress, jobs=jobs)
    return time.monotonic() - started, archive_size(Path(result.path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--url", default=os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--repeat", type=int, default=3, help="runs per variant; the best is reported")
    args = parser.parse_args()

    url = build(args.url, args.rows)
    work = Path(tempfile.mkdtemp(prefix="bench-backup-"))
    try:
        variants: list[tuple[str, object]] = [
            ("playbook: pg_dump | gzip (plain SQL, gzip -6)", lambda i: playbook_baseline(url, work / f"base{i}.sql.gz")),
            ("custom -Z6 (pg_dump default level)", lambda i: ours(url, work, compress=6, jobs=1)),
            ("custom -Z1", lambda i: ours(url, work, compress=1, jobs=1)),
            ("custom -Z0 (no compression)", lambda i: ours(url, work, compress=0, jobs=1)),
            ("directory -Z1 -j2", lambda i: ours(url, work, compress=1, jobs=2)),
            ("directory -Z1 -j4", lambda i: ours(url, work, compress=1, jobs=4)),
        ]
        print(f"{args.rows} rows, best of {args.repeat}, {os.cpu_count()} CPUs")
        print(f"{'variant':<48} {'seconds':>8} {'MB':>8}")
        for label, run in variants:
            best = min((run(i) for i in range(args.repeat)), key=lambda r: r[0])  # type: ignore[operator]
            print(f"{label:<48} {best[0]:>8.2f} {best[1] / 1e6:>8.1f}")
            time.sleep(1.1)  # archives are named to the second
    finally:
        shutil.rmtree(work, ignore_errors=True)
        drop(args.url, url)


if __name__ == "__main__":
    main()
