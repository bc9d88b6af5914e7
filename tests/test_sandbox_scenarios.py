"""The sandbox can play scenario 1: `python -m sandbox --scenario half-done` leaves the example database with
a CREATE INDEX CONCURRENTLY migration failed halfway (an INVALID index, status failed), as
`/rollback status` then shows it and `/rollback repair` cleans it up (tests/test_repair_flow.py)."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from sandbox.launcher import SandboxError, create_example_database, play_scenario
from sandbox.scenarios import HALF_DONE_INVALID_INDEX, HALF_DONE_VERSION


def test_the_half_done_scenario_leaves_an_invalid_index_and_a_failed_migration(
    postgres_admin_url: str, tmp_path: Path,
) -> None:
    name = f"rbt_sandbox_{uuid.uuid4().hex[:8]}"
    url = create_example_database(postgres_admin_url, name)
    try:
        folder = play_scenario("half-done", url, tmp_path)
        assert (folder / f"{HALF_DONE_VERSION}_index_users" / "down.sql").exists()
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT status FROM schema_migrations WHERE version = %s",
                                (HALF_DONE_VERSION,)).fetchone() == ("failed",)
            assert conn.execute("SELECT indexrelid::regclass::text FROM pg_index WHERE NOT indisvalid"
                                ).fetchall() == [(HALF_DONE_INVALID_INDEX,)]
        with pytest.raises(SandboxError, match="unknown scenario"):
            play_scenario("nope", url, tmp_path / "other")
    finally:
        with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
