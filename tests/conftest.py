"""Fixtures are split by area into plugins under tests/fixtures/ (one owner each)."""

pytest_plugins = [
    "tests.fixtures.services",
    "tests.fixtures.fakes",
    "tests.fixtures.stack",
    "tests.fixtures.bot",
]
