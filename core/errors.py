"""The project's one error base: every expected failure is one line saying what is wrong and what to do.

Domain errors subclass it and carry their data; a boundary (the CLI, a job's failure report, the
bot's answer) prints `str(error)` or `error.render(advice)` and nothing else. Causes stay chained
(`raise ... from err`) so the log keeps them; only the rendered line reaches a person.
"""

from __future__ import annotations


class RollbackError(Exception):
    """Base of every expected failure of the bot, the workers and the engine. `str()` is one line."""

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))

    @property
    def message(self) -> str:
        return str(self)


def one_line(text: str) -> str:
    """Any text as one line: newlines and runs of spaces become one space."""
    return " ".join(text.split())


def first_line(error: object, default: str = "") -> str:
    """The first non-blank line of an error's text (PostgreSQL adds DETAIL and HINT lines), else `default`."""
    return next((line.strip() for line in str(error).splitlines() if line.strip()), default)
