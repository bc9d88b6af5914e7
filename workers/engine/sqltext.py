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
from pglast.parser import ParseError, parse_sql

from workers.engine import sqltokens
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
_COPY = re.compile(r"\bcopy\b", re.IGNORECASE)  # only COPY can stream through the client: parse only those


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


def _statements(script: str, spans: list[tuple[int, int]], catalog: Catalog) -> tuple[Statement, ...]:
    """Parse each statement on its own (its tree's locations are then relative to its text)."""
    out = []
    line, counted = 1, 0
    for start, end in spans:
        text = script[start:end]
        try:
            raws = parse_sql(text)
        except ParseError as exc:
            index = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else 0
            raise ParseError(exc.args[0] if exc.args else "syntax error", start + index) from None
        line += script.count("\n", counted, start)
        counted = start
        tree = raws[0].stmt if raws else None
        if tree is None:
            continue
        c = classify(tree, text, 0, catalog)
        out.append(Statement(text, start, line, c.kind, c.locks, c.destroys, c.transactional, c.unsupported, tree))
    return tuple(out)


def _without_bom(script: str) -> str:
    return script.replace(_BOM, " ", 1) if script.startswith(_BOM) else script  # offsets stay the same


def _spans(script: str) -> list[tuple[int, int]]:
    try:
        return sqltokens.statement_spans(script)
    except ParseError as exc:
        raise _explain(script, exc) from None


def parse_script(script: str, catalog: Catalog = NO_CATALOG) -> tuple[Statement, ...]:
    """Every statement of the script, in order, with what it locks and destroys; comment-only pieces are
    dropped. Raises `UnparseableScript` when PostgreSQL's parser refuses the script."""
    script = _without_bom(script)
    try:
        return _statements(script, _spans(script), catalog)
    except ParseError as exc:  # a statement alone does not parse although the script did: say where
        raise _explain(script, exc) from None


def split_statements(script: str) -> list[str]:
    """The script's statements' text, without the separating semicolons: what runs and what is shown.

    Cheaper than `parse_script` (no trees are built). Raises `UnparseableScript`.
    """
    script = _without_bom(script)
    return [script[start:end] for start, end in _spans(script)]


def _explain(script: str, exc: ParseError) -> UnparseableScript:
    message = str(exc.args[0]) if exc.args else "syntax error"
    index = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else 0
    index = max(0, min(index, len(script)))
    for start, text in _statements_before(script, index):
        problem = unsupported(text)
        if problem:
            return UnparseableScript(problem, _line_of(script, start), text, message)
    line_start = script.rfind("\n", 0, index) + 1
    line_end = script.find("\n", index)
    line_text = script[line_start:line_end if line_end >= 0 else len(script)]
    if script.startswith("\\", index):  # psql reads a backslash outside quotes as a meta-command
        command = script[index:line_end if line_end >= 0 else len(script)].strip()
        return UnparseableScript("psql_meta", _line_of(script, index), command, message)
    return UnparseableScript("syntax", _line_of(script, index), line_text.strip(), message)


def _statements_before(script: str, index: int) -> list[tuple[int, str]]:
    """(offset, text) of the statements that parse before the error at `index`: they end at the last
    semicolon that leaves a valid prefix (one inside a BEGIN ATOMIC body does not)."""
    try:
        found = sqltokens.tokens(script[:index])
    except ParseError:
        return []
    for token in reversed([t for t in found if t.name == "ASCII_59"]):
        try:
            spans = sqltokens.statement_spans(script[:token.end])
        except ParseError:
            continue
        return [(start, script[start:end]) for start, end in spans]
    return []


def parse_statement(text: str, catalog: Catalog = NO_CATALOG) -> Statement | None:
    """One statement (e.g. one a plan holds), or None when it does not parse."""
    try:
        statements = parse_script(text, catalog)
    except UnparseableScript:
        return None
    return statements[0] if statements else None


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
    if not _COPY.search(statement):
        return None
    parsed = parse_statement(statement)
    return parsed.unsupported if parsed else None


def one_line(statement: str, limit: int = 160) -> str:
    """A statement squeezed onto one line (comments dropped), for messages and logs."""
    try:
        words = [statement[t.start:t.end] for t in sqltokens.tokens(statement) if t.name not in sqltokens.COMMENTS]
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
