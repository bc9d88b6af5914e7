"""Every sentence the engine and `run-migrations` show a person: errors, warnings, logs and tables."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workers.engine.forecast import Forecast, TableStall
    from workers.engine.results import DryRunReport, Plan, RunReport, StatusReport

VERSION_FORMAT = "YYYY_MM_DD_HHMMSS"


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- errors (one line: what is wrong, then what to do) -------------------------------------------


def unparseable_conninfo() -> str:
    # psycopg's parse error quotes the text around the problem, which may be the password: never show it.
    return ("DATABASE_URL is not a valid PostgreSQL URL or connection string; "
            "set it like postgresql://user@host:5432/dbname (or a key=value string such as host=... dbname=...)")


def connection_failed(where: str, reason: str) -> str:
    return (f"cannot connect to PostgreSQL at {where}: {_short(reason)}; "
            "check DATABASE_URL and that the server is running and reachable")


def migrations_dir_error(path: str, problem: str) -> str:
    if problem == "missing":
        return f"migrations folder {path} does not exist; pass --dir or set MIGRATIONS_DIR to the folder"
    if problem == "not_a_folder":
        return f"migrations folder {path} is a file, not a folder; pass --dir or set MIGRATIONS_DIR to the folder"
    if problem == "not_utf8":
        return f"{path} is not UTF-8 text; save the script as UTF-8 and retry"
    if problem.startswith("duplicate:"):
        version = problem.split(":", 1)[1]
        return f"two folders in {path} have version {version}; give each migration its own version and retry"
    if problem == "misnamed":
        return (f"folder {path} looks like a migration but is not named {VERSION_FORMAT}_<name> "
                "(e.g. 2025_10_21_120000_add_index); rename it or move it out of the migrations folder, then retry")
    return f"migrations folder {path}: {problem}"


UNSUPPORTED = {
    "copy_from_stdin": "COPY FROM STDIN is not supported in migration scripts; use INSERT or load data separately",
    "copy_to_stdout": "COPY TO STDOUT is not supported in migration scripts; its output has nowhere to go — remove it",
    "psql_meta": ("psql meta-commands (\\copy, \\i, \\set ...) are not supported in migration scripts; "
                  "use plain SQL"),
}


def unsupported_statement(path: str, statement: str, problem: str) -> str:
    return f"{path}: `{_short(statement, 60)}`: {UNSUPPORTED.get(problem, problem)}"


@dataclass(frozen=True)
class Advice:
    """Where an error sends its reader: the command line's flags, or Slack's commands and config keys.
    An error carries data; the boundary that shows it picks the advice (`EngineError.render`)."""

    status: str  # how to see every migration's state
    pick_version: str  # how to choose the version to roll back to
    lock_timeout: str  # how to let DDL wait longer for its table locks
    repair: str = "run-migrations --repair {version}"  # how to repair a failed or stuck migration


CLI = Advice(
    status="--status",
    pick_version="run --status and pick a completed version as --to",
    lock_timeout="raise --lock-timeout",
)
SLACK = Advice(
    status="`/rollback status`",
    pick_version="run `/rollback status` and dry-run to a completed version",
    lock_timeout="raise `workers.lock_timeout_ms` in rollback.toml",
    repair="`/rollback repair {version}`",
)


def unparseable_script(path: str, line: int, pg_message: str) -> str:
    return (f"{path} line {line} is not valid SQL: PostgreSQL's parser says {_short(pg_message, 160)}; "
            "fix the script and retry (nothing was run)")


def unknown_version(version: str, reason: str, advice: Advice = CLI) -> str:
    if reason == "malformed":
        return f"{version!r} is not a migration version (expected {VERSION_FORMAT}, e.g. 2025_10_20_120001)"
    return f"version {version} has never been applied to this database; {advice.pick_version}"


def not_rolled_back(version: str, status: str) -> str:
    where = "not in the migrations folder" if status == "missing" else f"{status}, not rolled back"
    return (f"--reapply {version}: the migration is {where}; --reapply takes a rolled-back migration "
            "(see run-migrations --status); nothing was applied")


REAPPLY_HINT = "re-applied when its up.sql changes, or with `--reapply {version}`"


def stays_rolled_back(version: str, name: str) -> str:
    """A plain apply leaves a rolled-back migration alone (its up.sql is the one that was rolled back)."""
    return f"{NOTICE_PREFIX}{version}_{name} stays rolled back; {REAPPLY_HINT.format(version=version)}"


def rolled_back_status(version: str, name: str, *, held: bool, repaired: bool) -> str:
    """--status: what the next plain apply does with a rolled-back migration."""
    if held:
        return f"{version}_{name}: rolled back; {REAPPLY_HINT.format(version=version)}"
    if repaired:
        return f"{version}_{name}: rolled back by --repair: the next run-migrations applies it again"
    return f"{version}_{name}: rolled back, and its up.sql changed since: the next run-migrations applies it"


def not_completed(version: str, status: str, advice: Advice = CLI) -> str:
    return (f"version {version} is {status}, not completed, so it is not a known-good state to roll back to; "
            f"{advice.pick_version}")


def missing_down_script(version: str, name: str, folder: str, migration_missing: bool) -> str:
    if migration_missing:
        return (f"migration {version} is applied but its folder is missing from {folder}; "
                "restore the folder (with down.sql) before rolling it back, or roll back by hand (playbook Method 2)")
    return (f"migration {version}_{name} has no down.sql or rollback.sql in {folder}; "
            "write one (playbook: every migration needs a rollback script), or roll back by hand (Method 2)")


def _session(info: dict[str, Any]) -> str:
    # every session row has its pid; a lock holder has no state, a session gone meanwhile only its pid
    shown = {"usename": "user {}", "application_name": "application {!r}", "state": "state {!r}"}
    return ", ".join([f"pid {info['pid']}", *(form.format(info[key]) for key, form in shown.items() if info.get(key))])


def lock_busy(dbname: str, holder: dict[str, Any] | None, advice: Advice = CLI) -> str:
    who = f" ({_session(holder)})" if holder else ""
    return (f"another migration run holds the migration lock on database {dbname}{who}; "
            f"wait for it to finish, check {advice.status}, then retry")


def blockers_text(blockers: Sequence[dict[str, Any]]) -> str:
    if not blockers:
        return "blocking session unknown (it let go before it could be identified)"
    return "blocked by " + "; ".join(_session(b) for b in blockers)


def lock_timeout(attempts: int, lock_timeout_ms: int, statement: str, blockers: Sequence[dict[str, Any]],
                 advice: Advice = CLI) -> str:
    return (f"gave up after {attempts} attempts: could not get a table lock within {lock_timeout_ms} ms for "
            f"`{_short(statement, 80)}`, {blockers_text(blockers)}; nothing was changed — end or wait for "
            f"that session (SELECT pg_terminate_backend(pid) if safe), or {advice.lock_timeout}, then retry")


def migration_failed(operation: str, version: str, name: str, statement: str, pg_message: str,
                     rolled_back: bool) -> str:
    undone = ("no change remains (the whole transaction was rolled back)" if rolled_back
              else "statements before it ran outside a transaction and stay applied")
    return (f"{operation} of {version}_{name} failed at `{_short(statement, 80)}`: {_short(pg_message, 200)}; "
            f"{undone}; fix the script and run again")


def plan_changed(expected: str, actual: str) -> str:
    return (f"the rollback plan changed since it was approved (approved {expected[:12]}, now {actual[:12]}); "
            "nothing was changed — run the dry run again and get the new plan approved")


def interrupted_migration(version: str, name: str) -> str:
    return (f"migration {version}_{name} is marked running but no run holds the lock: a run died while it ran "  # noqa: S608
            "outside a transaction; check its effects, then UPDATE schema_migrations SET status = 'failed' "
            f"WHERE version = '{version}' and run again")  # advice text for a person, never executed


def run_interrupted(operation: str, version: str | None, name: str | None, statement: str, reason: str) -> str:
    what = f"{operation} of {version}_{name}" if version else operation
    at = f" at `{_short(statement, 80)}`" if statement else ""
    return (f"{what} was interrupted ({_short(reason, 120)}){at}; its open transaction was rolled back "
            "by PostgreSQL — check run-migrations --status before retrying")


def bookkeeping_conflict(version: str, expected_status: str, advice: Advice = CLI) -> str:
    return (f"schema_migrations row {version} is no longer {expected_status} (changed by hand during the run?); "
            f"nothing was changed — check {advice.status} and retry")


# --- log lines (--verbose and the workers' progress) ---------------------------------------------


RETRY_PREFIX = "lock wait: attempt "


def lock_retry(attempt: int, total: int, lock_timeout_ms: int, statement: str,
               blockers: Sequence[dict[str, Any]], delay: float) -> str:
    return (f"{RETRY_PREFIX}{attempt}/{total} timed out after {lock_timeout_ms} ms for `{_short(statement, 60)}`, "
            f"{blockers_text(blockers)}; everything rolled back, retrying in {delay:.2f} s")


NOTICE_PREFIX = "note: "


def is_notice(line: str) -> bool:
    """Log lines a person must see even without --verbose (lock-wait retries, out-of-order applies)."""
    return line.startswith((RETRY_PREFIX, NOTICE_PREFIX))


def applying_out_of_order(version: str, name: str, current: str | None) -> str:
    return f"{NOTICE_PREFIX}applying {version}_{name} out of order: it is older than the current version {current}"


def failure_not_recorded(reason: str) -> str:
    return f"could not record the failure in migration_history: {_short(reason, 200)}"


def running_statement(version: str, statement: str) -> str:
    return f"[{version}] {_short(statement, 200)}"


def statement_done(version: str, tag: str, duration_ms: float) -> str:
    return f"[{version}]   -> {tag} ({duration_ms:.1f} ms)"


def step_start(operation: str, version: str, name: str, transactional: bool) -> str:
    how = "" if transactional else " (outside a transaction)"
    verb = "reverting" if operation == "rollback" else "applying"
    return f"{verb} {version}_{name}{how}"


# --- warnings ------------------------------------------------------------------------------------


def drift_warning(version: str, name: str) -> str:
    return f"{version}_{name}: up.sql changed since it was applied (checksum differs)"


def missing_file_warning(version: str) -> str:
    return f"{version}: applied but its folder is missing from the migrations directory"


def no_down_warning(version: str, name: str) -> str:
    return f"{version}_{name}: no down.sql or rollback.sql — it cannot be rolled back automatically"


def failed_warning(version: str, name: str, error: str | None) -> str:
    return f"{version}_{name} failed: {_short(error or 'no error message recorded', 200)}"


def running_warning(version: str, name: str, lock_held: bool) -> str:
    if lock_held:
        return f"{version}_{name} is running now (another run holds the migration lock)"
    return f"{version}_{name} is marked running but no run holds the lock: it was interrupted; check it by hand"


def out_of_order_warning(version: str, name: str, current: str | None) -> str:
    return (f"{version}_{name} is pending but older than the current version {current} (merged late?): "
            "the next apply runs it out of order; check it does not conflict with the newer migrations")


IGNORED_NAMES_SHOWN = 3  # a folder of other files gets one line, not one per file


def ignored_entries_warning(entries: Sequence[str]) -> str:
    if len(entries) == 1:
        return f"ignored {entries[0]!r} in the migrations folder: not named {VERSION_FORMAT}_<name>"
    shown = ", ".join(repr(e) for e in entries[:IGNORED_NAMES_SHOWN])
    more = f" and {len(entries) - IGNORED_NAMES_SHOWN} more" if len(entries) > IGNORED_NAMES_SHOWN else ""
    return (f"ignored {len(entries)} entries in the migrations folder not named {VERSION_FORMAT}_<name>: "
            f"{shown}{more}")


def no_up_warning(version: str, name: str) -> str:
    return f"{version}_{name}: no up.sql"


def dropped_table_loss(table: str, rows: int) -> str:
    return f"DROP TABLE {table}: {rows} {'row' if rows == 1 else 'rows'} would be lost"


def dropped_column_loss(table: str, column: str, values: int) -> str:
    return f"DROP COLUMN {table}.{column}: {values} non-null {'value' if values == 1 else 'values'} would be lost"


def truncate_loss(table: str, rows: int) -> str:
    return f"TRUNCATE {table}: {rows} {'row' if rows == 1 else 'rows'} would be lost"


def delete_loss(table: str, rows: int) -> str:
    return f"DELETE FROM {table}: {rows} {'row' if rows == 1 else 'rows'} would be deleted"  # noqa: S608 - text


def update_change(table: str, rows: int) -> str:
    return f"UPDATE {table}: {rows} {'row' if rows == 1 else 'rows'} would be changed"


def sequence_advanced(name: str) -> str:
    return (f"sequence {name} advanced during the dry run (nextval is never rolled back; "
            "concurrent application inserts also advance it)")


def no_transaction_dry_run(version: str, name: str) -> str:
    return (f"{version}_{name} runs outside a transaction and was NOT executed by the dry run "
            "(it cannot be rolled back); its statements are listed unmeasured")


# --- lock-impact forecast ------------------------------------------------------------------------

ESTIMATED_TAG = "(estimated)"


def dry_run_budget_spent(budget_ms: int) -> str:
    return (f"{NOTICE_PREFIX}the dry run held a lock that blocks the application for its budget of "
            f"{budget_ms / 1000:g} s: rolled back to before that lock; the rest is estimated")


def estimated_row_change(command: str, table: str, rows: int) -> str:
    verb = "delete" if command == "DELETE" else "change"
    return f"{command} would {verb} ≈{rows} row(s) of {table} (estimated: the dry run stopped before it finished)"


def approx_seconds(ms: float) -> str:
    """≈17 s, ≈2.4 s, <0.1 s: a forecast is not precise to the millisecond."""
    if ms < 100:
        return "<0.1 s"
    seconds = ms / 1000
    return f"≈{seconds:.0f} s" if seconds >= 10 else f"≈{seconds:.1f} s"


def _how_known(estimated: bool) -> str:
    return "estimated: the dry run stopped at its budget" if estimated else "measured in the dry run"


def table_stall_line(stall: TableStall) -> str:
    """'writes to users blocked ≈17 s, reads too (measured in the dry run)'."""
    how = _how_known(stall.estimated)
    if stall.reads_blocked_ms and abs(stall.reads_blocked_ms - stall.writes_blocked_ms) < 50:
        return f"reads and writes of {stall.relation} blocked {approx_seconds(stall.writes_blocked_ms)} ({how})"
    reads = (f", reads {approx_seconds(stall.reads_blocked_ms)}" if stall.reads_blocked_ms
             else "; reads are not blocked")
    return f"writes to {stall.relation} blocked {approx_seconds(stall.writes_blocked_ms)}{reads} ({how})"


def dry_run_vacuumed(tables: list[str], ms: float) -> str:
    return f"dry run: VACUUM {', '.join(tables)} cleared the rows its undone writes left ({ms / 1000:.1f} s)"


def dry_run_vacuum_failed(error: str) -> str:
    return f"dry run: VACUUM of the tables it wrote to failed ({error}); autovacuum will clear them later"


def forecast_lines(forecast: Forecast) -> list[str]:
    """The forecast as the CLI and the approval card show it, worst table first."""
    if not forecast.statements:
        return []
    if not forecast.tables:
        return ["no application reads or writes of any table blocked by a table lock (measured in the dry run)"]
    lines = [table_stall_line(t) for t in forecast.tables[:5]]
    if len(forecast.tables) > 5:
        lines.append(f"… and {len(forecast.tables) - 5} more table(s)")
    if copies_ms := sum(s.escrow_ms for s in forecast.statements):
        lines.append(f"these include the escrow copies the rollback makes before each destructive statement "
                     f"({approx_seconds(copies_ms)} in all)")
    if forecast.stopped is not None:
        stop = forecast.stopped
        lines.append(f"the dry run itself blocked the application {approx_seconds(stop.held_ms)} (budget "
                     f"{stop.budget_ms / 1000:g} s) and stopped at `{_short(stop.sql, 60)}`; later figures are "
                     "estimated from EXPLAIN row counts and the rate measured so far")
    for version, statements in forecast.reordered:
        lines.append(f"suggestion (not applied): run {version}'s long statements before its strong locks:\n"
                     + ";\n".join(statements) + ";")
    return lines


# --- escrow and undo -----------------------------------------------------------------------------


def escrow_count_mismatch(table: str, copied: int, changed: int) -> str:
    return (f"escrow of {table} is not exact: {copied} row(s) were copied but the statement changed {changed} "
            "(a concurrent write or a trigger); the rollback was undone, nothing changed; retry it, "
            "in maintenance mode if writes continue")


def escrow_required(statement: str, reason: str) -> str:
    return (f"not escrowed: {_short(statement, 100)} ({reason}), and no full backup protects this run; "
            "nothing changed; take a full backup (backup policy full or full+escrow) and retry")


def not_escrowed_line(statement: str, reason: str) -> str:
    return f"not escrowed: {_short(statement, 100)} ({reason}); a full backup is mandatory for this rollback"


UNDO_REFUSALS = {
    "unknown": ("no escrow is held for {request_id}; list what is held with `run-migrations --escrow` "
                "or `/rollback escrow`"),
    "already_undone": "the rollback {request_id} was already undone ({detail}); nothing to do",
    "not_rolled_back": ("migration {detail} of rollback {request_id} is no longer rolled back; "
                        "undo only reverses a rollback nothing has re-applied since"),
    "newer_applied": ("migration {detail} was applied after rollback {request_id}; undoing would re-apply older "
                      "migrations out of order; roll that one back first, or restore a backup"),
    "no_up": "migration {detail} has no up.sql on disk; undo needs it to rebuild the schema",
    "drift": ("up.sql of {detail} changed since it was applied (checksum differs); undo would build another "
              "schema; restore the original file and retry"),
    "not_escrowed": ("rollback {request_id} destroyed data that was not escrowed ({detail}); undo cannot put it "
                     "back; restore the full backup taken before it instead"),
    "no_transaction": ("migration {detail} must run outside a transaction; undo runs in one transaction and "
                       "cannot include it"),
}


def undo_refused(request_id: str, problem: str, detail: str) -> str:
    text = UNDO_REFUSALS.get(problem)
    if text is None:
        return f"undo of {request_id} refused: {problem} {detail}".strip()
    return text.format(request_id=request_id, detail=detail)


def undo_failed(request_id: str, relation: str, reason: str) -> str:
    return (f"undo of {request_id} could not put the escrow of {relation} back ({_short(reason)}); "
            "its transaction was rolled back, nothing changed; the escrow is kept")


def undo_restored(relation: str, kind: str, rows: int) -> str:
    return f"put back {rows} row(s) of {relation} ({kind})"


def escrow_purged(request_id: str, tables: int) -> str:
    return f"escrow of {request_id} purged ({tables} table(s)): older than the retention period"


def render_escrow(holdings: Sequence[dict[str, Any]]) -> str:
    if not holdings:
        return "no escrow held"
    rows = [[h["request_id"], ", ".join(h["tables"]) or "-", str(h["rows"]), _size(h["bytes"]),
             h["age"], "undone" if h["undone_at"] else ("not escrowed: " + str(len(h["not_escrowed"]))
                                                            if h["not_escrowed"] else "")]
            for h in holdings]
    return _table(["request", "tables", "rows", "size", "age", "notes"], rows)


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n = n / 1024  # type: ignore[assignment]
    return f"{n} B"


def render_escrow_of_run(escrow: dict[str, Any]) -> list[str]:
    lines = [f"escrow {escrow['request_id']}: {len(escrow['held'])} table(s), {escrow['rows']} row(s), "
             f"{_size(escrow['bytes'])} in schema rollback_escrow (undo with --undo {escrow['request_id']})"]
    lines += [f"  ! {not_escrowed_line(n['statement'], n['reason'])}" for n in escrow["not_escrowed"]]
    return lines


# --- CLI output ----------------------------------------------------------------------------------


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line.rstrip(), "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(out)


def render_status(report: StatusReport) -> str:
    s = report.server
    head = f"database {s.dbname} on {s.host}:{s.port} (PostgreSQL {s.server_version}, user {s.user})"
    rows = []
    for m in report.migrations:
        flags = [f for f, on in (("no down", not m.has_down), ("drift", m.drift), ("missing file", m.missing_file),
                                 ("no-transaction", not m.transactional)) if on]
        applied = m.applied_at.strftime("%Y-%m-%d %H:%M:%S%z") if m.applied_at else ""
        rows.append([m.version, m.name, m.status, applied, ", ".join(flags)])
    parts = [head, "", _table(["version", "name", "status", "applied_at", "notes"], rows) if rows
             else "no migrations found"]
    parts.append("")
    parts.append(f"current version: {report.current_version or 'none'}")
    if report.warnings:
        parts.append("warnings:")
        parts += [f"  ! {w}" for w in report.warnings]
    return "\n".join(parts)


def render_plan(plan: Plan) -> str:
    if plan.empty:
        if plan.operation == "rollback" and plan.current_version is None:
            return f"nothing to roll back: no migration is completed in {plan.dbname}"
        if plan.operation == "rollback":
            return f"nothing to roll back: no completed migration newer than {plan.to or plan.current_version}"
        return "\n".join([_nothing_to_apply(plan.held), *_held_lines(plan.held)])
    verb = "roll back" if plan.operation == "rollback" else "apply"
    target = f" to {plan.to}" if plan.to else ""
    lines = [f"plan: {verb} {len(plan.steps)} migration(s){target} on {plan.dbname} "
             f"(current {plan.current_version or 'none'}), plan hash {plan.hash[:12]}"]
    for step in plan.steps:
        how = "in one transaction" if step.transactional else "OUTSIDE a transaction, statement by statement"
        lines.append(f"  {step.version}_{step.name}: {len(step.statements)} statement(s), {how}")
    if plan.operation == "rollback" and plan.transactional:
        lines.append("  all down scripts and the bookkeeping run in ONE transaction: all or nothing")
    return "\n".join([*lines, *_held_lines(plan.held)])


def _nothing_to_apply(held: Sequence[tuple[str, str]]) -> str:
    if held:
        return "nothing to apply: every other migration on disk is completed"
    return "nothing to apply: every migration on disk is completed"


def _held_lines(held: Sequence[tuple[str, str]]) -> list[str]:
    return [stays_rolled_back(version, name) for version, name in held]


def _statement_rows(statements: Sequence[Any]) -> list[list[str]]:
    return [[st.version, _short(st.sql, 70), st.tag, "" if st.rowcount is None or st.rowcount < 0
             else str(st.rowcount), f"{st.duration_ms:.1f}"] for st in statements]


# Printed before a verbose dry run's statements, so that nobody reads them as changes being made.
DRY_RUN_AHEAD = "DRY RUN — nothing will change: the statements below run in a transaction that is rolled back"


def render_dry_run(report: DryRunReport) -> str:
    parts = ["DRY RUN — everything below was rolled back; nothing changed", render_plan(report.plan)]
    if report.statements:
        parts += ["", _table(["version", "statement", "tag", "rows", "ms"], _statement_rows(report.statements))]
    if report.warnings:
        parts += ["", "warnings:"] + [f"  ! {w}" for w in report.warnings]
    elif not report.plan.empty:
        parts += ["", "no data-loss warnings"]
    if report.forecast is not None and report.forecast.lines:
        parts += ["", "lock impact of the real run (the application waits this long, plus up to lock_timeout):"]
        parts += [f"  {line}" for line in report.forecast.lines]
    return "\n".join(parts)


def render_run(report: RunReport) -> str:
    if report.already_done:
        return (f"request {report.request_id} already rolled back {', '.join(report.versions)} earlier; "
                "nothing done this time")
    if not report.versions:
        return ("nothing to roll back" if report.operation == "rollback"
                else "\n".join([_nothing_to_apply(report.held), *_held_lines(report.held)]))
    verb = "rolled back" if report.operation == "rollback" else "applied"
    parts = [f"{verb} {len(report.versions)} migration(s) in {report.duration_ms:.0f} ms: {', '.join(report.versions)}"]
    if report.to:
        parts.append(f"database is now at {report.to}")
    parts += _held_lines(report.held)
    if report.warnings:
        parts += ["warnings:"] + [f"  ! {w}" for w in report.warnings]
    if report.escrow:
        parts += render_escrow_of_run(report.escrow)
    if report.statements:
        parts += ["", _table(["version", "statement", "tag", "rows", "ms"], _statement_rows(report.statements))]
    return "\n".join(parts)


def render_undo_plan(plan: Any) -> str:
    """An UndoPlan: what --undo is about to do."""
    return (f"plan: undo rollback {plan.request_id} on {plan.dbname}: re-apply {', '.join(plan.versions)}, then put "
            f"back {len(plan.held)} escrowed cop(ies), {sum(h.rows for h in plan.held)} row(s), in ONE transaction "
            f"(plan hash {plan.hash[:12]})")


def render_undo(report: Any) -> str:
    """An UndoReport (or the earlier result of the same undo request)."""
    if getattr(report, "already_done", False) and not hasattr(report, "restored"):
        return f"undo request {report.request_id} already ran; nothing done this time"
    head = ("DRY RUN of undo — everything below was rolled back; nothing changed" if report.dry_run
            else f"undid rollback {report.plan.request_id} in {report.duration_ms:.0f} ms")
    parts = [head, f"re-applied: {', '.join(report.plan.versions)}"]
    parts += [f"  {undo_restored(r['relation'], r['kind'], r['rows'])}" for r in report.restored]
    if report.statements:
        parts += ["", _table(["version", "statement", "tag", "rows", "ms"], _statement_rows(report.statements))]
    return "\n".join(parts)


def backup_started(name: str, operation: str) -> str:
    return f"backup of {name} before the {operation} …"


def backup_verified(path: str, sha256: str) -> str:
    return f"backup verified: {path} (sha256 {sha256[:12]})"


def backup_skipped(actor: str) -> str:
    return f"no backup taken (--no-backup), recorded in migration_history by {actor}"


def cli_error(message: str) -> str:
    return f"run-migrations: error: {message}"


def usage_conflict(problem: str) -> str:
    return f"{problem}; see run-migrations --help"


def database_error(where: str, reason: str, advice: Advice = CLI) -> str:
    return f"database error on {where}: {_short(reason, 200)}; check the server and {advice.status}, then retry"


def interrupted() -> str:
    return ("interrupted; the statement running was cancelled and any open transaction rolled back by "
            "PostgreSQL — check run-migrations --status before retrying")


def render_history(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return "migration_history is empty"
    table = []
    for r in rows:  # whole migration_history rows: every column is there, NULL as None
        at = r["executed_at"]
        table.append([*(str(r[c] or "") for c in ("id", "version", "operation", "status", "executed_by")),
                      at.strftime("%Y-%m-%d %H:%M:%S%z") if at else "", str(r["approved_by"] or ""),
                      _short(str(r["error_message"] or ""), 60)])
    return _table(["id", "version", "operation", "status", "executed_by", "executed_at", "approved_by", "error"],
                  table)


# --- repair (scenario 1: a migration that failed halfway) ----------------------------------------


def nothing_to_repair(version: str, status: str) -> str:
    return f"migration {version} is {status}: only a failed or stuck running migration needs a repair"


def repair_failed(version: str, statement: str, pg_message: str) -> str:
    return (f"repair of {version} failed at `{_short(statement, 80)}`: {_short(pg_message, 200)}; the statements "
            "before it ran (see migration_history); fix the cause and repair again")


def needs_repair(version: str, status: str, advice: Advice = CLI) -> str:
    return (f"migration {version} is {status}: rolling back past it is refused, its state is unknown; "
            f"repair it first ({advice.repair.format(version=version)}), then roll back")


def render_repair_plan(plan: Any) -> str:
    """The repair plan: what it does, each statement that runs or is skipped (and why)."""
    if plan.kind == "retry":
        return (f"Repair of {plan.version}_{plan.name} ({plan.status}, transactional: it changed nothing): "
                f"its failure is cleared so that the next apply retries it. Recorded error: "
                f"{_short(plan.error_message or 'none', 200)}")
    lines = [f"Repair of {plan.version}_{plan.name} ({plan.status}, ran outside a transaction): its down script, "
             f"statement by statement, then status rolled_back (plan {plan.hash[:12]})"]
    for s in plan.statements:
        mark = "run " if s.run else "skip"
        lines.append(f"  {mark}  {_short(' '.join(s.sql.split()), 120)}" + (f"   -- {s.why}" if s.why else ""))
    for index in plan.invalid_indexes:
        lines.append(f"  INVALID index {index} is dropped")
    return "\n".join(lines)


def render_repair(report: Any) -> str:
    return (f"Repaired {report.plan.version}: {len(report.ran)} statement(s) ran in {report.duration_ms:.0f} ms; "
            f"status now {report.new_status}")
