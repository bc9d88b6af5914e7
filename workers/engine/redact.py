"""Remove secrets (passwords in DSNs, conninfo strings and libpq messages) from any text."""

from __future__ import annotations

import re
from collections.abc import Iterable

import psycopg

# postgresql://user:secret@host  ->  postgresql://user:***@host
_URL_PASSWORD = re.compile(r"(?P<prefix>\b[a-z][a-z0-9+.-]*://[^/@\s:]*:)(?P<secret>[^@\s]*)(?P<at>@)", re.I)
# password=secret / password='se cret'  (conninfo key=value form, also in URL query strings)
_KV_PASSWORD = re.compile(r"(?P<prefix>\bpassword\s*=\s*)(?P<secret>'(?:[^'\\]|\\.)*'|[^\s&]+)", re.I)
MASK = "***"


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` with every password replaced by ***; `secrets` are extra literal values to hide."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['prefix']}{MASK}{m['at']}", text)
    text = _KV_PASSWORD.sub(lambda m: f"{m['prefix']}{MASK}", text)
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, MASK)
    return text


def password_of(conninfo: str) -> str | None:
    """The password in a DSN/conninfo (to redact it wherever it might be echoed), or None."""
    try:
        return psycopg.conninfo.conninfo_to_dict(conninfo).get("password") or None  # type: ignore[return-value]
    except Exception:  # a malformed DSN has nothing we can extract; the regexes still apply
        return None
