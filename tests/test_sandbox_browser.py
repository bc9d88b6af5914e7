"""The README's scenario in the sandbox, in real headless Chromium: the whole product, end to end.

Starts the sandbox as `python -m sandbox` does (example database, real worker, real bot, the Slack
stand-in's page) on throwaway ports, then plays the playbook as alice and bob through the page, and
checks what the page shows at each step and what the database holds afterwards.
Set UPDATE_SCREENSHOT=1 to rewrite docs/sandbox.png from this run.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from sandbox.launcher import KNOWN_GOOD_VERSION, Sandbox, start_sandbox
from tests.fixtures.isolation import PostgresRun

SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "sandbox.png"
BAD_VERSION = "2025_10_20_150000"
STEP_TIMEOUT_MS = 60_000
# Secrets and URLs of the outer environment must not leak into the sandbox's processes.
OUTER_PREFIXES = ("SLACK_", "PAGERDUTY_", "DIGITALOCEAN_", "ROLLBACK_", "BACKUP_DIR")


@pytest.fixture
def sandbox(postgres_admin_url: str, redis_url: str, postgres_run: PostgresRun) -> Iterator[Sandbox]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(OUTER_PREFIXES) and not k.endswith("_DATABASE_URL")}
    # redis_url is the tests' own database, flushed before and after: a target identity left by an earlier
    # run (another random database name) would (rightly) trip the wrong-database guard.
    started = start_sandbox(database_url=postgres_admin_url, redis_url=redis_url, env=env,
                            database_name=postgres_run.database_name("sandbox_"))
    yield started
    failed_logs = "\n".join(f"--- {name} log ---\n{started.log_tail(name, 60)}" for name in started.logs)
    started.close()
    print(failed_logs)  # shown by pytest only when the test failed


def _command(page: Any, text: str) -> None:
    page.fill("#command", text)
    page.press("#command", "Enter")
    page.wait_for_function("document.querySelector('#command').value === ''")


def _shows(page: Any, pattern: str, timeout: int = STEP_TIMEOUT_MS) -> None:
    page.locator("#feed").get_by_text(re.compile(pattern)).first.wait_for(timeout=timeout)


def _as(page: Any, name: str) -> None:
    page.get_by_label(name).check()
    page.wait_for_function(f"document.querySelector('label.me') && document.querySelector('label.me').textContent.startsWith('{name}')")


def _approve(page: Any) -> None:
    page.locator("#feed").get_by_role("button", name="Approve").last.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="Approve and run").click()


def _take_screenshot(page: Any) -> None:
    """Mid-incident, as the README shows it: the plan, the request with its refusals and approval, and the
    pipeline under way (the backup done, the snapshot running)."""
    page.set_viewport_size({"width": 1280, "height": 1250})
    page.locator("#feed .msg", has_text="dry-run of a rollback").first.evaluate("e => e.scrollIntoView({block: 'start'})")
    page.mouse.move(5, 5)  # no hover highlight in the picture
    page.wait_for_timeout(300)  # let the scroll and a last live update settle before the picture
    page.screenshot(path=str(SCREENSHOT))
    page.set_viewport_size({"width": 1280, "height": 1000})


def test_playbook_scenario_in_the_browser(sandbox: Sandbox, chromium: Any, redis_conn: redis.Redis) -> None:
    page = chromium.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(sandbox.page_url)
    _as(page, "alice")

    _command(page, "/rollback status")
    _shows(page, rf"current version {BAD_VERSION}")

    _command(page, f"/rollback dry-run {KNOWN_GOOD_VERSION}")
    _shows(page, rf"Dry run on prod: revert 1 migration\(s\) to {KNOWN_GOOD_VERSION}")
    assert "DROP TABLE" in page.locator("#feed pre.code").all_inner_texts()[-1].upper() or \
        any("DROP TABLE" in t.upper() for t in page.locator("#feed pre.code").all_inner_texts())

    _command(page, "/rollback execute")
    _shows(page, r"Needs a second person's approval")

    _approve(page)  # alice approving her own request
    _shows(page, r"@alice tried to approve .*Refused")
    _as(page, "carol")
    _approve(page)  # carol is not an approver
    _shows(page, r"@carol tried to approve .*Refused")

    _as(page, "bob")
    _approve(page)
    _shows(page, r"Approved by @bob")
    _shows(page, r"Backup finished")
    _shows(page, r"Snapshot started")  # the DigitalOcean droplet snapshot (stand-in): a few seconds' wait
    if os.environ.get("UPDATE_SCREENSHOT") == "1":
        _take_screenshot(page)
    _shows(page, r"Rollback finished")
    _shows(page, r"Verification finished")
    _shows(page, rf"prod rolled back to {KNOWN_GOOD_VERSION}")
    assert page.locator("header .pill.ok").inner_text() == "bot connected · live"

    with psycopg.connect(sandbox.database_url) as conn:
        assert conn.execute("SELECT to_regclass('new_feature_table')").fetchone() == (None,)
        columns = {r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'users'").fetchall()}
        assert "new_field" not in columns
        statuses: dict[str, int] = dict(conn.execute("SELECT status, count(*) FROM users GROUP BY status").fetchall())
        assert set(statuses) == {"active", "suspended"} and statuses["active"] > 0
        assert conn.execute("SELECT status FROM schema_migrations WHERE version = %s",
                            (BAD_VERSION,)).fetchone() == ("rolled_back",)

    # The incident record: a file in the thread, readable on the page.
    _as(page, "alice")
    _command(page, "/rollback report")
    report_file = page.locator('#feed button.file[data-name^="incident"]').first  # not the card's SQL file
    report_failed = page.locator("#feed").get_by_text(re.compile(r"Report failed")).first
    report_file.or_(report_failed).first.wait_for(timeout=STEP_TIMEOUT_MS)
    assert report_failed.count() == 0, page.locator("#feed .thread").last.inner_text()[-600:]
    report_file.click()
    report = page.get_by_role("dialog").inner_text()
    assert BAD_VERSION in report and re.search(r"Approved by\W+(U_BOB|bob)", report), report
    page.get_by_role("dialog").get_by_role("button", name="Close").click()
    page.close()

    # Stopping (what Ctrl-C does) ends the processes and drops the throwaway database and files.
    assert sandbox.digitalocean is not None and len(sandbox.digitalocean.snapshots) == 1
    processes = list(sandbox.processes.values())
    sandbox.close()
    assert all(p.poll() is not None for p in processes)
    assert not sandbox.workdir.exists()
    # The Redis was given (as with REDIS_URL), so it is not flushed: the run's own keys are gone all the same.
    left = sorted(k.decode() for k in redis_conn.scan_iter())
    assert not [k for k in left if k.startswith(("rollback:request:", "rollback:active:", "rollback:plan:",
                                                  "rollback:claim:", "rq:queue:", "rq:job:"))], left
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(sandbox.database_url, connect_timeout=5).close()


def test_scenario_4_lost_rows_recovered_in_the_browser(sandbox: Sandbox, chromium: Any) -> None:
    """Scenario 4 in the sandbox: a backup, the bad deploy deletes users (the page's button), then
    `/rollback recover` brings exactly those rows back; a row written after the backup stays."""
    page = chromium.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(sandbox.page_url)
    _as(page, "alice")
    with psycopg.connect(sandbox.database_url) as conn:
        before = dict(conn.execute("SELECT id, email FROM users").fetchall())

    _command(page, "/rollback backup")
    _shows(page, r"Backup finished")
    backups = sorted(p.name for p in (sandbox.workdir / "backups").iterdir() if not p.name.endswith(".json"))
    assert len(backups) == 1, backups

    page.locator("#lose-rows").click()
    _shows(page, r"scenario 4\) The app's bad deploy just deleted 10 users")
    with psycopg.connect(sandbox.database_url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (len(before) - 10,)
        conn.execute("INSERT INTO users (email, full_name) VALUES ('after-the-backup@example.com', 'Newer')")

    _command(page, f"/rollback recover {backups[0]} users,projects")
    _shows(page, r"table recovery of prod requested by @alice")
    _shows(page, r"public\.users: 10 missing from live \(inserted\)")
    _shows(page, r"Sample keys")
    _as(page, "bob")
    _approve(page)
    _shows(page, r"Approved by @bob")
    _shows(page, r"Recovery finished")
    _shows(page, r"table recovery of prod done and verified")

    with psycopg.connect(sandbox.database_url) as conn:
        after = dict(conn.execute("SELECT id, email FROM users").fetchall())
    assert {i: after.get(i) for i in before} == before  # every lost user back, as it was
    assert "after-the-backup@example.com" in after.values()  # newer rows kept
    page.close()
