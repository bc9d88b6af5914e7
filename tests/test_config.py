from pathlib import Path

import pytest

from core.config import ConfigError, Hook, load_settings

REPO = Path(__file__).resolve().parent.parent


def test_example_config_loads_with_targets_from_file_and_environment() -> None:
    env = {"PROD_DATABASE_URL": "postgresql://app:s3cret@db/prod", "QA_DATABASE_URL": "postgresql://qa"}
    settings = load_settings(env, REPO / "rollback.example.toml")
    assert sorted(settings.targets) == ["prod", "qa", "staging"]
    prod = settings.target("prod")
    assert prod.critical_tables == ("users", "projects")
    assert prod.maintenance_on == Hook(command="./scripts/maintenance.sh on")
    assert settings.database_url(prod) == "postgresql://app:s3cret@db/prod"
    assert settings.contacts_for(prod) == ("U0123DBLEAD", "U0123ONCALL")
    assert settings.policy.approvers == ("U0123DBA01", "U0123DBA02")


def test_secrets_are_not_in_the_settings_repr() -> None:
    env = {"PROD_DATABASE_URL": "postgresql://app:s3cret@db/prod", "SLACK_BOT_TOKEN": "xoxb-secret-token"}
    settings = load_settings(env, REPO / "rollback.example.toml")
    assert "s3cret" not in repr(settings)
    assert "xoxb-secret-token" not in repr(settings)


def test_unknown_target_and_missing_url_say_what_to_do(tmp_path: Path) -> None:
    settings = load_settings({}, REPO / "rollback.example.toml")
    with pytest.raises(ConfigError, match="unknown target 'nope'; known: prod, staging"):
        settings.target("nope")
    with pytest.raises(ConfigError, match="PROD_DATABASE_URL is not set"):
        settings.database_url(settings.target("prod"))


def test_invalid_config_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "rollback.toml"
    bad.write_text("[targets.Prod]\n")
    with pytest.raises(ConfigError, match="lower-case"):
        load_settings({}, bad)
    bad.write_text("[bot\n")
    with pytest.raises(ConfigError, match="rollback.toml"):
        load_settings({}, bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings({"ROLLBACK_CONFIG": str(tmp_path / "missing.toml")})


def test_worker_settings_come_from_the_loader_with_unit_names_and_the_old_names_still_read(tmp_path: Path) -> None:
    config = tmp_path / "rollback.toml"
    config.write_text("[workers]\nrestore_jobs = 3\n")
    new = load_settings({"ROLLBACK_PROGRESS_INTERVAL_SECONDS": "2", "ROLLBACK_WATCHDOG_INTERVAL_SECONDS": "1",
                         "ROLLBACK_CONNECT_TIMEOUT_SECONDS": "4", "ROLLBACK_JOB_TIMEOUT_SECONDS": "30",
                         "PG_RESTORE": "/opt/pg/bin/pg_restore"}, config).workers
    assert (new.progress_interval_s, new.watchdog_interval_s, new.connect_timeout_s, new.job_timeout_s) == (2, 1, 4, 30)
    assert new.lease_ttl_s == 3 and new.restore_jobs == 3 and new.pg_restore == "/opt/pg/bin/pg_restore"
    old = load_settings({"ROLLBACK_PROGRESS_INTERVAL": "5", "ROLLBACK_JOB_TIMEOUT": "60", "ROLLBACK_RESTORE_JOBS": "1"},
                        config).workers
    assert (old.progress_interval_s, old.job_timeout_s, old.restore_jobs) == (5, 60, 1)
    with pytest.raises(ConfigError, match="ROLLBACK_CONNECT_TIMEOUT_SECONDS must be a number of seconds"):
        load_settings({"ROLLBACK_CONNECT_TIMEOUT_SECONDS": "soon"}, config)


def test_backup_policy_defaults_to_full_and_escrow_and_escrow_alone_needs_another_net(tmp_path: Path) -> None:
    config = tmp_path / "rollback.toml"
    config.write_text('[workers]\nescrow_retention_days = 3\n[targets.a]\n'
                      '[targets.b]\nbackup_policy = "escrow"\ndo_droplet_id = 1\n'
                      '[targets.c]\nbackup_policy = "escrow"\nsupabase_project_ref = "abcd"\n'
                      '[targets.d]\nbackup_policy = "full"\n')
    settings = load_settings({}, config)
    policies = {n: (t.backup_policy, t.full_backup, t.escrow, t.platform_net) for n, t in settings.targets.items()}
    assert policies == {"a": ("full+escrow", True, True, None), "b": ("escrow", False, True, "DigitalOcean snapshot"),
                        "c": ("escrow", False, True, "Supabase PITR"), "d": ("full", True, False, None)}
    assert settings.escrow_retention_days == 3
    assert load_settings({}, REPO / "rollback.example.toml").escrow_retention_days == 14

    config.write_text('[targets.a]\nbackup_policy = "escrow"\n')
    with pytest.raises(ConfigError, match="needs another net under the target"):
        load_settings({}, config)
    config.write_text('[targets.a]\nbackup_policy = "snapshots"\n')
    with pytest.raises(ConfigError, match="must be one of full, escrow, full\\+escrow"):
        load_settings({}, config)
    config.write_text('[workers]\nescrow_retention_days = 0\n')
    with pytest.raises(ConfigError, match="escrow_retention_days must be a positive number of days"):
        load_settings({}, config)
