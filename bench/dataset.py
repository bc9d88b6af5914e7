"""A realistic SaaS-like benchmark database, built fast in SQL and cached as a template by size.

Tables (bench/migrations/): `users`, `projects`, and as multiples of the user count `events` (jsonb
payloads of several shapes), `comments` (free text, tags), `audit_log` (inet, user agent) and
`attachments` (random bytea). Text comes from a vocabulary of ~220k made-up words drawn with a
Zipf-like skew (log-uniform rank, P(rank k) ~ 1/k): 100k sentences are built from it once, and rows
pick and combine sentences by a hash of their id, so the data is deterministic and not repeated filler.

Build order, like a real application's history: the schema migration is applied through the engine,
the rows are inserted with `generate_series` (in chunks, with progress), then the keys-and-indexes
migration, the last known-good one and the bad one are applied through the engine too. The result is
kept as the database `bench_tpl_<size>` (its comment holds the generator's fingerprint); a run clones
it with `CREATE DATABASE … TEMPLATE … STRATEGY FILE_COPY` and never rebuilds unless the generator or
the migrations changed.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from workers.engine import Engine

BENCH_DIR = Path(__file__).resolve().parent
MIGRATIONS_DIR = BENCH_DIR / "migrations"
SCHEMA_VERSION = "2026_01_05_090000"
KNOWN_GOOD = "2026_02_02_120000"
BAD_VERSION = "2026_02_10_150000"
# Every database a run creates starts with this prefix (a test run picks its own, so runs never collide).
_prefix = ["bench_"]
VOCABULARY_SENTENCES = 100_000
CHUNKS = 8

Say = Callable[[str], None]


@dataclass(frozen=True)
class Size:
    name: str
    users: int

    # Rows per user of each table (a SaaS app: a few projects per hundred users, many events).
    projects_per_user: float = 0.2
    events_per_user: float = 6.0
    comments_per_user: float = 3.0
    audit_per_user: float = 4.0
    attachments_per_user: float = 0.25

    def rows(self, per_user: float) -> int:
        return max(1, int(self.users * per_user))


# Calibrated on PostgreSQL 15 (on-disk size with indexes, after VACUUM): ~8.5 kB per user.
SIZES = {
    "tiny": Size("tiny", 1_500),
    "0.3g": Size("0.3g", 36_000),
    "1g": Size("1g", 118_000),
    "4g": Size("4g", 470_000),
}

SYLLABLES = (
    "ka lo mi ne ru sa ta vi po de ba ko li mu na re si to ve pa di fe gu ha je ki la me no pi "
    "qu ro su te un va we xi yo za an el in or us ar en ir ol ur as es is os ch th sh st tr br"
).split()


def _h(expr: str, seed: int) -> str:
    """A deterministic non-negative pseudo-random integer from `expr` (an id), per `seed`."""
    return f"(hashint8(({expr})::bigint * 1000003 + {seed}) & 2147483647)"


def _sentence(expr: str, seed: int) -> str:
    return f"(SELECT s FROM bench_gen.sentences WHERE id = 1 + {_h(expr, seed)} % {VOCABULARY_SENTENCES})"


def _word(expr: str, seed: int, top: int) -> str:
    """One of the `top` most frequent words (names, tags)."""
    return f"(SELECT word FROM bench_gen.vocab WHERE id = 1 + {_h(expr, seed)} % {top})"


VOCABULARY_SQL = [
    "DROP SCHEMA IF EXISTS bench_gen CASCADE",
    "CREATE SCHEMA bench_gen",
    sql.SQL(
        "CREATE TABLE bench_gen.vocab AS WITH syl AS (SELECT unnest({}::text[]) AS s),"
        " words AS (SELECT a.s || b.s AS word FROM syl a, syl b"
        "  UNION SELECT a.s || b.s || c.s FROM syl a, syl b, syl c)"
        " SELECT (row_number() OVER (ORDER BY length(word), md5(word)))::int AS id, word FROM words"
    ),
    "ALTER TABLE bench_gen.vocab ADD PRIMARY KEY (id)",
    "ANALYZE bench_gen.vocab",
    # Zipf-like: rank = floor(exp(U * ln N)) is log-uniform, so P(rank k) ~ 1/k.
    f"CREATE TABLE bench_gen.sentences AS SELECT t.sid AS id,"
    f" upper(left(string_agg(v.word, ' ' ORDER BY t.pos), 1)) || substr(string_agg(v.word, ' ' ORDER BY t.pos), 2) || '.' AS s FROM ("
    f"  SELECT sid, pos, floor(exp(random() * ln((SELECT count(*) FROM bench_gen.vocab))))::int AS wid"
    f"  FROM generate_series(1, {VOCABULARY_SENTENCES}) sid,"
    f"  LATERAL generate_series(1, 4 + (sid * 7919) % 21) pos OFFSET 0) t"
    f" JOIN bench_gen.vocab v ON v.id = t.wid GROUP BY t.sid",
    "ALTER TABLE bench_gen.sentences ADD PRIMARY KEY (id)",
    "ANALYZE bench_gen.sentences",
]

COUNTRIES = "US DE GB FR IN BR CA JP NL ES IT SE PL AU MX KR CH BE AT DK NO FI IE PT CZ SG NZ IL AR ZA"
EVENT_KINDS = ("user.login user.logout page.view project.create project.update comment.create "
               "billing.invoice billing.payment api.call export.run search.query file.upload")
ACTIONS = "login logout password.change email.change role.grant role.revoke key.create key.delete export"
AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{v}.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:{v}.0) Gecko/20100101 Firefox/{v}.0",
    "curl/8.{v}.0",
    "python-requests/2.{v}.1",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_{v} like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
)


def _array(words: str) -> str:
    return "ARRAY[" + ",".join(f"'{w}'" for w in words.split()) + "]"


def _timestamp(expr: str, seed: int, days: int = 900) -> str:
    return f"(timestamptz '2026-01-01' - make_interval(secs => {_h(expr, seed)} % ({days} * 86400)))"


def fill_statements(size: Size) -> dict[str, tuple[int, str]]:
    """Per table: (rows, INSERT … SELECT over generate_series(@LO@, @HI@) g)."""
    users, projects = size.users, size.rows(size.projects_per_user)
    comments = size.rows(size.comments_per_user)
    agents = "ARRAY[" + ",".join("'" + a.replace("'", "''") + "'" for a in AGENTS) + "]"
    first, last = _word("g", 1, 3000), _word("g", 2, 20000)
    return {
        "users": (users, f"""
