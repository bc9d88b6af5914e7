"""The one-line rendering of errors at the boundaries (pure)."""

from __future__ import annotations

import psycopg
import pytest

from core.errors import first_line
from workers.runtime.errors import describe


@pytest.mark.parametrize(("text", "expected"), [
    ("connection refused\nDETAIL: x", "connection refused"),
    ("\n  \nthe real line\n", "the real line"),
    ("   ", "fallback"),
    ("", "fallback"),
])
def test_first_line_is_the_first_non_blank_line(text: str, expected: str) -> None:
    assert first_line(text, "fallback") == expected


def test_an_error_with_a_blank_message_is_still_one_line() -> None:
    # PostgreSQL drivers can raise with an empty or whitespace message; describe() once raised IndexError on it.
    assert describe(psycopg.OperationalError("  \n ")) == (
        "the target's PostgreSQL is unreachable or stopped answering (OperationalError)")
    assert describe(psycopg.DataError(" ")) == "PostgreSQL error: DataError"
