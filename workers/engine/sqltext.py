"""A small SQL lexer: split a script into statements, and spot the statements that lose data.

It understands what makes naive splitting wrong: 'strings' (with '' and E'\\' escapes), "identifiers",
$tag$ dollar-quoted bodies $tag$, -- line comments and nested /* block */ comments.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NO_TRANSACTION_MARKER = "-- rollback-bot: no-transaction"

_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
_NUMBER = re.compile(r"\d+(?:\.\d*)?(?:[eE][+-]?\d+)?")


@dataclass(frozen=True)
class Token:
    kind: str  # word | ident | string | number | punct
    text: str  # as written
    value: str  # words lower-cased, quoted identifiers unquoted (case kept)


def _skip_quoted(text: str, i: int, quote: str, backslash: bool) -> int:
    """Index just past the closing quote of the literal starting at text[i]."""
    i += 1
    n = len(text)
    while i < n:
        ch = text[i]
        if backslash and ch == "\\":
            i += 2
            continue
        if ch == quote:
            if i + 1 < n and text[i + 1] == quote:  # doubled quote is an escaped quote
                i += 2
                continue
            return i + 1
        i += 1
    return n


def _skip_block_comment(text: str, i: int) -> int:
    depth, i, n = 1, i + 2, len(text)
    while i < n and depth:
        if text.startswith("/*", i):
            depth, i = depth + 1, i + 2
        elif text.startswith("*/", i):
            depth, i = depth - 1, i + 2
        else:
            i += 1
    return i


def _lex(text: str) -> list[tuple[int, int, str]]:
    """(start, end, kind) spans; kinds: comment, space, string, ident, dollar, word, number, punct."""
    spans: list[tuple[int, int, str]] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            j = i + 1
            while j < n and text[j].isspace():
                j += 1
            spans.append((i, j, "space"))
        elif text.startswith("--", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            spans.append((i, j, "comment"))
        elif text.startswith("/*", i):
            j = _skip_block_comment(text, i)
            spans.append((i, j, "comment"))
        elif ch in "eE" and i + 1 < n and text[i + 1] == "'":
            j = _skip_quoted(text, i + 1, "'", backslash=True)
            spans.append((i, j, "string"))
        elif ch == "'":
            j = _skip_quoted(text, i, "'", backslash=False)
            spans.append((i, j, "string"))
        elif ch == '"':
            j = _skip_quoted(text, i, '"', backslash=False)
            spans.append((i, j, "ident"))
        elif ch == "$" and (m := _DOLLAR_TAG.match(text, i)):
            tag = m.group(0)
            end = text.find(tag, m.end())
            j = n if end < 0 else end + len(tag)
            spans.append((i, j, "string"))
        elif m := _WORD.match(text, i):
            spans.append((i, m.end(), "word"))
        elif m := _NUMBER.match(text, i):
            spans.append((i, m.end(), "number"))
        else:
            spans.append((i, i + 1, "punct"))
            j = i + 1
            i = j
            continue
        i = spans[-1][1]
    return spans


def split_statements(script: str) -> list[str]:
    """The script's statements, without the separating semicolons; comment-only pieces are dropped.

    A `BEGIN ATOMIC ... END` function body (whose inner semicolons do not end the statement) is kept whole.
    """
    statements: list[str] = []
    start = 0
    atomic_depth = 0
    prev_word = ""
    meaningful = False
    for s, e, kind in _lex(script):
        if not meaningful and kind not in ("space", "comment"):
            start = s  # leading comments belong to no statement
        if kind == "word":
            word = script[s:e].lower()
            if prev_word == "begin" and word == "atomic":
                atomic_depth += 1
            elif word == "end" and atomic_depth:
                atomic_depth -= 1
            prev_word = word
        if kind == "punct" and script[s] == ";" and not atomic_depth:
            if meaningful:
                statements.append(script[start:s].strip())
            start, meaningful, prev_word = e, False, ""
            continue
        if kind not in ("space", "comment"):
            meaningful = True
    if meaningful:
        statements.append(script[start:].strip())
    return statements


def tokens(statement: str) -> list[Token]:
    out = []
    for s, e, kind in _lex(statement):
        text = statement[s:e]
        if kind in ("space", "comment"):
            continue
        if kind == "word":
            out.append(Token("word", text, text.lower()))
        elif kind == "ident":
            out.append(Token("ident", text, text[1:-1].replace('""', '"')))
        else:
            out.append(Token(kind, text, text))
    return out


def is_no_transaction(script: str) -> bool:
    """True when the script's first line is the no-transaction marker."""
    first = script.lstrip("\ufeff").split("\n", 1)[0].strip().lower()
    return first.replace(" ", "") == NO_TRANSACTION_MARKER.replace(" ", "")


# --- statements the engine cannot run ----------------------------------------------------------


