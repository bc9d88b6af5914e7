"""Prepared incidents the sandbox (and the tests) can play.

Scenario 1 of the playbook, a migration that failed halfway: `add_half_done_index(folder)` writes a
no-transaction migration whose second `CREATE INDEX CONCURRENTLY` fails on the example data (duplicate
statuses), so applying it leaves one index built, one INVALID and its last statement never run: what
`/rollback status` flags and `/rollback repair` cleans up.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

HALF_DONE_VERSION = "2025_10_21_110000"
HALF_DONE_FOLDER = f"{HALF_DONE_VERSION}_index_users"
HALF_DONE_INVALID_INDEX = "idx_users_status_unique"

_UP = """-- rollback-bot: no-transaction
CREATE INDEX CONCURRENTLY idx_users_full_name ON users (full_name);
CREATE UNIQUE INDEX CONCURRENTLY idx_users_status_unique ON users (status);
ALTER TABLE users ADD COLUMN status_rank integer;
"""
_DOWN = """-- rollback-bot: no-transaction
ALTER TABLE users DROP COLUMN status_rank;
DROP INDEX CONCURRENTLY idx_users_full_name;
"""


def add_half_done_index(migrations: Path | str) -> str:
    """Write scenario 1's migration into a migrations folder; returns its version."""
    folder = Path(migrations) / HALF_DONE_FOLDER
    folder.mkdir(exist_ok=True)
    (folder / "up.sql").write_text(_UP)
    (folder / "down.sql").write_text(_DOWN)
    return HALF_DONE_VERSION


# `python -m sandbox --scenario NAME`: what each name prepares in the example migrations folder.
SCENARIOS: dict[str, Callable[[Path | str], str]] = {"half-done": add_half_done_index}
