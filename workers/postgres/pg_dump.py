"""Backups with pg_dump (playbook Step 2 and Method 3): take, checksum, verify, list.

An archive is written under the backup directory with a name that says target, reason and time
(`prod-pre-rollback-20261124T103000Z.dump`, or `....dir` for a parallel directory dump), beside a
sidecar manifest `<name>.json` holding target, reason, creation time, SHA-256, size, format, the
server's and pg_dump's versions, and whether the archive was verified.

The password never reaches a command line: it is taken out of the conninfo and handed to pg_dump
through PGPASSWORD. Every error is a one-line `BackupError` with the password redacted.
See docs/backups.md for the format choice and its measurements.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import conninfo as pg_conninfo

from core import defaults
from core.jsontypes import JsonObject
from workers import messages
from workers.engine.redact import MASK, password_of
from workers.engine.redact import redact as redact_secrets
from workers.runtime import errors
from workers.runtime.errors import BackupError

Heartbeat = Callable[[str], None]

CUSTOM_FORMAT = "custom"
DIRECTORY_FORMAT = "directory"
FORMAT_SUFFIX = {CUSTOM_FORMAT: ".dump", DIRECTORY_FORMAT: ".dir"}
MANIFEST_SUFFIX = ".json"
PARTIAL_PREFIX = ".partial-"
VERSION_LINE = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")
HASH_CHUNK_BYTES = 1024 * 1024
STDERR_TAIL_CHARS = 400




@dataclass(frozen=True)
class BackupResult:
    path: str
    size_bytes: int
    sha256: str
    duration_s: float
    format: str
    verified: bool
    server_version: str
    pg_dump_version: str
    name: str = ""
    target: str = ""
    reason: str = ""
    created_at: str = ""
    toc_entries: int = 0
    compression: str = ""

    def to_dict(self) -> JsonObject:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BackupResult:
        """Back from `to_dict` (a pipeline's state in Redis); keys it does not know are left out."""
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


# ----------------------------------------------------------------------------------------------
# conninfo handling: the password goes through the environment, and never into a message


def split_password(conninfo: str) -> tuple[str, str | None]:
    """The conninfo without its password, and the password (None when there is none)."""
    try:
        params = pg_conninfo.conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        raise BackupError(errors.database_url_unparsable()) from None  # the cause may quote the DSN, password included
    password = params.pop("password", None)
    return pg_conninfo.make_conninfo(**{k: str(v) for k, v in params.items() if v is not None}), (
        str(password) if password is not None else None
    )


def redact(text: str, conninfo: str) -> str:
    """`text` with the conninfo's password (whatever its length) and any URL or key=value password
    replaced by ***: the engine's redaction rules, plus this connection's own password."""
    password = password_of(conninfo)
    if password:
        text = text.replace(password, MASK)
    return redact_secrets(text)


def describe(conninfo: str) -> str:
    """`host:port/dbname` of a conninfo, for messages; no user, no password."""
    try:
        params = pg_conninfo.conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        return errors.UNPARSABLE_URL
    return f"{params.get('host') or 'localhost'}:{params.get('port') or 5432}/{params.get('dbname') or '?'}"


def connect(conninfo: str) -> psycopg.Connection[Any]:
    """An autocommit connection that gives up after the conninfo's own connect_timeout (the workers'
    one setting, put there by Context.conninfo), or the default when it names none."""
    timeout = pg_conninfo.conninfo_to_dict(conninfo).get("connect_timeout") or defaults.CONNECT_TIMEOUT_SECONDS
    return psycopg.connect(conninfo, connect_timeout=int(timeout), autocommit=True)


def client_env(password: str | None) -> dict[str, str]:
    """The environment for a libpq client: never prompt; the password, if any, via PGPASSWORD."""
    env = {k: v for k, v in os.environ.items() if k != "PGPASSWORD"}
    if password is not None:
        env["PGPASSWORD"] = password
    return env


# ----------------------------------------------------------------------------------------------
# versions


def parse_version(text: str) -> tuple[int, ...]:
    """The major version of a `pg_dump --version` line: (15,) for 15.20, (9, 6) for 9.6.0."""
    match = VERSION_LINE.search(text)
    if not match:
        raise BackupError(errors.version_unreadable(text))
    major = int(match.group(1))
    if major < 10 and match.group(2) is not None:
        return (major, int(match.group(2)))
    return (major,)


def _major_of_server(server_version_num: int) -> tuple[int, ...]:
    if server_version_num >= 100000:
        return (server_version_num // 10000,)
    return (server_version_num // 10000, server_version_num // 100 % 100)


def _dotted(major: tuple[int, ...]) -> str:
    return ".".join(str(p) for p in major)


def client_version(binary: str) -> str:
    """The `--version` line of a PostgreSQL client binary."""
    try:
        done = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30, check=False)
    except FileNotFoundError as err:
        raise BackupError(errors.client_not_found(binary)) from err
    except (PermissionError, OSError) as exc:
        raise BackupError(errors.cannot_run(binary, str(exc.strerror or exc), errors.CHECK_CLIENT_SETTING)) from exc
    if done.returncode != 0:
        raise BackupError(errors.client_version_failed(binary, done.returncode))
    return done.stdout.strip()


def server_version(conninfo: str) -> tuple[str, int]:
    """The server's version string and number, e.g. ("15.20", 150020)."""
    try:
        with connect(conninfo) as conn:
            number = conn.info.server_version
            row = conn.execute("SHOW server_version").fetchone()
    except psycopg.Error as exc:
        first = (str(exc).strip().splitlines() or [errors.CONNECTION_FAILED])[0]
        raise BackupError(errors.cannot_connect(describe(conninfo), redact(first, conninfo), hint=True)) from None  # the cause may quote the DSN, password included
    text = str(row[0]).split()[0] if row else str(number)
    return text, number


def check_pg_dump_version(conninfo: str, *, pg_dump: str = "pg_dump") -> tuple[str, str]:
    """(server version, pg_dump version line). Raises BackupError when pg_dump is older than the server:
    an older pg_dump refuses to dump a newer server, so we say so before anything runs."""
    dump_line = client_version(pg_dump)
    server_text, server_number = server_version(conninfo)
    dump_major = parse_version(dump_line)
    server_major = _major_of_server(server_number)
    if dump_major < server_major:
        raise BackupError(errors.pg_dump_too_old(pg_dump, _dotted(dump_major), server_text, _dotted(server_major)))
    return server_text, dump_line


# ----------------------------------------------------------------------------------------------
# names, checksums, manifests


def slug(text: str, limit: int = 40) -> str:
    """A file-name-safe form of `text`: lower-case letters, digits and '-'."""
    cleaned = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return cleaned[:limit].strip("-") or "manual"


def archive_name(target: str, reason: str, now: datetime) -> str:
    return f"{slug(target)}-{slug(reason)}-{now.strftime('%Y%m%dT%H%M%SZ')}"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(HASH_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def archive_sha256(path: Path) -> str:
    """SHA-256 of a file; for a directory archive, of its sorted `sha256  relative-path` listing
    (deterministic, and any changed, missing or extra file changes it)."""
    if path.is_dir():
        lines = [
            f"{file_sha256(p)}  {p.relative_to(path).as_posix()}\n"
            for p in sorted(path.rglob("*"))
            if p.is_file()
        ]
        return hashlib.sha256("".join(lines).encode()).hexdigest()
    return file_sha256(path)


def archive_size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def manifest_path(archive: Path) -> Path:
    return archive.with_suffix(MANIFEST_SUFFIX)


def read_manifest(archive: Path) -> JsonObject | None:
    path = manifest_path(archive)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_manifest(archive: Path, manifest: JsonObject) -> None:
    """Write the manifest atomically (temp file + rename), so a reader never sees half of it."""
    path = manifest_path(archive)
    fd, tmp = tempfile.mkstemp(prefix=PARTIAL_PREFIX, dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(manifest, fh, indent=2, sort_keys=True)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------
# running a client with heartbeats


def run_client(
    argv: list[str],
    *,
    env: dict[str, str],
    conninfo: str,
    heartbeat: Heartbeat | None,
    progress: Callable[[float], str],
    interval: float,
    error: type[Exception],
    what: str,
) -> str:
    """Run a PostgreSQL client, calling `heartbeat(progress(elapsed))` every `interval` seconds.
    Returns its stderr; raises `error` (one line, redacted) on a non-zero exit."""
    started = time.monotonic()
    with tempfile.TemporaryFile() as stderr:
        try:
            process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
        except FileNotFoundError as err:
            raise error(errors.client_not_found(argv[0])) from err
        except OSError as exc:
            raise error(errors.cannot_run(argv[0], str(exc.strerror or exc))) from exc
        while True:
            try:
                process.wait(timeout=interval)
                break
            except subprocess.TimeoutExpired:
                if heartbeat is not None:
                    heartbeat(progress(time.monotonic() - started))
            except BaseException:
                # The job is being stopped (timeout, shutdown): never leave a client running behind us.
                process.kill()
                process.wait()
                raise
        stderr.seek(0)
        output = stderr.read().decode(errors="replace")
    if process.returncode != 0:
        raise error(errors.client_failed(what, process.returncode, last_line(redact(output, conninfo))))
    return output


def last_line(text: str) -> str:
    """The line of a client's stderr worth showing: the last error line (not the CONTEXT after it)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    error_lines = [line for line in lines if re.search(r"\b(ERROR|FATAL|error):", line)]
    chosen = error_lines[-1] if error_lines else (lines[-1] if lines else errors.NO_OUTPUT)
    return chosen[-STDERR_TAIL_CHARS:]


def toc_entries(archive: Path, *, pg_restore: str = "pg_restore") -> int:
    """How many entries `pg_restore --list` reads from the archive (it fails on an unreadable one)."""
    try:
        done = subprocess.run(
            [pg_restore, "--list", str(archive)], capture_output=True, text=True, timeout=300, check=False
        )
    except FileNotFoundError as err:
        raise BackupError(errors.pg_restore_not_found(pg_restore)) from err
    if done.returncode != 0:
        raise BackupError(errors.archive_unreadable(archive.name, last_line(done.stderr)))
    entries = [line for line in done.stdout.splitlines() if line.strip() and not line.startswith(";")]
    if not entries:
        raise BackupError(errors.archive_empty(archive.name))
    return len(entries)


def verify_archive(archive: Path, *, pg_restore: str = "pg_restore", expected_sha256: str | None = None) -> int:
    """Check an existing archive: its checksum matches the manifest (or `expected_sha256`) and
    pg_restore reads its table of contents. Returns the number of TOC entries."""
    if not archive.exists():
        raise BackupError(errors.backup_missing(archive.name))
    if expected_sha256 is None:
        manifest = read_manifest(archive)
        if manifest is None or not manifest.get("sha256"):
            raise BackupError(errors.backup_untrusted(archive.name))
        expected_sha256 = str(manifest["sha256"])
    actual = archive_sha256(archive)
    if actual != expected_sha256:
        raise BackupError(errors.backup_corrupted(archive.name, actual, expected_sha256))
    return toc_entries(archive, pg_restore=pg_restore)


# ----------------------------------------------------------------------------------------------
# taking a backup


def _prepare_dir(backup_dir: str) -> Path:
    directory = Path(backup_dir)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = tempfile.TemporaryFile(dir=directory)
        probe.close()
    except OSError as exc:
        raise BackupError(errors.backup_dir_not_writable(backup_dir, str(exc.strerror or exc))) from exc
    return directory


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def _partial(directory: Path, final: Path) -> Iterator[Path]:
    """A temporary path beside `final`, removed unless the block renamed it into place."""
    partial = directory / f"{PARTIAL_PREFIX}{final.name}"
    _remove(partial)
    try:
        yield partial
    finally:
        _remove(partial)


def dump_command(
    *,
    pg_dump: str,
    dbname: str,
    output: Path,
    jobs: int | None,
    compress: int,
    lock_wait_timeout_ms: int,
    tables: Sequence[tuple[str, str]] = (),
) -> tuple[list[str], str]:
    """pg_dump's argv and the archive format. Parallel (`jobs` > 1) means the directory format.
    `tables` ((schema, name) pairs) limits the dump to those tables (a table recovery's backup)."""
    common = [
        pg_dump,
        "--no-password",
        f"--lock-wait-timeout={lock_wait_timeout_ms}",
        f"--compress={compress}",
        f"--file={output}",
        # quoted: the pattern names exactly that table, in its case
        *(f'--table="{schema}"."{name}"' for schema, name in tables),
    ]
    if jobs is not None and jobs > 1:
        return [*common, "--format=directory", f"--jobs={jobs}", f"--dbname={dbname}"], DIRECTORY_FORMAT
    return [*common, "--format=custom", f"--dbname={dbname}"], CUSTOM_FORMAT


def take_backup(
    conninfo: str,
    *,
    target: str,
    reason: str,
    backup_dir: str,
    heartbeat: Heartbeat | None = None,
    jobs: int | None = None,
    pg_dump: str = "pg_dump",
    pg_restore: str = "pg_restore",
    compress: int = defaults.BACKUP_COMPRESS_LEVEL,
    lock_wait_timeout_ms: int = defaults.BACKUP_LOCK_WAIT_TIMEOUT_MS,
    progress_interval: float = defaults.PROGRESS_INTERVAL_SECONDS,
    now: datetime | None = None,
    tables: Sequence[tuple[str, str]] = (),
) -> BackupResult:
    """Dump the target, record checksum and size in the manifest, and verify the archive.

    The archive appears under its final name only when pg_dump succeeded; a failed dump leaves nothing.
    """
    directory = _prepare_dir(backup_dir)
    server_text, dump_line = check_pg_dump_version(conninfo, pg_dump=pg_dump)
    client_version(pg_restore)  # verification needs it: find out before dumping, not after
    created = now or datetime.now(UTC)
    dbname, password = split_password(conninfo)
    effective_jobs = jobs if jobs is not None else defaults.BACKUP_JOBS
    base = archive_name(target, reason, created)
    suffix = FORMAT_SUFFIX[DIRECTORY_FORMAT if effective_jobs > 1 else CUSTOM_FORMAT]
    final = directory / f"{base}{suffix}"
    counter = 1
    while final.exists() or manifest_path(final).exists():  # two backups within one second
        counter += 1
        final = directory / f"{base}-{counter}{suffix}"

    started = time.monotonic()
    with _partial(directory, final) as partial:
        argv, fmt = dump_command(
            pg_dump=pg_dump,
            dbname=dbname,
            output=partial,
            jobs=effective_jobs,
            compress=compress,
            lock_wait_timeout_ms=lock_wait_timeout_ms,
            tables=tables,
        )

        def progress(elapsed: float) -> str:
            written = archive_size(partial) if partial.exists() else 0
            return messages.dump_running(target, written, elapsed)

        run_client(
            argv,
            env=client_env(password),
            conninfo=conninfo,
            heartbeat=heartbeat,
            progress=progress,
            interval=progress_interval,
            error=BackupError,
            what=messages.dump_of(describe(conninfo)),
        )
        if not partial.exists() or archive_size(partial) == 0:
            raise BackupError(errors.dump_empty(describe(conninfo)))
        os.replace(partial, final)
    duration = time.monotonic() - started

    try:
        size = archive_size(final)
        sha = archive_sha256(final)
        entries = toc_entries(final, pg_restore=pg_restore)
    except BackupError:
        _remove(final)  # an archive pg_restore cannot read is no backup; never leave it to be picked later
        raise
    result = BackupResult(
        path=str(final),
        size_bytes=size,
        sha256=sha,
        duration_s=round(duration, 3),
        format=fmt,
        verified=True,
        server_version=server_text,
        pg_dump_version=dump_line,
        name=final.name,
        target=target,
        reason=reason,
        created_at=created.isoformat(timespec="seconds"),
        toc_entries=entries,
        compression=f"gzip:{compress}" if compress else "none",
    )
    try:
        write_manifest(final, {k: v for k, v in result.to_dict().items() if k != "path"})
    except OSError as exc:
        _remove(final)
        raise BackupError(errors.manifest_unwritable(final.name, str(exc.strerror or exc))) from exc
    return result
