"""Every default, named and documented in one place."""

CONFIG_FILE = "rollback.toml"
MIGRATIONS_DIR = "migrations"
BACKUP_DIR = "backups"

REDIS_URL = "redis://127.0.0.1:6379/0"
QUEUE_NAME = "rollback"

# DDL waits at most this long for a lock, so the application's queries never queue behind it for long;
# the attempt is retried LOCK_RETRIES times with backoff before giving up (GitLab's migration helpers).
LOCK_TIMEOUT_MS = 3_000
LOCK_RETRIES = 5
LOCK_RETRY_BASE_SECONDS = 0.5
STATEMENT_TIMEOUT_MS = 600_000

# A dry run always uses a short lock timeout: it must never stall production to produce a plan.
DRY_RUN_LOCK_TIMEOUT_MS = 2_000

# Two-person approval: a pending request expires, and an approved one must start within a bound.
REQUEST_TTL_SECONDS = 15 * 60
START_WITHIN_SECONDS = 2 * 60
# A dry-run plan stays the channel's current plan for this long.
PLAN_TTL_SECONDS = 60 * 60

# RQ job timeouts. A job past its timeout is killed by the worker and reported as failed.
JOB_TIMEOUT_SECONDS = 60 * 60
# Long steps post a progress line into the thread at least this often.
PROGRESS_INTERVAL_SECONDS = 20

PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
HTTP_TIMEOUT_SECONDS = 10

# Request records and step claims are kept this long in Redis (the thread and report keep the record).
REQUEST_RECORD_TTL_SECONDS = 30 * 24 * 60 * 60
# A target's one-active-request lock outlives any pipeline; a finished request releases it at once.
ACTIVE_LOCK_TTL_SECONDS = 12 * 60 * 60
