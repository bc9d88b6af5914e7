"""`run-migrations`: the playbook's `node scripts/run-migrations.js`, flag for flag (thin: parse, run, print).

    run-migrations                                   apply all pending migrations, after a verified backup
                                                     (--no-backup skips it, recorded in history); a rolled-back
                                                     migration stays rolled back until its up.sql changes
    run-migrations --reapply V                       ... and apply the rolled-back migration V again
    run-migrations --status [--json]                 every migration and its state
    run-migrations --rollback [--to V] [--dry-run]   roll back to the last known-good version V
    run-migrations --repair V [--dry-run]            bring a failed or stuck migration back to a clean state
    run-migrations --target NAME ...                 a target of rollback.toml: the wrong-database guard and a
                                                     verified backup before a real rollback or repair
                                                     (--no-backup skips it, recorded in history)
    run-migrations --escrow                          what rollbacks' data-loss escrow holds
    run-migrations --undo RUN_ID [--dry-run]         reverse a rollback from its escrow
    run-migrations --backup | --backups | --verify | --maintenance on|off | --restore BACKUP |
                   --recover BACKUP --tables T,U | --pitr | --snapshot-restore S | --cluster-restore
                                                     the Slack verbs, break-glass (workers/cli_verbs.py)
    run-migrations --help [VERB]                     help by the playbook's steps; one verb's details
Exit status: 0 success, 1 failure (one line on stderr), 2 bad usage, 130 interrupted (Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NoReturn

from core import defaults
from core.errors import RollbackError
from core.jsontypes import JsonObject
from workers import cli_messages
from workers.engine import DryRunReport, Engine, EngineError, messages
from workers.engine.redact import password_of, redact
from workers.engine.results import Plan

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not argparse's usage dump
        raise UsageError(messages.usage_conflict(message))


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="run-migrations", description="Apply, inspect and roll back PostgreSQL migrations "
                "(DATABASE_URL names the database).", add_help=False)
    # Our own help: grouped by the playbook's steps, and `--help VERB` for one verb's details.
    p.add_argument("-h", "--help", nargs="?", const="", metavar="VERB", help="this help, or one verb's details")
    mode = p.add_mutually_exclusive_group()
    # The Slack verbs, break-glass (workers/cli_verbs.py): the workers' own code, run in this process.
    mode.add_argument("--backups", action="store_true", help="backups, droplet snapshots, managed backups")
    mode.add_argument("--backup", action="store_true", help="a verified pg_dump now (needs --reason)")
    mode.add_argument("--maintenance", choices=("on", "off"), help="maintenance mode through the target's hook")
    mode.add_argument("--verify", action="store_true", help="the checks after a change")
    mode.add_argument("--restore", metavar="BACKUP", help="a backup file over the database (Method 3C)")
    mode.add_argument("--recover", metavar="BACKUP", help="with --tables: lost rows back from BACKUP (scenario 4)")
    mode.add_argument("--pitr", action="store_true", help="Supabase point-in-time recovery (Method 3A)")
    mode.add_argument("--snapshot-restore", metavar="SNAPSHOT", help="the droplet from a snapshot (Method 3B)")
    mode.add_argument("--cluster-restore", action="store_true", help="a new managed cluster from a backup (3B)")
    p.add_argument("--tables", metavar="T,U", help="with --recover: the tables whose lost rows come back")
    p.add_argument("--overwrite", action="store_true", help="with --recover: also replace differing rows")
    p.add_argument("--before", metavar="VERSION", help="with --pitr: just before this migration was applied")
    p.add_argument("--at", metavar="TIME", help="with --pitr or --cluster-restore: a UTC time")
    p.add_argument("--yes", "-y", action="store_true", help="confirm the preview without a prompt (scripts)")
    mode.add_argument("--status", action="store_true", help="show every migration and its state")
    mode.add_argument("--rollback", action="store_true", help="revert completed migrations (newest first)")
    mode.add_argument("--history", action="store_true", help="show migration_history, newest first")
    mode.add_argument("--repair", metavar="VERSION",
                      help="a failed or stuck migration back to a clean state (with --dry-run: the plan only)")
    p.add_argument("--target", metavar="NAME",
                   help="a target of rollback.toml (its <NAME>_DATABASE_URL and migrations folder): the bot's "
                   "wrong-database guard and a verified backup before a real rollback or repair")
    p.add_argument("--no-backup", action="store_true",
                   help="no backup before an apply (or, with --target, before a rollback, repair or undo); "
                   "written into migration_history")
    p.add_argument("--reapply", metavar="VERSION", action="append", default=[],
                   help="with apply: apply this rolled-back migration again though its up.sql is unchanged "
                   "(repeatable)")
    p.add_argument("--reason", metavar="TEXT", default="",
                   help="why, recorded in migration_history (required for every break-glass change)")
    mode.add_argument("--escrow", action="store_true", help="list the data-loss escrow rollbacks hold")
    mode.add_argument("--undo", metavar="RUN_ID", help="reverse the rollback RUN_ID (printed by --rollback, or a "
                      "request id): re-apply its migrations and put its escrowed data back, in one transaction")
    mode.add_argument("--purge-escrow", metavar="DAYS", type=float,
                      help="drop escrow older than DAYS (the workers do this on their own, escrow_retention_days)")
    p.add_argument("--to", metavar="VERSION", help="with --rollback: the last known-good version to keep")
    p.add_argument("--dry-run", action="store_true", help="run the SQL in a transaction that is rolled back")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--verbose", "-v", action="store_true", help="print each statement and its timing")
    p.add_argument("--dir", metavar="PATH", help="migrations folder (default: $MIGRATIONS_DIR or ./migrations)")
    p.add_argument("--actor", metavar="NAME", help="recorded as executed_by (default: your OS user)")
    p.add_argument("--lock-timeout", metavar="MS", type=int, default=defaults.LOCK_TIMEOUT_MS,
                   help=f"longest wait for a table lock per attempt (default {defaults.LOCK_TIMEOUT_MS})")
    p.add_argument("--lock-retries", metavar="N", type=int, default=defaults.LOCK_RETRIES,
                   help=f"attempts after the first when a lock wait times out (default {defaults.LOCK_RETRIES})")
    p.add_argument("--statement-timeout", metavar="MS", type=int, default=defaults.STATEMENT_TIMEOUT_MS,
                   help=f"longest run of one statement (default {defaults.STATEMENT_TIMEOUT_MS})")
    p.add_argument("--dry-run-budget", metavar="MS", type=int, default=defaults.DRY_RUN_BUDGET_MS,
                   help="with --dry-run: longest time it may hold a lock that blocks the application, then it "
                   f"stops and estimates the rest (default {defaults.DRY_RUN_BUDGET_MS})")
    p.add_argument("--limit", type=int, default=50, help="with --history: how many rows")
    p.add_argument("--no-escrow", action="store_true",
                   help="with --rollback: do not copy what the down scripts destroy (a full backup is your only net)")
    p.add_argument("--escrow-required", action="store_true",
                   help="with --rollback: refuse it if any destroyed data cannot be escrowed (no full backup taken)")
    return p


def _check(args: argparse.Namespace) -> None:
    verb = cli_verbs_chosen(args)
    applying = not (args.status or args.rollback or args.history or args.repair or args.escrow or args.undo
                    or args.purge_escrow is not None or verb)
    _check_breakglass(args, verb)
    if args.no_backup and not (args.target or applying or verb in RECOVERY_VERBS):
        raise UsageError(messages.usage_conflict(
            "--no-backup goes with an apply, or with --target (a plain DATABASE_URL rollback takes no backup)"))
    if args.reapply and not applying:
        raise UsageError(messages.usage_conflict("--reapply goes with an apply (no --status, --rollback, ...)"))
    if args.to is not None and not args.rollback:
        raise UsageError(messages.usage_conflict("--to needs --rollback"))
    if args.dry_run and (args.status or args.history or args.escrow or args.purge_escrow is not None
                         or (verb and verb not in RECOVERY_VERBS)):
        raise UsageError(messages.usage_conflict("--dry-run goes with apply or --rollback, or --undo"))
    if (args.no_escrow or args.escrow_required) and not args.rollback:
        raise UsageError(messages.usage_conflict("--no-escrow and --escrow-required go with --rollback"))
    if args.no_escrow and args.escrow_required:
        raise UsageError(messages.usage_conflict("--no-escrow contradicts --escrow-required"))
    if args.purge_escrow is not None and args.purge_escrow < 0:
        raise UsageError(messages.usage_conflict("--purge-escrow must be 0 or more days"))
    for name in ("lock_timeout", "statement_timeout"):
        if getattr(args, name) <= 0:
            raise UsageError(messages.usage_conflict(f"--{name.replace('_', '-')} must be a positive number of ms"))
    if args.dry_run_budget < 0:
        raise UsageError(messages.usage_conflict("--dry-run-budget must be 0 or more ms"))
    if args.limit <= 0:
        raise UsageError(messages.usage_conflict("--limit must be a positive number of rows"))
    if args.lock_retries < 0:
        raise UsageError(messages.usage_conflict("--lock-retries must be 0 or more"))


# The break-glass verbs (workers/cli_verbs.py, imported only when one is asked for: it loads the workers).
RECOVERY_VERBS = ("restore", "recover", "pitr", "snapshot_restore", "cluster_restore")
BREAKGLASS_VERBS = ("backups", "verify", "backup", "maintenance", *RECOVERY_VERBS)
NEEDS_REASON = ("backup", "maintenance", *RECOVERY_VERBS)


def cli_verbs_chosen(args: argparse.Namespace) -> str | None:
    return next((verb for verb in BREAKGLASS_VERBS if getattr(args, verb) not in (None, False)), None)


def _check_breakglass(args: argparse.Namespace, verb: str | None) -> None:
    shown = f"--{(verb or '').replace('_', '-')}"
    if (args.tables or args.overwrite) and verb != "recover":
        raise UsageError(messages.usage_conflict("--tables and --overwrite go with --recover"))
    if verb == "recover" and not args.tables:
        raise UsageError(messages.usage_conflict("--recover BACKUP needs --tables T,U (the tables to recover)"))
    if args.before and verb != "pitr":
        raise UsageError(messages.usage_conflict("--before goes with --pitr"))
    if args.at and verb not in ("pitr", "cluster_restore"):
        raise UsageError(messages.usage_conflict("--at goes with --pitr or --cluster-restore"))
    if args.before and args.at:
        raise UsageError(messages.usage_conflict("--pitr takes --before V or --at TIME, not both"))
    if args.yes and verb not in RECOVERY_VERBS:
        raise UsageError(messages.usage_conflict("--yes goes with a recovery (--restore, --recover, --pitr, ...)"))
    if verb in NEEDS_REASON and not args.dry_run and not args.reason.strip():
        raise UsageError(messages.usage_conflict(f"{shown} changes the database: say why with --reason TEXT "
                                                 "(recorded in migration_history)"))


def _actor(explicit: str | None) -> str:
    if explicit:
        return explicit
    try:
        return getpass.getuser()
    except Exception:  # no user name in this environment (e.g. a container without passwd entry)
        return "unknown"


def _print_json(data: Any, out: Callable[[str], None]) -> None:
    out(json.dumps(data, indent=2, default=str))


def run(args: argparse.Namespace, env: Mapping[str, str], out: Callable[[str], None],
        err: Callable[[str], None]) -> int:
    actor = _actor(args.actor)
    if args.help is not None:
        return _help(args.help, out)
    verb = cli_verbs_chosen(args)
    if verb:
        from workers import cli_verbs  # the workers' modules, only for a break-glass verb

        return cli_verbs.run(verb, args, env, actor, out, err)
    target_run = None
    if args.target:
        # Imported only here: without --target the command needs (and imports) neither Redis nor the workers.
        from workers import breakglass

        target_run = breakglass.resolve(args.target, env)
    conninfo = target_run.conninfo if target_run else env.get("DATABASE_URL")
    if not conninfo:
        raise UsageError("DATABASE_URL is not set; set it to the database to migrate, "
                         "e.g. DATABASE_URL=postgresql://user@host:5432/dbname run-migrations --status")
    # --verbose: every statement as it runs; otherwise only notices (on stderr): lock-wait retries, so that
    # a rollback waiting behind the application never looks hung, and out-of-order applies.
    def log(line: str) -> None:
        if args.verbose:
            (err if args.json else out)(line)
        elif messages.is_notice(line):
            err(line)

    migrations_dir = args.dir or (target_run.target.migrations_dir if target_run else None) \
        or env.get("MIGRATIONS_DIR") or defaults.MIGRATIONS_DIR
    changes = (args.rollback or args.repair or args.undo) and not args.dry_run
    if target_run is not None:  # the bot's safety nets on the break-glass path
        breakglass.guard(target_run, actor, err)
    engine = Engine(
        conninfo, migrations_dir, actor=actor,
        lock_timeout_ms=args.lock_timeout, lock_retries=args.lock_retries,
        statement_timeout_ms=args.statement_timeout, dry_run_budget_ms=args.dry_run_budget, log=log,
        escrow=not args.no_escrow, escrow_required=args.escrow_required,
    )
    def show(data: JsonObject | list[JsonObject], text: str) -> None:
        _print_json(data, out) if args.json else out(text)

    def before_change(plan_text: str, operation: str) -> None:
        """The plan about to run, then on a --target the fresh backup the bot would take first."""
        if not args.json:
            out(plan_text)
        if target_run is not None and changes:
            breakglass.backup_first(target_run, actor, operation, no_backup=args.no_backup, out=err)

    def backup_before_apply(plan: Plan) -> None:
        """The verified pre-migration backup (playbook Step 2, Prevention 4), taken under the migration lock once
        something is about to be applied: named after the --target, else after the database."""
        from workers import cli_backup  # only when due: it imports the workers' modules (and Redis's client)

        settings = target_run.settings if target_run else None
        cli_backup.backup_first(
            conninfo, name=target_run.target.name if target_run else plan.dbname, reason=cli_backup.PRE_MIGRATION,
            backup_dir=settings.backup_dir if settings else env.get("BACKUP_DIR") or defaults.BACKUP_DIR,
            pg_dump=settings.workers.pg_dump if settings else env.get("PG_DUMP") or "pg_dump",
            pg_restore=settings.workers.pg_restore if settings else env.get("PG_RESTORE") or "pg_restore",
            actor=actor, operation="apply", no_backup=args.no_backup, out=err if args.json else out,
            versions=plan.versions)

    if args.dry_run and args.verbose:
        log(messages.DRY_RUN_AHEAD)  # before the first statement scrolls by

    if args.status:
        report = engine.status()
        show(report.to_dict(), messages.render_status(report))
    elif args.history:
        rows = engine.history(args.limit)
        show(rows, messages.render_history(rows))
    elif args.repair:
        repair_plan = engine.plan_repair(args.repair)
        if args.dry_run:
            show(repair_plan.to_dict(), messages.render_repair_plan(repair_plan))
            return EXIT_OK
        before_change(messages.render_repair_plan(repair_plan), "repair")
        repaired = engine.repair(args.repair, expected_plan_hash=repair_plan.hash, reason=args.reason)
        show(repaired.to_dict(), messages.render_repair(repaired))
    elif args.escrow:
        held = engine.escrow_holdings()
        show(held, messages.render_escrow(held))
    elif args.purge_escrow is not None:
        purged = engine.purge_escrow(args.purge_escrow)
        show([{"request_id": r, "tables": n} for r, n in purged],
             "\n".join(messages.escrow_purged(r, n) for r, n in purged) or "nothing to purge")
    elif args.undo:
        if not args.dry_run:  # like --rollback: the plan shown is the plan run (its hash is checked under the lock)
            planned = engine.plan_undo(args.undo)
            before_change(messages.render_undo_plan(planned), "undo")
            undone = engine.undo(args.undo, expected_plan_hash=planned.hash)
        else:
            undone = engine.undo(args.undo, dry_run=True)
        show(undone.to_dict(), messages.render_undo(undone))
    elif args.rollback and args.dry_run:
        dry = engine.dry_run_rollback(args.to)
        show(dry.to_dict(), messages.render_dry_run(dry))
    elif args.rollback:
        plan = engine.plan_rollback(args.to)
        if plan.empty:
            show(plan.to_dict(), messages.render_plan(plan))
            return EXIT_OK
        before_change(messages.render_plan(plan), "rollback")
        # The plan shown is the plan run: its hash is checked again under the lock.
        done = engine.rollback(args.to, expected_plan_hash=plan.hash)
        show(done.to_dict(), messages.render_run(done))
    else:
        result = engine.apply(dry_run=args.dry_run, reapply=args.reapply,
                              before=None if args.dry_run else backup_before_apply)
        if isinstance(result, DryRunReport):
            show(result.to_dict(), messages.render_dry_run(result))
        else:
            show(result.to_dict(), messages.render_run(result))
    return EXIT_OK


def _help(verb: str, out: Callable[[str], None]) -> int:
    if not verb:
        out(cli_messages.HELP)
        return EXIT_OK
    details = cli_messages.verb_help(verb)
    if details is None:
        raise UsageError(cli_messages.unknown_verb(verb))
    out(details)
    return EXIT_OK


@contextlib.contextmanager
def _terminate_like_ctrl_c() -> Iterator[None]:
    """SIGTERM (kill, a CI runner or container stopping) takes the same clean path as Ctrl-C: psycopg
    cancels the running statement, the transaction rolls back, the failure is recorded, one line is printed."""
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread (e.g. main() called from a test thread)
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Entry point; returns the exit status (the console script passes it to sys.exit)."""
    env = os.environ if env is None else env
    secret = password_of(env.get("DATABASE_URL", ""))
    # --target reads a target's <NAME>_DATABASE_URL: none of those passwords may be printed either.
    secrets = [secret, *(password_of(v) for k, v in env.items() if k.endswith("_DATABASE_URL"))]

    def out(line: str) -> None:
        print(line, flush=True)

    def err(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        argv = list(sys.argv[1:] if argv is None else argv)
        if argv[:1] == ["help"]:  # `run-migrations help [VERB]`, like `--help [VERB]`
            argv = ["--help", *argv[1:2]]
        args = build_parser().parse_args(argv)
        _check(args)
        with _terminate_like_ctrl_c():
            return run(args, env, out, err)
    except UsageError as exc:
        err(messages.cli_error(redact(str(exc), secrets)))
        return EXIT_USAGE
    except (EngineError, RollbackError) as exc:  # the engine's, and --target's guard and backup
        err(messages.cli_error(redact(str(exc), secrets)))
        return EXIT_FAILED
    except KeyboardInterrupt:
        err(messages.cli_error(messages.interrupted()))
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
