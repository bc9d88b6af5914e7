"""`run-migrations --backup | --backups | --verify | --maintenance | --restore | --recover | --pitr |
--snapshot-restore | --cluster-restore`: the Slack verbs on the command line, for when Slack or Redis is down.

Each runs the workers' own code, never a copy: the read and check verbs call their workers/verbs/ function, and
a recovery is an approved request run by the one runner (workers/runtime/approved_requests.py) in a local
context (workers/runtime/local.py: state in memory, lines on the terminal). So the wrong-database guard, the
verified backup first, the restore preview bound to the run (its start check recomputes it) and the
verification against the kind's `promised` are the bot's. Break-glass is one person: `--actor` asks and
approves, after reading the preview and confirming it; one `breakglass` row in migration_history says who,
why (`--reason`) and how it ended.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psycopg
from psycopg import conninfo as pg_conninfo

from core import defaults
from core.config import Target, load_settings
from core.jsontypes import JsonObject
from core.kinds import START_STEP, RequestKind
from core.prechecks import PreviewCheck
from workers import breakglass, cli_messages
from workers.cli import EXIT_FAILED, EXIT_OK, NEEDS_REASON, UsageError
from workers.engine.messages import CLI
from workers.postgres import identity, migration_history
from workers.runtime import approved_requests, failures
from workers.runtime.errors import describe
from workers.runtime.local import LocalContext
from workers.runtime.previews import RecoveryRefused
from workers.verbs import backup as backup_verb
from workers.verbs import backups as backups_verb
from workers.verbs import cluster_restore, pitr, recover, restore, snapshot_restore
from workers.verbs import maintenance as maintenance_verb
from workers.verbs import verify as verify_verb

Out = Callable[[str], None]
EMERGENCY = "emergency"  # the playbook's Step 2 name for a backup by hand: backups/emergency-...


@dataclass(frozen=True)
class Recovery:
    """A recovery verb: the request kind it runs, its preview (the bot's check job's), the backup it names."""

    flag: str
    kind: RequestKind
    preview: Callable[[LocalContext, Target, argparse.Namespace], PreviewCheck]
    backup: Callable[[argparse.Namespace], str | None] = lambda args: None


def _restore_preview(ctx: LocalContext, target: Target, args: argparse.Namespace) -> PreviewCheck:
    checked = restore.inspect_backup(ctx, target, args.restore)
    if not checked.ok or not checked.backup:
        raise RecoveryRefused(checked.error or args.restore)
    digest, preview = restore.restore_preview(ctx, target, Path(str(checked.backup["path"])), checked.backup)
    return PreviewCheck(ok=True, digest=digest, preview=preview)


RECOVERIES = {
    "restore": Recovery("restore", RequestKind.RESTORE, _restore_preview, lambda a: a.restore),
    "recover": Recovery("recover", RequestKind.RECOVER, lambda ctx, t, a: recover.recover_preview(
        ctx, t, a.recover or None, [n for n in (a.tables or "").split(",") if n], a.overwrite, before=a.before),
        lambda a: a.recover or None),
    "pitr": Recovery("pitr", RequestKind.PITR, lambda ctx, t, a: pitr.pitr_preview(ctx, t, before=a.before, at=a.at)),
    "snapshot_restore": Recovery("snapshot-restore", RequestKind.SNAPSHOT_RESTORE,
                                 lambda ctx, t, a: snapshot_restore.snapshot_preview(ctx, t, a.snapshot_restore)),
    "cluster_restore": Recovery("cluster-restore", RequestKind.CLUSTER_RESTORE,
                                lambda ctx, t, a: cluster_restore.cluster_preview(ctx, t, a.at)),
}
# The verbs that change something: each needs --reason (checked by the parser) and writes its `breakglass` row.
CHANGING = NEEDS_REASON


def flag(verb: str) -> str:
    return RECOVERIES[verb].flag if verb in RECOVERIES else verb


def local_context(args: argparse.Namespace, env: Mapping[str, str], out: Out, notice: Out) -> tuple[LocalContext, Target]:
    """The settings and the target: `--target NAME` of rollback.toml, or DATABASE_URL as a target of its own
    (named as the database registered itself, so the guard knows it; else after the database)."""
    if args.target:
        run = breakglass.resolve(args.target, env)
        settings, target = run.settings, run.target
    else:
        url = env.get("DATABASE_URL")
        if not url:
            raise UsageError("DATABASE_URL is not set (or name a target of rollback.toml with --target NAME)")
        settings = load_settings(env)
        target = Target(name=_database_target_name(url), database_url_env="DATABASE_URL",
                        migrations_dir=env.get("MIGRATIONS_DIR") or defaults.MIGRATIONS_DIR)
        settings = replace(settings, targets={**settings.targets, target.name: target})
    if args.dir:
        target = replace(target, migrations_dir=args.dir)
        settings = replace(settings, targets={**settings.targets, target.name: target})
    return LocalContext.of(settings, out, notice), target


def _database_target_name(url: str) -> str:
    with psycopg.connect(url, autocommit=True, connect_timeout=defaults.CONNECT_TIMEOUT_SECONDS) as conn:
        registered = identity._registered_targets(conn) or []  # noqa: SLF001 - the database's own record
    if len(registered) == 1:
        return registered[0]
    dbname = str(pg_conninfo.conninfo_to_dict(url).get("dbname") or "database")
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in dbname.lower()).lstrip("-_0123456789") or "database"


def run(verb: str, args: argparse.Namespace, env: Mapping[str, str], actor: str, out: Out, err: Out) -> int:
    """One break-glass verb; its exit status. Every failure is one line (BreakGlassError)."""
    say = err if args.json else out  # the run's lines; with --json, stdout holds the JSON alone
    ctx, target = local_context(args, env, lambda line: say(cli_messages.plain(line)), err)
    try:
        if verb in RECOVERIES:
            return _recovery(ctx, target, RECOVERIES[verb], args, actor, out, err)
        progress = ctx.progress(None, None)
        result: JsonObject
        if verb == "backups":
            result = backups_verb.backups(ctx, progress, target.name)
        elif verb == "verify":
            result = verify_verb.verify(ctx, progress, target.name, actor)
        elif verb == "backup":
            result = backup_verb.backup(ctx, progress, target.name, actor, EMERGENCY)
        else:
            result = maintenance_verb.maintenance(ctx, progress, target.name, args.maintenance, actor)
    except (UsageError, breakglass.BreakGlassError):
        raise
    except Exception as exc:
        if verb in CHANGING:
            _record(ctx, target, verb, args, actor, "failed", error=describe(exc, ctx.secrets(), CLI))
        raise breakglass.BreakGlassError(describe(exc, ctx.secrets(), CLI)) from None
    if verb in CHANGING:
        _record(ctx, target, verb, args, actor, "completed")
    if args.json:
        out(_json(result))
    return EXIT_OK if result.get("passed", True) else EXIT_FAILED


def _recovery(ctx: LocalContext, target: Target, recovery: Recovery, args: argparse.Namespace, actor: str,
              out: Out, err: Out) -> int:
    """Preview, confirmation, then the approved request through the workers' one runner."""
    check = recovery.preview(ctx, target, args)
    assert check.preview is not None and check.digest is not None
    shown = cli_messages.preview(check.preview, check.digest)
    (err if args.json else out)(shown)
    if args.dry_run:
        if args.json:
            out(_json({"preview": check.preview.to_dict(), "digest": check.digest}))
        return EXIT_OK
    _confirm(recovery.flag, args)
    request = ctx.approved(
        recovery.kind, target.name, actor, digest=check.digest,
        backup=recovery.backup(args) or (check.params or {}).get("backup"),  # none named: the one chosen
        to_version=check.preview.bad_version or None,
        params={**(check.params or {}), "no_backup": args.no_backup, "breakglass": True, "reason": args.reason})
    try:
        result = approved_requests.run_request(ctx, request.id)
    except Exception as exc:
        error = describe(exc, ctx.secrets(), CLI)
        # The workers' own failure report: the failed step said, recorded in history, paged where configured.
        failures.request_failed(ctx, request.id, START_STEP, error, inline=True)
        _record(ctx, target, recovery.flag, args, actor, "failed", request_id=request.id, error=error)
        raise breakglass.BreakGlassError(error) from None
    if result.get("refused"):
        reason = str(result.get("reason") or "refused")
        _record(ctx, target, recovery.flag, args, actor, "refused", request_id=request.id, error=reason)
        raise breakglass.BreakGlassError(cli_messages.breakglass_refused(request.id, reason))
    _record(ctx, target, recovery.flag, args, actor, "completed", request_id=request.id,
            digest=check.digest)
    err(cli_messages.breakglass_done(request.id, actor)) if args.json else out(
        cli_messages.breakglass_done(request.id, actor))
    if args.json:
        out(_json({"request_id": request.id, "preview": check.preview, "digest": check.digest, **result}))
    return EXIT_OK


def _confirm(verb: str, args: argparse.Namespace) -> None:
    """The one person's approval: --yes, or `yes` typed at a terminal. No terminal and no --yes: refused."""
    if args.yes:
        return
    if not sys.stdin.isatty():
        raise UsageError(cli_messages.no_terminal_to_confirm(verb))
    if input(cli_messages.CONFIRM_PROMPT).strip().lower() != "yes":
        raise breakglass.BreakGlassError(cli_messages.not_confirmed(verb))


def _record(ctx: LocalContext, target: Target, verb: str, args: argparse.Namespace, actor: str, status: str, *,
            request_id: str | None = None, error: str | None = None, digest: str | None = None) -> None:
    """The break-glass row: who (requester and approver), why, what, how it ended. Never hides the outcome."""
    try:
        with ctx.connect(target) as conn:
            migration_history.record(
                conn, operation="breakglass", status=status, executed_by=actor, approved_by=actor,
                request_id=request_id, error_message=error,
                details={"verb": flag(verb), "reason": args.reason, "one_person": True, "via": "run-migrations",
                         "no_backup": bool(args.no_backup), "preview_digest": digest})
    except psycopg.Error:
        pass  # the database may be what failed; the terminal has the outcome


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, default=str)
