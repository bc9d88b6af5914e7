"""The workers' own errors, and the one boundary that turns any failure into the line a person reads."""

from __future__ import annotations

from collections.abc import Iterable

import psycopg
import redis
from rq.exceptions import AbandonedJobError
from rq.timeouts import JobTimeoutException

from core.config import ConfigError
from core.errors import RollbackError
from core.requests import RequestError
from workers import messages
from workers.engine import EngineError
from workers.engine.messages import SLACK, Advice
from workers.engine.redact import redact


class WorkerError(RollbackError):
    """An expected failure of a job; `str()` is one line saying what is wrong and what to do."""


class StepFailed(WorkerError):
    """A pipeline step did not succeed (the chain stops here)."""


class Refused(WorkerError):
    """A job declined to act (not approved, plan changed, wrong database...): nothing was changed."""


# Expected failures from outside the workers' own base (settings, request records): shown as they are.
EXPECTED = (RollbackError, ConfigError, RequestError)


def describe(error: BaseException | None, secrets: Iterable[str | None] = (), advice: Advice = SLACK) -> str:
    """One line, no secrets: what went wrong, with advice for where it is shown (Slack by default)."""
    timeout = timeout_in_chain(error)
    if timeout is not None:  # e.g. the engine's cleanup failed after the timeout interrupted a query
        error = timeout
    if error is None:
        text = messages.abandoned()
    elif isinstance(error, EngineError):
        text = error.render(advice)
    elif isinstance(error, EXPECTED):
        text = str(error)
    elif isinstance(error, AbandonedJobError):
        text = messages.abandoned()
    elif isinstance(error, JobTimeoutException):
        text = messages.timed_out(str(error))
    elif isinstance(error, psycopg.OperationalError):
        text = messages.database_unavailable("the target", str(error).strip().splitlines()[0] if str(error) else "")
    elif isinstance(error, psycopg.Error):
        text = f"PostgreSQL error: {str(error).strip().splitlines()[0] if str(error) else type(error).__name__}"
    elif isinstance(error, redis.RedisError):
        text = messages.redis_unavailable(type(error).__name__)
    else:
        text = messages.unexpected_error(error)
    return redact(" ".join(text.split()), secrets)


def timeout_in_chain(error: BaseException | None) -> JobTimeoutException | None:
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, JobTimeoutException):
            return error
        error = error.__cause__ or error.__context__
        seen += 1
    return None
