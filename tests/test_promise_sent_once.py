"""Promise 3, proven for every kind in the registry: a non-idempotent external action (a droplet snapshot, a
droplet restore, a managed cluster made from a backup, a Supabase restore-pitr) is sent at most once per approval.

Target prod is a droplet, a managed cluster and a Supabase project at once; every POST the DigitalOcean and
Supabase stand-ins receive after the approval is acted on and then answered 500 (the answer lost, the action
done). A request of each kind is asked for through the running bot (signed), approved, and run by a real forking
worker to its end, whatever that end is; each action is then counted on the stand-ins. The clients' own tests of
the same (tests/test_digitalocean.py, tests/test_supabase.py) prove it per call; this proves it per kind.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from core.kinds import RequestKind
from sandbox.digitalocean import DEFAULT_DROPLET_ID, DigitalOceanServer
from sandbox.http_stub import ACCEPTED_THEN_500
from sandbox.signing import SlackRequestSender
from sandbox.slack_api import SlackApiServer
from sandbox.supabase import DEFAULT_REF, SupabaseServer
from tests.fixtures.bot import thread_text
from tests.fixtures.kind_requests import (
    PROVIDERS,
    Asking,
    assert_covers_every_kind,
    provider_env,
    supabase,  # noqa: F401  (fixture)
)
from tests.fixtures.stack import WorkerProcess, incident_history, request_store, write_config

SNAPSHOT, RESTORE, CLUSTER, PITR = "droplet snapshot", "droplet restore", "new cluster", "restore-pitr"
DROPLET = "new droplet"
DROPLETS = "/v2/droplets"
DROPLET_ACTIONS = f"/v2/droplets/{DEFAULT_DROPLET_ID}/actions"
CLUSTERS = "/v2/databases"
RESTORE_PITR = f"/v1/projects/{DEFAULT_REF}/database/backups/restore-pitr"
LOST_ANSWERS = 10  # more than any pipeline sends: every POST meets one

# Per kind: the external actions one approval sends (the backup step's droplet snapshot wherever the kind backs up
# the whole target first; its own change where that is a provider's).
SENDS: dict[RequestKind, Counter[str]] = {
    RequestKind.ROLLBACK: Counter({SNAPSHOT: 1}),
    RequestKind.RESTORE: Counter({SNAPSHOT: 1}),
    RequestKind.UNDO: Counter({SNAPSHOT: 1}),
    RequestKind.REPAIR: Counter({SNAPSHOT: 1}),
    RequestKind.TERMINATE: Counter(),
    RequestKind.RECOVER: Counter(),  # a pg_dump of the tables only
    RequestKind.PITR: Counter({SNAPSHOT: 1, PITR: 1}),
    RequestKind.SNAPSHOT_RESTORE: Counter({SNAPSHOT: 1, RESTORE: 1}),
    RequestKind.CLUSTER_RESTORE: Counter({CLUSTER: 1}),  # the live target is left alone: no backup of it
    RequestKind.NEW_DROPLET: Counter({DROPLET: 1}),  # likewise: a new droplet, the old one untouched
}


def test_every_kind_declares_what_it_sends() -> None:
    assert_covers_every_kind(SENDS)


def _sent(digitalocean: DigitalOceanServer, supabase: SupabaseServer) -> Counter[str]:  # noqa: F811
    """Each action as the stand-ins acted on it (a POST whose answer was lost is counted too)."""
    actions = Counter(a.type for a in digitalocean.actions.values())
    return +Counter({SNAPSHOT: actions["snapshot"], RESTORE: actions["restore"],
                     CLUSTER: digitalocean.posts[CLUSTERS], PITR: supabase.posts[RESTORE_PITR],
                     DROPLET: digitalocean.posts[DROPLETS]})


@pytest.mark.parametrize("kind", list(SENDS), ids=str)
def test_every_external_action_of_every_kind_is_sent_once_when_its_answers_are_lost(
    kind: RequestKind, stack_env: dict[str, str], supabase: SupabaseServer,  # noqa: F811
    start_worker: Callable[[dict[str, str]], WorkerProcess], stack_sender: SlackRequestSender,
    slack_api: SlackApiServer, database_url: str, digitalocean: DigitalOceanServer, pagerduty: Any,
) -> None:
    write_config(stack_env["ROLLBACK_CONFIG"], target_extra=PROVIDERS)
    env = provider_env(stack_env, supabase)
    incident_history(database_url)
    start_worker(env)
    asking = Asking(env, stack_sender, request_store(env), slack_api, database_url, digitalocean, supabase)
    try:
        request = asking.ask(kind)
        assert _sent(digitalocean, supabase) == Counter()  # nothing is sent before the approval
        digitalocean.post_faults = [ACCEPTED_THEN_500] * LOST_ANSWERS
        supabase.post_faults = [ACCEPTED_THEN_500] * LOST_ANSWERS
        asking.approve(request)
        asking.ended(request)
    finally:
        asking.close()
    assert _sent(digitalocean, supabase) == SENDS[kind], thread_text(slack_api, request.thread_ts)
    # and no POST was resent under another guise: one per action, per path
    assert digitalocean.posts[DROPLET_ACTIONS] == SENDS[kind][SNAPSHOT] + SENDS[kind][RESTORE]
