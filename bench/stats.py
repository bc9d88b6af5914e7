"""Pure figures: summaries of repeated timings, ratios within a run, and the issue's targets."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Summary:
    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        if not values:
            raise ValueError("no values to summarize")
        return cls(statistics.median(values), min(values), max(values), len(values))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def interleaved(variants: Sequence[str], reps: int) -> list[tuple[int, str]]:
    """(repetition, variant) in the order A, B, C, A, B, C, …: drift on a busy machine hits all alike."""
    return [(rep, name) for rep in range(reps) for name in variants]


def run_interleaved(variants: Mapping[str, Callable[[int], float]], reps: int,
                    say: Callable[[str], None] = print, label: str = "") -> dict[str, list[float]]:
    """Run each variant `reps` times, interleaved; returns the seconds of each run per variant."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for rep, name in interleaved(list(variants), reps):
        seconds = variants[name](rep)
        times[name].append(seconds)
        say(f"  {label}{name:<34} rep {rep + 1}/{reps}: {seconds:8.2f} s")
    return times


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (p99 of 200 values is the 198th smallest)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    rank = max(1, min(len(ordered), math.ceil(fraction * len(ordered) - 1e-9)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Verdict:
    figure: str
    target: str
    measured: str
    met: bool | None  # None: cannot be judged yet (e.g. the forecast of issue 12)

    @property
    def word(self) -> str:
        return "n/a" if self.met is None else ("met" if self.met else "missed")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "word": self.word}


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else float("inf")


def check_ack(p99_ms: float, errors: int) -> bool:
    return p99_ms <= 50.0 and errors == 0


def check_backup(product: float, playbook: float) -> bool:
    return ratio(product, playbook) <= 0.25


def check_restore(product: float, playbook: float) -> bool:
    return ratio(product, playbook) <= 0.7


def check_rollback(product: float, psql: float) -> bool:
    return product <= 1.1 * psql + 0.1


def check_end_to_end(product: float, floors: float) -> bool:
    return ratio(product, floors) <= 1.2
