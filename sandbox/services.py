"""Local PostgreSQL and Redis for the sandbox and the test suite.

Reuses a server that already answers (the given URL, or the usual local default); otherwise starts a
throwaway one from the system binaries in a temporary directory and removes it on `close()`.
Installing missing binaries is the job of `./dev` (apt-get); this module only finds and starts them.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
START_TIMEOUT_SECONDS = 30.0
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class ServiceUnavailable(RuntimeError):
    """A service could neither be reached nor started."""


def die_with_parent() -> None:
    """Popen preexec_fn: the child gets SIGTERM when the process that started it dies, even by SIGKILL,
    so a killed sandbox or test run leaves no bot, worker or throwaway server behind (Linux only)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def _url_answers(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    return port_open(parts.hostname or "127.0.0.1", parts.port or default_port)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if port_open("127.0.0.1", port):
            return
        if process.poll() is not None:
            raise ServiceUnavailable(f"{what} exited with status {process.returncode} while starting")
        time.sleep(0.1)
    raise ServiceUnavailable(f"{what} did not listen on port {port} within {START_TIMEOUT_SECONDS:.0f}s")


def find_postgres_binary(name: str) -> str | None:
    """The newest installed PostgreSQL server binary called `name` (initdb, postgres, ...)."""
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=_major_version, reverse=True)
    if candidates:
        return candidates[0]
    return shutil.which(name)


def _major_version(path: str) -> int:
    with contextlib.suppress(ValueError, IndexError):
        return int(path.split("/")[4])
    return 0


@dataclass
class LocalService:
    """A reachable service URL, and the throwaway process behind it when we started one."""

    url: str
    process: subprocess.Popen[bytes] | None = None
    workdir: str | None = None
    started_here: bool = field(default=False)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _unprivileged_user() -> str | None:
    """initdb and postgres refuse to run as root: pick a system user to run them as."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise ServiceUnavailable("running as root and no 'postgres' or 'nobody' user exists to run PostgreSQL")


def _as_user(user: str | None, argv: list[str]) -> list[str]:
    return argv if user is None else ["runuser", "-u", user, "--", *argv]


def ensure_postgres(url: str | None = None) -> LocalService:
    """A PostgreSQL superuser URL: `url` or the local default if one answers, else a throwaway server."""
    wanted = url or DEFAULT_POSTGRES_URL
    if _url_answers(wanted, 5432):
        return LocalService(url=wanted)
    initdb, postgres = find_postgres_binary("initdb"), find_postgres_binary("postgres")
    if not initdb or not postgres:
        raise ServiceUnavailable("no PostgreSQL server binaries found: run ./dev setup (installs postgresql)")
    user = _unprivileged_user()
    workdir = tempfile.mkdtemp(prefix="rollback-bot-pg-")
    os.chmod(workdir, 0o755)
    datadir = os.path.join(workdir, "data")
    if user:
        owner = pwd.getpwnam(user)
        os.chown(workdir, owner.pw_uid, owner.pw_gid)
    subprocess.run(
        _as_user(user, [initdb, "-D", datadir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]),
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    port = free_port()
    process = subprocess.Popen(
        _as_user(
            user,
            [postgres, "-D", datadir, "-p", str(port), "-k", workdir, "-c", "listen_addresses=127.0.0.1",
             "-c", "fsync=off", "-c", "max_connections=200"],
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=die_with_parent,
    )
    service = LocalService(
        url=f"postgresql://postgres@127.0.0.1:{port}/postgres", process=process, workdir=workdir, started_here=True
    )
    try:
        _wait_for_port(port, process, "PostgreSQL")
        _wait_for_postgres_ready(service.url)
    except BaseException:
        service.close()
        raise
    return service


def _wait_for_postgres_ready(url: str) -> None:
    import psycopg  # local: the bot side of this package never needs a database driver

    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        try:
            psycopg.connect(url, connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def ensure_redis(url: str | None = None) -> LocalService:
    """A Redis URL: `url` or the local default if one answers, else a throwaway in-memory server."""
    wanted = url or DEFAULT_REDIS_URL
    if _url_answers(wanted, 6379):
        return LocalService(url=wanted)
    server = shutil.which("redis-server")
    if not server:
        raise ServiceUnavailable("no redis-server found: run ./dev setup (installs redis-server)")
    port = free_port()
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=die_with_parent,
    )
    service = LocalService(url=f"redis://127.0.0.1:{port}/0", process=process, started_here=True)
    try:
        _wait_for_port(port, process, "Redis")
    except BaseException:
        service.close()
        raise
    return service
