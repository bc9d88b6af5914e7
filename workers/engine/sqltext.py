"""Pure: split migration scripts into statements with PostgreSQL's own parser, and say what each one does.

pglast wraps libpg_query, which is PostgreSQL's grammar and lexer compiled as a library: strings, E''
escapes, nested $tag$ dollar quotes, BEGIN ATOMIC bodies and comments are read exactly as the server reads
them. Each statement keeps its exact source text (what runs and what people see) and where it starts; what
it locks and destroys comes from `sqleffects.py`. A script that does not parse is refused with PostgreSQL's
own message and line, before anything runs; psql meta-commands (`\\connect`, `\\copy`) are not SQL and are
named as such.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pglast import ast
from pglast.parser import ParseError, parse_sql, scan

from workers.engine.sqleffects import (
    NO_CATALOG,
    Catalog,
    DestroyKind,
    Destruction,
    LockTarget,
    classify,
    range_name,
)

NO_TRANSACTION_MARKER = "-- rollback-bot: no-transaction"
_BOM = "\ufeff"


@dataclass(frozen=True)
class Statement:
    text: str  # exact source text, without the ending semicolon: what runs and what is shown
    location: int  # character offset of `text` in its script
    line: int  # 1-based line of the script where it starts
    kind: str  # the command: DROP TABLE, ALTER TABLE, CREATE INDEX, UPDATE, SELECT, ...
    locks: tuple[LockTarget, ...]  # relations it locks and in which mode (catalog-found ones carry `via`)
    destroys: tuple[Destruction, ...]  # what data it destroys or overwrites
    transactional: bool  # False: PostgreSQL refuses it inside a transaction block
    unsupported: str | None = None  # copy_from_stdin | copy_to_stdout: the engine cannot run it
    tree: ast.Node | None = field(default=None, compare=False, repr=False)  # pglast's parse tree


class UnparseableScript(Exception):
    """A script PostgreSQL's parser refuses. `problem`: syntax | psql_meta | copy_from_stdin | copy_to_stdout.

    The COPY problems appear here when the data that follows `COPY ... FROM stdin;` in a psql script is
    what does not parse: the COPY is the thing to fix, so it is named rather than the data.
    """

    def __init__(self, problem: str, line: int, statement: str, pg_message: str) -> None:
        self.problem, self.line, self.statement, self.pg_message = problem, line, statement, pg_message
        super().__init__(f"line {line}: {pg_message}")


def _line_of(script: str, offset: int) -> int:
    return script.count("\n", 0, offset) + 1


def _build(script: str, raw: ast.RawStmt, catalog: Catalog) -> Statement | None:
    start = raw.stmt_location or 0
    end = start + raw.stmt_len if raw.stmt_len else len(script)
    piece = script[start:end]
    text = piece.strip()
    if not text or raw.stmt is None:
        return None
    location = start + (len(piece) - len(piece.lstrip()))
    c = classify(raw.stmt, text, location, catalog)
    return Statement(text, location, _line_of(script, location), c.kind, c.locks, c.destroys,
                     c.transactional, c.unsupported, raw.stmt)


def _parse(script: str, catalog: Catalog) -> tuple[Statement, ...]:
    out = (_build(script, raw, catalog) for raw in parse_sql(script))
    return tuple(s for s in out if s is not None)


def parse_script(script: str, catalog: Catalog = NO_CATALOG) -> tuple[Statement, ...]:
    """Every statement of the script, in order; comment-only pieces are dropped.

    Raises `UnparseableScript` when PostgreSQL's parser refuses the script.
    """
    script = script.replace(_BOM, " ", 1) if script.startswith(_BOM) else script  # offsets stay the same
    try:
        return _parse(script, catalog)
    except ParseError as exc:
        raise _explain(script, exc) from None


def _explain(script: str, exc: ParseError) -> UnparseableScript:
    message = str(exc.args[0]) if exc.args else "syntax error"
    index = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else 0
    index = max(0, min(index, len(script)))
    for statement in _statements_before(script, index):
        if statement.unsupported:
            return UnparseableScript(statement.unsupported, statement.line, statement.text, message)
    line_start = script.rfind("\n", 0, index) + 1
    line_end = script.find("\n", index)
    line_text = script[line_start:line_end if line_end >= 0 else len(script)]
    if script.startswith("\\", index):  # psql reads a backslash outside quotes as a meta-command
        return UnparseableScript("psql_meta", _line_of(script, index), script[index:index + len(line_text)]
                                 .split("\n", 1)[0].strip(), message)
    return UnparseableScript("syntax", _line_of(script, index), line_text.strip(), message)


def _statements_before(script: str, index: int) -> tuple[Statement, ...]:
    """The statements that parse before the error at `index`: ends at the last semicolon that leaves a valid
    prefix (one inside a BEGIN ATOMIC body does not)."""
    try:
        tokens = scan(script[:index])
    except ParseError:
        return ()
    for token in reversed([t for t in tokens if t.name == "ASCII_59"]):
        try:
            return _parse(script[:token.end + 1], NO_CATALOG)
        except ParseError:
            continue
    return ()


def parse_statement(text: str, catalog: Catalog = NO_CATALOG) -> Statement | None:
    """One statement (e.g. one a plan holds), or None when it does not parse."""
    try:
        statements = parse_script(text, catalog)
    except UnparseableScript:
        return None
    return statements[0] if statements else None


def split_statements(script: str) -> list[str]:
    """The script's statements' text, without the separating semicolons. Raises `UnparseableScript`."""
    return [s.text for s in parse_script(script)]


def is_no_transaction(script: str) -> bool:
    """True when the script's first line is the no-transaction marker."""
    first = script.lstrip(_BOM).split("\n", 1)[0].strip().lower()
    return first.replace(" ", "") == NO_TRANSACTION_MARKER.replace(" ", "")