INSERT INTO users (id, uuid, email, full_name, status, country, bio, settings, last_ip, created_at,
                   updated_at, last_login_at)
SELECT g, md5('user' || g)::uuid, lower(n.first) || '.' || lower(n.last) || g || '@'
         || (ARRAY['gmail.com','outlook.com','acme.io','example.org','fastmail.com'])[1 + {_h('g', 3)} % 5],
       initcap(n.first) || ' ' || initcap(n.last),
       CASE WHEN {_h('g', 4)} % 100 < 72 THEN 'active' WHEN {_h('g', 4)} % 100 < 84 THEN 'invited'
            WHEN {_h('g', 4)} % 100 < 94 THEN 'suspended' ELSE 'deleted' END,
       ({_array(COUNTRIES)})[1 + floor(30 * power(({_h('g', 5)} % 1000) / 1000.0, 2))::int],
       CASE WHEN {_h('g', 6)} % 4 > 0 THEN {_sentence('g', 7)} || ' ' || {_sentence('g', 8)} END,
       jsonb_build_object('theme', (ARRAY['dark','light','system'])[1 + {_h('g', 9)} % 3],
                          'locale', lower(({_array(COUNTRIES)})[1 + {_h('g', 10)} % 30]),
                          'notifications', jsonb_build_object('email', {_h('g', 11)} % 2 = 0,
                                                              'digest', (ARRAY['daily','weekly','never'])[1 + {_h('g', 12)} % 3]),
                          'beta', {_h('g', 13)} % 10 = 0),
       '0.0.0.0'::inet + {_h('g', 14)}::bigint * 2,
       {_timestamp('g', 15)}, {_timestamp('g', 16, 30)}, {_timestamp('g', 17, 60)}
FROM generate_series(@LO@, @HI@) g,
     LATERAL (SELECT {first} AS first, {last} AS last) n"""),
        "projects": (projects, f"""
INSERT INTO projects (id, owner_id, name, description, settings, created_at, archived_at)
SELECT g, 1 + {_h('g', 20)} % {users}, initcap({_word('g', 21, 20000)}) || ' ' || initcap({_word('g', 22, 20000)}),
       {_sentence('g', 23)} || ' ' || {_sentence('g', 24)},
       jsonb_build_object('visibility', (ARRAY['private','team','public'])[1 + {_h('g', 25)} % 3],
                          'seats', {_h('g', 26)} % 200, 'labels', to_jsonb(ARRAY[{_word('g', 27, 300)}, {_word('g', 28, 300)}])),
       {_timestamp('g', 29)}, CASE WHEN {_h('g', 30)} % 10 = 0 THEN {_timestamp('g', 31, 100)} END
FROM generate_series(@LO@, @HI@) g"""),
        "events": (size.rows(size.events_per_user), f"""
