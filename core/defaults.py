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
# Once a dry run holds a lock that blocks the application's reads or writes, it executes for at most this
# long more, then rolls back to before that lock and estimates the rest: its own worst stall of the
# application stays within the lock timeout plus this budget, at any data size.
DRY_RUN_BUDGET_MS = 2_000

# Two-person approval: a pending request expires, and an approved one must start within a bound.
REQUEST_TTL_SECONDS = 15 * 60
START_WITHIN_SECONDS = 2 * 60
# The bot looks for due requests (pending past their expiry, approved but never started) this often,
# and replaces their buttons with the outcome.
EXPIRY_SWEEP_INTERVAL_SECONDS = 15
# A dry-run plan stays the channel's current plan for this long (unless a request uses it up first,
# or a change to the target clears it).
PLAN_TTL_SECONDS = 60 * 60
# Before a restore request is created, the bot waits this long for a worker to confirm that the backup
# exists and verifies (checksum, `pg_restore --list`); then it refuses and creates nothing.
BACKUP_CHECK_TIMEOUT_SECONDS = 60
# The check job itself may run this much longer than the bot waits (then nobody reads its answer).
BACKUP_CHECK_GRACE_SECONDS = 30

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

# Paging: attempts and the first backoff (doubling) for PagerDuty 429/5xx; a 400 is never retried.
PAGERDUTY_MAX_ATTEMPTS = 4
PAGERDUTY_BACKOFF_SECONDS = 0.5
# Worker: how long a killed worker's jobs take to be noticed (RQ heartbeat/maintenance) — see docs/workers.md.
WORKER_MAINTENANCE_INTERVAL_SECONDS = 30
WORKER_WATCHDOG_INTERVAL_SECONDS = 10
# A running job refreshes its lease; a lease that lapses while the job is still "started" means the
# process running it died (workers/runtime/watchdog.py). Shorter when the watchdog scans more often.
LEASE_TTL_SECONDS = 10
# RQ worker TTL for `python -m workers`: an idle worker heartbeats every WORKER_TTL_SECONDS - 15 s (RQ's
# dequeue timeout), a busy one every job-monitoring interval. The bot counts a worker as listening while
# its last heartbeat is younger than the interval the worker itself announced plus this grace, so a
# SIGKILLed worker is noticed within WORKER_TTL_SECONDS + WORKER_HEARTBEAT_GRACE_SECONDS (one minute)
# instead of RQ's default 420 s TTL.
WORKER_TTL_SECONDS = 45
WORKER_HEARTBEAT_GRACE_SECONDS = 15
# The bot remembers each Slack delivery this long, so a retried one (X-Slack-Retry-Num) runs nothing
# twice; Slack retries within minutes and the signature check refuses anything older than 5 minutes.
DELIVERY_MEMORY_SECONDS = 10 * 60
# The workers' connections to a target: give up connecting after this long instead of hanging.
CONNECT_TIMEOUT_SECONDS = 10
# The application_name of every connection the workers open to a target: how the assessment's sessions
# show rollback-bot's own work (a rollback, a backup), which `terminate` never ends (bot/handlers.py).
WORKER_APPLICATION_NAME = "rollback-bot-worker"

# Backups (workers/postgres/pg_dump.py; figures behind these choices in docs/backups.md).
# gzip level 1: 10% larger than the default level 6 at half the time. BACKUP_JOBS > 1 means the
# directory format with that many parallel dump jobs (3x faster than the playbook's `pg_dump | gzip`
# at 2 jobs); 1 means a single custom-format file.
BACKUP_COMPRESS_LEVEL = 1
BACKUP_JOBS = 2
# pg_dump gives up instead of queueing behind a lock held by a migration (and blocking the app behind it).
BACKUP_LOCK_WAIT_TIMEOUT_MS = 30_000
# A restore into the target waits at most this long for each lock, then fails and rolls back.
RESTORE_LOCK_TIMEOUT_MS = 30_000
# Maintenance hooks and the smoke-test command are stopped after this long.
HOOK_TIMEOUT_SECONDS = 60
SMOKE_TIMEOUT_SECONDS = 300
# DigitalOcean droplet snapshots: poll the action this often, give up after this long.
DO_ACTION_POLL_SECONDS = 5.0
DO_ACTION_TIMEOUT_SECONDS = 30 * 60

