"""Step 7 of the playbook, monitor: after a verified rollback or restore, keep looking for a window.

Pure rules over samples (the I/O that takes them lives with the job): each sample holds the health
URL's answer and latency, the smoke command's outcome, the database's connection count and its
commit/rollback counters. `Watch.observe` compares a sample with the last one and returns what
changed, each change marked as a regression or a recovery, so the thread gets one compact line per
change, a regression pages, and a window that ends with nothing regressed resolves the page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Signal(StrEnum):
    HEALTH = "health"
    SMOKE = "smoke"
    ERROR_RATE = "error_rate"
    CONNECTIONS = "connections"


@dataclass(frozen=True)
class Sample:
    at: float  # seconds (monotonic or epoch, as long as one watch uses one)
    health_ok: bool | None = None  # None: no health URL configured
    health_ms: float | None = None
    smoke_ok: bool | None = None  # None: no smoke command configured
    connections: int | None = None
    commits: int | None = None  # pg_stat_database.xact_commit, cumulative
    rollbacks: int | None = None  # pg_stat_database.xact_rollback, cumulative


@dataclass(frozen=True)
class Thresholds:
    # Share of transactions rolled back between two samples above which the app is failing.
    max_error_rate: float = 0.05
    # Ignore error rates measured over fewer transactions than this (a quiet minute is not a signal).
    min_transactions: int = 20
    # A change of the connection count by this factor either way is reported (not paged: it may be a deploy).
    connections_factor: float = 2.0


@dataclass(frozen=True)
class Change:
    signal: Signal
    before: str
    after: str
    regression: bool  # True: worse (pages); False: recovered or merely different (a line only)


def error_rate(previous: Sample, current: Sample, min_transactions: int) -> float | None:
    """Rolled-back share of the transactions between two samples; None when there were too few."""
    if None in (previous.commits, previous.rollbacks, current.commits, current.rollbacks):
        return None
    commits = int(current.commits or 0) - int(previous.commits or 0)
    rollbacks = int(current.rollbacks or 0) - int(previous.rollbacks or 0)
    total = commits + rollbacks
    if total < min_transactions or total <= 0:
        return None
    return rollbacks / total


def _ok(value: bool | None) -> str:
    return "n/a" if value is None else ("ok" if value else "failing")


@dataclass
class Watch:
    thresholds: Thresholds = field(default_factory=Thresholds)
    last: Sample | None = None
    failing: set[Signal] = field(default_factory=set)  # signals in regression right now
    regressed: bool = False  # anything regressed at any time in the window

    def observe(self, sample: Sample) -> list[Change]:
        changes: list[Change] = []
        previous, self.last = self.last, sample
        if previous is None:
            for signal, ok in ((Signal.HEALTH, sample.health_ok), (Signal.SMOKE, sample.smoke_ok)):
                if ok is False:  # failing from the first look: a regression to report at once
                    changes.append(self._flip(signal, "n/a", "failing", regressed=True))
            return changes
        for signal, before, after in ((Signal.HEALTH, previous.health_ok, sample.health_ok),
                                      (Signal.SMOKE, previous.smoke_ok, sample.smoke_ok)):
            if after is None or before == after:
                continue
            changes.append(self._flip(signal, _ok(before), _ok(after), regressed=after is False))
        rate = error_rate(previous, sample, self.thresholds.min_transactions)
        if rate is not None:
            high = rate > self.thresholds.max_error_rate
            if high != (Signal.ERROR_RATE in self.failing):
                changes.append(self._flip(Signal.ERROR_RATE, "normal" if high else "high", f"{rate:.1%}", regressed=high))
        if previous.connections and sample.connections is not None:
            factor = self.thresholds.connections_factor
            if sample.connections >= previous.connections * factor or sample.connections * factor <= previous.connections:
                changes.append(Change(Signal.CONNECTIONS, str(previous.connections), str(sample.connections), False))
        return changes

    def _flip(self, signal: Signal, before: str, after: str, *, regressed: bool) -> Change:
        if regressed:
            self.failing.add(signal)
            self.regressed = True
        else:
            self.failing.discard(signal)
        return Change(signal, before, after, regressed)

    @property
    def clean(self) -> bool:
        """Nothing is failing now (the page, if any, can be resolved when the window ends)."""
        return not self.failing
