"""The kind registry (core/kinds.py) is the one place that says what differs per request kind.

Every kind has its verb, its worker module with the four names the one runner reads, a function for each of
its steps; and no code in bot/, core/ or workers/ branches on a request's kind outside the registry.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from bot import verbs
from core import kinds
from core.kinds import KINDS, RequestKind
from workers.runtime import approved_requests

ROOT = Path(__file__).resolve().parent.parent
# The registry itself, and the worker modules it names (each is one kind's own code).
REGISTRY = {ROOT / "core" / "kinds.py"}


def test_every_kind_has_a_record() -> None:
    assert set(KINDS) == set(RequestKind)


@pytest.mark.parametrize("kind", list(RequestKind))
def test_the_verb_of_each_kind_asks_for_that_kind(kind: RequestKind) -> None:
    verb = verbs.verb(KINDS[kind].verb)
    assert verb.approval is kind
    assert verbs.for_kind(kind) is verb


@pytest.mark.parametrize("kind", list(RequestKind))
def test_each_kind_has_a_worker_module_with_a_function_for_every_step(kind: RequestKind) -> None:
    module = importlib.import_module(KINDS[kind].module)
    for name in ("STEPS", "start_check", "promised", "succeeded"):
        assert hasattr(module, name), f"{module.__name__} lacks {name}"
    for step in (*KINDS[kind].steps, *KINDS[kind].scratch_steps):
        assert step.name in approved_requests.FUNCTIONS or step.name in module.STEPS, f"{kind}: no function for {step.name}"
    assert KINDS[kind].steps[-1].name == "finish"  # every kind's outcome goes through the one finish


@pytest.mark.parametrize("kind", list(RequestKind))
def test_each_kinds_words_render_for_a_request_of_that_kind(kind: RequestKind) -> None:
    class Asked:
        target, subject, backup, undoes, to_version = "prod", "42", "b.dump", "RB-AAAAAA", "2025_10_20_120001"
        params = {"tables": ["users"], "new_name": "prod-restored"}

    record = KINDS[kind]
    for template in (record.what, record.confirm, record.outcome, record.queued, record.card_note):
        text = kinds.words(template, Asked(), lambda v: f"`{v}`")
        assert "{" not in text and "None" not in text, (kind, template)
    assert "`prod`" in kinds.words(record.what, Asked(), lambda v: f"`{v}`")


def _kind_branches(path: Path) -> list[str]:
    """`x.kind is/== RequestKind.X`, `kind in {...}` of request kinds, and dicts keyed by RequestKind members."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            text = ast.unparse(node)
            if "RequestKind." in text or (("kind" in ast.unparse(node.left)) and any(
                    "RequestKind" in ast.unparse(c) or "BESIDE_TARGET" in ast.unparse(c) for c in node.comparators)):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {text}")
        if isinstance(node, ast.Dict) and any(k is not None and "RequestKind." in ast.unparse(k) for k in node.keys):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: a dict keyed by request kind")
    return found


def test_nothing_outside_the_registry_branches_on_a_requests_kind() -> None:
    files = [p for package in ("bot", "core", "workers") for p in (ROOT / package).rglob("*.py") if p not in REGISTRY]
    branches = [b for path in files for b in _kind_branches(path)]
    assert branches == []


def test_the_scan_finds_a_branch_on_the_kind(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("if request.kind is RequestKind.PITR:\n    pass\nX = {RequestKind.UNDO: 1}\n"
                      "if kind in (RequestKind.A, RequestKind.B):\n    pass\n")
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        assert len(_kind_branches(sample)) == 3
    finally:
        ROOT = saved
