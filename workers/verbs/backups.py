"""`/rollback backups`: the target's local archives, droplet snapshots and managed backups, with its words.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from core.jsontypes import JsonObject
from workers.messages import DONE, WARNING, dump_format, human_bytes, seconds
from workers.postgres.dump_reader import list_backups
from workers.providers.digitalocean import DigitalOcean
from workers.runtime.context import Context
from workers.runtime.progress import Progress


def backups(ctx: Context, progress: Progress, target_name: str) -> JsonObject:
    target = ctx.target(target_name)
    local = list_backups(ctx.settings.backup_dir, target.name)
    snapshots: list[JsonObject] = []
    managed: list[JsonObject] = []
    notes: list[str] = []
    if (target.do_droplet_id or target.do_database_id) and ctx.settings.digitalocean_token:
        client = DigitalOcean(ctx.settings.digitalocean_token, ctx.settings.digitalocean_api_url)
        try:
            if target.do_droplet_id:
                snapshots = client.list_snapshots(target.do_droplet_id)
            if target.do_database_id:
                managed = client.database_backups(target.do_database_id)
        except Exception as exc:  # the local list is still worth showing
            notes.append(digitalocean_note(exc))
    progress.post(backups_text(target.name, local, snapshots, managed, notes))
    return {"target": target.name, "local": local, "snapshots": snapshots, "managed": managed, "notes": notes}


def backups_text(target: str, local: Sequence[Mapping[str, Any]], snapshots: Sequence[Mapping[str, Any]],
                 managed: Sequence[Mapping[str, Any]], notes: Sequence[str]) -> str:
    # the rows of list_backups and of the DigitalOcean client: every key there, a missing value as None
    lines = [f"*Backups of {target}*: {len(local)} local"]
    for b in local[:20]:
        mark = DONE if b["verified"] else WARNING
        lines.append(
            f"{mark} `{b['name']}` {human_bytes(b['size_bytes'])}, {seconds(b['age_seconds'])} old, "
            + (f"ours, sha256 `{str(b['sha256'] or '?')[:16]}`" if b["ours"] else
               f"not ours ({dump_format(b['format'])}, made by hand: no manifest; read whole when restored)")
        )
    for s in snapshots[:10]:
        lines.append(f"DigitalOcean snapshot `{s['name']}` ({s['created_at']})")
    for d in managed[:10]:
        lines.append(f"Managed database backup {d['created_at']} ({d['size_gigabytes']} GB)")
    lines += [f"{WARNING} {n}" for n in notes]
    return "\n".join(lines)


def digitalocean_note(error: BaseException | str) -> str:
    return f"DigitalOcean: {error}"
