"""Splitting scripts with PostgreSQL's own parser: what a hand-written lexer gets wrong, errors, locations."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.engine_support import KNOWN_GOOD, NEW_FEATURE_DIR, apply_examples, make_engine, pg_dump
from workers.engine import UnparseableScript, UnsupportedStatement
from workers.engine.sqltext import UnparseableScript as ScriptRefused
from workers.engine.sqltext import parse_script, split_statements, unsupported


def test_nested_dollar_quotes_keep_inner_tags_and_semicolons() -> None:
    script = ("CREATE FUNCTION f() RETURNS text LANGUAGE plpgsql AS $outer$\n"
              "BEGIN EXECUTE $inner$ SELECT ';$in$'; $inner$; RETURN $x$;$x$; END\n"
              "$outer$;\nSELECT 2")
    assert split_statements(script) == [script.split(";\nSELECT")[0], "SELECT 2"]


def test_dollar_quote_tags_are_case_sensitive_and_not_identifiers() -> None:
    # $A$ does not close $a$; a$b$ is an identifier with a dollar, not the start of a quote
    script = "SELECT $a$ one; $A$ two; $a$; SELECT a$b$ FROM t; SELECT 3"
    assert split_statements(script) == ["SELECT $a$ one; $A$ two; $a$", "SELECT a$b$ FROM t", "SELECT 3"]


def test_dollar_quote_tags_may_hold_any_letter() -> None:
    assert split_statements("SELECT $é$ a; b $é$; SELECT $ü_1$;$ü_1$") == ["SELECT $é$ a; b $é$", "SELECT $ü_1$;$ü_1$"]
    # tags of the same length in bytes are still different tags
    assert split_statements("SELECT $é$ a; $ü$; b $é$; SELECT 'ö'") == ["SELECT $é$ a; $ü$; b $é$", "SELECT 'ö'"]


def test_non_ascii_text_keeps_character_offsets() -> None:
    script = "-- ünïcödé; header\nSELECT 'ä;ö' AS \"ü;\";\n/* é; */ UPDATE tëst SET ä = 'ß' WHERE ö = 'é;';\nSELECT 1"
    found = parse_script(script)
    assert [script[s.location:s.location + len(s.text)] for s in found] == [s.text for s in found] == [
        "SELECT 'ä;ö' AS \"ü;\"", "UPDATE tëst SET ä = 'ß' WHERE ö = 'é;'", "SELECT 1"]
    assert [s.line for s in found] == [2, 3, 4]
    assert found[1].destroys[0].where == "ö = 'é;'" and found[1].destroys[0].columns == ("ä",)
    with pytest.raises(ScriptRefused) as caught:
        parse_script("SELECT 'é';\nSELECT 'ü' FROM t WHERE ä = = 1")
    assert (caught.value.line, caught.value.pg_message) == (2, 'syntax error at or near "="')


def test_begin_atomic_bodies_with_case_end_and_nested_blocks_stay_whole() -> None:
    # CASE ... END inside the body would end a lexer's BEGIN ATOMIC tracking too early
    body = ("CREATE FUNCTION g(x int) RETURNS int LANGUAGE sql BEGIN ATOMIC\n"
            "  SELECT CASE WHEN x > 0 THEN 1 ELSE 0 END;\n  SELECT 2;\nEND")
    assert split_statements(f"{body};\nDROP TABLE t;") == [body, "DROP TABLE t"]


def test_begin_transaction_and_end_are_statements_not_atomic_blocks() -> None:
    assert split_statements("BEGIN; SELECT 1; END; COMMIT") == ["BEGIN", "SELECT 1", "END", "COMMIT"]


def test_escape_strings_with_escaped_quotes_and_backslashes() -> None:
    script = r"INSERT INTO t VALUES (E'it\'s; \\', 'plain\', E'\\'); SELECT 'a''b;c'"
    assert split_statements(script) == [r"INSERT INTO t VALUES (E'it\'s; \\', 'plain\', E'\\')", "SELECT 'a''b;c'"]


def test_comments_inside_statements_are_kept_and_semicolons_in_them_ignored() -> None:
    script = ("UPDATE users -- set them all; really\n   SET status = 'x' /* a; /* nested; */ b */\n  WHERE id = 1;\n"
              "-- only a comment; here\n/* and; here */\nDELETE FROM t")
    assert split_statements(script) == [
        "UPDATE users -- set them all; really\n   SET status = 'x' /* a; /* nested; */ b */\n  WHERE id = 1",
        "DELETE FROM t"]


def test_semicolons_in_identifiers_and_unicode_strings() -> None:
    script = 'CREATE TABLE "a;b" ("c;" int); SELECT U&\'d\\0061t;a\' FROM "a;b"; SELECT \'é;ü\''
    assert split_statements(script) == ['CREATE TABLE "a;b" ("c;" int)', "SELECT U&'d\\0061t;a' FROM \"a;b\"",
                                        "SELECT 'é;ü'"]


def test_each_statement_knows_where_it_starts() -> None:
    script = "-- header\n\nSELECT 'é';\n  /* c */ UPDATE t SET a = 1;\n\n\nDROP TABLE x"
    found = parse_script(script)
    assert [(s.line, script[s.location:s.location + len(s.text)]) for s in found] == [
        (3, "SELECT 'é'"), (4, "UPDATE t SET a = 1"), (7, "DROP TABLE x")]


def test_a_byte_order_mark_is_not_part_of_the_first_statement() -> None:
    assert split_statements("\ufeffSELECT 1;") == ["SELECT 1"]


def test_a_script_that_does_not_parse_names_the_line_and_postgres_message() -> None:
    with pytest.raises(ScriptRefused) as caught:
        parse_script("SELECT 1;\n\nALTER TABLE users DROP COLUM x;\nSELECT 2")
    assert (caught.value.problem, caught.value.line) == ("syntax", 3)
    assert caught.value.pg_message == 'syntax error at or near "x"'
    with pytest.raises(ScriptRefused, match="unterminated quoted string"):
        parse_script("SELECT 1;\nSELECT 'oops")


def test_psql_meta_commands_are_named_not_reported_as_syntax() -> None:
    for script, line, command in [("\\connect other\nDROP TABLE t;", 1, "\\connect other"),
                                  ("SELECT 1;\n\\set ON_ERROR_STOP on\nSELECT 2;", 2, "\\set ON_ERROR_STOP on"),
                                  ("SELECT count(*) FROM t \\gset\n", 1, "\\gset")]:
        with pytest.raises(ScriptRefused) as caught:
            parse_script(script)
        assert (caught.value.problem, caught.value.line, caught.value.statement) == ("psql_meta", line, command)
    assert split_statements("SELECT E'\\\\connect'; SELECT 1") == ["SELECT E'\\\\connect'", "SELECT 1"]


def test_copy_from_stdin_followed_by_its_data_is_refused_as_copy() -> None:
    with pytest.raises(ScriptRefused) as caught:
        parse_script("CREATE TABLE i (id int);\nCOPY i (id) FROM stdin;\n1\n2\n\\.\n")
    assert (caught.value.problem, caught.value.statement, caught.value.line) == (
        "copy_from_stdin", "COPY i (id) FROM stdin", 2)
    assert unsupported("COPY (SELECT 1) TO STDOUT") == "copy_to_stdout"


_IDENT = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True).filter(
    lambda s: s not in {"select", "from", "where", "table", "as", "end", "do", "to", "in", "on", "or", "and",
                        "not", "is", "null", "true", "false", "all", "any", "case", "when", "then", "else",
                        "into", "union", "user", "order", "group", "limit", "offset", "for", "with",
                        "create", "check", "default", "primary", "references", "unique", "only", "array"})
_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)


@st.composite
def _statement(draw: st.DrawFn) -> str:
    name = draw(_IDENT)
    value = draw(_TEXT)
    quoted = "'" + value.replace("'", "''") + "'"
    tag = draw(st.sampled_from(["", "q", "body"]))
    dollar = f"${tag}${value.replace('$', '')}${tag}$"
    comment = draw(st.sampled_from(["", " -- c;\n", " /* c; */ "]))
    # Text for the parser only: never executed.
    return draw(st.sampled_from([
        f"SELECT {quoted} AS {name}",
        f'UPDATE "{name};x" SET v = {quoted}{comment}WHERE id = 1',  # noqa: S608
        f"DELETE FROM {name} WHERE v = {dollar}",  # noqa: S608
        f"CREATE FUNCTION {name}() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT {quoted}; END",
        f"INSERT INTO {name} VALUES ({quoted}, {dollar})",  # noqa: S608
    ]))


@given(st.lists(_statement(), min_size=1, max_size=6), st.sampled_from([";", ";\n", " ;\n\n-- gap;\n"]))
def test_splitting_a_join_of_statements_gives_them_back(statements: list[str], separator: str) -> None:
    script = separator.join(statements)
    assert split_statements(script) == statements
    assert [script[s.location:s.location + len(s.text)] for s in parse_script(script)] == statements


# --- the engine refuses such scripts at plan time, before anything runs ---------------------------


def test_an_unparseable_down_script_is_refused_by_plan_dry_run_and_rollback(database_url: str,
                                                                             tmp_path: Path) -> None:
    migrations = apply_examples(database_url, tmp_path, seed=True)
    down = migrations / NEW_FEATURE_DIR / "down.sql"
    down.write_text("DROP TABLE new_feature_table;\n\nALTER TABLE users DROP COLUM new_field;\n")
    before = pg_dump(database_url)
    engine = make_engine(database_url, migrations)
    expected = (f"{down} line 3 is not valid SQL: PostgreSQL's parser says syntax error at or near \"new_field\"; "
                "fix the script and retry (nothing was run)")
    for call in (engine.plan_rollback, engine.dry_run_rollback, engine.rollback):
        with pytest.raises(UnparseableScript) as caught:
            call(KNOWN_GOOD)
        assert str(caught.value) == expected
    assert pg_dump(database_url) == before
    assert expected in engine.status().warnings


def test_a_psql_meta_command_keeps_its_one_line_refusal(database_url: str, tmp_path: Path) -> None:
    migrations = apply_examples(database_url, tmp_path)
    down = migrations / NEW_FEATURE_DIR / "down.sql"
    down.write_text("DROP TABLE new_feature_table;\n\\connect other\nALTER TABLE users DROP COLUMN new_field;\n")
    before = pg_dump(database_url)
    engine = make_engine(database_url, migrations)
    with pytest.raises(UnsupportedStatement) as caught:
        engine.dry_run_rollback(KNOWN_GOOD)
    assert str(caught.value) == (f"{down}: `\\connect other`: psql meta-commands (\\copy, \\i, \\set ...) are not "
                                 "supported in migration scripts; use plain SQL")
    assert pg_dump(database_url) == before