def unsupported(statement: str) -> str | None:
    """Why a migration statement cannot run through the engine, or None.

    COPY FROM STDIN / TO STDOUT stream data through the client (psql feeds them from the script);
    psql meta-commands (`\\copy`, `\\i`, `\\set`) are not SQL at all.
    """
    if statement.lstrip().startswith("\\"):
        return "psql_meta"
    parsed = parse_statement(statement)
    return parsed.unsupported if parsed else None


def one_line(statement: str, limit: int = 160) -> str:
    """A statement squeezed onto one line (comments dropped), for messages and logs."""
    try:
        words = [statement[t.start:t.end + 1] for t in scan(statement) if t.name not in ("SQL_COMMENT", "C_COMMENT")]
    except ParseError:
        words = statement.split()
    text = " ".join(words)
    text = re.sub(r"\s+([,.;)])", r"\1", text)
    text = re.sub(r"([(.])\s+", r"\1", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- what the dry run measures ------------------------------------------------------------------


@dataclass(frozen=True)
class Effects:
    """What a statement does to data, as far as the dry run needs to measure it."""

    command: str  # DROP TABLE, ALTER TABLE, UPDATE, ...
    dropped_tables: tuple[tuple[str, ...], ...] = ()  # qualified names
    dropped_columns: tuple[tuple[tuple[str, ...], str], ...] = ()  # (table, column)
    truncated_tables: tuple[tuple[str, ...], ...] = ()
    target: tuple[str, ...] | None = None  # UPDATE / DELETE / INSERT target, ALTER TABLE / CREATE INDEX table
    locked: tuple[tuple[str, ...], ...] = ()  # every relation it locks

    @property
    def relations(self) -> list[tuple[str, ...]]:
        """Every table the statement must lock (to find who blocks it)."""
        names = [*self.dropped_tables, *self.truncated_tables, *(t for t, _ in self.dropped_columns)]
        if self.target:
            names.append(self.target)
        return list(dict.fromkeys([*names, *self.locked]))


def effects(statement: str) -> Effects:
    parsed = parse_statement(statement)
    if parsed is None:
        return Effects(" ".join(statement.split()[:2]).upper())
    of = {kind: [d for d in parsed.destroys if d.kind == kind and d.via is None] for kind in DestroyKind}
    tree = parsed.tree
    target = None
    if isinstance(tree, ast.AlterTableStmt | ast.IndexStmt | ast.UpdateStmt | ast.DeleteStmt | ast.InsertStmt):
        target = range_name(tree.relation)
    return Effects(
        parsed.kind,
        dropped_tables=tuple(d.relation for d in of[DestroyKind.DROP_TABLE]),
        dropped_columns=tuple((d.relation, c) for d in of[DestroyKind.DROP_COLUMN] for c in d.columns),
        truncated_tables=tuple(d.relation for d in of[DestroyKind.TRUNCATE]),
        target=target,
        locked=tuple(dict.fromkeys(t.relation for t in parsed.locks)),
    )
