"""Request records on a real Redis: atomic decisions, one request per target, claims, plans."""

from __future__ import annotations

import threading

import pytest
import redis

from core.requests import (
    AlreadyDecided,
    PlanGone,
    Request,
    RequestExpired,
    RequestKind,
    RequestNotFound,
    RequestStatus,
    RequestStore,
    TargetBusy,
)

NOW = 1_800_000_000.0


def make(store: RequestStore, target: str = "prod", now: float = NOW, ttl: int = 900, **kw: object) -> Request:
    args: dict[str, object] = dict(
        kind="rollback",
        target=target,
        channel="C_INCIDENT",
        thread_ts="",
        requester="U_ALICE",
        plan_hash="abc123",
        to_version="2025_10_20_120001",
        versions=["2025_10_20_150000"],
        summary="revert 1 migration",
        ttl_seconds=ttl,
        now=now,
    )
    args.update(kw)
    return store.create(**args)  # type: ignore[arg-type]


@pytest.fixture
def store(redis_conn: redis.Redis) -> RequestStore:
    return RequestStore(redis_conn, prefix="test")


def test_create_and_get_round_trip(store: RequestStore) -> None:
    req = make(store)
    assert req.id.startswith("RB-") and len(req.id) == 9
    got = store.get(req.id)
    assert got == req
    assert got is not None and got.status is RequestStatus.PENDING
    assert got.versions == ["2025_10_20_150000"] and got.expires_at == NOW + 900
    assert Request.from_dict(req.to_dict()) == req
    assert store.get("RB-NOPE00") is None


def test_ids_are_unique(store: RequestStore) -> None:
    ids = {make(store, target=f"t{i}").id for i in range(50)}
    assert len(ids) == 50


def test_approve_once_then_already_decided(store: RequestStore) -> None:
    req = make(store)
    approved = store.decide(req.id, "approved", by="U_BOB", now=NOW + 10)
    assert approved.status is RequestStatus.APPROVED
    assert approved.approver == "U_BOB" and approved.decided_by == "U_BOB" and approved.decided_at == NOW + 10
    with pytest.raises(AlreadyDecided) as err:
        store.decide(req.id, "rejected", by="U_CAROL", now=NOW + 11)
    assert err.value.request.status is RequestStatus.APPROVED and err.value.request.approver == "U_BOB"


def test_expired_request_cannot_be_approved(store: RequestStore) -> None:
    req = make(store, ttl=60)
    with pytest.raises(RequestExpired):
        store.decide(req.id, "approved", by="U_BOB", now=NOW + 60)
    got = store.get(req.id)
    assert got is not None and got.status is RequestStatus.EXPIRED and got.approver is None
    assert store.active_for_target("prod", now=NOW + 61) is None


def test_unknown_request_and_bad_decision(store: RequestStore) -> None:
    with pytest.raises(RequestNotFound):
        store.decide("RB-000000", "approved", by="U_BOB")
    req = make(store)
    with pytest.raises(ValueError):
        store.decide(req.id, "running", by="U_BOB")
    with pytest.raises(ValueError):
        store.decide(req.id, "maybe", by="U_BOB")


