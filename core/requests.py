"""Request records in Redis: the shared state of a rollback request, used by the bot and the workers.

A request (a RequestKind, core/kinds.py) is created pending by the bot, decided once
(approved, rejected or cancelled) by a click, then driven to an outcome by the workers. Every transition that
must happen at most once is a Lua script, so it is atomic on the Redis server: two approvers
clicking at once, a double click and a Slack retry all meet the same single `pending -> approved`.

Keys (under `prefix`):
- `<prefix>:request:<id>`        hash: the record's fields (strings; lists as JSON)
- `<prefix>:active:<target>`     the id of the target's one active request (one rollback per target)
- `<prefix>:active:<target>:<kind>:<subject>`  the id of the one active request of a kind that runs beside
                                 the target's request (`Kind.beside_target`: a terminate, per pid)
- `<prefix>:latest:<target>`     the id of the target's latest request, whatever its status (not a terminate)
- `<prefix>:channel:<channel>`   sorted set of the channel's request ids by creation time
- `<prefix>:claim:<id>:<step>`   a step of a request that has started (SET NX: runs at most once)
- `<prefix>:plan:<channel>:<target>`  hash: the channel's current dry-run plan (`plan` JSON, `id`,
                                 `saved_at`; expires). A request made from it consumes it.
- `<prefix>:plans:<target>`      set of the channels holding a current plan for the target (clear_plans)
- `<prefix>:open`                sorted set of requests the bot's expiry sweeper watches, by creation time
- `<prefix>:watched:<target>`    the id of the request whose watch window runs on the target (a succeeded
                                 request: the watch does not hold the target; the next change ends it)
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from enum import Enum, StrEnum
from typing import Any

import redis

from core import defaults, kinds
from core.kinds import RequestKind

# Crockford's base32 without look-alikes (no I, L, O, U): ids people can read out in a call.
ID_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ID_LENGTH = 6
ID_PREFIX = "RB-"


class RequestStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


DECISIONS = frozenset({RequestStatus.APPROVED, RequestStatus.REJECTED, RequestStatus.CANCELLED})
# A request in one of these no longer holds its target.
FINAL_STATUSES = frozenset(
    {
        RequestStatus.REJECTED,
        RequestStatus.CANCELLED,
        RequestStatus.EXPIRED,
        RequestStatus.SUCCEEDED,
        RequestStatus.FAILED,
    }
)


KINDS = frozenset(RequestKind)


class RequestError(Exception):
    """A request operation was refused; `str()` is one line saying why."""


class RequestNotFound(RequestError):
    def __init__(self, request_id: str) -> None:
        super().__init__(f"request {request_id} does not exist")
        self.request_id = request_id


class AlreadyDecided(RequestError):
    def __init__(self, request: Request) -> None:
        super().__init__(f"request {request.id} is already {request.status.value}")
        self.request = request


class RequestExpired(RequestError):
    def __init__(self, request: Request) -> None:
        super().__init__(f"request {request.id} expired")
        self.request = request


class PlanGone(RequestError):
    """The plan a request was to be made from is no longer the current one (consumed, cleared or replaced)."""

    def __init__(self, channel: str, target: str) -> None:
        super().__init__(f"no current plan for {target} in {channel}")
        self.channel = channel
        self.target = target


class TargetBusy(RequestError):
    """Another request holds the target (pending, approved or running), or, for a kind that runs beside the
    target's request, another request of that kind holds the same subject."""

    def __init__(self, active: Request) -> None:
        what = f"{active.kind.value} {active.subject} on" if kinds.of(active.kind).beside_target else "target"
        super().__init__(f"{what} {active.target} already has request {active.id} ({active.status.value})")
        self.active = active


