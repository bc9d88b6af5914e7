"""What a statement locks and destroys, from PostgreSQL's parse tree; lock modes checked against pg_locks."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from workers.engine.catalog import PgCatalog
from workers.engine.sqleffects import DestroyKind, Destruction, LockMode, LockTarget
from workers.engine.sqltext import Statement, effects, parse_script

AE, SRE, SHARE, SUE = (LockMode.ACCESS_EXCLUSIVE, LockMode.SHARE_ROW_EXCLUSIVE, LockMode.SHARE,
                       LockMode.SHARE_UPDATE_EXCLUSIVE)
RE, RS, AS = LockMode.ROW_EXCLUSIVE, LockMode.ROW_SHARE, LockMode.ACCESS_SHARE
BY_PG_NAME = {mode.pg_locks_mode: mode for mode in LockMode}


def one(text: str) -> Statement:
    (statement,) = parse_script(text)
    return statement


def locks(text: str) -> list[tuple[tuple[str, ...], LockMode]]:
    return [(t.relation, t.mode) for t in one(text).locks]


# --- destructions --------------------------------------------------------------------------------


def test_drop_table_schema_index_and_constraint() -> None:
    assert one('DROP TABLE IF EXISTS a, app."B" CASCADE').destroys == (
        Destruction(DestroyKind.DROP_TABLE, ("a",), cascade=True),
        Destruction(DestroyKind.DROP_TABLE, ("app", "B"), cascade=True))
    assert one("DROP SCHEMA old_stuff CASCADE").destroys == (
        Destruction(DestroyKind.DROP_SCHEMA, ("old_stuff",), cascade=True),)
    assert one("DROP INDEX CONCURRENTLY app.users_email_idx").destroys == (
        Destruction(DestroyKind.DROP_INDEX, ("app", "users_email_idx")),)
    assert one("ALTER TABLE orders DROP CONSTRAINT orders_user_fk").destroys == (
        Destruction(DestroyKind.DROP_CONSTRAINT, ("orders",), constraint="orders_user_fk"),)
    assert one("DROP VIEW v").destroys == () and one("DROP VIEW v").kind == "DROP VIEW"


def test_drop_column_and_alter_column_type_among_other_subcommands() -> None:
    statement = one('ALTER TABLE ONLY users DROP COLUMN IF EXISTS a, ALTER COLUMN "B" TYPE bigint USING "B"::bigint,'
                    " ALTER COLUMN c SET DEFAULT 1, ALTER COLUMN d DROP DEFAULT, DROP e CASCADE")
    assert statement.destroys == (
        Destruction(DestroyKind.DROP_COLUMN, ("users",), ("a",)),
        Destruction(DestroyKind.ALTER_COLUMN_TYPE, ("users",), ("B",)),
        Destruction(DestroyKind.DROP_COLUMN, ("users",), ("e",), cascade=True))


def test_truncate_every_table() -> None:
    assert one("TRUNCATE TABLE a, ONLY app.b RESTART IDENTITY").destroys == (
        Destruction(DestroyKind.TRUNCATE, ("a",)), Destruction(DestroyKind.TRUNCATE, ("app", "b")))


def test_delete_names_its_table_where_and_joins_as_written() -> None:
    statement = one("DELETE FROM ONLY app.events e USING users u\n"
                    "WHERE e.user_id = u.id AND u.status = 'gone; really' -- why\nRETURNING e.id")
    assert statement.destroys == (Destruction(
        DestroyKind.DELETE, ("app", "events"), where="e.user_id = u.id AND u.status = 'gone; really'",
        using="users u"),)
    assert one("DELETE FROM t").destroys == (Destruction(DestroyKind.DELETE, ("t",)),)  # where None: every row
    assert one("DELETE FROM t WHERE CURRENT OF c").destroys[0].current_of


def test_update_names_its_columns_where_and_with_clause() -> None:
    statement = one("WITH moved AS (SELECT id FROM archive WHERE moved)\n"
                    "UPDATE users SET status = 'active', (a, \"B\") = (SELECT 1, 2), tags[1] = 'x',"
                    " flag = x IS DISTINCT FROM y\n"
                    "FROM moved WHERE users.id = moved.id AND (status = 'migrated' OR status IS NULL)")
    assert statement.destroys == (Destruction(
        DestroyKind.UPDATE, ("users",), ("status", "a", "B", "tags", "flag"),
        where="users.id = moved.id AND (status = 'migrated' OR status IS NULL)", using="moved",
        with_="WITH moved AS (SELECT id FROM archive WHERE moved)"),)
    assert one("UPDATE users SET status = (SELECT s FROM t WHERE t.id = 1)").destroys[0].where is None


def test_data_modifying_with_queries_upserts_and_merge_destroy_too() -> None:
    statement = one("WITH gone AS (DELETE FROM log WHERE at < now() - interval '1 year' RETURNING *)"
                    " INSERT INTO log_archive SELECT * FROM gone")
    assert statement.destroys == (Destruction(DestroyKind.DELETE, ("log",), where="at < now() - interval '1 year'"),)
    assert (RE, RE) == (dict(locks(statement.text))[("log",)], dict(locks(statement.text))[("log_archive",)])
    assert one("INSERT INTO t (k, v) VALUES (1, 2) ON CONFLICT (k) DO UPDATE SET v = excluded.v").destroys == (
        Destruction(DestroyKind.UPSERT, ("t",), ("v",)),)
    assert one("INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING").destroys == ()
    assert one("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET v = s.v").destroys == (
        Destruction(DestroyKind.MERGE, ("t",), ("v",)),)


def test_statements_that_destroy_nothing() -> None:
    for text in ("SELECT * FROM users", "INSERT INTO t VALUES (1)", "CREATE INDEX i ON t (c)",
                 "ALTER TABLE t ADD COLUMN c int", "ALTER TABLE t ALTER COLUMN c DROP NOT NULL",
                 "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END"):
        assert one(text).destroys == (), text


# --- locks ---------------------------------------------------------------------------------------


def test_lock_modes_by_statement() -> None:
    assert locks("DROP TABLE a, b") == [(("a",), AE), (("b",), AE)]
    assert locks("TRUNCATE a") == [(("a",), AE)]
    assert locks("ALTER TABLE users DROP COLUMN x") == [(("users",), AE)]
    assert locks("CREATE INDEX i ON app.t (c)") == [(("app", "t"), SHARE)]
    assert locks("CREATE UNIQUE INDEX CONCURRENTLY i ON t (c)") == [(("t",), SUE)]
    assert locks("UPDATE t SET a = 1 FROM u WHERE t.id = u.id") == [(("t",), RE), (("u",), AS)]
    assert locks("DELETE FROM t WHERE id IN (SELECT id FROM u)") == [(("t",), RE), (("u",), AS)]
    assert locks("INSERT INTO t SELECT * FROM u") == [(("t",), RE), (("u",), AS)]
    assert locks("SELECT * FROM a JOIN b USING (id)") == [(("a",), AS), (("b",), AS)]
    assert locks("WITH c AS (SELECT 1) SELECT * FROM c, d") == [(("d",), AS)]  # a CTE is no table
    assert locks("SELECT * FROM a, b FOR UPDATE OF a") == [(("a",), RS), (("b",), AS)]
    assert locks("ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (u) REFERENCES app.users (id) NOT VALID") == [
        (("orders",), SRE), (("app", "users"), SRE)]
    assert locks("ALTER TABLE orders ADD COLUMN u int REFERENCES users") == [(("orders",), AE), (("users",), SRE)]
    assert locks("ALTER TABLE t ALTER c SET STATISTICS 100, VALIDATE CONSTRAINT k") == [(("t",), SUE)]
    assert locks("ALTER TABLE t ALTER c SET STATISTICS 100, ADD COLUMN d int") == [(("t",), AE)]  # the strongest
    assert locks("ALTER TABLE t DISABLE TRIGGER ALL") == [(("t",), SRE)]
    assert locks("ALTER TABLE t SET (fillfactor = 70, autovacuum_enabled = off)") == [(("t",), SUE)]
    assert locks("CREATE TRIGGER tr AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()") == [(("t",), SRE)]
    assert locks("LOCK TABLE a IN SHARE ROW EXCLUSIVE MODE") == [(("a",), SRE)]
    assert locks("LOCK a") == [(("a",), AE)]
    assert locks("VACUUM FULL t") == [(("t",), AE)]
    assert locks("REFRESH MATERIALIZED VIEW CONCURRENTLY mv") == [(("mv",), LockMode.EXCLUSIVE)]
    assert locks("CREATE TABLE c (id int, u int REFERENCES users, LIKE tmpl)") == [(("users",), SRE), (("tmpl",), AS)]


def test_only_non_transactional_statements_say_so() -> None:
    script = ("CREATE INDEX CONCURRENTLY i ON t (c); DROP INDEX CONCURRENTLY j; REINDEX TABLE CONCURRENTLY t;"
              " VACUUM t; ALTER TABLE p DETACH PARTITION p1 CONCURRENTLY;"
              " CREATE INDEX k ON t (c); ANALYZE t; DROP INDEX l; SELECT 1")
    assert [s.transactional for s in parse_script(script)] == [False] * 5 + [True] * 4


def test_lock_modes_follow_the_conflict_table() -> None:
    assert AE.blocks_reads and AE.blocks_writes
    assert SHARE.blocks_writes and not SHARE.blocks_reads
    assert SUE.conflicts_with(SUE) and not SUE.blocks_writes and not SUE.blocks_reads
    assert SRE.blocks_writes and not SRE.blocks_reads
    assert all(a.conflicts_with(b) == b.conflicts_with(a) for a in LockMode for b in LockMode)  # symmetric
    assert AE.pg_locks_mode == "AccessExclusiveLock" and SRE.sql == "SHARE ROW EXCLUSIVE"


def test_effects_view_for_the_dry_run_counts() -> None:
    assert effects("WITH x AS (SELECT 1) DELETE FROM t WHERE id IN (SELECT * FROM x)").command == "DELETE"
    assert effects("UPDATE t SET a = 1 FROM u").relations == [("t",), ("u",)]


# --- against a real server: what the backend holds after the statement ---------------------------

SCHEMA = """
CREATE TABLE users (id int PRIMARY KEY, email text, status text);
CREATE TABLE orders (id int PRIMARY KEY, user_id int CONSTRAINT orders_user_fk REFERENCES users, total int);
CREATE TABLE notes (id int, body text);
CREATE INDEX notes_body_idx ON notes (body);
CREATE TABLE parts (k int) PARTITION BY LIST (k);
CREATE TABLE part1 (k int);
CREATE MATERIALIZED VIEW mv AS SELECT count(*) FROM users;
CREATE FUNCTION noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
ALTER TABLE notes ADD CONSTRAINT notes_id_positive CHECK (id > 0) NOT VALID;
"""

CASES = [
    "DROP TABLE orders",  # its foreign key to users: ACCESS EXCLUSIVE on users too (catalog)
    "DROP TABLE users CASCADE",  # orders' foreign key to it goes: orders locked too (catalog)
    "ALTER TABLE orders DROP CONSTRAINT orders_user_fk",  # the referenced table too (catalog)
    "DROP INDEX notes_body_idx",  # and its table (catalog)
    "TRUNCATE users CASCADE",  # and orders, which references it (catalog)
    "ALTER TABLE notes ADD CONSTRAINT notes_fk FOREIGN KEY (id) REFERENCES users (id)",
    "ALTER TABLE notes DROP COLUMN body",
    "ALTER TABLE users ALTER COLUMN email TYPE varchar(200)",
    "ALTER TABLE notes ALTER COLUMN body SET STATISTICS 200",
    "ALTER TABLE notes VALIDATE CONSTRAINT notes_id_positive",
    "ALTER TABLE orders DISABLE TRIGGER USER",
    "ALTER TABLE notes SET (fillfactor = 80)",
    "ALTER TABLE parts ATTACH PARTITION part1 FOR VALUES IN (1)",
    "ALTER INDEX notes_body_idx RENAME TO notes_body_idx2",
    "ALTER TABLE notes RENAME COLUMN body TO text",
    "CREATE INDEX notes_id_idx ON notes (id)",
    "CREATE TRIGGER t BEFORE INSERT ON notes FOR EACH ROW EXECUTE FUNCTION noop()",
    "CREATE TABLE later (id int REFERENCES users)",
    "UPDATE users SET status = 'x' WHERE id IN (SELECT user_id FROM orders)",
    "DELETE FROM notes USING users WHERE notes.id = users.id",
    "INSERT INTO notes SELECT id, email FROM users",
    "SELECT * FROM users JOIN orders ON orders.user_id = users.id",
    "SELECT * FROM users, notes FOR UPDATE OF users",
    "LOCK TABLE notes IN EXCLUSIVE MODE",
    "REFRESH MATERIALIZED VIEW mv",
    "DROP SCHEMA public CASCADE",  # every table in it (catalog)
]


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(database_url, autocommit=True) as c:
        c.execute(SCHEMA)  # type: ignore[arg-type]  # fixed test DDL
        c.autocommit = False
        yield c


def _held(conn: psycopg.Connection[tuple[object, ...]]) -> set[tuple[int, str]]:
    rows = conn.execute("SELECT relation::oid, mode FROM pg_locks WHERE pid = pg_backend_pid()"
                        " AND locktype = 'relation' AND database = (SELECT oid FROM pg_database"
                        " WHERE datname = current_database())").fetchall()
    return {(int(str(r[0])), str(r[1])) for r in rows}


@pytest.mark.parametrize("text", CASES)
def test_predicted_locks_are_the_ones_postgres_takes(conn: psycopg.Connection[tuple[object, ...]],
                                                     text: str) -> None:
    """Every predicted (relation, mode) is held after the statement, and no stronger mode on those relations."""
    (statement,) = parse_script(text, PgCatalog(conn))  # the catalog is read before the statement runs
    assert statement.locks
    oids = {t.relation: conn.execute("SELECT to_regclass(%s)::oid", (".".join(t.relation),)).fetchone()
            for t in statement.locks}  # before it runs: a dropped relation has no name afterwards
    conn.execute(text)  # type: ignore[arg-type]  # fixed test statements
    held = _held(conn)
    conn.rollback()
    for target in statement.locks:
        row = oids[target.relation]
        assert row is not None and row[0] is not None, target
        oid = int(str(row[0]))
        assert (oid, target.mode.pg_locks_mode) in held, (target, sorted(held))
        strongest = max(BY_PG_NAME[mode] for held_oid, mode in held if held_oid == oid)
        assert strongest == max(t.mode for t in statement.locks if t.relation == target.relation), (
            target, sorted(held))


def test_the_catalog_finds_the_tables_a_drop_locks_through_foreign_keys(
        conn: psycopg.Connection[tuple[object, ...]]) -> None:
    (statement,) = parse_script("DROP TABLE orders", PgCatalog(conn))
    assert statement.locks == (LockTarget(("orders",), AE), LockTarget(("users",), AE, "foreign key of orders"))
    (without,) = parse_script("DROP TABLE orders")
    assert without.locks == (LockTarget(("orders",), AE),)  # no catalog: only what the text says
    (truncate,) = parse_script("TRUNCATE users CASCADE", PgCatalog(conn))
    assert [d.relation for d in truncate.destroys] == [("users",), ("orders",)]
    assert truncate.destroys[1].via == "foreign key to users"
