"""Two test runs on the same servers keep apart: Redis database leases and per-run PostgreSQL databases."""

from __future__ import annotations

import psycopg
import redis
from psycopg import sql

from tests.engine_support import wait_until_gone
from tests.fixtures.isolation import (
    REGISTRY_DB,
    PostgresRun,
    RedisDatabaseLease,
    default_candidates,
    lease_key,
    looks_unused,
    new_run_id,
    owner_key,
    redis_db_url,
    try_claim,
)


def test_a_leased_redis_database_is_refused_to_another_run(redis_lease: RedisDatabaseLease,
                                                             redis_server_url: str, redis_url: str) -> None:
    registry = redis.Redis.from_url(redis_db_url(redis_server_url, REGISTRY_DB))
    assert redis_url == redis_lease.url and redis_lease.db != REGISTRY_DB
    assert registry.get(lease_key(redis_lease.db)) == redis_lease.run_id.encode()
    assert not try_claim(redis_server_url, redis_lease.db, new_run_id())
    conn = redis.Redis.from_url(redis_url)
    assert conn.dbsize() == 0  # the run's number holds nothing of the bookkeeping
    conn.set("mine", "1")
    redis_lease.reset()  # emptying between tests keeps the claim
    assert conn.dbsize() == 0 and registry.get(lease_key(redis_lease.db)) == redis_lease.run_id.encode()
    assert not try_claim(redis_server_url, redis_lease.db, new_run_id())


def test_a_crashed_runs_redis_database_is_reclaimed_and_foreign_data_left_alone(redis_server_url: str) -> None:
    crashed = RedisDatabaseLease.claim(redis_server_url, new_run_id())
    crashed.abandon()
    db = crashed.db
    registry = redis.Redis.from_url(redis_db_url(redis_server_url, REGISTRY_DB))
    conn = redis.Redis.from_url(redis_db_url(redis_server_url, db))
    try:
        conn.set("leftover", "1")
        assert not try_claim(redis_server_url, db, new_run_id())  # still leased
        registry.delete(lease_key(db))  # the lease ran out: nobody renewed it
        next_run = new_run_id()
        assert try_claim(redis_server_url, db, next_run)
        assert conn.get("leftover") is None and registry.get(lease_key(db)) == next_run.encode()

        # Data under neither lease nor owner marker is some other suite's: never claimed, never emptied.
        registry.delete(lease_key(db), owner_key(db))
        conn.set("someone:else", "1")
        assert not looks_unused(redis_server_url, db, watch_seconds=0.1)
        assert not try_claim(redis_server_url, db, new_run_id())
        assert conn.get("someone:else") == b"1"
        # ... nor an empty number that another suite's client has selected (it empties it between tests).
        conn.delete("someone:else")
        assert conn.dbsize() == 0 and not looks_unused(redis_server_url, db, watch_seconds=0.1)
    finally:
        conn.flushdb()  # the number is free again (it held only this test's keys)
        registry.delete(lease_key(db), owner_key(db))
        conn.close()
        registry.close()


def _exists(admin_url: str, name: str) -> bool:
    with psycopg.connect(admin_url) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def _create(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _drop(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_only_crashed_runs_databases_are_dropped(postgres_run: PostgresRun, postgres_admin_url: str) -> None:
    crashed = PostgresRun(postgres_admin_url, new_run_id())
    crashed_db = crashed.database_name()
    _create(postgres_admin_url, crashed_db)
    crashed_backend = crashed.backend_pid
    crashed.close()  # its connection, and so its lock, is gone once the server process has ended
    wait_until_gone(postgres_admin_url, crashed_backend)
    alive = PostgresRun(postgres_admin_url, new_run_id())
    alive_db = alive.database_name()
    _create(postgres_admin_url, alive_db)
    other_scheme = f"rbt_{new_run_id()}{new_run_id()[:4]}"  # not a run's name (e.g. an older suite's)
    _create(postgres_admin_url, other_scheme)
    try:
        postgres_run.drop_crashed_runs()
        assert not _exists(postgres_admin_url, crashed_db)
        assert _exists(postgres_admin_url, alive_db) and _exists(postgres_admin_url, other_scheme)
    finally:
        alive.close()
        for name in (alive_db, other_scheme, crashed_db):
            _drop(postgres_admin_url, name)


def test_a_run_never_leases_the_registry_or_the_sandboxs_redis_database(redis_server_url: str) -> None:
    from sandbox.launcher import SANDBOX_REDIS_DB

    numbers = default_candidates(redis_server_url)
    assert SANDBOX_REDIS_DB not in numbers and REGISTRY_DB not in numbers and len(numbers) >= 2
