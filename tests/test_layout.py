"""The package table in docs/ARCHITECTURE.md names every module of bot/, core/ and workers/, and only those:
a module added, moved or removed without its line in the table fails here (issue 17, the layout a newcomer reads)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bot", "core", "workers")
SECTION = re.compile(r"^## Packages\n(.*?)(?=^## )", re.S | re.M)
ROW = re.compile(r"^\| `([\w/]+/)` \|(.*)$", re.M)
NAME = re.compile(r"`([\w/]+\.py)`")


def documented() -> set[str]:
    """Every module a row of the package table names: `name.py` relative to the row's package, or a path."""
    section = SECTION.search((ROOT / "docs" / "ARCHITECTURE.md").read_text())
    assert section, "docs/ARCHITECTURE.md has no `## Packages` section"
    found: set[str] = set()
    for package, rest in ROW.findall(section.group(1)):
        for name in NAME.findall(rest):
            found.add(name if "/" in name else package + name)
    return found


def on_disk() -> set[str]:
    return {p.relative_to(ROOT).as_posix() for package in PACKAGES for p in (ROOT / package).rglob("*.py")
            if "__pycache__" not in p.parts}


def test_the_package_table_names_every_module() -> None:
    missing = sorted(on_disk() - documented())
    assert not missing, f"modules not in docs/ARCHITECTURE.md's package table: {missing}"


def test_the_package_table_names_no_module_that_is_gone() -> None:
    gone = sorted(documented() - on_disk())
    assert not gone, f"docs/ARCHITECTURE.md's package table names modules that do not exist: {gone}"


def test_every_dotted_job_path_resolves() -> None:
    """The bot enqueues jobs by dotted path (bot/verbs.py, core/kinds.py) and RQ stores callbacks by dotted path:
    after a module moves, each must still name a function (a stale one fails only when a worker runs it)."""
    import importlib
    import types

    paths: set[str] = set()
    for source in ("bot/verbs.py", "core/kinds.py", "workers/runtime/approved_requests.py", "workers/verbs/watch.py",
                   "workers/runtime/failures.py", "workers/__main__.py"):
        paths |= {p for p in re.findall(r'"(workers\.[\w.]+)"', (ROOT / source).read_text()) if not p.endswith(".")}
    assert "workers.jobs.run_request" in paths
    for path in sorted(paths):
        module, _, name = path.rpartition(".")
        try:
            found = getattr(importlib.import_module(module), name)
        except ModuleNotFoundError:
            continue  # a logger's or a package's name, not a callable's path
        if not isinstance(found, types.ModuleType):  # a module's own name (a logger's) is not a job
            assert callable(found), path


def test_an_unknown_job_is_refused() -> None:
    import pytest

    import workers.jobs

    with pytest.raises(AttributeError):
        workers.jobs.no_such_verb  # noqa: B018


def test_the_table_is_read() -> None:
    """The parse itself can fail: it must find the modules of each package (a renamed heading would pass above)."""
    modules = documented()
    for package in PACKAGES:
        assert any(m.startswith(package + "/") for m in modules), package
