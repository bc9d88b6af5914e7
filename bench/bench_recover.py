"""Benchmark: a table recovery (scenario 4, workers/postgres/row_merge.py) at a given size. Run by hand:

    python bench/bench_recover.py [--rows 200000] [--lost 0.05] [--jobs 2] [--url postgresql://postgres@127.0.0.1:5432/postgres]

It creates a throwaway database with `users` and `projects` (projects reference users), dumps it in the
custom format, deletes a share of the users (cascading to their projects), then times the three parts of
`/rollback recover`: the scratch restore of just those tables, the preview (the diff by primary key and
the trial inserts rolled back), and the apply (diff recomputed, inserts, counts, commit). Prints seconds.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workers.postgres import row_merge  # noqa: E402
from workers.postgres.pg_dump import client_env, split_password  # noqa: E402

SCHEMA = """
CREATE TABLE users (id bigserial PRIMARY KEY, email text NOT NULL UNIQUE, full_name text NOT NULL,
    bio text, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE projects (id bigserial PRIMARY KEY, owner_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name text NOT NULL, settings jsonb);
INSERT INTO users (email, full_name, bio)
  SELECT 'user' || g || '@example.com', 'User ' || md5(g::text), repeat(md5(g::text), 2)
  FROM generate_series(1, %(users)s) g;
INSERT INTO projects (owner_id, name, settings)
  SELECT 1 + g %% %(users)s, 'project ' || md5((g * 7)::text), jsonb_build_object('seats', g %% 50)
  FROM generate_series(1, %(users)s) g;
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000, help="users (and as many projects)")
    parser.add_argument("--lost", type=float, default=0.05, help="share of the users deleted")
    parser.add_argument("--jobs", type=int, default=2, help="pg_restore --jobs for the scratch restore")
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()

    name = f"bench_recover_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = psycopg.conninfo.make_conninfo(args.url, dbname=name)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(SCHEMA.replace("%(users)s", str(args.rows)).replace("%%", "%"))
        with tempfile.TemporaryDirectory() as tmp:
            archive = Path(tmp) / "bench.dump"
            dsn, password = split_password(url)
            subprocess.run(["pg_dump", "-Fc", "-f", str(archive), f"--dbname={dsn}"], check=True,
                           env=client_env(password))
            lost = int(args.rows * args.lost)
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("DELETE FROM users WHERE id <= %s", (lost,))
            started = time.monotonic()
            session = row_merge.recovery_session(
                url, archive, ["users", "projects"], jobs=args.jobs, pg_restore="pg_restore",
                run=row_merge.client_runner(url), lock_timeout_ms=5000, statement_timeout_ms=600_000)
            with session as live:
                restored = time.monotonic()
                shown = row_merge.preview(live, archive.name, False, restored)
                previewed = time.monotonic()
                result = row_merge.apply(live, archive.name, False, shown.digest, previewed)
                applied = time.monotonic()
        print(f"rows {args.rows} users + {args.rows} projects, {lost} users lost "
              f"({shown.rows_to_insert} rows to insert)")
        print(f"scratch restore + load {restored - started:6.2f} s")
        print(f"preview (diff + trial) {previewed - restored:6.2f} s")
        print(f"apply (diff, insert)   {applied - previewed:6.2f} s   inserted {result.inserted}")
    finally:
        with psycopg.connect(args.url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


if __name__ == "__main__":
    main()
