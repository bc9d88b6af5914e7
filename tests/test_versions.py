"""core/versions.py: the one definition of a migration version, pure."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import versions


@pytest.mark.parametrize(
    ("text", "shaped", "valid"),
    [
        ("2025_10_20_120001", True, True),
        ("2025_02_30_120000", True, False),  # no 30 February
        ("2025_10_20_999999", True, False),  # no 99:99:99
        ("2025-10-20", False, False),
        ("20251020120001", False, False),
        ("nonsense", False, False),
        ("2025_10_20_120001_x", False, False),
        ("", False, False),
    ],
)
def test_shape_and_validity(text: str, shaped: bool, valid: bool) -> None:
    assert versions.looks_like_version(text) is shaped
    assert versions.is_version(text) is valid


def test_parse_strips_or_raises_with_the_text() -> None:
    assert versions.parse_version(" 2025_10_20_120001\n") == "2025_10_20_120001"
    with pytest.raises(versions.InvalidVersion) as err:
        versions.parse_version("2025_13_01_000000")
    assert err.value.text == "2025_13_01_000000" and versions.FORMAT in str(err.value)
    assert isinstance(err.value, ValueError)
    assert versions.to_datetime("2025_10_20_120001") == datetime(2025, 10, 20, 12, 0, 1)


def test_folder_names() -> None:
    assert versions.split_folder("2025_10_20_120001_add_users") == ("2025_10_20_120001", "add_users")
    assert versions.split_folder("2025_10_20_120001") is None  # a folder needs a name after the version
    assert versions.split_folder("2025_02_30_120000_x") is None
    assert versions.split_folder("README.md") is None
    names = ["2025_10_20_120001_a", "2025_10_20_150000_b.c", "notes", "2025_10_20_150000", ".git"]
    assert versions.versions_in(names) == {"2025_10_20_120001", "2025_10_20_150000"}


MOMENTS = st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 31)).map(
    lambda m: m.replace(microsecond=0))


@given(MOMENTS, MOMENTS)
def test_every_moment_round_trips_and_sorts_in_time_order(a: datetime, b: datetime) -> None:
    text_a, text_b = a.strftime(versions.STRPTIME_FORMAT), b.strftime(versions.STRPTIME_FORMAT)
    assert versions.is_version(text_a) and versions.to_datetime(text_a) == a
    assert (text_a <= text_b) == (a <= b)


@given(st.text(max_size=30))
def test_anything_else_is_refused_without_crashing(text: str) -> None:
    if versions.is_version(text):
        assert versions.parse_version(text) == text
    else:
        with pytest.raises(versions.InvalidVersion):
            versions.parse_version(text)
