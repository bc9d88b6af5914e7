"""The words of `run-migrations` beyond the engine's: its help grouped by the playbook's steps, each verb's
details with an example, the recovery preview as the terminal shows it, the confirmation and the thread's
lines made plain for a terminal."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from core import kinds
from core.prechecks import Preview

# The main path first, one short line each (`run-migrations --help`).
HELP = """\
usage: run-migrations [FLAGS]      the database: DATABASE_URL, or --target NAME (rollback.toml)

Assess (Step 1)
  --status                         every migration and its state
  --history                        migration_history, newest first
  --backups                        backups, droplet snapshots, managed backups
Protect (Steps 2-3)
  --backup --reason TEXT           a verified pg_dump now
  --maintenance on --reason TEXT   maintenance mode on (the target's hook)
Roll back (Step 4, Method 1)
  --rollback --to V --dry-run      what it would do; changes nothing
  --rollback --to V                revert every migration newer than V
  --repair V / --undo RUN_ID       a stuck migration; a rollback reversed
Recover (Method 3, scenario 4)     preview, confirm, backup, change, verify
  --restore BACKUP                 a backup file over the database (3C)
  --recover BACKUP --tables T,U    lost rows back, newer rows kept
  --pitr [--before V | --at TIME]  Supabase point-in-time recovery (3A)
  --snapshot-restore SNAPSHOT      DigitalOcean droplet from a snapshot (3B)
  --cluster-restore [--at TIME]    new managed cluster from a backup (3B)
After (Steps 5-6)
  --verify                         migrations, row counts, health, smoke test
  --maintenance off --reason TEXT  maintenance mode off
Deploy
  (no verb)                        backup, then apply pending migrations

Options: --target NAME  --actor NAME  --reason TEXT  --yes  --no-backup  --dry-run
         --json  --verbose  --dir PATH  (run-migrations --help options)
Details: run-migrations --help VERB   (e.g. --help restore)
Exit: 0 ok, 1 failure (one line on stderr), 2 bad usage, 130 interrupted"""

_RECOVERY_NOTE = ("Shows the preview (what changes, what is lost), asks you to confirm (--yes in scripts; without a "
                  "terminal and without --yes it refuses, nothing changed), takes a verified backup (--no-backup skips "
                  "it, recorded), runs the workers' own steps and verifies the result against the preview. "
                  "--dry-run: the preview only. --reason is required; history records it with --actor as "
                  "requester and approver (break-glass is one person).")

# `run-migrations --help VERB`: what it does, then an example.
VERBS: dict[str, tuple[str, str]] = {
    "status": ("Every migration with its status, applied_at and warnings (checksum drift, no down script, ...). "
               "Step 1 of the playbook.", "DATABASE_URL=\"$PROD_DATABASE_URL\" run-migrations --status"),
    "history": ("migration_history, newest first (--limit N). Break-glass runs show as operation breakglass "
                "with their reason.", "run-migrations --history --limit 20"),
    "backups": ("The local backups of the target (ours and pg_dump files made by hand), its droplet snapshots "
                "and managed backups (DIGITALOCEAN_API_URL).", "run-migrations --target prod --backups"),
    "backup": ("A verified pg_dump now (checksum, manifest, pg_restore --list), after the wrong-database guard; "
               "recorded in history. Step 2.", "run-migrations --target prod --backup --reason 'before rollback'"),
    "maintenance": ("Maintenance mode on or off through the target's hook in rollback.toml (none: skipped, "
                    "said). Steps 3 and 6.", "run-migrations --target prod --maintenance on --reason 'rollback'"),
    "rollback": ("Reverts every completed migration newer than V, newest first, in one transaction (all down "
                 "scripts and the bookkeeping). With --dry-run: the real SQL in a transaction always rolled back. "
                 "With --target: the guard and a verified backup first.",
                 "DATABASE_URL=\"$PROD_DATABASE_URL\" run-migrations --rollback --to 2025_10_20_120001 --dry-run "
                 "--verbose"),
    "repair": ("A failed or stuck migration back to a clean state (--dry-run: the plan).",
               "run-migrations --repair 2025_10_20_150000 --reason 'half applied'"),
    "undo": ("Reverses a rollback from its escrow (--escrow lists them).", "run-migrations --undo run-20251020-1"),
    "escrow": ("What rollbacks' data-loss escrow holds.", "run-migrations --escrow"),
    "restore": ("A backup over the database: ours, or the team's own pg_dump file (plain, gzip or custom) in "
                "BACKUP_DIR. Method 3C. " + _RECOVERY_NOTE,
                "run-migrations --target prod --restore prod-pre-migration-2025-10-20.sql.gz --reason 'bad deploy'"),
    "recover": ("Lost rows of the named tables back from a backup, matched by primary key; rows newer than the "
                "backup stay (--overwrite also replaces differing rows). Scenario 4. " + _RECOVERY_NOTE,
                "run-migrations --target prod --recover BACKUP --tables users,projects --reason 'rows deleted'"),
    "pitr": ("Supabase point-in-time recovery of the target's project (supabase_project_ref; SUPABASE_API_URL, "
             "SUPABASE_ACCESS_TOKEN): just before --before V, at --at TIME (UTC), or before the newest migration. "
             "Method 3A. " + _RECOVERY_NOTE,
             "run-migrations --target prod --pitr --before 2025_10_20_150000 --reason 'data corrupted'"),
    "snapshot-restore": ("The target's droplet (do_droplet_id) restored from one of its snapshots "
                         "(DIGITALOCEAN_API_URL, DIGITALOCEAN_TOKEN; --backups lists them). Method 3B. " + _RECOVERY_NOTE,
                         "run-migrations --target prod --snapshot-restore 123456 --reason 'disk corrupted'"),
    "cluster-restore": ("A new managed cluster from the target's newest backup (before --at TIME); the target is "
                        "left as it is and the output says what to switch. Method 3B. " + _RECOVERY_NOTE,
                        "run-migrations --target prod --cluster-restore --at 2025-10-20T14:00Z --reason 'bad deploy'"),
    "verify": ("The checks after a change: no migration failed, running or drifted; the critical tables' row "
               "counts against those before the last rollback; health URL; smoke command. Exit 1 when one fails. "
               "Step 5.", "run-migrations --target prod --verify"),
    "apply": ("No verb: a verified backup, then every pending migration (what CI runs). A rolled-back migration "
              "stays rolled back until its up.sql changes (--reapply V).", "DATABASE_URL=\"$URL\" run-migrations"),
    "options": ("--target NAME: a target of rollback.toml (its URL, hooks, critical tables, providers); "
                "--actor NAME: who, in history (default: your OS user); --reason TEXT: why, required for every "
                "change but --rollback; --yes: confirm without a prompt; --no-backup: skip the backup, recorded; "
                "--dry-run: plan or preview only; --json; --verbose; --dir PATH: migrations folder.",
                "run-migrations --target prod --restore BACKUP --reason 'bad deploy' --actor alice --yes"),
}
ALIASES = {"dry-run": "rollback", "to": "rollback", "tables": "recover", "snapshot": "snapshot-restore",
           "cluster": "cluster-restore", "maintenance-mode": "maintenance"}


def verb_help(verb: str) -> str | None:
    name = ALIASES.get(verb.lstrip("-"), verb.lstrip("-"))
    found = VERBS.get(name)
    if found is None:
        return None
    what, example = found
    return f"run-migrations --{name}: {what}\n\nexample:\n  {example}"


def unknown_verb(verb: str) -> str:
    return f"no help for {verb!r}; one of: {', '.join(VERBS)}"


# --- a run on the terminal ---------------------------------------------------------------------------

_EMOJI = {":white_check_mark:": "ok", ":hourglass_flowing_sand:": "..", ":x:": "FAILED", ":warning:": "!",
          ":information_source:": "i", ":mag:": "?", ":rotating_light:": "!!", ":leftwards_arrow_with_hook:": "<-"}


def plain(line: str) -> str:
    """A thread line as a terminal shows it: no Slack emoji codes or bold marks."""
    for code, text in _EMOJI.items():
        line = line.replace(code, text)
    return re.sub(r":[a-z_]+:", "", line).replace("*", "")


def _utc(unix: Any) -> str:
    return datetime.fromtimestamp(int(unix), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class _Blank(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return ""


def preview(shown: Preview, digest: str) -> str:
    """The restore preview the Slack card shows (the same worker's preview), as lines for a terminal."""
    fields = _Blank({k: v for k, v in shown.to_dict().items() if not isinstance(v, list | dict)})
    if shown.point_unix:
        fields["point"] = _utc(shown.point_unix)
    fields["before"] = f" (just before {shown.bad_version})" if shown.bad_version else ""
    fields["taken"] = f" (taken {shown.created_at})" if shown.created_at else ""
    lines = [kinds.of(shown.kind).preview_headline.format_map(fields) or "Preview:"]
    for table in shown.tables:
        if shown.overwrite is not None:  # a table recovery: rows matched by primary key
            lines.append(f"  {table.table}: {table.missing} missing rows to insert, {table.differing} "
                         f"differing ({'overwritten' if shown.overwrite else 'kept'}), "
                         f"{table.only_live} newer rows kept")
        else:
            lines.append(f"  {table.table}: {table.live_rows} rows now -> {table.restored_rows} after")
    before, after = shown.versions_before, shown.versions_after
    lines.append(f"  migrations: {_newest(before)} now -> "
                 + (f"{_newest(after)} after" if after is not None else "unknown after (the point is not dated)"))
    if shown.point_unix and shown.kind != "recover":
        lost = ", ".join(f"{t} {n}" for t, n in shown.written_since.items() if n)
        lines.append(f"  everything written after {_utc(shown.point_unix)} is lost"
                     + (f" (rows: {lost})" if lost else ""))
    lines.append(f"  preview hash {digest[:12]}")
    return "\n".join(lines)


def _newest(versions: Sequence[str]) -> str:
    return versions[-1] if versions else "none"


CONFIRM_PROMPT = "Go ahead? Type yes to run it, anything else to stop: "


def no_terminal_to_confirm(verb: str) -> str:
    return (f"--{verb} needs a confirmation and there is no terminal to ask on: nothing was changed; read the "
            "preview (--dry-run) and add --yes")


def not_confirmed(verb: str) -> str:
    return f"--{verb} not confirmed: nothing was changed"


def reason_required(verb: str) -> str:
    return f"--{verb} changes the database: say why with --reason TEXT (recorded in migration_history)"


def breakglass_done(request_id: str, actor: str) -> str:
    return f"done: {request_id} run by {actor} alone (break-glass: requester and approver), recorded in migration_history"


def breakglass_refused(request_id: str, reason: str) -> str:
    return f"{request_id} refused at its start ({reason}): nothing was changed"
