"""Promise 2, proven for every kind in the registry: verified means what was approved. A result that differs from
what the kind's card promised (its `promised()`, workers/verbs/<kind>.py) fails the request, pages, and the thread
never says "verified".

Through the running bot (signed commands and the approval click), a real forking worker, PostgreSQL, Redis and
the Slack, PagerDuty, DigitalOcean and Supabase stand-ins. Each kind meets a real mismatch where one can be made:

- rollback, restore, recover: the application deletes rows again at the moment the kind records its change (a
  trigger on migration_history, the table every kind writes its record to): the critical tables' counts (rollback,
  restore) or the rows put back (recover) are no longer what was promised when the verification looks;
- pitr: the Supabase stand-in accepts restore-pitr, goes RESTORING then ACTIVE_HEALTHY, and restores nothing
  (the issue's case: the card promised `now 2025_10_20_150000 → after 2025_10_20_120001`);
- snapshot-restore: the DigitalOcean stand-in completes the droplet's restore action and restores nothing.

Where the step itself cannot be made to lie, its change is a no-op returning an empty result while every other
step, the start check and the verification are real (a `sitecustomize` on the worker's path, as in
tests/test_promises.py): undo (the engine re-applies and checks in one transaction), terminate
(pg_terminate_backend does end a session), repair (the engine's repair is one transaction) and cluster-restore
(the stand-in makes the cluster it is asked for).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, LiteralString

import psycopg
import pytest
from psycopg import sql

from core import kinds
from core.kinds import RequestKind
from core.requests import RequestStatus, RequestStore
from sandbox.signing import SlackRequestSender
from sandbox.slack_api import SlackApiServer, message_text
from sandbox.supabase import SupabaseServer
from tests.fixtures.bot import thread_text
from tests.fixtures.fakes import quiet
from tests.fixtures.kind_requests import (
    LOST_USERS,
    PROVIDERS,
    RECIPES,
    Asking,
    assert_covers_every_kind,
    provider_env,
    supabase,  # noqa: F401  (fixture)
)
from tests.fixtures.stack import CHANNEL, WorkerProcess, incident_history, write_config
from workers.runtime.escalation import dedup_key

GOOD, BAD = "2025_10_20_120001", "2025_10_20_150000"

NOOP = '''
import importlib, os
from core.kinds import KINDS

_step = os.environ.get("TEST_NOOP_STEP")
for _kind in KINDS.values():
    _module = importlib.import_module(_kind.module)

    class _Nothing:  # a step result that says nothing
        def to_dict(self):
            return {}

    if _step in _module.STEPS:
        _module.STEPS[_step] = lambda *args: _Nothing()  # the change not made, and nothing said about it
'''


def _application_deletes(operation: str, rows: LiteralString) -> Callable[[Asking], None]:
    """The application deletes `rows` again as the kind records its `operation` in migration_history."""
    def arm(asking: Asking) -> None:
        with psycopg.connect(asking.database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("""
                CREATE FUNCTION promise_deletes() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN DELETE FROM {rows}; RETURN NULL; END $$;
                CREATE TRIGGER promise_deletes AFTER INSERT ON migration_history FOR EACH ROW
                WHEN (NEW.operation = {operation}) EXECUTE FUNCTION promise_deletes();""").format(
                rows=sql.SQL(rows), operation=sql.Literal(operation)))

    return arm


def _restores_nothing(asking: Asking) -> None:
    asking.supabase.on_restore = None
    asking.digitalocean.on_droplet_restore = None


# Per kind: what makes its result differ from its card (armed before the request is asked for, so a restore's
# backup holds the trigger too), or the step made a no-op (a step name).
MISMATCHES: dict[RequestKind, Callable[[Asking], None] | str] = {
    RequestKind.ROLLBACK: _application_deletes("rollback", "projects WHERE id = (SELECT min(id) FROM projects)"),
    RequestKind.RESTORE: _application_deletes("restore", "projects WHERE id = (SELECT min(id) FROM projects)"),
    RequestKind.RECOVER: _application_deletes("recover", "users WHERE " + LOST_USERS),
    RequestKind.PITR: _restores_nothing,
    RequestKind.SNAPSHOT_RESTORE: _restores_nothing,
    RequestKind.UNDO: "undo",
    RequestKind.TERMINATE: "terminate",
    RequestKind.REPAIR: "repair",
    RequestKind.CLUSTER_RESTORE: "new_cluster",
    RequestKind.NEW_DROPLET: "new_droplet",
}


def test_every_kind_declares_its_mismatch() -> None:
    assert_covers_every_kind(MISMATCHES)
    assert_covers_every_kind(RECIPES)
    for kind, how in MISMATCHES.items():
        if isinstance(how, str):
            assert how in {s.name for s in kinds.of(kind).steps}, (kind, how)


@pytest.mark.parametrize("kind", list(MISMATCHES), ids=str)
def test_a_result_unlike_the_card_fails_pages_and_is_never_called_verified(
    kind: RequestKind, stack_env: dict[str, str], supabase: SupabaseServer,  # noqa: F811
    start_worker: Callable[[dict[str, str]], WorkerProcess], stack_sender: SlackRequestSender,
    slack_api: SlackApiServer, database_url: str, digitalocean: Any, pagerduty: Any, tmp_path: Path,
) -> None:
    how = MISMATCHES[kind]
    write_config(stack_env["ROLLBACK_CONFIG"], target_extra=PROVIDERS)
    env = provider_env(stack_env, supabase)
    if isinstance(how, str):
        hooks = tmp_path / "noop"
        hooks.mkdir()
        (hooks / "sitecustomize.py").write_text(NOOP)
        env = {**env, "PYTHONPATH": str(hooks), "TEST_NOOP_STEP": how}
    incident_history(database_url)  # the good migrations long ago, the bad one ten minutes ago
    start_worker(env)
    asking = Asking(env, stack_sender, _store(env), slack_api, database_url, digitalocean, supabase)
    try:
        if not isinstance(how, str):
            how(asking)
        request = asking.ask(kind)
        if kind is RequestKind.PITR:  # the card: what the verification compares with
            card = message_text(slack_api.thread(CHANNEL, request.thread_ts)[0])
            assert f"now `{BAD}` (4 applied) → after `{GOOD}` (3 applied)" in card, card
        asking.approve(request)
        done = asking.ended(request)
        assert done.status is RequestStatus.FAILED, thread_text(slack_api, request.thread_ts)
        pagerduty.wait_for(lambda: [e for e in pagerduty.events if e.get("event_action") == "trigger"
                                    and e["dedup_key"] == dedup_key(request.id)], timeout=60)
        quiet(slack_api)
    finally:
        asking.close()
    thread = thread_text(slack_api, request.thread_ts)
    if kind is RequestKind.PITR:
        assert supabase.restores, thread  # accepted, and it went back to healthy: nothing else was wrong
    promised_outcome = kinds.words(kinds.of(kind).outcome, request)
    assert done.outcome != promised_outcome and "verified" not in (done.outcome or ""), done.outcome
    said = [message_text(m) for m in slack_api.thread(CHANNEL, request.thread_ts)]
    assert not [line for line in said if "and verified" in line or " verified in " in line], thread
    assert len([line for line in said if f"Request {request.id}: *prod* —" in line and "failed" in line]) == 1, thread


def _store(env: dict[str, str]) -> RequestStore:
    from tests.fixtures.stack import request_store

    return request_store(env)
