"""Migration versions: the `YYYY_MM_DD_HHMMSS` format, pure (no files, no database, no Slack).

One definition for everyone who reads a version: the bot (parsing `/rollback dry-run <version>` and
the folders it can see), the engine (planning, the migrations folder) and verification.

- `looks_like_version(text)`: the shape alone (digits and underscores in the right places);
- `is_version(text)`: the shape and a real date and time (`2025_02_30_120000` is not one);
- `parse_version(text)`: the version, stripped, or `InvalidVersion` (a ValueError carrying the text);
- `split_folder(name)`: `("2025_10_20_120001", "add_x")` for a migration folder `2025_10_20_120001_add_x`;
- `versions_in(names)`: the versions of the migration folders among directory entries.

Versions sort as strings in time order, so `max()` and `sorted()` need no parsing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime

FORMAT = "YYYY_MM_DD_HHMMSS"
EXAMPLE = "2025_10_20_120001"
STRPTIME_FORMAT = "%Y_%m_%d_%H%M%S"
VERSION_PATTERN = re.compile(r"^(\d{4})_(\d{2})_(\d{2})_(\d{6})$")
FOLDER_PATTERN = re.compile(r"^(\d{4}_\d{2}_\d{2}_\d{6})_([A-Za-z0-9][A-Za-z0-9_.-]*)$")


class InvalidVersion(ValueError):
    """`text` is not a `YYYY_MM_DD_HHMMSS` version; callers turn it into their own one-line error."""

    def __init__(self, text: str) -> None:
        super().__init__(f"{text!r} is not a migration version ({FORMAT}, e.g. {EXAMPLE})")
        self.text = text


def looks_like_version(text: str) -> bool:
    """The shape only: what a person meant as a version, even with an impossible date."""
    return VERSION_PATTERN.match(text) is not None


def is_version(text: str) -> bool:
    """The shape and a real calendar date and time."""
    if not looks_like_version(text):
        return False
    try:
        datetime.strptime(text, STRPTIME_FORMAT)
    except ValueError:
        return False
    return True


def parse_version(text: str) -> str:
    """`text` without surrounding blanks if it is a valid version; raises InvalidVersion otherwise."""
    cleaned = text.strip()
    if not is_version(cleaned):
        raise InvalidVersion(text)
    return cleaned


def to_datetime(version: str) -> datetime:
    """The moment a version names (naive: versions carry no time zone)."""
    return datetime.strptime(parse_version(version), STRPTIME_FORMAT)


def split_folder(name: str) -> tuple[str, str] | None:
    """(version, name) of a migration folder `<version>_<name>`; None for any other entry."""
    match = FOLDER_PATTERN.match(name)
    if not match or not is_version(match.group(1)):
        return None
    return match.group(1), match.group(2)


def folder_version(name: str) -> str | None:
    split = split_folder(name)
    return split[0] if split else None


def versions_in(names: Iterable[str]) -> set[str]:
    """The versions of the migration folders among `names` (other entries are ignored)."""
    return {version for version in map(folder_version, names) if version is not None}
