"""The launcher's pieces that need no browser: its config, its Slack switch, its example database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

from core.config import load_settings
from sandbox.__main__ import _real_slack_configured
from sandbox.launcher import KNOWN_GOOD_VERSION, MIGRATIONS_DIR, People, create_example_database, write_config


def test_sandbox_config_is_valid_settings(tmp_path: Path) -> None:
    path = tmp_path / "rollback.toml"
    write_config(path, backup_dir=tmp_path / "backups", people=People(), health_url="http://127.0.0.1:1/h",
                 maintenance_url="http://127.0.0.1:1/m")
    settings = load_settings(env={"PROD_DATABASE_URL": "postgresql://x@127.0.0.1/db"}, path=path)
    prod = settings.target("prod")
    assert prod.critical_tables == ("users", "projects")
    assert Path(prod.migrations_dir) == MIGRATIONS_DIR
    assert prod.maintenance_on is not None and prod.maintenance_on.url == "http://127.0.0.1:1/m/on"
    assert settings.policy.approvers == ("U_BOB",) and settings.policy.channels == ("C_INCIDENT",)
    assert settings.backup_dir == str(tmp_path / "backups")


def test_real_slack_people_come_from_the_environment(tmp_path: Path) -> None:
    people = People.from_env({"SANDBOX_APPROVERS": "U1, U2", "SANDBOX_CHANNELS": "C9"})
    path = tmp_path / "rollback.toml"
    write_config(path, backup_dir=tmp_path, people=people, health_url=None, maintenance_url=None)
    settings = load_settings(env={}, path=path)
    assert settings.policy.approvers == ("U1", "U2") and settings.policy.channels == ("C9",)
    assert settings.policy.approver_group is None and settings.target("prod").health_url is None


def test_slack_credentials_without_an_api_override_mean_real_slack() -> None:
    assert _real_slack_configured({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s"})
    assert _real_slack_configured({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1"})
    assert not _real_slack_configured({"SLACK_BOT_TOKEN": "xoxb-1"})
    assert not _real_slack_configured({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s",
                                       "SLACK_API_URL": "http://127.0.0.1:1/api/"})
    assert not _real_slack_configured({})


def test_example_database_holds_seed_data_and_both_migrations(postgres_admin_url: str, make_database: Any) -> None:
    name = psycopg.conninfo.conninfo_to_dict(make_database())["dbname"]
    url = create_example_database(postgres_admin_url, str(name))  # replaces the empty one, dropped at the end
    with psycopg.connect(url) as conn:
        statuses: dict[str, int] = dict(conn.execute("SELECT status, count(*) FROM users GROUP BY status").fetchall())
        assert set(statuses) == {"migrated", "suspended"} and statuses["migrated"] >= 200
        assert conn.execute("SELECT count(*) FROM new_feature_table").fetchone() == (statuses["migrated"],)
        assert conn.execute("SELECT count(*) FROM projects").fetchone()[0] > 100  # type: ignore[index]
        versions = conn.execute("SELECT version, status FROM schema_migrations ORDER BY version").fetchall()
    assert [v for v, s in versions if s == "completed"][-2:] == [KNOWN_GOOD_VERSION, "2025_10_20_150000"]