INSERT INTO events (id, user_id, project_id, kind, payload, created_at)
SELECT g, 1 + {_h('g', 40)} % {users}, CASE WHEN {_h('g', 41)} % 3 > 0 THEN 1 + {_h('g', 42)} % {projects} END,
       k.kind,
       CASE WHEN k.kind LIKE 'billing.%' THEN jsonb_build_object('amount_cents', {_h('g', 43)} % 500000,
                 'currency', (ARRAY['USD','EUR','GBP'])[1 + {_h('g', 44)} % 3], 'invoice', 'INV-' || g,
                 'lines', jsonb_build_array(jsonb_build_object('sku', {_word('g', 45, 2000)}, 'qty', 1 + {_h('g', 46)} % 9)))
            WHEN k.kind IN ('page.view', 'search.query') THEN jsonb_build_object('path', '/' || {_word('g', 47, 5000)}
                 || '/' || {_word('g', 48, 50000)}, 'query', {_sentence('g', 49)}, 'duration_ms', {_h('g', 50)} % 3000,
                 'referrer', (ARRAY['google','direct','newsletter','twitter'])[1 + {_h('g', 51)} % 4])
            WHEN k.kind = 'api.call' THEN jsonb_build_object('endpoint', '/v2/' || {_word('g', 52, 400)},
                 'status', (ARRAY[200,200,200,201,204,400,404,500])[1 + {_h('g', 53)} % 8], 'latency_ms', {_h('g', 54)} % 900)
            ELSE jsonb_build_object('object_id', {_h('g', 55)}, 'note', {_sentence('g', 56)},
                 'tags', to_jsonb(ARRAY[{_word('g', 57, 500)}, {_word('g', 58, 500)}]), 'client',
                 (ARRAY['web','ios','android','cli'])[1 + {_h('g', 59)} % 4]) END,
       {_timestamp('g', 60, 365)}
FROM generate_series(@LO@, @HI@) g,
     LATERAL (SELECT ({_array(EVENT_KINDS)})[1 + floor(12 * power(({_h('g', 61)} % 1000) / 1000.0, 1.6))::int] AS kind) k"""),
        "comments": (comments, f"""
INSERT INTO comments (id, user_id, project_id, body, tags, created_at, edited_at)
SELECT g, 1 + {_h('g', 70)} % {users}, 1 + {_h('g', 71)} % {projects},
       concat_ws(' ', {_sentence('g', 72)}, {_sentence('g', 73)},
                 CASE WHEN {_h('g', 74)} % 2 = 0 THEN {_sentence('g', 75)} END,
                 CASE WHEN {_h('g', 76)} % 4 = 0 THEN {_sentence('g', 77)} || ' ' || {_sentence('g', 78)} END),
       (ARRAY[{_word('g', 79, 500)}, {_word('g', 80, 500)}, {_word('g', 81, 2000)}, {_word('g', 82, 2000)}])[1:{_h('g', 83)} % 5],
       {_timestamp('g', 84, 365)}, CASE WHEN {_h('g', 85)} % 8 = 0 THEN {_timestamp('g', 86, 30)} END
FROM generate_series(@LO@, @HI@) g"""),
        "audit_log": (size.rows(size.audit_per_user), f"""
INSERT INTO audit_log (id, user_id, action, ip, user_agent, details, created_at)
SELECT g, 1 + {_h('g', 90)} % {users}, ({_array(ACTIONS)})[1 + {_h('g', 91)} % 9],
       '0.0.0.0'::inet + {_h('g', 92)}::bigint * 2,
       replace(({agents})[1 + {_h('g', 93)} % 6], '{{v}}', (90 + {_h('g', 94)} % 40)::text),
       CASE WHEN {_h('g', 95)} % 3 = 0 THEN jsonb_build_object('reason', {_sentence('g', 96)},
            'session', md5('s' || g)) END,
       {_timestamp('g', 97, 365)}
FROM generate_series(@LO@, @HI@) g"""),
        "attachments": (size.rows(size.attachments_per_user), f"""
INSERT INTO attachments (id, user_id, comment_id, filename, content_type, data, created_at)
SELECT g, 1 + {_h('g', 100)} % {users}, 1 + {_h('g', 101)} % {comments},
       lower({_word('g', 102, 20000)}) || '-' || g || (ARRAY['.png','.pdf','.jpg','.zip'])[1 + {_h('g', 103)} % 4],
       (ARRAY['image/png','application/pdf','image/jpeg','application/zip'])[1 + {_h('g', 103)} % 4],
       decode((SELECT string_agg(md5(g::text || ':' || i), '') FROM generate_series(1, 16 + {_h('g', 104)} % 150) i), 'hex'),
       {_timestamp('g', 105, 365)}