@dataclass(frozen=True)
class Request:
    id: str
    kind: RequestKind
    target: str
    channel: str
    thread_ts: str
    requester: str
    status: RequestStatus
    created_at: float
    expires_at: float
    plan_hash: str | None = None
    to_version: str | None = None
    versions: list[str] = field(default_factory=list)
    summary: str = ""
    warnings: list[str] = field(default_factory=list)  # the plan's data-loss warnings, shown until the end
    forecast: list[str] = field(default_factory=list)  # the dry run's lock-impact lines, shown on the card
    stall_ms: float | None = None  # the dry run's forecast: longest time the app's reads or writes are blocked
    backup: str | None = None
    plan_saved_at: float | None = None  # when the dry run the request was made from was saved
    approver: str | None = None
    decided_by: str | None = None  # who approved, rejected or cancelled
    decided_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    outcome: str | None = None
    subject: str | None = None  # what a terminate or repair request acts on: the pid, the version
    source_link: str | None = None  # a rollback's dry run (a permalink to its thread), shown on the card
    sql: str | None = None  # the SQL a rollback will run (the card shows its first lines)
    # What a recovery request needs beyond the fields above (tables, --overwrite, the recovery point,
    # the snapshot): JSON, written once when the request is made.
    params: dict[str, Any] = field(default_factory=dict)
    undoes: str | None = None  # an undo request: the rollback (request id or CLI run id) it reverses
    # The watch window after a verified change (JSON, written by the workers at each look, read by the bot's
    # sweeper): `started_at`, `ends_at`, `interval`, `next`/`due_at` (the next look), `deadline` (past it
    # nobody is watching: the sweeper ends the watch as interrupted and pages), `looks`, `seen_at`, `last`
    # (the last look's figures), `failing`, `regressed`, `failed_looks`, `unwatched_s`, `stopped`, `page_open` (a
    # regression's page not yet resolved).
    watch: dict[str, Any] = field(default_factory=dict)
    # How the watch ended (`completed`, `stopped`, `interrupted`, `superseded`), written once by whoever closed
    # it; None while it runs. Apart from `watch`, which every look rewrites whole, so no look can undo it.
    watch_ended: str | None = None
    # Where the request's card (the message with Approve / Reject) is. None: it is the root of `thread_ts`
    # (asked with the slash command). A request asked in an incident thread (a mention of the bot) posts
    # its card as a reply there: `thread_ts` is that thread, and this is the card's own ts ("" until posted).
    card_ts: str | None = None

    def __post_init__(self) -> None:
        # Records built by hand (tests, tools) may name the kind and status as plain strings.
        object.__setattr__(self, "kind", RequestKind(self.kind))
        object.__setattr__(self, "status", RequestStatus(self.status))

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def watching(self) -> bool:
        """Its change is done and its watch window runs: it no longer holds the target (`running` is a
        record from before the watch stopped holding it)."""
        return (bool(self.watch) and self.watch_ended is None
                and self.status in (RequestStatus.SUCCEEDED, RequestStatus.RUNNING))

    @property
    def card(self) -> str | None:
        """The ts of the request's card (to update its buttons), None until it is posted."""
        if self.card_ts is None:
            return self.thread_ts or None
        return self.card_ts or None

    def expired_at(self, now: float) -> bool:
        return self.status is RequestStatus.PENDING and now >= self.expires_at

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        data["kind"] = self.kind.value
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Request:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for name in _LIST_FIELDS | _JSON_FIELDS:  # absent or null: empty
            container = list if name in _LIST_FIELDS else dict
            values[name] = container(values.get(name) or container())
        return cls(**values)


@dataclass(frozen=True)
class SavedPlan:
    """A channel's current plan for a target: the worker's dry-run result, its id and when it was saved."""

    plan: dict[str, Any]
    id: str
    saved_at: float


_FLOAT_FIELDS = frozenset({"created_at", "expires_at", "decided_at", "started_at", "finished_at", "plan_saved_at",
                           "stall_ms"})
_LIST_FIELDS = frozenset({"versions", "warnings", "forecast"})
_JSON_FIELDS = frozenset({"params", "watch"})


def _encode(name: str, value: Any) -> str:
    if name in _LIST_FIELDS:
        return json.dumps(list(value))
    if name in _JSON_FIELDS:
        return json.dumps(dict(value))
    if isinstance(value, Enum):
        return str(value.value)
    if name in _FLOAT_FIELDS:
        return repr(float(value))
    return str(value)


def _pairs(values: Mapping[str, Any]) -> list[str]:
    """Field/value arguments for HSET (None values are left out)."""
    pairs: list[str] = []
    for name, value in values.items():
        if value is not None:
            pairs += [name, _encode(name, value)]
    return pairs


def _decode_hash(raw: Mapping[Any, Any]) -> Request:
    data: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.decode() if isinstance(key, bytes) else str(key)
        text = value.decode() if isinstance(value, bytes) else str(value)
        if name in _LIST_FIELDS or name in _JSON_FIELDS:
            data[name] = json.loads(text)
        elif name in _FLOAT_FIELDS:
            data[name] = float(text)
        else:
            data[name] = text
    return Request.from_dict(data)


