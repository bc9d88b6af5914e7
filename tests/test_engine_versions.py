"""Pure planning: versions, rollback and apply order (no files, no database)."""

from __future__ import annotations

import pytest

from workers.engine import InterruptedMigration, NotCompleted, UnknownVersion, is_version
from workers.engine.versions import (
    Recorded,
    apply_versions,
    held_back,
    parse_version,
    rollback_versions,
)

A, B, C, D = "2025_10_01_090000", "2025_10_01_090500", "2025_10_20_120001", "2025_10_20_150000"
ALL_DONE = {A: Recorded(A, "completed"), B: Recorded(B, "completed"), C: Recorded(C, "completed"),
            D: Recorded(D, "completed")}


@pytest.mark.parametrize("text", ["2025_10_20_120001", " 2025_10_20_120001 "])
def test_valid_versions_are_accepted(text: str) -> None:
    assert parse_version(text) == "2025_10_20_120001"


@pytest.mark.parametrize("text", ["2025_10_20_12000", "2025-10-20-120001", "2025_13_20_120001",
                                  "2025_10_20_250000", "'; DROP TABLE users; --", ""])
def test_malformed_versions_are_refused_with_the_expected_format(text: str) -> None:
    assert not is_version(text.strip())
    with pytest.raises(UnknownVersion, match="YYYY_MM_DD_HHMMSS"):
        parse_version(text)


def test_rollback_to_known_good_reverts_every_newer_completed_newest_first() -> None:
    assert rollback_versions(ALL_DONE, B) == [D, C]
    assert rollback_versions(ALL_DONE, C) == [D]
    assert rollback_versions(ALL_DONE, D) == []


def test_rollback_without_to_reverts_only_the_newest_completed() -> None:
    recorded = dict(ALL_DONE, **{D: Recorded(D, "rolled_back")})
    assert rollback_versions(recorded, None) == [C]
    assert rollback_versions({}, None) == []


def test_rollback_skips_versions_that_are_not_completed() -> None:
    recorded = dict(ALL_DONE, **{C: Recorded(C, "rolled_back")})
    assert rollback_versions(recorded, A) == [D, B]


def test_rollback_target_must_be_recorded_and_completed() -> None:
    with pytest.raises(UnknownVersion, match="never been applied"):
        rollback_versions(ALL_DONE, "2024_01_01_000000")
    with pytest.raises(NotCompleted, match="is failed, not completed"):
        rollback_versions(dict(ALL_DONE, **{C: Recorded(C, "failed")}), C)


def test_apply_takes_new_failed_and_rolled_back_versions_in_order() -> None:
    recorded = {A: Recorded(A, "completed"), B: Recorded(B, "rolled_back"), C: Recorded(C, "failed")}
    assert apply_versions([D, C, B, A], recorded) == [B, C, D]
    assert apply_versions([A], {A: Recorded(A, "completed")}) == []


def test_a_rolled_back_version_is_held_until_its_up_sql_changes_or_it_is_reapplied() -> None:
    recorded = {A: Recorded(A, "completed", checksum="a"), B: Recorded(B, "rolled_back", checksum="b"),
                C: Recorded(C, "rolled_back", checksum="c"), D: Recorded(D, "rolled_back")}
    on_disk = {A: "a", B: "b", C: "c-fixed", D: "d"}
    assert held_back(on_disk, recorded) == [B, D]  # C's up.sql changed; D's checksum is unknown: held
    assert held_back(on_disk, recorded, reapply=[D]) == [B]
    assert apply_versions(on_disk, recorded, held_back(on_disk, recorded)) == [C]


def test_a_stale_running_row_stops_apply() -> None:
    with pytest.raises(InterruptedMigration, match="marked running"):
        apply_versions([A, B], {A: Recorded(A, "running", "create_users")})