def test_concurrent_decisions_have_exactly_one_winner(redis_url: str) -> None:
    setup = RequestStore(redis.Redis.from_url(redis_url), prefix="test")
    req = make(setup, now=0, ttl=10**10)
    winners: list[str] = []
    losers: list[str] = []
    barrier = threading.Barrier(16)

    def click(i: int) -> None:
        own = RequestStore(redis.Redis.from_url(redis_url), prefix="test")  # one connection per clicker
        barrier.wait()
        try:
            own.decide(req.id, "approved" if i % 2 else "rejected", by=f"U_{i}")
            winners.append(f"U_{i}")
        except AlreadyDecided:
            losers.append(f"U_{i}")

    threads = [threading.Thread(target=click, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1 and len(losers) == 15
    final = setup.get(req.id)
    assert final is not None and final.decided_by == winners[0]


def test_one_active_request_per_target(store: RequestStore) -> None:
    first = make(store)
    with pytest.raises(TargetBusy) as err:
        make(store, requester="U_CAROL")
    assert err.value.active.id == first.id and err.value.active.requester == "U_ALICE"
    other = make(store, target="staging")  # another target is free
    assert store.active_for_target("staging") == other
    assert store.active_for_target("prod", now=NOW + 1) == first

    store.decide(first.id, "approved", by="U_BOB", now=NOW + 1)
    with pytest.raises(TargetBusy):
        make(store, now=NOW + 2)  # still held while approved
    store.set_status(first.id, "running", started_at=NOW + 3)
    with pytest.raises(TargetBusy):
        make(store, now=NOW + 4)
    done = store.set_status(first.id, RequestStatus.SUCCEEDED, finished_at=NOW + 5, outcome="rolled back")
    assert done.status is RequestStatus.SUCCEEDED and done.outcome == "rolled back" and done.started_at == NOW + 3
    assert store.active_for_target("prod", now=NOW + 6) is None
    assert make(store, now=NOW + 6).status is RequestStatus.PENDING


@pytest.mark.parametrize("decision", ["rejected", "cancelled"])
def test_rejecting_or_cancelling_frees_the_target(store: RequestStore, decision: str) -> None:
    req = make(store)
    decided = store.decide(req.id, decision, by="U_ALICE", now=NOW + 1)
    assert decided.status.value == decision and decided.approver is None
    assert store.active_for_target("prod", now=NOW + 2) is None
    make(store, now=NOW + 2)


def test_expired_pending_request_frees_the_target(store: RequestStore) -> None:
    old = make(store, ttl=60)
    new = make(store, now=NOW + 61)  # the stale request is marked expired on the way
    assert new.id != old.id
    got = store.get(old.id)
    assert got is not None and got.status is RequestStatus.EXPIRED


def test_failed_request_frees_the_target(store: RequestStore) -> None:
    req = make(store)
    store.decide(req.id, "approved", by="U_BOB", now=NOW + 1)
    store.set_status(req.id, "failed", outcome="verify failed")
    assert store.active_for_target("prod") is None


def test_update_and_set_status_validate_fields(store: RequestStore) -> None:
    req = make(store)
    updated = store.update(req.id, thread_ts="1700000000.000100")
    assert updated.thread_ts == "1700000000.000100" and updated.status is RequestStatus.PENDING
    with pytest.raises(ValueError):
        store.update(req.id, password="x")
    with pytest.raises(RequestNotFound):
        store.set_status("RB-000000", "running")


def test_claim_is_once_per_step(store: RequestStore) -> None:
    assert store.claim("RB-AAAAAA", "rollback") is True
    assert store.claim("RB-AAAAAA", "rollback") is False
    assert store.claim("RB-AAAAAA", "backup") is True
    assert store.claim("RB-BBBBBB", "rollback") is True


def test_channel_listing_newest_first(store: RequestStore) -> None:
    a = make(store, target="a", now=NOW)
    b = make(store, target="b", now=NOW + 1)
    store.decide(a.id, "cancelled", by="U_ALICE", now=NOW + 2)
    assert [r.id for r in store.for_channel("C_INCIDENT")] == [b.id, a.id]
    assert [r.id for r in store.pending_for_channel("C_INCIDENT", now=NOW + 3)] == [b.id]
    assert store.for_channel("C_OTHER") == []


def test_plans_per_channel_and_target(store: RequestStore, redis_conn: redis.Redis) -> None:
    plan = {"hash": "h1", "to": "2025_10_20_120001", "versions": ["2025_10_20_150000"]}
    assert store.current_plan("C1", "prod") is None
    store.save_plan("C1", "prod", plan, ttl_seconds=120)
    assert store.current_plan("C1", "prod") == plan
    assert store.current_plan("C2", "prod") is None and store.current_plan("C1", "staging") is None
    assert 0 < redis_conn.ttl("test:plan:C1:prod") <= 120
    store.clear_plan("C1", "prod")
    assert store.current_plan("C1", "prod") is None


def test_update_never_touches_the_status(store: RequestStore) -> None:
    req = make(store)
    store.decide(req.id, "approved", by="U_BOB", now=NOW + 1)
    updated = store.update(req.id, thread_ts="1.0")
    assert updated.status is RequestStatus.APPROVED and updated.thread_ts == "1.0"


def test_warnings_are_kept_with_the_request(store: RequestStore) -> None:
    req = make(store, warnings=["DROP TABLE t: 275 rows would be lost"])
    got = store.get(req.id)
    assert got is not None and got.warnings == ["DROP TABLE t: 275 rows would be lost"]
    assert store.get(make(store, target="other").id).warnings == []  # type: ignore[union-attr]


def test_open_requests_until_forgotten(store: RequestStore) -> None:
    first, second = make(store), make(store, target="staging", now=NOW + 1)
    assert [r.id for r in store.open_requests()] == [first.id, second.id]
    store.forget(first.id)
    assert [r.id for r in store.open_requests()] == [second.id]
    store.redis.delete(f"test:request:{second.id}")  # past its retention
    assert store.open_requests() == [] and store.redis.zcard("test:open") == 0


# -- issue 8/9: request kinds as enums, plans used up by their request, cleared by a change -----------

PLAN = {"hash": "h1", "to": "2025_10_20_120001", "versions": ["2025_10_20_150000"]}


def test_kinds_are_an_enum_end_to_end(store: RequestStore) -> None:
    req = make(store, kind="restore", backup="prod.dump")
    got = store.get(req.id)
    assert got is not None and got.kind is RequestKind.RESTORE and got.to_dict()["kind"] == "restore"
    with pytest.raises(ValueError):
        make(store, target="other", kind="drop-everything")


def test_a_request_uses_up_the_plan_it_was_made_from(store: RequestStore) -> None:
    store.save_plan("C_INCIDENT", "prod", PLAN, now=NOW - 300)
    saved = store.saved_plan("C_INCIDENT", "prod")
    assert saved is not None and saved.plan == PLAN and saved.saved_at == NOW - 300
    req = make(store, plan=saved)
    assert req.plan_saved_at == NOW - 300 and store.get(req.id).plan_saved_at == NOW - 300  # type: ignore[union-attr]
    assert store.current_plan("C_INCIDENT", "prod") is None  # used up with the request's creation
    store.decide(req.id, "cancelled", by="U_ALICE", now=NOW + 1)
    with pytest.raises(PlanGone):  # the same plan cannot be asked for twice
        make(store, plan=saved, now=NOW + 2)
    assert store.active_for_target("prod", now=NOW + 2) is None  # and the refused one holds nothing


def test_a_replaced_plan_is_not_used_up_by_a_request_for_the_old_one(store: RequestStore) -> None:
    store.save_plan("C_INCIDENT", "prod", PLAN)
    old = store.saved_plan("C_INCIDENT", "prod")
    store.save_plan("C_INCIDENT", "prod", {**PLAN, "hash": "h2"})
    with pytest.raises(PlanGone):
        make(store, plan=old)
    assert store.current_plan("C_INCIDENT", "prod") == {**PLAN, "hash": "h2"}
    assert store.for_channel("C_INCIDENT") == []


def test_a_busy_target_keeps_the_plan(store: RequestStore) -> None:
    first = make(store)
    store.save_plan("C_INCIDENT", "prod", PLAN)
    with pytest.raises(TargetBusy):
        make(store, requester="U_CAROL", plan=store.saved_plan("C_INCIDENT", "prod"))
    assert store.current_plan("C_INCIDENT", "prod") == PLAN and store.get(first.id) is not None


def test_concurrent_requests_from_one_plan_make_one_request(redis_url: str) -> None:
    setup = RequestStore(redis.Redis.from_url(redis_url), prefix="test")
    setup.save_plan("C_INCIDENT", "prod", PLAN)
    saved = setup.saved_plan("C_INCIDENT", "prod")
    made: list[str] = []
    refused: list[str] = []
    barrier = threading.Barrier(8)

    def ask(i: int) -> None:
        own = RequestStore(redis.Redis.from_url(redis_url), prefix="test")
        barrier.wait()
        try:
            made.append(make(own, requester=f"U_{i}", now=0, ttl=10**10, plan=saved).id)
        except (PlanGone, TargetBusy):
            refused.append(f"U_{i}")

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 1 and len(refused) == 7
    assert setup.current_plan("C_INCIDENT", "prod") is None


def test_clear_plans_clears_the_target_in_every_channel(store: RequestStore, redis_conn: redis.Redis) -> None:
    for channel in ("C1", "C2", "C3"):
        store.save_plan(channel, "prod", PLAN)
    store.save_plan("C1", "staging", PLAN)
    store.clear_plan("C3", "prod")  # one channel's plan, as before
    assert store.current_plan("C3", "prod") is None and store.current_plan("C1", "prod") == PLAN
    store.clear_plans("prod")
    assert [store.current_plan(c, "prod") for c in ("C1", "C2", "C3")] == [None, None, None]
    assert store.current_plan("C1", "staging") == PLAN  # another target keeps its plan
    assert redis_conn.exists("test:plans:prod") == 0
    store.clear_plans("nothing-planned")  # nothing to clear is fine


def test_a_plan_saved_before_plans_were_hashes_is_not_honoured(store: RequestStore, redis_conn: redis.Redis) -> None:
    redis_conn.set("test:plan:C1:prod", '{"hash": "old"}')
    assert store.current_plan("C1", "prod") is None and store.saved_plan("C1", "prod") is None
    store.save_plan("C1", "prod", PLAN)  # a new dry run replaces it
    assert store.current_plan("C1", "prod") == PLAN


def test_latest_request_of_a_target_whatever_its_status(store: RequestStore) -> None:
    assert store.latest_for_target("prod") is None
    first = make(store)
    store.decide(first.id, "approved", by="U_BOB", now=NOW + 1)
    store.set_status(first.id, RequestStatus.FAILED, outcome="rollback failed")
    latest = store.latest_for_target("prod")
    assert latest is not None and latest.id == first.id and latest.status is RequestStatus.FAILED
    second = make(store, requester="U_CAROL", now=NOW + 2)
    assert store.latest_for_target("prod").id == second.id  # type: ignore[union-attr]
    assert store.latest_for_target("staging") is None


def test_a_terminate_runs_beside_the_targets_request_one_per_session(store: RequestStore) -> None:
    """Ending a blocking session changes no schema: it may be asked while the target's rollback is pending
    or running, but only one terminate per pid at a time; every other kind keeps one request per target."""
    rollback = make(store)
    ended = make(store, kind="terminate", subject="4242", plan_hash=None, now=NOW + 1)
    with pytest.raises(TargetBusy) as err:
        make(store, kind="terminate", subject="4242", requester="U_CAROL", now=NOW + 2)
    assert err.value.active.id == ended.id
    other = make(store, kind="terminate", subject="4343", now=NOW + 2)  # another session: a request of its own
    assert store.active_for_target("prod", now=NOW + 3).id == rollback.id  # type: ignore[union-attr]
    assert store.active_for("terminate", "prod", "4242", now=NOW + 3).id == ended.id  # type: ignore[union-attr]
    with pytest.raises(TargetBusy) as err:
        make(store, kind="restore", now=NOW + 3)  # the one-request rule of every other kind is unchanged
    assert err.value.active.id == rollback.id
    # a terminate is not the target's latest request (what `watch stop` and maintenance rights read)
    assert store.latest_for_target("prod").id == rollback.id  # type: ignore[union-attr]

    store.decide(ended.id, "approved", by="U_BOB", now=NOW + 4)
    store.set_status(ended.id, RequestStatus.RUNNING, started_at=NOW + 5)
    with pytest.raises(TargetBusy):
        make(store, kind="terminate", subject="4242", now=NOW + 6)  # still held while running
    store.set_status(ended.id, RequestStatus.SUCCEEDED, finished_at=NOW + 7)
    assert store.active_for_target("prod", now=NOW + 8).id == rollback.id  # type: ignore[union-attr]
    again = make(store, kind="terminate", subject="4242", now=NOW + 8)  # the session's lock is free again
    store.decide(again.id, "cancelled", by="U_ALICE", now=NOW + 9)
    assert store.active_for("terminate", "prod", "4242", now=NOW + 9) is None

    store.decide(rollback.id, "rejected", by="U_BOB", now=NOW + 10)  # the target is free; terminate 4343 waits on
    assert store.active_for_target("prod", now=NOW + 11) is None
    assert store.active_for("terminate", "prod", "4343", now=NOW + 11).id == other.id  # type: ignore[union-attr]
    assert make(store, now=NOW + 11).status is RequestStatus.PENDING


def test_an_expired_terminate_frees_its_session(store: RequestStore) -> None:
    old = make(store, kind="terminate", subject="4242", ttl=60)
    new = make(store, kind="terminate", subject="4242", now=NOW + 61)  # the stale one is marked expired on the way
    assert new.id != old.id and store.get(old.id).status is RequestStatus.EXPIRED  # type: ignore[union-attr]
