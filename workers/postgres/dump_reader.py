"""Dump files in the backup folder, ours or made by hand: what kind each is, whether it is whole, what it holds.

The playbook's own backups are `pg_dump $DATABASE_URL | gzip > backups/emergency-….sql.gz` and plain
`….sql` files; people also make `pg_dump -Fc` archives by hand. None of them has our manifest (so no
checksum to check), so "verifies" means the whole file is read once and found complete:

- plain SQL (`.sql`, or gzipped, whatever its name): the gzip stream, if any, decompresses to its end
  (CRC and length included); the text starts with pg_dump's `-- PostgreSQL database dump` header; every
  `COPY … FROM stdin;` block ends with its `\\.` line and each of its rows has as many fields as the
  COPY names columns; and pg_dump's closing `-- PostgreSQL database dump complete` line is there, with
  nothing but comments and psql's `\\unrestrict` after it.
- custom, directory or tar archives: `pg_restore --file=- <archive>` must read all of it (a cut data
  section passes `pg_restore --list`, which reads only the table of contents), and its script must pass
  the same checks.

That one pass also yields what the restore preview shows: the tables the dump defines, the rows of each
COPY block, and the completed versions in its `schema_migrations` data.
"""

from __future__ import annotations

import functools
import gzip
import re
import subprocess
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from core.jsontypes import JsonObject
from core.prechecks import FileSummary
from workers.messages import FORMAT_NAMES, VERIFIED_BY
from workers.postgres.pg_dump import (
    MANIFEST_SUFFIX,
    PARTIAL_PREFIX,
    archive_sha256,
    archive_size,
    last_line,
    read_manifest,
)
from workers.runtime import errors
from workers.runtime.errors import DumpDamaged, RestoreError

PLAIN = "plain"
PLAIN_GZIP = "plain-gzip"
CUSTOM = "custom"
DIRECTORY = "directory"
TAR = "tar"
PLAIN_FORMATS = frozenset({PLAIN, PLAIN_GZIP})
GZIP_MAGIC = b"\x1f\x8b"
CUSTOM_MAGIC = b"PGDMP"
TAR_MAGIC_AT, TAR_MAGIC = 257, b"ustar"
DUMP_HEADER = "-- PostgreSQL database dump"
DUMP_COMPLETE = "-- PostgreSQL database dump complete"
HEADER_WITHIN_LINES = 20
END_OF_COPY = "\\."
# A qualified name as pg_dump writes it: public.users, public."Odd Name".
NAME_PART = r'(?:"(?:[^"]|"")*"|[^\s."(]+)'
QUALIFIED = rf"({NAME_PART}(?:\.{NAME_PART})?)"
COPY_START = re.compile(rf"^COPY {QUALIFIED}(?: \((.*)\))? FROM stdin;$")
CREATE_TABLE = re.compile(rf"^CREATE (?:UNLOGGED |FOREIGN )?TABLE {QUALIFIED} \(")
MIGRATIONS_TABLE = "schema_migrations"


@dataclass(frozen=True)
class DumpContents:
    """What one whole read of a dump file found."""

    name: str
    format: str
    ours: bool
    sha256: str
    size_bytes: int
    tables: dict[str, int | None] = field(default_factory=dict)  # schema.table -> rows (None: no data held)
    versions: tuple[str, ...] = ()  # completed versions in its schema_migrations data, oldest first

    @property
    def last_version(self) -> str | None:
        return self.versions[-1] if self.versions else None

    def summary(self) -> FileSummary:
        """The file's facts for a preview."""
        return FileSummary(name=self.name, format=self.format, format_name=FORMAT_NAMES[self.format], ours=self.ours,
                           tables=dict(self.tables), last_version=self.last_version,
                           verified_by=None if self.ours else VERIFIED_BY[self.format])


def format_of(path: Path) -> str:
    """The kind of dump `path` is, from its first bytes (never its name): plain unless it says otherwise."""
    if path.is_dir():
        return DIRECTORY
    with path.open("rb") as fh:
        head = fh.read(TAR_MAGIC_AT + len(TAR_MAGIC))
    if head.startswith(CUSTOM_MAGIC):
        return CUSTOM
    if head.startswith(GZIP_MAGIC):
        return PLAIN_GZIP
    if head[TAR_MAGIC_AT:] == TAR_MAGIC:
        return TAR
    return PLAIN