FROM generate_series(@LO@, @HI@) g"""),
    }


def fingerprint(size: Size) -> str:
    """Changes whenever the generator's SQL, the size or the migrations change: the cache key."""
    digest = hashlib.sha256(repr(size).encode())
    digest.update(repr(sorted(fill_statements(size).items())).encode())
    for path in sorted(MIGRATIONS_DIR.rglob("*.sql")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def use_prefix(prefix: str) -> None:
    _prefix[0] = prefix


def scratch_name(what: str) -> str:
    """The name of a database this run creates (a clone, an empty restore target)."""
    return f"{_prefix[0]}{what}"


def template_name(size: Size) -> str:
    return scratch_name("tpl_" + size.name.replace(".", "_"))


def database_url(admin_url: str, dbname: str) -> str:
    return psycopg.conninfo.make_conninfo(admin_url, dbname=dbname)


def _comment(conn: psycopg.Connection, dbname: str) -> str | None:
    row = conn.execute(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", (dbname,)
    ).fetchone()
    return None if row is None else (row[0] or "")


def ensure_template(admin_url: str, size: Size, *, say: Say = print, rebuild: bool = False) -> str:
    """The template database of `size`, built now unless a complete one with this fingerprint exists."""
    name = template_name(size)
    wanted = f"bench dataset {size.name} {fingerprint(size)} complete"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not rebuild and _comment(conn, name) == wanted:
            say(f"data set {size.name}: cached as database {name}")
            return name
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    started = time.monotonic()
    build(database_url(admin_url, name), size, say=say)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(name), sql.Literal(wanted)))
        row = conn.execute("SELECT pg_database_size(%s)", (name,)).fetchone()
    say(f"data set {size.name}: built in {time.monotonic() - started:.0f} s, {(row[0] if row else 0) / 1e9:.2f} GB on disk")
    return name


def _migrations_upto(version: str) -> Path:
    """A temporary folder holding the bench migrations up to and including `version`."""
    folder = Path(tempfile.mkdtemp(prefix="bench-migrations-"))
    for source in sorted(MIGRATIONS_DIR.iterdir()):
        if source.is_dir() and source.name[:17] <= version:
            shutil.copytree(source, folder / source.name)
    return folder


def build(url: str, size: Size, *, say: Say = print) -> None:
    schema_only = _migrations_upto(SCHEMA_VERSION)
    try:
        Engine(url, schema_only, actor="bench-setup").apply()
    finally:
        shutil.rmtree(schema_only, ignore_errors=True)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET max_parallel_workers_per_gather = 0")
        say(f"data set {size.name}: vocabulary and sentences")
        for statement in VOCABULARY_SQL:
            conn.execute(statement.format(sql.Literal(SYLLABLES)) if isinstance(statement, sql.SQL)
                         else sql.SQL(statement))  # type: ignore[arg-type]
        for table, (rows, insert) in fill_statements(size).items():
            started = time.monotonic()
            step = max(1, -(-rows // CHUNKS))
            for lo in range(1, rows + 1, step):
                hi = min(rows, lo + step - 1)
                conn.execute(insert.replace("@LO@", str(lo)).replace("@HI@", str(hi)).encode())
                _progress(say, f"data set {size.name}: {table:<11} {hi:>10,}/{rows:,} rows {time.monotonic() - started:5.0f} s")
            conn.execute(sql.SQL("SELECT setval(pg_get_serial_sequence({}, 'id'), {})").format(
                sql.Literal(table), sql.Literal(rows)))
        conn.execute("DROP SCHEMA bench_gen CASCADE")
    say(f"data set {size.name}: keys, indexes and the migrations up to {BAD_VERSION}")
    started = time.monotonic()
    def log(line: str) -> None:
        if line.startswith("applying"):
            say(f"  {line}")

    Engine(url, MIGRATIONS_DIR, actor="bench-setup", statement_timeout_ms=0, log=log).apply()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    say(f"data set {size.name}: migrations and VACUUM ANALYZE in {time.monotonic() - started:.0f} s")


def _progress(say: Say, line: str) -> None:
    if say is print and sys.stdout.isatty():
        print("\r" + line, end="", flush=True)
    else:
        say(line)


def clone(admin_url: str, template: str, name: str) -> str:
    """A fresh copy of the template (file copy: seconds per GB); returns its URL."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
            sql.Identifier(name), sql.Identifier(template)))
    return database_url(admin_url, name)


def drop(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def size_on_disk(admin_url: str, name: str) -> int:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_database_size(%s)", (name,)).fetchone()
    return int(row[0]) if row else 0


def create_empty(admin_url: str, name: str) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return database_url(admin_url, name)