# Lua scripts: KEYS and ARGV are documented at the top of each. A pending request whose expires_at
# has passed is treated as expired wherever it is met (and marked so), so expiry needs no timer.
_CREATE = """
-- KEYS: request, active lock, channel index, open index, latest, plan, plan index
-- ARGV: id, now, lock ttl, record ttl, prefix, plan id ('' = none to consume), channel,
--       becomes the target's latest (1/0), field/value...
if redis.call('EXISTS', KEYS[1]) == 1 then return {'collision'} end
local holder = redis.call('GET', KEYS[2])
if holder then
  local hkey = ARGV[5] .. ':request:' .. holder
  local st = redis.call('HGET', hkey, 'status')
  local live = st == 'pending' or st == 'approved' or st == 'running'
  if st == 'pending' and tonumber(redis.call('HGET', hkey, 'expires_at')) <= tonumber(ARGV[2]) then
    redis.call('HSET', hkey, 'status', 'expired')
    live = false
  end
  if live then return {'busy', holder} end
end
if ARGV[6] ~= '' then
  -- the request consumes the plan it was made from, in the same step: no plan, no request
  if redis.call('TYPE', KEYS[6]).ok ~= 'hash' or redis.call('HGET', KEYS[6], 'id') ~= ARGV[6] then
    return {'noplan'}
  end
  redis.call('DEL', KEYS[6])
  redis.call('SREM', KEYS[7], ARGV[7])
end
local values = {}
for i = 9, #ARGV do values[#values + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(values))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
redis.call('SET', KEYS[2], ARGV[1], 'EX', tonumber(ARGV[3]))
if ARGV[8] == '1' then redis.call('SET', KEYS[5], ARGV[1], 'EX', tonumber(ARGV[4])) end
redis.call('ZADD', KEYS[3], tonumber(ARGV[2]), ARGV[1])
redis.call('EXPIRE', KEYS[3], tonumber(ARGV[4]))
redis.call('ZADD', KEYS[4], tonumber(ARGV[2]), ARGV[1])
return {'ok'}
"""

_DECIDE = """
-- KEYS: request, active lock; ARGV: id, decision, by, now
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return {'missing'} end
if st ~= 'pending' then return {'decided', st} end
if tonumber(redis.call('HGET', KEYS[1], 'expires_at')) <= tonumber(ARGV[4]) then
  redis.call('HSET', KEYS[1], 'status', 'expired')
  if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
  return {'expired'}
end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'decided_by', ARGV[3], 'decided_at', ARGV[4])
if ARGV[2] == 'approved' then
  redis.call('HSET', KEYS[1], 'approver', ARGV[3])
elseif redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
return {'ok'}
"""

_SET_STATUS = """
-- KEYS: request, active lock; ARGV: id, status, release (1/0), field/value...
if redis.call('EXISTS', KEYS[1]) == 0 then return {'missing'} end
local values = {'status', ARGV[2]}
for i = 4, #ARGV do values[#values + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(values))
if ARGV[3] == '1' and redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return {'ok'}
"""

