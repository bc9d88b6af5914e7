"""Backups against the real PostgreSQL with the real pg_dump/pg_restore."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import psycopg
import pytest

from workers.postgres.dump_reader import list_backups
from workers.postgres.pg_dump import (
    BackupError,
    archive_sha256,
    check_pg_dump_version,
    manifest_path,
    take_backup,
    verify_archive,
)

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
PASSWORD = "s3cr3t-pw-xyz"

BOOKKEEPING = """
CREATE TABLE schema_migrations (version text PRIMARY KEY, name text, status text, applied_at timestamptz,
    error_message text, checksum text, down_checksum text, execution_ms integer, rolled_back_at timestamptz);
CREATE TABLE migration_history (id bigserial PRIMARY KEY, version text, operation text, status text,
    executed_by text, executed_at timestamptz DEFAULT now(), approved_by text, request_id text,
    duration_ms integer, error_message text, details jsonb)
"""


def build_example(url: str, users: int = 60) -> dict[str, str]:
    """The repo's example migrations applied with plain psycopg (users first, so the data migration
    has rows to change), recorded as completed in schema_migrations. Returns version -> status."""
    folders = sorted(p for p in MIGRATIONS.iterdir() if p.is_dir())
    statuses: dict[str, str] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in BOOKKEEPING.split(";"):
            conn.execute(statement)
        for folder in folders:
            if folder.name.startswith("2025_10_20_150000"):
                conn.execute(
                    "INSERT INTO users (email, full_name, status) SELECT 'u' || g || '@example.com', 'User ' || g,"
                    " CASE WHEN g %% 5 = 0 THEN 'suspended' ELSE 'active' END FROM generate_series(1, %s) g",
                    (users,),
                )
                conn.execute("INSERT INTO projects (owner_id, name) SELECT id, 'p' || id FROM users WHERE id % 2 = 0")
            conn.execute((folder / "up.sql").read_text())
            version = "_".join(folder.name.split("_")[:4])
            conn.execute(
                "INSERT INTO schema_migrations (version, name, status, applied_at) VALUES (%s, %s, 'completed', now())",
                (version, folder.name[len(version) + 1 :]),
            )
            statuses[version] = "completed"
    return statuses


def with_password(url: str) -> str:
    """The same database with a password in the conninfo (trust auth ignores it), to check redaction."""
    return psycopg.conninfo.make_conninfo(url, password=PASSWORD)


def fake_binary(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.fixture
def example_url(database_url: str) -> str:
    build_example(database_url)
    return database_url


def test_backup_is_verified_and_its_manifest_matches(example_url: str, tmp_path: Path) -> None:
    beats: list[str] = []
    result = take_backup(
        with_password(example_url), target="prod", reason="pre-rollback", backup_dir=str(tmp_path),
        jobs=1, heartbeat=beats.append, progress_interval=0.001,
    )
    archive = Path(result.path)
    assert archive.name.startswith("prod-pre-rollback-") and archive.suffix == ".dump" and archive.is_file()
    assert result.verified and result.format == "custom" and result.toc_entries > 10
    assert result.size_bytes == archive.stat().st_size > 0
    manifest = json.loads(manifest_path(archive).read_text())
    assert manifest["sha256"] == archive_sha256(archive) == result.sha256
    assert manifest["size_bytes"] == result.size_bytes and manifest["target"] == "prod"
    assert manifest["server_version"].startswith("15") and "pg_dump" in manifest["pg_dump_version"]
    assert PASSWORD not in manifest_path(archive).read_text()
    assert beats and "prod" in beats[0]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".partial")]


def test_parallel_directory_backup_is_verified(example_url: str, tmp_path: Path) -> None:
    result = take_backup(example_url, target="prod", reason="pre rollback!", backup_dir=str(tmp_path), jobs=2)
    archive = Path(result.path)
    assert archive.is_dir() and archive.suffix == ".dir" and result.format == "directory"
    assert json.loads(manifest_path(archive).read_text())["sha256"] == archive_sha256(archive)
    assert verify_archive(archive) == result.toc_entries


def test_list_backups_shows_size_age_and_checksum(example_url: str, tmp_path: Path) -> None:
    first = take_backup(example_url, target="prod", reason="pre-rollback", backup_dir=str(tmp_path), jobs=1)
    take_backup(example_url, target="staging", reason="manual", backup_dir=str(tmp_path), jobs=1)
    (tmp_path / "stray.dump").write_bytes(b"not an archive")  # no manifest: listed, unverified, not ours
    rows = list_backups(str(tmp_path), target="prod")
    assert sorted(r["name"] for r in rows) == sorted([Path(first.path).name, "stray.dump"])  # whose? unknown
    (row,) = [r for r in rows if r["ours"]]
    assert row["size_bytes"] == first.size_bytes and row["sha256"] == first.sha256 and row["verified"]
    assert 0 <= row["age_seconds"] < 3600 and row["reason"] == "pre-rollback"
    every = {r["name"]: r for r in list_backups(str(tmp_path))}
    assert len(every) == 3 and not every["stray.dump"]["verified"] and every["stray.dump"]["sha256"] is None
    assert list_backups(str(tmp_path / "missing")) == []


def test_truncated_or_altered_archives_fail_verification(example_url: str, tmp_path: Path) -> None:
    single = Path(take_backup(example_url, target="prod", reason="a", backup_dir=str(tmp_path), jobs=1).path)
    verify_archive(single)
    data = single.read_bytes()
    single.write_bytes(data[: len(data) // 2])
    with pytest.raises(BackupError, match="corrupted"):
        verify_archive(single)
    # Even with a matching checksum, an archive pg_restore cannot read is refused.
    with pytest.raises(BackupError, match="not a readable archive"):
        verify_archive(single, expected_sha256=archive_sha256(single))

    directory = Path(take_backup(example_url, target="prod", reason="b", backup_dir=str(tmp_path), jobs=2).path)
    data_file = next(p for p in sorted(directory.iterdir()) if p.name.endswith(".dat.gz"))
    data_file.write_bytes(data_file.read_bytes() + b"x")
    with pytest.raises(BackupError, match="corrupted"):
        verify_archive(directory)


def _assert_one_line_without_secret(error: BackupError) -> str:
    text = str(error)
    assert "\n" not in text and PASSWORD not in text and text
    return text


def test_unwritable_backup_dir_is_a_one_line_error(example_url: str, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(BackupError) as caught:
        take_backup(with_password(example_url), target="prod", reason="x", backup_dir=str(blocker / "sub"))
    assert "not writable" in _assert_one_line_without_secret(caught.value)


def test_bad_conninfo_is_redacted(postgres_admin_url: str, tmp_path: Path) -> None:
    missing_db = psycopg.conninfo.make_conninfo(with_password(postgres_admin_url), dbname="no_such_db_rbt")
    with pytest.raises(BackupError) as caught:
        take_backup(missing_db, target="prod", reason="x", backup_dir=str(tmp_path))
    assert "no_such_db_rbt" in _assert_one_line_without_secret(caught.value)
    url_form = f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/nowhere"
    with pytest.raises(BackupError) as caught:
        take_backup(url_form, target="prod", reason="x", backup_dir=str(tmp_path))
    assert "cannot connect" in _assert_one_line_without_secret(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_missing_binary_is_reported(example_url: str, tmp_path: Path) -> None:
    with pytest.raises(BackupError) as caught:
        take_backup(example_url, target="prod", reason="x", backup_dir=str(tmp_path), pg_dump=str(tmp_path / "nope"))
    assert "not found" in _assert_one_line_without_secret(caught.value)


def test_pg_dump_older_than_the_server_is_detected_before_anything(example_url: str, tmp_path: Path) -> None:
    old = fake_binary(tmp_path, "pg_dump", 'echo "pg_dump (PostgreSQL) 9.6.0"\n')
    with pytest.raises(BackupError) as caught:
        check_pg_dump_version(example_url, pg_dump=old)
    assert "9.6" in str(caught.value) and "15" in str(caught.value)
    out = tmp_path / "out"
    with pytest.raises(BackupError):
        take_backup(example_url, target="prod", reason="x", backup_dir=str(out), pg_dump=old)
    assert list(out.iterdir()) == []
    assert check_pg_dump_version(example_url)[0].startswith("15")


def test_password_goes_through_the_environment_never_the_command_line(example_url: str, tmp_path: Path) -> None:
    seen = tmp_path / "seen"
    # A pg_dump that reports the server's major version, records its arguments and environment, and fails.
    fake = fake_binary(
        tmp_path, "pg_dump",
        'if [ "$1" = "--version" ]; then echo "pg_dump (PostgreSQL) 15.99"; exit 0; fi\n'
        f'echo "$@" > {seen}; echo "PGPASSWORD=$PGPASSWORD" >> {seen}\n'
        f'echo "pg_dump: error: connection failed for {PASSWORD}" >&2; exit 1\n',
    )
    with pytest.raises(BackupError) as caught:
        take_backup(with_password(example_url), target="prod", reason="x", backup_dir=str(tmp_path / "b"), pg_dump=fake)
    assert "failed (exit 1)" in _assert_one_line_without_secret(caught.value)
    args, env_line = seen.read_text().splitlines()
    assert PASSWORD not in args and "--dbname=" in args and "--no-password" in args
    assert env_line == f"PGPASSWORD={PASSWORD}"
    assert list((tmp_path / "b").iterdir()) == []  # a failed dump leaves nothing behind


def test_backup_dir_from_env_is_not_read_here(example_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Settings are read at the edge: BACKUP_DIR in the environment does not redirect a call.
    monkeypatch.setenv("BACKUP_DIR", str(tmp_path / "elsewhere"))
    result = take_backup(example_url, target="prod", reason="x", backup_dir=str(tmp_path / "given"), jobs=1)
    assert Path(result.path).parent == tmp_path / "given" and not os.path.exists(tmp_path / "elsewhere")


def test_missing_pg_restore_is_reported_before_dumping(example_url: str, tmp_path: Path) -> None:
    with pytest.raises(BackupError, match="not found"):
        take_backup(example_url, target="prod", reason="x", backup_dir=str(tmp_path), pg_restore=str(tmp_path / "nope"))
    assert list(tmp_path.iterdir()) == []


def test_backups_made_by_hand_are_listed_and_said_not_ours(example_url: str, tmp_path: Path) -> None:
    from tests.test_restore import dump_by_hand
    from workers.verbs.backups import backups_text

    ours = take_backup(example_url, target="prod", reason="pre-rollback", backup_dir=str(tmp_path), jobs=1)
    dump_by_hand(example_url, tmp_path / "emergency-pre-rollback-20251020T150000Z.sql.gz", "plain-gzip")
    dump_by_hand(example_url, tmp_path / "prod-pre-migration-20251020T145900Z.sql", "plain")
    dump_by_hand(example_url, tmp_path / "by-hand.pgdump", "custom")
    rows = {r["name"]: r for r in list_backups(str(tmp_path), target="prod")}
    assert {n: (r["format"], r["ours"], r["verified"]) for n, r in rows.items()} == {
        Path(ours.path).name: ("custom", True, True),
        "emergency-pre-rollback-20251020T150000Z.sql.gz": ("plain-gzip", False, False),
        "prod-pre-migration-20251020T145900Z.sql": ("plain", False, False),
        "by-hand.pgdump": ("custom", False, False),
    }
    text = backups_text("prod", list(rows.values()), [], [], [])
    assert f"`{Path(ours.path).name}`" in text and f"ours, sha256 `{ours.sha256[:16]}`" in text
    assert ("`emergency-pre-rollback-20251020T150000Z.sql.gz`" in text
            and "not ours (plain SQL, gzipped, made by hand: no manifest; read whole when restored)" in text)
    assert "not ours (custom-format archive" in text and text.count("not ours") == 3