def unsupported(statement: str) -> str | None:
    """Why a migration statement cannot run through the engine, or None.

    COPY FROM STDIN / TO STDOUT stream data through the client (psql feeds them from the script);
    psql meta-commands (`\\copy`, `\\i`, `\\set`) are not SQL at all.
    """
    if statement.lstrip().startswith("\\"):
        return "psql_meta"
    toks = tokens(statement)
    if not toks or toks[0].kind != "word" or toks[0].value != "copy":
        return None
    depth = 0
    top_level: list[str] = []  # words outside parentheses: a table named stdin inside a query does not count
    for tok in toks:
        if tok.kind == "punct" and tok.value in "()":
            depth += 1 if tok.value == "(" else -1
        elif tok.kind == "word" and depth == 0:
            top_level.append(tok.value)
    pairs = set(zip(top_level, top_level[1:], strict=False))
    if ("from", "stdin") in pairs:
        return "copy_from_stdin"
    if ("to", "stdout") in pairs:
        return "copy_to_stdout"
    return None


# --- statements that lose data -------------------------------------------------------------------


@dataclass(frozen=True)
class Effects:
    """What a statement does to data, as far as the dry run needs to measure it."""

    command: str  # first keyword(s), upper-case: DROP TABLE, ALTER TABLE, UPDATE, ...
    dropped_tables: tuple[tuple[str, ...], ...] = ()  # qualified names
    dropped_columns: tuple[tuple[tuple[str, ...], str], ...] = ()  # (table, column)
    truncated_tables: tuple[tuple[str, ...], ...] = ()
    target: tuple[str, ...] | None = None  # UPDATE / DELETE / INSERT target, ALTER TABLE / CREATE INDEX table

    @property
    def relations(self) -> list[tuple[str, ...]]:
        """Every table the statement names: the ones it must lock (to find who blocks it)."""
        names = [*self.dropped_tables, *self.truncated_tables, *(t for t, _ in self.dropped_columns)]
        if self.target:
            names.append(self.target)
        return list(dict.fromkeys(names))


class _Cursor:
    def __init__(self, toks: list[Token]) -> None:
        self.toks, self.i = toks, 0

    def peek(self, offset: int = 0) -> Token | None:
        j = self.i + offset
        return self.toks[j] if j < len(self.toks) else None

    def word(self, *values: str) -> bool:
        """Consume the next tokens if they are exactly these keywords."""
        for k, value in enumerate(values):
            tok = self.peek(k)
            if tok is None or tok.kind != "word" or tok.value != value:
                return False
        self.i += len(values)
        return True

    def punct(self, value: str) -> bool:
        tok = self.peek()
        if tok is not None and tok.kind == "punct" and tok.value == value:
            self.i += 1
            return True
        return False

    def name(self) -> tuple[str, ...] | None:
        """A possibly schema-qualified name."""
        parts: list[str] = []
        while True:
            tok = self.peek()
            if tok is None or tok.kind not in ("word", "ident"):
                return tuple(parts) or None
            parts.append(tok.value)
            self.i += 1
            if not self.punct("."):
                return tuple(parts)

    def skip_to_top_level_comma(self) -> bool:
        depth = 0
        while (tok := self.peek()) is not None:
            self.i += 1
            if tok.kind == "punct":
                if tok.value == "(":
                    depth += 1
                elif tok.value == ")":
                    depth -= 1
                elif tok.value == "," and depth == 0:
                    return True
        return False


def effects(statement: str) -> Effects:
    toks = tokens(statement)
    cur = _Cursor(toks)
    words = [t.value.upper() for t in toks[:2] if t.kind == "word"]
    if cur.word("drop", "table"):
        cur.word("if", "exists")
        tables = []
        while (name := cur.name()) is not None:
            tables.append(name)
            if not cur.punct(","):
                break
        return Effects("DROP TABLE", dropped_tables=tuple(tables))
    if cur.word("alter", "table"):
        cur.word("if", "exists")
        cur.word("only")
        table = cur.name()
        cur.punct("*")
        columns = []
        while table is not None and cur.peek() is not None:
            if cur.word("drop"):
                if cur.word("constraint"):
                    pass
                else:
                    cur.word("column")
                    cur.word("if", "exists")
                    col = cur.peek()
                    if col is not None and col.kind in ("word", "ident"):
                        columns.append((table, col.value))
            if not cur.skip_to_top_level_comma():
                break
        return Effects("ALTER TABLE", dropped_columns=tuple(columns), target=table)
    if cur.word("truncate"):
        cur.word("table")
        tables = []
        while True:
            cur.word("only")
            name = cur.name()
            if name is None:
                break
            tables.append(name)
            cur.punct("*")
            if not cur.punct(","):
                break
        return Effects("TRUNCATE", truncated_tables=tuple(tables))
    if cur.word("create", "index") or cur.word("create", "unique", "index"):
        while (tok := cur.peek()) is not None and not (tok.kind == "word" and tok.value == "on"):
            cur.i += 1
        cur.word("on")
        cur.word("only")
        return Effects("CREATE INDEX", target=cur.name())
    if cur.word("update"):
        cur.word("only")
        return Effects("UPDATE", target=cur.name())
    if cur.word("delete", "from"):
        cur.word("only")
        return Effects("DELETE", target=cur.name())
    if cur.word("insert", "into"):
        return Effects("INSERT", target=cur.name())
    return Effects(" ".join(words))


def one_line(statement: str, limit: int = 160) -> str:
    """A statement squeezed onto one line (comments dropped), for messages and logs."""
    text = " ".join(t.text for t in tokens(statement))
    text = re.sub(r"\s+([,.;)])", r"\1", text)
    text = re.sub(r"([(.])\s+", r"\1", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"
