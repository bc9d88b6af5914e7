"""The Engine: the one object the CLI and the RQ jobs use. Thin: connect, lock, hand off to the runner."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from core import defaults
from core.errors import first_line
from workers.engine import escrow, locks, repair, runner, scripts, store, undo
from workers.engine import messages as escrow_messages
from workers.engine.errors import ConnectionFailed, DatabaseError, EngineError, InvalidDatabaseUrl
from workers.engine.planning import build_rollback_plan, build_status
from workers.engine.redact import password_of, redact
from workers.engine.repair import RepairPlan, RepairReport
from workers.engine.results import DryRunReport, Plan, RunReport, ServerInfo, StatusReport
from workers.engine.undo import UndoPlan, UndoReport
from workers.engine.versions import parse_version

APPLICATION_NAME = "rollback-bot"
# A killed runner's backend notices the dead client within this interval and rolls back (PostgreSQL 14+).
CLIENT_CHECK_INTERVAL = "1s"


class Engine:
    def __init__(
        self,
        conninfo: str,
        migrations_dir: str | Path,
        *,
        actor: str,
        approved_by: str | None = None,
        request_id: str | None = None,
        lock_timeout_ms: int = defaults.LOCK_TIMEOUT_MS,
        lock_retries: int = defaults.LOCK_RETRIES,
        statement_timeout_ms: int = defaults.STATEMENT_TIMEOUT_MS,
        lock_retry_base_seconds: float = defaults.LOCK_RETRY_BASE_SECONDS,
        dry_run_lock_timeout_ms: int = defaults.DRY_RUN_LOCK_TIMEOUT_MS,
        dry_run_budget_ms: int = defaults.DRY_RUN_BUDGET_MS,
        connect_timeout_s: int = defaults.CONNECT_TIMEOUT_SECONDS,
        log: Callable[[str], None] | None = None,
        escrow: bool = True,
        escrow_required: bool = False,
        run_id: str | None = None,
    ) -> None:
        self.connect_timeout_s = connect_timeout_s
        self._conninfo = conninfo
        self.migrations_dir = Path(migrations_dir)
        self.actor = actor
        self.approved_by = approved_by
        self.request_id = request_id
        self.policy = locks.RetryPolicy(lock_timeout_ms, max(0, lock_retries), lock_retry_base_seconds)
        self.statement_timeout_ms = statement_timeout_ms
        self.dry_run_lock_timeout_ms = dry_run_lock_timeout_ms
        self.dry_run_budget_ms = max(0, dry_run_budget_ms)
        self._password = password_of(conninfo)
        self._log = log or (lambda line: None)
        # A rollback's data-loss escrow is named after the request, or this run id (the CLI's); escrow_required:
        # no full backup protects the run, so a statement whose data cannot be escrowed refuses the rollback.
        self.escrow = escrow
        self.escrow_required = escrow_required
        self._run_id = run_id
        self.run_id: str | None = None  # set by each rollback: the id its escrow is held under

    def __repr__(self) -> str:  # never show the DSN
        return f"Engine(dbname={self.where!r}, migrations_dir={str(self.migrations_dir)!r})"

    # --- public API ---------------------------------------------------------------------------------

    def status(self) -> StatusReport:
        disk = scripts.load(self.migrations_dir)
        with self._connect() as (conn, server):
            return build_status(server, disk, store.read_recorded(conn), locks.lock_holder(conn))

    def plan_rollback(self, to: str | None = None) -> Plan:
        target = parse_version(to) if to is not None else None
        disk = scripts.load(self.migrations_dir)
        with self._connect() as (conn, server):
            return build_rollback_plan(server, disk, store.read_all(conn), target)

    def dry_run_rollback(self, to: str | None = None) -> DryRunReport:
        target = parse_version(to) if to is not None else None
        with self._run() as ctx:
            ctx.assess_escrow = self.escrow
            return runner.dry_run(ctx, "rollback", target, self.dry_run_lock_timeout_ms)

    def rollback(self, to: str | None = None, *, expected_plan_hash: str | None = None) -> RunReport:
        target = parse_version(to) if to is not None else None
        with self._run() as ctx:
            if self.escrow:
                self.run_id = self.request_id or self._run_id or new_run_id()
                ctx.escrow = escrow.Recorder(ctx.conn, self.run_id, required=self.escrow_required)
            return runner.rollback(ctx, target, expected_plan_hash)

    def undo(self, rollback_id: str, *, dry_run: bool = False,
             expected_plan_hash: str | None = None) -> UndoReport | RunReport:
        """Reverse the rollback `rollback_id` (a request id or a CLI run id) from its escrow; see `undo.py`."""
        with self._run() as ctx:
            return undo.undo(ctx, rollback_id, dry_run=dry_run, expected_plan_hash=expected_plan_hash)

    def plan_undo(self, rollback_id: str) -> UndoPlan:
        """What `undo(rollback_id)` would do, read under the lock without running anything (raises UndoRefused)."""
        with self._run() as ctx:
            return undo.plan(ctx, rollback_id, undo_request_id=self.request_id)

    def escrow_holdings(self) -> list[dict[str, Any]]:
        with self._connect() as (conn, _server):
            return escrow.holdings(conn)

    def purge_escrow(self, retention_days: float) -> list[tuple[str, int]]:
        """Drop escrow older than the retention period (under the migration lock: never during a run)."""
        with self._run() as ctx:
            purged = escrow.purge(ctx.conn, retention_days)
        for request_id, tables in purged:
            self._log(escrow_messages.escrow_purged(request_id, tables))
        return purged

    def apply(self, *, dry_run: bool = False, reapply: Iterable[str] = (),
              before: Callable[[Plan], None] | None = None) -> RunReport | DryRunReport:
        """Apply what is pending (rolled-back migrations stay rolled back unless their up.sql changed or
        `reapply` names them); `before(plan)` runs under the lock when something is about to be applied."""
        with self._run() as ctx:
            if dry_run:
                return runner.dry_run(ctx, "apply", None, self.dry_run_lock_timeout_ms, reapply)
            return runner.apply(ctx, reapply=reapply, before=before)

    def plan_repair(self, version: str) -> RepairPlan:
        """Scenario 1: what `repair` would do to a failed or stuck migration (nothing is changed)."""
        version = parse_version(version)
        disk = scripts.load(self.migrations_dir)
        with self._connect() as (conn, server):
            return repair.plan_repair(conn, disk, version, server.dbname)

    def repair(self, version: str, *, expected_plan_hash: str | None = None, reason: str = "") -> RepairReport:
        """Run the repair under the migration lock (a live run holding it: LockBusy), re-planned and compared."""
        version = parse_version(version)
        with self._run() as ctx:
            store.ensure_tables(ctx.conn)
            return repair.run_repair(ctx.conn, ctx.disk, version, ctx.server.dbname,
                                     expected_hash=expected_plan_hash, actor=self.actor, approved_by=self.approved_by,
                                     request_id=self.request_id, reason=reason, log=self._log, redact=self.redact)

    def history(self, limit: int = 50) -> list[dict[str, Any]]:
        with self._connect() as (conn, _server):
            return store.history(conn, limit)

    # --- plumbing -----------------------------------------------------------------------------------

    @property
    def where(self) -> str:
        """host:port/dbname of the target, for messages (never the password)."""
        try:
            info = psycopg.conninfo.conninfo_to_dict(self._conninfo)
        except psycopg.Error:
            return "(unparseable DATABASE_URL)"
        host = info.get("host") or info.get("hostaddr") or "localhost"
        return self.redact(f"{host}:{info.get('port') or 5432}/{info.get('dbname') or info.get('user') or ''}")

    def redact(self, text: str) -> str:
        return redact(text, [self._password])

    @contextlib.contextmanager
    def _connect(self) -> Iterator[tuple[psycopg.Connection[Any], ServerInfo]]:
        try:
            psycopg.conninfo.conninfo_to_dict(self._conninfo)
        except psycopg.Error:
            raise InvalidDatabaseUrl() from None
        try:
            conn = psycopg.connect(self._conninfo, autocommit=True, application_name=APPLICATION_NAME,
                                   connect_timeout=self.connect_timeout_s)
        except psycopg.Error as exc:
            raise ConnectionFailed(self.where, self.redact(first_line(exc, type(exc).__name__))) from None
        try:
            yield conn, _server_info(conn)
        except EngineError:
            raise
        except psycopg.Error as exc:
            raise DatabaseError(self.where, self.redact(first_line(exc, type(exc).__name__))) from None
        finally:
            conn.close()

    @contextlib.contextmanager
    def _run(self) -> Iterator[runner.Context]:
        """A connection holding the migration lock for the whole run (released when it closes)."""
        disk = scripts.load(self.migrations_dir)
        with self._connect() as (conn, server):
            locks.try_migration_lock(conn, server.dbname)
            try:
                yield runner.Context(
                    conn=conn, conninfo=self._conninfo, server=server, disk=disk, actor=self.actor,
                    approved_by=self.approved_by, request_id=self.request_id, policy=self.policy,
                    statement_timeout_ms=self.statement_timeout_ms, log=self._log, redact=self.redact,
                    dry_run_budget_ms=self.dry_run_budget_ms,
                )
            finally:
                # Closing the connection releases the lock anyway; this just frees it as early as possible.
                with contextlib.suppress(psycopg.Error):
                    if not conn.closed and not conn.broken:
                        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                            conn.rollback()
                        locks.release_migration_lock(conn)


def new_run_id() -> str:
    """A CLI run's id, which names its escrow: run-YYYYMMDD-HHMMSS-xxxx (UTC)."""
    return f"run-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def _server_info(conn: psycopg.Connection[Any]) -> ServerInfo:
    identifier: str | None = None
    try:
        row = conn.execute("SELECT system_identifier::text FROM pg_control_system()").fetchone()
        identifier = row[0] if row else None
    except psycopg.errors.InsufficientPrivilege:
        identifier = None  # not a superuser / pg_monitor: the dbname still identifies the target
    # One round trip for the identity and, on PostgreSQL 14+, the dead-client check of this session.
    if conn.info.server_version >= 140000:
        row = conn.execute("SELECT current_setting('server_version'), current_user, current_database(),"
                           " set_config('client_connection_check_interval', %s, false)",
                           (CLIENT_CHECK_INTERVAL,)).fetchone()
    else:
        row = conn.execute("SELECT current_setting('server_version'), current_user, current_database()").fetchone()
    assert row is not None
    info = conn.info
    return ServerInfo(host=info.host, port=str(info.port), dbname=row[2], system_identifier=identifier,
                      server_version=str(row[0]).split(" ")[0], user=row[1])
