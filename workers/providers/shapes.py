"""What the DigitalOcean client (workers/providers/digitalocean.py) answers, typed: read once with `from_dict`
where a verb receives it, then plain attributes. `to_dict` gives back exactly the keys the client answered, so
what is saved in a pipeline's state (JSON in Redis) and in `migration_history` stays as it was.

Pure data: no HTTP, no Redis, no database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from core.jsontypes import JsonObject


def _float(value: Any) -> float:
    return float(value or 0)


def _fields(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """Each field of the dataclass `cls` from the client's answer (None where it has none)."""
    return {f.name: data.get(f.name) for f in fields(cls)}


@dataclass(frozen=True)
class Snapshot:
    """One droplet snapshot (`DigitalOcean.snapshot`); `resource_id` is the droplet's id as text."""

    id: str
    name: Any = None
    created_at: Any = None
    resource_id: Any = None
    resource_type: Any = None
    size_gigabytes: Any = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Snapshot:
        return cls(**{**_fields(cls, data), "id": str(data.get("id"))})


@dataclass(frozen=True)
class Droplet:
    """One droplet (`DigitalOcean.droplet`, `create_droplet_from_snapshot`): what the workers use of it.
    `duration_s`: how long its creation was followed (None when it was only read)."""

    id: Any = None
    name: Any = None
    status: Any = None
    size: Any = None
    region: Any = None
    image: Any = None
    ip: Any = None
    duration_s: float | None = None

    def to_dict(self) -> JsonObject:
        data = asdict(self)
        if self.duration_s is None:
            del data["duration_s"]
        return data

    @property
    def facts(self) -> JsonObject:
        """What `migration_history` keeps of a new droplet."""
        return {"id": self.id, "name": self.name, "size": self.size, "region": self.region, "ip": self.ip}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Droplet:
        duration = data.get("duration_s")
        return cls(id=data.get("id"), name=data.get("name"), status=data.get("status"), size=data.get("size"),
                   region=data.get("region"), image=data.get("image"), ip=data.get("ip"),
                   duration_s=None if duration is None else float(duration))


@dataclass(frozen=True)
class NewCluster:
    """A managed cluster restored from a backup (`DigitalOcean.restore_cluster`): never its password or URI."""

    id: Any = None
    name: Any = None
    status: Any = None
    host: Any = None
    port: Any = None
    database: Any = None
    user: Any = None
    ssl: Any = None
    backup_created_at: Any = None
    duration_s: Any = None

    def to_dict(self) -> JsonObject:
        return asdict(self)

    @property
    def facts(self) -> JsonObject:
        """What `migration_history` keeps of a new cluster."""
        return {"id": self.id, "name": self.name, "host": self.host, "port": self.port, "database": self.database,
                "backup_created_at": self.backup_created_at}

    @property
    def duration_ms(self) -> int:
        return int(_float(self.duration_s) * 1000)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NewCluster:
        return cls(**_fields(cls, data))


@dataclass(frozen=True)
class RestoreAction:
    """A droplet's `restore` action followed to its end (`DigitalOcean.restore_droplet`)."""

    action_id: Any = None
    status: Any = None
    snapshot: Any = None
    droplet_id: Any = None
    completed_at: Any = None
    duration_s: Any = None

    def to_dict(self) -> JsonObject:
        return asdict(self)

    @property
    def duration_ms(self) -> int:
        return int(_float(self.duration_s) * 1000)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RestoreAction:
        return cls(**_fields(cls, data))


@dataclass(frozen=True)
class ClusterBackup:
    """One backup of a managed cluster (`DigitalOcean.database_backups`)."""

    created_at: Any = None
    size_gigabytes: Any = None
    database_id: Any = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClusterBackup:
        return cls(**_fields(cls, data))
