"""Load migrations from disk: `<dir>/<version>_<name>/up.sql` and `down.sql` (or `rollback.sql`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from core.versions import split_folder
from workers.engine import sqltext
from workers.engine.errors import MigrationsDirError, UnparseableScript, UnsupportedStatement

UP_FILE = "up.sql"
DOWN_FILES = ("down.sql", "rollback.sql")  # the playbook allows either name


@dataclass(frozen=True)
class Script:
    path: Path
    sql: str
    checksum: str  # sha256 of the file's bytes
    transactional: bool

    @cached_property
    def statements(self) -> list[str]:
        """The statements' text, split by PostgreSQL's parser; refuses a script that does not parse."""
        try:
            return sqltext.split_statements(self.sql)
        except sqltext.UnparseableScript as exc:
            raise self._refusal(exc) from None

    @cached_property
    def parsed(self) -> tuple[sqltext.Statement, ...]:
        """The statements with what each locks and destroys (no catalog: only what the text says)."""
        try:
            return sqltext.parse_script(self.sql)
        except sqltext.UnparseableScript as exc:
            raise self._refusal(exc) from None

    def _refusal(self, exc: sqltext.UnparseableScript) -> UnparseableScript | UnsupportedStatement:
        if exc.problem == "syntax":
            return UnparseableScript(str(self.path), exc.line, exc.pg_message)
        return UnsupportedStatement(str(self.path), exc.statement, exc.problem)

    def check_supported(self) -> None:
        """Refuse, before anything runs, a script that does not parse or a statement the engine cannot execute
        (e.g. COPY FROM STDIN, psql meta-commands)."""
        for statement in self.statements:
            problem = sqltext.unsupported(statement)
            if problem:
                raise UnsupportedStatement(str(self.path), statement, problem)


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    folder: Path
    up: Script | None
    down: Script | None


@dataclass(frozen=True)
class MigrationSet:
    directory: Path
    migrations: dict[str, Migration]  # by version
    ignored: tuple[str, ...]  # entries that are not migration folders (reported as warnings)

    def get(self, version: str) -> Migration | None:
        return self.migrations.get(version)


def _script(path: Path) -> Script:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise MigrationsDirError(str(path), "not_utf8") from None
    return Script(path, text, hashlib.sha256(data).hexdigest(), not sqltext.is_no_transaction(text))


def load(directory: str | Path) -> MigrationSet:
    root = Path(directory)
    if not root.is_dir():
        raise MigrationsDirError(str(root), "not_a_folder" if root.exists() else "missing")
    migrations: dict[str, Migration] = {}
    ignored: list[str] = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        parsed = split_folder(entry.name)
        if parsed is None:
            ignored.append(entry.name)
            continue
        version, name = parsed
        if version in migrations:
            raise MigrationsDirError(str(root), f"duplicate:{version}")
        up_path = entry / UP_FILE
        down_path = next((entry / f for f in DOWN_FILES if (entry / f).is_file()), None)
        migrations[version] = Migration(
            version=version,
            name=name,
            folder=entry,
            up=_script(up_path) if up_path.is_file() else None,
            down=_script(down_path) if down_path else None,
        )
    return MigrationSet(root, migrations, tuple(ignored))
