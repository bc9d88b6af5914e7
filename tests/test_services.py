import psycopg
import redis


def test_database_is_fresh_and_writable(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
        assert tables == (0,)
        conn.execute("CREATE TABLE t (x int)")


def test_redis_is_flushed(redis_conn: redis.Redis) -> None:
    assert redis_conn.dbsize() == 0
    redis_conn.set("k", "v")
    assert redis_conn.get("k") == b"v"


def test_throwaway_servers_start_when_nothing_answers() -> None:
    """On a bare machine the suite brings its own PostgreSQL and Redis (port 1 never answers)."""
    from sandbox.services import ensure_postgres, ensure_redis

    pg = ensure_postgres("postgresql://postgres@127.0.0.1:1/postgres")
    try:
        assert pg.started_here and pg.workdir
        with psycopg.connect(pg.url) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("postgres",)
    finally:
        pg.close()
    assert pg.process is not None and pg.process.poll() is not None

    cache = ensure_redis("redis://127.0.0.1:1/0")
    try:
        assert cache.started_here
        assert redis.Redis.from_url(cache.url).ping()
    finally:
        cache.close()
    assert cache.process is not None and cache.process.poll() is not None


def test_throwaway_servers_die_with_the_process_that_started_them(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A SIGKILLed sandbox or test run leaves no server behind."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = (
        "import sys, time\n"
        "from sandbox.services import ensure_redis\n"
        "service = ensure_redis('redis://127.0.0.1:1/0')\n"
        "print(service.process.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=repo, stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    server_pid = int(parent.stdout.readline())
    os.kill(server_pid, 0)  # running
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(server_pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(server_pid, signal.SIGKILL)
    raise AssertionError("the throwaway Redis outlived the process that started it")
