from __future__ import annotations

from workers.engine import redact
from workers.engine.redact import password_of


def test_url_passwords_are_masked() -> None:
    text = 'connection to postgresql://app:s3cr%40t@db.example.com:5432/prod failed'
    assert redact(text) == "connection to postgresql://app:***@db.example.com:5432/prod failed"


def test_conninfo_passwords_are_masked_quoted_or_not() -> None:
    assert "hunter22" not in redact("host=db password=hunter22 dbname=prod")
    assert "two words" not in redact("host=db password='two words' dbname=prod")
    assert "q1w2e3" not in redact("postgresql://db/prod?sslmode=require&password=q1w2e3")


def test_extra_secrets_are_masked_wherever_they_appear() -> None:
    assert redact('FATAL: password "hunter22" rejected', ["hunter22"]) == 'FATAL: password "***" rejected'


def test_password_of_reads_urls_and_conninfo() -> None:
    assert password_of("postgresql://u:pw123@h/db") == "pw123"
    assert password_of("host=h password=pw456") == "pw456"
    assert password_of("host=h") is None
