"""The watch window's rules (pure): what changed, what regressed, when it is clean again."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from workers.verbs.watch import Sample, Signal, Thresholds, Watch, error_rate


def test_a_health_regression_pages_and_its_recovery_clears_it() -> None:
    watch = Watch()
    assert watch.observe(Sample(0, health_ok=True, smoke_ok=True)) == []
    [down] = watch.observe(Sample(30, health_ok=False, smoke_ok=True))
    assert (down.signal, down.before, down.after, down.regression) == (Signal.HEALTH, "ok", "failing", True)
    assert not watch.clean
    assert watch.observe(Sample(60, health_ok=False, smoke_ok=True)) == []  # no repeat while it stays down
    [up] = watch.observe(Sample(90, health_ok=True, smoke_ok=True))
    assert (up.signal, up.regression) == (Signal.HEALTH, False)
    assert watch.clean and watch.regressed


def test_failing_from_the_first_look_is_a_regression() -> None:
    watch = Watch()
    [change] = watch.observe(Sample(0, health_ok=True, smoke_ok=False))
    assert change.signal is Signal.SMOKE and change.regression and not watch.clean


def test_the_error_rate_regresses_above_the_threshold_and_needs_enough_transactions() -> None:
    watch = Watch(Thresholds(max_error_rate=0.05, min_transactions=20))
    watch.observe(Sample(0, commits=1000, rollbacks=10))
    assert watch.observe(Sample(30, commits=1005, rollbacks=15)) == []  # 10 transactions: too few to judge
    [high] = watch.observe(Sample(60, commits=1085, rollbacks=35))
    assert high.signal is Signal.ERROR_RATE and high.regression and high.after == "20.0%"
    assert watch.observe(Sample(90, commits=1200, rollbacks=70)) == []  # still high: said once
    [normal] = watch.observe(Sample(120, commits=1400, rollbacks=71))
    assert not normal.regression and watch.clean


def test_connection_count_changes_are_lines_not_pages() -> None:
    watch = Watch()
    watch.observe(Sample(0, connections=10))
    assert watch.observe(Sample(30, connections=15)) == []
    [change] = watch.observe(Sample(60, connections=40))
    assert change.signal is Signal.CONNECTIONS and not change.regression and watch.clean


@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**4), st.integers(0, 10**4))
def test_error_rate_is_a_share_or_nothing(c0: int, r0: int, dc: int, dr: int) -> None:
    rate = error_rate(Sample(0, commits=c0, rollbacks=r0), Sample(1, commits=c0 + dc, rollbacks=r0 + dr), 20)
    if dc + dr < 20:
        assert rate is None
    else:
        assert rate is not None and 0.0 <= rate <= 1.0 and abs(rate * (dc + dr) - dr) < 1e-6
