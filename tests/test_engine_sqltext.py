"""The SQL lexer: statement splitting and data-loss detection."""

from __future__ import annotations

from workers.engine.sqltext import effects, is_no_transaction, one_line, split_statements, unsupported


def test_split_respects_quotes_dollar_quotes_and_comments() -> None:
    script = """-- header; with a semicolon
    DROP TABLE a;  /* block; /* nested; */ still comment */
    INSERT INTO t VALUES ('it''s; fine', E'back\\'slash;');
    CREATE FUNCTION f() RETURNS void AS $body$ BEGIN PERFORM 1; END $body$ LANGUAGE plpgsql;
    SELECT "odd;name" FROM x;
    -- trailing comment only
    """
    assert split_statements(script) == [
        "DROP TABLE a",
        "INSERT INTO t VALUES ('it''s; fine', E'back\\'slash;')",
        "CREATE FUNCTION f() RETURNS void AS $body$ BEGIN PERFORM 1; END $body$ LANGUAGE plpgsql",
        'SELECT "odd;name" FROM x',
    ]


def test_split_keeps_begin_atomic_bodies_whole() -> None:
    script = "CREATE FUNCTION g() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END; SELECT 3"
    assert split_statements(script) == [
        "CREATE FUNCTION g() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END", "SELECT 3"]


def test_empty_and_comment_only_scripts_have_no_statements() -> None:
    assert split_statements("") == []
    assert split_statements("-- nothing\n/* here */ ;;") == []


def test_drop_table_names_every_table_qualified_or_quoted() -> None:
    eff = effects('DROP TABLE IF EXISTS new_feature_table, app."Weird Name" CASCADE')
    assert eff.dropped_tables == (("new_feature_table",), ("app", "Weird Name"))


def test_alter_table_drop_column_is_found_among_other_actions() -> None:
    eff = effects("ALTER TABLE ONLY Users DROP COLUMN IF EXISTS new_field, ADD COLUMN x int,"
                  " DROP CONSTRAINT c, DROP \"Other\"")
    assert eff.dropped_columns == ((("users",), "new_field"), (("users",), "Other"))


def test_alter_column_drop_default_is_not_a_dropped_column() -> None:
    assert effects("ALTER TABLE users ALTER COLUMN status DROP DEFAULT").dropped_columns == ()


def test_dml_targets_and_truncate() -> None:
    assert effects("UPDATE users SET status = 'active' WHERE status = 'migrated'").target == ("users",)
    assert effects("DELETE FROM public.users WHERE true").target == ("public", "users")
    assert effects("TRUNCATE TABLE a, ONLY b").truncated_tables == (("a",), ("b",))
    assert effects("SELECT 1").command == "SELECT"


def test_no_transaction_marker_must_be_the_first_line() -> None:
    assert is_no_transaction("-- rollback-bot: no-transaction\nCREATE INDEX CONCURRENTLY i ON t (c);")
    assert not is_no_transaction("CREATE INDEX i ON t (c);\n-- rollback-bot: no-transaction")


def test_one_line_squeezes_statements_for_messages() -> None:
    assert one_line("ALTER TABLE users\n   DROP COLUMN new_field -- why\n") == "ALTER TABLE users DROP COLUMN new_field"


def test_relations_name_every_table_a_statement_must_lock() -> None:
    assert effects("ALTER TABLE users DROP COLUMN new_field").relations == [("users",)]
    assert effects("ALTER TABLE projects ADD COLUMN x int").relations == [("projects",)]
    assert effects("DROP TABLE a, b").relations == [("a",), ("b",)]
    assert effects("CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON ONLY app.t (c)").relations == [("app", "t")]
    assert effects("SELECT 1").relations == []


def test_statements_that_stream_through_the_client_are_unsupported() -> None:
    assert unsupported("COPY users (id) FROM stdin") == "copy_from_stdin"
    assert unsupported("copy users from STDIN with (format csv)") == "copy_from_stdin"
    assert unsupported("COPY users TO STDOUT") == "copy_to_stdout"
    assert unsupported("\\copy users from 'users.csv'") == "psql_meta"
    assert unsupported("COPY users FROM '/srv/users.csv'") is None  # server-side file: runs as SQL
    assert unsupported("COPY (SELECT * FROM stdin) TO '/tmp/x'") is None  # a table named stdin
    assert unsupported("INSERT INTO stdin VALUES (1)") is None