_CLEAR_PLANS = """
-- KEYS: plan index of the target; ARGV: prefix, target
for _, channel in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  redis.call('DEL', ARGV[1] .. ':plan:' .. channel .. ':' .. ARGV[2])
end
redis.call('DEL', KEYS[1])
return {'ok'}
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RequestStore:
    """Request records, plans and step claims in Redis. The connection is passed in."""

    def __init__(
        self,
        connection: redis.Redis,
        prefix: str = "rollback",
        *,
        record_ttl_seconds: int = defaults.REQUEST_RECORD_TTL_SECONDS,
        active_lock_ttl_seconds: int = defaults.ACTIVE_LOCK_TTL_SECONDS,
        claim_ttl_seconds: int = defaults.REQUEST_RECORD_TTL_SECONDS,
    ) -> None:
        self.redis = connection
        self.prefix = prefix
        self.record_ttl_seconds = record_ttl_seconds
        self.active_lock_ttl_seconds = active_lock_ttl_seconds
        self.claim_ttl_seconds = claim_ttl_seconds
        self._create = connection.register_script(_CREATE)
        self._decide = connection.register_script(_DECIDE)
        self._set_status = connection.register_script(_SET_STATUS)
        self._clear_plans = connection.register_script(_CLEAR_PLANS)

    # keys
    def _request_key(self, request_id: str) -> str:
        return f"{self.prefix}:request:{request_id}"

    def _active_key(self, target: str) -> str:
        return f"{self.prefix}:active:{target}"

    def _lock_key(self, kind: str | RequestKind, target: str, subject: str | None) -> str:
        """What a request of this kind holds while it is active: its target, or (a kind that runs beside
        the target's request) its subject on that target."""
        kind = RequestKind(kind)
        if kinds.of(kind).beside_target:
            return f"{self._active_key(target)}:{kind.value}:{subject}"
        return self._active_key(target)

    def _held_key(self, request: Request) -> str:
        return self._lock_key(request.kind, request.target, request.subject)

    def _channel_key(self, channel: str) -> str:
        return f"{self.prefix}:channel:{channel}"

    def _latest_key(self, target: str) -> str:
        return f"{self.prefix}:latest:{target}"

    def _plan_key(self, channel: str, target: str) -> str:
        return f"{self.prefix}:plan:{channel}:{target}"

    def _plans_key(self, target: str) -> str:
        return f"{self.prefix}:plans:{target}"

    def _open_key(self) -> str:
        return f"{self.prefix}:open"

    def _watched_key(self, target: str) -> str:
        return f"{self.prefix}:watched:{target}"

    @staticmethod
    def new_id() -> str:
        return ID_PREFIX + "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_LENGTH))

    def create(
        self,
        *,
        kind: str | RequestKind,
        target: str,
        channel: str,
        thread_ts: str,
        requester: str,
        plan_hash: str | None,
        to_version: str | None,
        versions: list[str] | tuple[str, ...],
        summary: str,
        ttl_seconds: int,
        backup: str | None = None,
        warnings: list[str] | tuple[str, ...] = (),
        forecast: list[str] | tuple[str, ...] = (),
        stall_ms: float | None = None,
        now: float | None = None,
        plan: SavedPlan | None = None,
        subject: str | None = None,
        source_link: str | None = None,
        sql: str | None = None,
        params: Mapping[str, Any] | None = None,
        undoes: str | None = None,
        card_ts: str | None = None,
    ) -> Request:
        """A new pending request holding `target` (a kind beside the target: holding its `subject` on the
        target). Raises TargetBusy while another one holds it.

        With `plan` (the channel's current plan for the target, as `saved_plan` returned it), the
        request consumes that plan atomically: it is created only if the plan is still the current one
        (else PlanGone), and the plan is gone once the request exists.
        """
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {sorted(KINDS)}, not {kind!r}")
        kind = RequestKind(kind)
        now = time.time() if now is None else now
        for _ in range(10):
            request = Request(
                id=self.new_id(),
                kind=kind,
                target=target,
                channel=channel,
                thread_ts=thread_ts,
                requester=requester,
                status=RequestStatus.PENDING,
                created_at=now,
                expires_at=now + ttl_seconds,
                plan_hash=plan_hash,
                to_version=to_version,
                versions=list(versions),
                summary=summary,
                warnings=list(warnings),
                forecast=list(forecast),
                stall_ms=stall_ms,
                backup=backup,
                plan_saved_at=plan.saved_at if plan else None,
                subject=subject,
                source_link=source_link,
                sql=sql,
                params=dict(params or {}),
                undoes=undoes,
                card_ts=card_ts,
            )
            pairs = _pairs(request.to_dict())
            result = self._create(
                keys=[self._request_key(request.id), self._lock_key(kind, target, subject),
                      self._channel_key(channel), self._open_key(), self._latest_key(target),
                      self._plan_key(channel, target), self._plans_key(target)],
                args=[request.id, repr(now), self.active_lock_ttl_seconds, self.record_ttl_seconds, self.prefix,
                      plan.id if plan else "", channel, "0" if kinds.of(kind).beside_target else "1", *pairs],
            )
            outcome = _text(result[0])
            if outcome == "ok":
                return request
            if outcome == "noplan":
                raise PlanGone(channel, target)
            if outcome == "busy":
                active = self.get(_text(result[1]))
                if active is not None:
                    raise TargetBusy(active)
            # an id collision (or a holder that vanished between the calls): try again
        raise RequestError("could not allocate a request id; try again")

    def get(self, request_id: str) -> Request | None:
        raw = self.redis.hgetall(self._request_key(request_id))
        return _decode_hash(raw) if raw else None

    def _require(self, request_id: str) -> Request:
        request = self.get(request_id)
        if request is None:
            raise RequestNotFound(request_id)
        return request

    def decide(self, request_id: str, decision: str, by: str, now: float | None = None) -> Request:
        """pending -> approved / rejected / cancelled, exactly once, atomically.

        Raises RequestNotFound, AlreadyDecided (carrying the request as decided), or RequestExpired.
        """
        status = RequestStatus(decision)
        if status not in DECISIONS:
            raise ValueError(f"decision must be approved, rejected or cancelled, not {decision!r}")
        now = time.time() if now is None else now
        request = self._require(request_id)
        result = self._decide(
            keys=[self._request_key(request_id), self._held_key(request)],
            args=[request_id, status.value, by, repr(now)],
        )
        outcome = _text(result[0])
        if outcome == "missing":
            raise RequestNotFound(request_id)
        decided = self._require(request_id)
        if outcome == "expired":
            raise RequestExpired(decided)
        if outcome == "decided":
            raise AlreadyDecided(decided)
        return decided

    def set_status(self, request_id: str, status: str | RequestStatus, **fields_: Any) -> Request:
        """Record running / succeeded / failed / expired (and fields such as started_at, outcome).

        A final status releases the target for the next request.
        """
        status = RequestStatus(status)
        request = self._require(request_id)
        pairs = _pairs(self._checked(fields_))
        result = self._set_status(
            keys=[self._request_key(request_id), self._held_key(request)],
            args=[request_id, status.value, "1" if status in FINAL_STATUSES else "0", *pairs],
        )
        if _text(result[0]) == "missing":
            raise RequestNotFound(request_id)
        return self._require(request_id)

    def update(self, request_id: str, **fields_: Any) -> Request:
        """Set fields without touching the status (e.g. the thread_ts once the root message exists)."""
        self._require(request_id)
        pairs = _pairs(self._checked(fields_))
        if pairs:
            self.redis.hset(self._request_key(request_id), items=pairs)
        return self._require(request_id)

    @staticmethod
    def _checked(fields_: Mapping[str, Any]) -> Mapping[str, Any]:
        for name in fields_:
            if name not in _FIELD_NAMES or name in ("id", "status"):
                raise ValueError(f"unknown request field {name!r}")
        return fields_

    def claim(self, request_id: str, step: str, ttl_seconds: int | None = None) -> bool:
        """True the first time a step of a request is claimed, False ever after (or, with `ttl_seconds`, until
        the claim lapses: a step whose process may die half-way and that someone else must then finish)."""
        key = f"{self.prefix}:claim:{request_id}:{step}"
        return bool(self.redis.set(key, "1", nx=True, ex=ttl_seconds or self.claim_ttl_seconds))

    def active_for_target(self, target: str, now: float | None = None) -> Request | None:
        """The request holding `target` (pending, approved or running), if any."""
        return self._holder(self._active_key(target), now)

    def active_for(self, kind: str | RequestKind, target: str, subject: str | None = None,
                   now: float | None = None) -> Request | None:
        """The active request a new one of `kind` would have to wait for: the target's, or (a kind that
        runs beside it) the one of that kind acting on the same subject."""
        return self._holder(self._lock_key(kind, target, subject), now)

    def _holder(self, key: str, now: float | None) -> Request | None:
        now = time.time() if now is None else now
        holder = self.redis.get(key)
        if holder is None:
            return None
        request = self.get(_text(holder))
        if request is None or request.is_final:
            return None
        if request.expired_at(now):
            self.expire_if_due(request.id, now)
            return None
        return request

    def latest_for_target(self, target: str) -> Request | None:
        """The target's most recent request, whatever its status (None if none within the retention)."""
        latest = self.redis.get(self._latest_key(target))
        return self.get(_text(latest)) if latest is not None else None

    # the watch window: state on the request, holding nothing; the target's watched request is found by key
    def watch_target(self, request_id: str, target: str) -> None:
        """Name the request whose watch runs on `target` (before its change is marked done, so that the next
        request on the target finds it)."""
        self.redis.set(self._watched_key(target), request_id, ex=self.record_ttl_seconds)

    def watched_for_target(self, target: str) -> Request | None:
        """The request whose watch window runs on `target`, if any (a record from before the key existed: the
        target's latest request, when it is being watched)."""
        named = self.redis.get(self._watched_key(target))
        request = self.get(_text(named)) if named is not None else self.latest_for_target(target)
        return request if request is not None and request.watching else None

    def end_watch(self, request_id: str, how: str, outcome: str) -> Request:
        """The watch is over (`how` it ended); the request is done (already, or, a record from before the
        watch stopped holding the target, now: the target is freed)."""
        request = self._require(request_id)
        done = self.set_status(request_id, RequestStatus.SUCCEEDED, watch_ended=how, outcome=outcome,
                               finished_at=request.finished_at or time.time())
        key = self._watched_key(request.target)
        if _text(self.redis.get(key) or b"") == request_id:
            self.redis.delete(key)
        return done

    def expire_if_due(self, request_id: str, now: float | None = None) -> Request:
        """Mark a pending request past its expiry as expired (freeing its target); returns the record."""
        now = time.time() if now is None else now
        request = self._require(request_id)
        if request.expired_at(now):
            # The decide script checks expiry first: past it, it records `expired`, never the decision.
            self._decide(
                keys=[self._request_key(request_id), self._held_key(request)],
                args=[request_id, RequestStatus.CANCELLED.value, "", repr(now)],
            )
        return self._require(request_id)

    def open_requests(self) -> list[Request]:
        """The requests the expiry sweeper watches (created, not yet forgotten), oldest first."""
        ids = [_text(i) for i in self.redis.zrange(self._open_key(), 0, -1)]
        found = [self.get(i) for i in ids]
        gone = [i for i, r in zip(ids, found, strict=True) if r is None]
        if gone:  # records past their retention
            self.redis.zrem(self._open_key(), *gone)
        return [r for r in found if r is not None]

    def forget(self, request_id: str) -> None:
        """The sweeper has nothing more to do for this request."""
        self.redis.zrem(self._open_key(), request_id)

    def for_channel(self, channel: str, limit: int = 20) -> list[Request]:
        """The channel's requests, newest first."""
        ids = self.redis.zrevrange(self._channel_key(channel), 0, limit - 1)
        found = [self.get(_text(i)) for i in ids]
        return [r for r in found if r is not None]

    def pending_for_channel(self, channel: str, now: float | None = None) -> list[Request]:
        now = time.time() if now is None else now
        return [
            r for r in self.for_channel(channel) if r.status is RequestStatus.PENDING and not r.expired_at(now)
        ]

    # plans: the channel's current dry run per target, until a request consumes it or a change clears it
    def save_plan(
        self, channel: str, target: str, plan: Mapping[str, Any], ttl_seconds: int = defaults.PLAN_TTL_SECONDS,
        now: float | None = None,
    ) -> None:
        key, index = self._plan_key(channel, target), self._plans_key(target)
        saved_at = time.time() if now is None else now
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(key, mapping={"plan": json.dumps(dict(plan)), "id": secrets.token_hex(8),
                                    "saved_at": repr(saved_at)})
            pipe.expire(key, ttl_seconds)
            pipe.sadd(index, channel)
            pipe.expire(index, max(ttl_seconds, defaults.PLAN_TTL_SECONDS))
            pipe.execute()

    def saved_plan(self, channel: str, target: str) -> SavedPlan | None:
        """The channel's current plan for the target, with its id and when it was saved."""
        try:
            raw = self.redis.hgetall(self._plan_key(channel, target))
        except redis.ResponseError:  # a plan saved by a version before plans were hashes: not honoured
            return None
        fields_ = {_text(k): _text(v) for k, v in raw.items()}
        if "plan" not in fields_:
            return None
        return SavedPlan(plan=json.loads(fields_["plan"]), id=fields_.get("id", ""),
                         saved_at=float(fields_.get("saved_at") or 0.0))

    def current_plan(self, channel: str, target: str) -> dict[str, Any] | None:
        saved = self.saved_plan(channel, target)
        return saved.plan if saved is not None else None

    def clear_plan(self, channel: str, target: str) -> None:
        self.redis.delete(self._plan_key(channel, target))
        self.redis.srem(self._plans_key(target), channel)

    def clear_plans(self, target: str) -> None:
        """Clear the target's current plan in every channel: the workers call it after any change they
        make to the target and after a failed dry run, so that no approval is asked for a stale plan."""
        self._clear_plans(keys=[self._plans_key(target)], args=[self.prefix, target])


_FIELD_NAMES = frozenset(f.name for f in fields(Request))


# The step claimed (for WATCH_CLOSE_CLAIM_SECONDS) by whoever ends a watch window: a worker's last look, a
# `watch stop`, a worker ending it as interrupted, or the bot's sweeper when its deadline passed. One closes it.
WATCH_CLOSE_STEP = "watch-end"