def is_ours(path: Path) -> bool:
    """Whether rollback-bot made it: a manifest with a checksum lies beside it."""
    manifest = read_manifest(path)
    return bool(manifest and manifest.get("sha256"))


def is_plain(path: Path) -> bool:
    return format_of(path) in PLAIN_FORMATS


def created_at(path: Path) -> datetime:
    """When a file made by hand was written (its modification time): the nearest it says to when it was taken."""
    return datetime.fromtimestamp(path.stat().st_mtime, UTC)


def script_command(path: Path) -> list[str]:
    """A command writing a plain dump's SQL to stdout (psql reads no gzip)."""
    if format_of(path) == PLAIN_GZIP:
        return ["gzip", "--decompress", "--stdout", "--", str(path)]
    return ["cat", "--", str(path)]


def read(path: Path, *, pg_restore: str = "pg_restore") -> DumpContents:
    """Read the whole dump once (see the module docstring). Raises DumpDamaged, in one line, for a file
    that is cut short or corrupt. Cached per file version: a check job's verification and its preview
    read it once."""
    stat = path.stat()
    return _read(str(path), stat.st_size, stat.st_mtime_ns, pg_restore)


@functools.lru_cache(maxsize=8)
def _read(path_text: str, size: int, mtime_ns: int, pg_restore: str) -> DumpContents:
    del size, mtime_ns  # the cache key: another version of the file is read again
    path = Path(path_text)
    kind = format_of(path)
    scan = _Scan(path.name)
    if kind in PLAIN_FORMATS:
        scan.run(_plain_lines(path, gzipped=kind == PLAIN_GZIP))
    else:
        scan.run(_archive_lines(path, pg_restore))
    tables, versions = scan.result()
    return DumpContents(name=path.name, format=kind, ours=is_ours(path), sha256=archive_sha256(path),
                        size_bytes=archive_size(path), tables=tables, versions=versions)


def _plain_lines(path: Path, *, gzipped: bool) -> Iterator[bytes]:
    try:
        with (gzip.open(path, "rb") if gzipped else path.open("rb")) as fh:
            yield from fh
    except EOFError:
        raise DumpDamaged(errors.dump_damaged(path.name, errors.GZIP_CUT)) from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise DumpDamaged(errors.dump_damaged(path.name, errors.gzip_corrupt(str(exc)))) from None


def _archive_lines(path: Path, pg_restore: str) -> Iterator[bytes]:
    """pg_restore's script of the whole archive (it reads every data block to write it)."""
    with tempfile.TemporaryFile() as stderr:
        try:
            process = subprocess.Popen([pg_restore, "--file=-", str(path)], stdin=subprocess.DEVNULL,
                                       stdout=subprocess.PIPE, stderr=stderr)
        except OSError as exc:
            raise RestoreError(errors.cannot_run(pg_restore, str(exc.strerror or exc), errors.INSTALL_PG_RESTORE)) from exc
        assert process.stdout is not None
        try:
            yield from process.stdout
        finally:
            process.stdout.close()
            if process.poll() is None:  # the scan stopped early: do not wait for the rest
                process.kill()
            process.wait()
        stderr.seek(0)
        failure = stderr.read().decode(errors="replace")
    if process.returncode != 0:
        raise DumpDamaged(errors.dump_damaged(path.name, errors.pg_restore_cannot_read(last_line(failure))))


def unquote(qualified: str) -> str:
    """`schema.table` without pg_dump's quotes; `public` when it names no schema."""
    parts = [p[1:-1].replace('""', '"') if p.startswith('"') else p
             for p in re.findall(NAME_PART, qualified)]
    return ".".join(parts) if len(parts) == 2 else f"public.{parts[0]}"


