"""Scenario 3 (wrong database): two real databases compared by applied versions and schema."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg

from tests.engine_support import EXAMPLE_MIGRATIONS, KNOWN_GOOD, NEW_FEATURE, NEW_FEATURE_DIR, copy_migrations
from workers.engine import Engine
from workers.engine.scripts import load
from workers.postgres.schema import Fingerprint, fingerprint
from workers.verbs.diff import compare


def _fingerprint(url: str, target: str) -> Fingerprint:
    with psycopg.connect(url) as conn:
        return fingerprint(conn, target)


def test_staging_migration_run_against_prod_is_flagged_with_the_rollback_that_removes_it(
        make_database: Callable[[], str], tmp_path: Path) -> None:
    prod, staging = make_database(), make_database()
    Engine(prod, str(EXAMPLE_MIGRATIONS), actor="test").apply()  # the accident: 150000 reached prod
    Engine(staging, str(copy_migrations(tmp_path / "m", without=(NEW_FEATURE_DIR,))), actor="test").apply()
    a, b = _fingerprint(prod, "prod"), _fingerprint(staging, "staging")
    assert NEW_FEATURE in a.versions and NEW_FEATURE not in b.versions
    known = set(load(EXAMPLE_MIGRATIONS).migrations)
    result = compare(a, b, {"prod": known, "staging": known})
    assert [(s.version, s.on, s.missing_on, s.roll_back_to, s.also_reverts) for s in result.stray] == [
        (NEW_FEATURE, "prod", "staging", KNOWN_GOOD, ())]
    by_table = {t.table: t for t in result.tables}
    assert by_table["public.new_feature_table"].only_in == "prod"
    assert "column new_field only on prod" in by_table["public.users"].details
    assert result.unknown == {"prod": (), "staging": ()}
    assert not result.same


def test_identical_databases_compare_the_same_and_unknown_versions_are_named(
        make_database: Callable[[], str]) -> None:
    one, two = make_database(), make_database()
    for url in (one, two):
        Engine(url, str(EXAMPLE_MIGRATIONS), actor="test").apply()
    same = compare(_fingerprint(one, "prod"), _fingerprint(two, "replica"))
    assert same.same and same.tables == ()
    with psycopg.connect(two, autocommit=True) as conn:
        conn.execute("ALTER TABLE projects ALTER COLUMN name TYPE varchar(80)")
        conn.execute("CREATE INDEX users_status_idx ON users (status)")
    changed = compare(_fingerprint(one, "prod"), _fingerprint(two, "replica"),
                      {"replica": {KNOWN_GOOD}})
    details = {t.table: t.details for t in changed.tables}
    assert details["public.projects"] == ("column name: text not null on prod, character varying(80) not null on replica",)
    assert details["public.users"] == ("index only on replica: CREATE INDEX users_status_idx ON users USING btree (status)",)
    assert NEW_FEATURE in changed.unknown["replica"] and "prod" not in changed.unknown