# The bot's web server (bot/server.py: gunicorn, gthread workers; figures in docs/bot.md).
# Processes: one per core (a process is bound to one core by the GIL); threads: requests in flight per
# process, each mostly waiting on Redis or for its listener's ack; the backlog holds a burst of
# connections while every thread is busy (the kernel caps it at net.core.somaxconn).
WEB_PORT = 3000
WEB_HOST = "0.0.0.0"
WEB_PROCESSES = 2
WEB_THREADS = 16
# Threads per web process that do a command's or click's work after its ack (bolt's lazy listeners).
# Few on purpose: a burst's work is CPU in Python, and many threads doing it at once hold the GIL away
# from the request threads that ack (measured: 64 threads, p99 ack 879 ms; 4 threads, 438 ms; 200
# simultaneous deliveries on 2 CPUs). A listener waiting on a worker's check (restore, recover) holds one.
WEB_LISTENER_THREADS = 4
WEB_BACKLOG = 2048
# After SIGTERM, requests in flight (and the work their listeners do after the ack) get this long to
# finish; below the 30 s that Heroku, Kubernetes and systemd wait before SIGKILL.
WEB_GRACEFUL_TIMEOUT_SECONDS = 20
# A Slack delivery is a few kilobytes; a larger body is refused (413) before anything parses it.
MAX_DELIVERY_BYTES = 1024 * 1024
# A Slack payload nests about ten levels deep; a deeper one is not Slack's and is ignored unparsed further.
MAX_PAYLOAD_DEPTH = 64

# Supabase point-in-time recovery (workers/providers/supabase.py): the Management API is retried on 429/5xx and
# dropped connections (never on another 4xx); the recovery point defaults to this long before the bad
# migration was applied; a recovering project is polled this often, and paged past the bound.
SUPABASE_MAX_ATTEMPTS = 4
SUPABASE_BACKOFF_SECONDS = 1.0
PITR_MARGIN_SECONDS = 60
PITR_POLL_SECONDS = 10.0
PITR_RESTORE_TIMEOUT_SECONDS = 30 * 60

# Step 1, assess (workers/verbs/status.py): an active session running longer than this is named; the
# assessment `terminate` acts on is kept this long (like a plan).
LONG_RUNNING_SECONDS = 30.0
ASSESSMENT_TTL_SECONDS = 15 * 60
# After a verified rollback or restore the workers watch the app this long, looking this often
# (workers/verbs/watch.py).
WATCH_WINDOW_SECONDS = 10 * 60.0
WATCH_INTERVAL_SECONDS = 15.0
# A look of the watch that has not happened (or not finished) this long past its time means nobody is
# watching: the bot's sweeper ends the watch as interrupted and pages (bot/lapsed.py). A look takes at
# most its health probe, smoke command and database query; a worker busy with a long job delays it.
WATCH_GRACE_SECONDS = 120.0
# Looks that fail in a row (their process crashed or raised) before the watch ends as interrupted.
WATCH_MAX_FAILED_LOOKS = 3
# Closing a watch window is claimed this long: if the process closing it dies half-way, the sweeper may
# close it after that (as interrupted: nobody finished it).
WATCH_CLOSE_CLAIM_SECONDS = 120
# `report` gathers the incident's threads from at most this long before its request (and never from
# before the target's previous request ended).
INCIDENT_LOOKBACK_SECONDS = 3 * 60 * 60
# After a point-in-time recovery or a droplet restore, how long the workers wait for PostgreSQL to answer.
DATABASE_WAIT_SECONDS = 5 * 60

# A restore into the target by swapping databases (workers/postgres/swap.py) renames databases from a session on
# this database of the same server (a database cannot be renamed by a session connected to it).
MAINTENANCE_DATABASE = "postgres"
# How a restore into the target runs: auto (swap where the role may, else one transaction), swap, transaction.
RESTORE_METHOD = "auto"
# What protects a rollback, per target (`backup_policy`): a full pg_dump, the data-loss escrow (the rows and
# values each down statement destroys, copied in the rollback's own transaction), or both (the default).
BACKUP_POLICIES = ("full", "escrow", "full+escrow")
BACKUP_POLICY = "full+escrow"
# Escrow older than this is purged by the workers (two weeks: long enough to notice a wrong rollback).
ESCROW_RETENTION_DAYS = 14.0