class _Scan:
    """One pass over a dump's SQL: tables, COPY rows, schema_migrations versions, completeness."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.tables: dict[str, int | None] = {}
        self.versions: list[str] = []
        self.copying: str | None = None  # the table whose COPY block is open
        self.columns: list[str] = []
        self.rows = 0
        self.complete_at: int | None = None  # line number of the closing line
        self.after_complete_ok = True
        self.header = False

    def damaged(self, why: str) -> DumpDamaged:
        return DumpDamaged(errors.dump_damaged(self.name, why))

    def run(self, lines: Iterable[bytes]) -> None:
        number = 0
        for number, raw in enumerate(lines, start=1):
            line = raw.decode("utf-8", errors="replace").rstrip("\n").rstrip("\r")
            if self.copying is not None:
                self._copy_row(number, line)
                continue
            if number <= HEADER_WITHIN_LINES and line.strip() == DUMP_HEADER:
                self.header = True
            if not self.header and number >= HEADER_WITHIN_LINES:
                raise self.damaged(errors.NOT_A_PG_DUMP)
            if line.strip() == DUMP_COMPLETE:
                self.complete_at = number
                self.after_complete_ok = True
            elif self.complete_at is not None and line.strip() and not line.startswith(("--", "\\unrestrict")):
                self.after_complete_ok = False  # the closing line of an earlier dump, then more SQL
            if match := CREATE_TABLE.match(line):
                self.tables.setdefault(unquote(match.group(1)), None)
            elif match := COPY_START.match(line):
                self.copying = unquote(match.group(1))
                self.columns = [unquote(c.strip()).split(".")[-1] for c in (match.group(2) or "").split(",")
                                if c.strip()]
                self.rows = 0
        if not self.header:
            raise self.damaged(errors.NOT_A_PG_DUMP)
        if self.copying is not None:
            raise self.damaged(errors.copy_unfinished(self.copying))
        if self.complete_at is None or not self.after_complete_ok:
            raise self.damaged(errors.DUMP_UNFINISHED)

    def _copy_row(self, number: int, line: str) -> None:
        assert self.copying is not None
        if line == END_OF_COPY:
            self.tables[self.copying] = self.rows
            self.copying = None
            return
        fields = line.split("\t")
        if COPY_START.match(line) or (self.columns and len(fields) != len(self.columns)):
            raise self.damaged(errors.copy_row_broken(number, self.copying, len(fields), len(self.columns)))
        self.rows += 1
        if self.copying.split(".")[-1] == MIGRATIONS_TABLE:
            self._migration_row(dict(zip(self.columns, fields, strict=False)))

    def _migration_row(self, row: dict[str, str]) -> None:
        version = row.get("version")
        if version and version != "\\N" and row.get("status", "completed") == "completed":
            self.versions.append(version)

    def result(self) -> tuple[dict[str, int | None], tuple[str, ...]]:
        return dict(sorted(self.tables.items())), tuple(sorted(self.versions))


def as_manifest(contents: DumpContents, path: Path) -> JsonObject:
    """A file made by hand described like our manifests, for the check's answer and the request's card:
    no target (it does not say whose it is), its checksum as read now, and how it was verified."""
    return {"name": contents.name, "path": str(path), "target": None, "ours": False, "format": contents.format,
            "created_at": created_at(path).isoformat(timespec="seconds"), "size_bytes": contents.size_bytes,
            "sha256": contents.sha256, "verified": True, "verified_by": VERIFIED_BY[contents.format]}


def list_backups(backup_dir: str, target: str | None = None, *, now: datetime | None = None) -> list[JsonObject]:
    """Every backup in the folder, newest first: name, path, target, reason, created_at, size_bytes,
    age_seconds, sha256, verified, format and `ours`. Ours (a manifest beside it) say their target, and
    are listed for it alone; a file made by hand says no target, so it is listed for every target, its
    format read from its first bytes, unverified until a restore's check reads it whole."""
    directory = Path(backup_dir)
    if not directory.is_dir():
        return []
    moment = now or datetime.now(UTC)
    rows: list[JsonObject] = []
    for path in directory.iterdir():
        if path.name.startswith(PARTIAL_PREFIX) or path.suffix == MANIFEST_SUFFIX or path.name.startswith("."):
            continue
        manifest = read_manifest(path) or {}
        ours = bool(manifest.get("sha256"))
        when = str(manifest.get("created_at") or "")
        try:
            created = datetime.fromisoformat(when)
        except ValueError:
            created = created_at(path)
            when = created.isoformat(timespec="seconds")
        row: JsonObject = {
            "name": path.name,
            "path": str(path),
            "target": manifest.get("target"),
            "reason": manifest.get("reason"),
            "created_at": when,
            "size_bytes": archive_size(path),
            "age_seconds": max(0, int((moment - created).total_seconds())),
            "sha256": manifest.get("sha256"),
            "verified": bool(manifest.get("verified")) and ours,
            "format": manifest.get("format") or format_of(path),
            "ours": ours,
        }
        if target is None or not ours or row["target"] == target:
            rows.append(row)
    rows.sort(key=lambda r: (r["created_at"], r["name"]), reverse=True)
    return rows
