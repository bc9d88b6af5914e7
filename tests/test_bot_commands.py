"""Parsing `/rollback ...` and the approval rules: pure, no Slack, no Redis."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot import approval, messages, verbs
from bot.approval import Refusal
from bot.commands import Command, CommandError, parse
from bot.plans import DryRunPlan, summarize
from bot.verbs import Who
from core.config import Policy
from core.prechecks import PreviewCheck, RepairPlanCheck, RestoredRelation, UndoCheck
from core.requests import Request, RequestStatus

ONE = ["prod"]
TWO = ["prod", "staging"]
V1, V2 = "2025_10_20_120001", "2025_10_20_150000"


def versions_for(target: str) -> set[str]:
    return {V1, V2}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", Command(verb="help")),
        ("help", Command(verb="help")),
        ("status", Command(verb="status", target="prod")),
        (f"dry-run {V1}", Command(verb="dry-run", target="prod", version=V1)),
        (f"DRY-RUN {V1} prod", Command(verb="dry-run", target="prod", version=V1)),
        (f"dryrun prod {V1}", Command(verb="dry-run", target="prod", version=V1)),
        ("execute", Command(verb="execute", target="prod")),
        ("backup prod", Command(verb="backup", target="prod")),
        ("backups", Command(verb="backups", target="prod")),
        ("verify", Command(verb="verify", target="prod")),
        ("history", Command(verb="history", target="prod")),
        ("restore prod-2025.dump", Command(verb="restore", target="prod", backup="prod-2025.dump")),
        ("cancel", Command(verb="cancel")),
        ("cancel rb-7k3f9q", Command(verb="cancel", request_id="RB-7K3F9Q")),
        ("report RB-7K3F9Q", Command(verb="report", request_id="RB-7K3F9Q")),
    ],
)
def test_single_target_is_implicit(text: str, expected: Command) -> None:
    assert parse(text, ONE, versions_for) == expected


def test_several_targets_write_verbs_need_one_read_verbs_mean_all() -> None:
    for text in ("execute", f"dry-run {V1}", "backup", "restore x.dump"):
        with pytest.raises(CommandError) as err:
            parse(text, TWO)
        assert "`prod`" in str(err.value) and "`staging`" in str(err.value) and "\n" not in str(err.value)
    assert parse("status", TWO) == Command(verb="status", target=None)
    assert parse("history staging", TWO) == Command(verb="history", target="staging")


@pytest.mark.parametrize(
    ("text", "must_contain"),
    [
        ("stauts", "Did you mean `status`"),
        ("dry_runn 2025_10_20_120001", "Did you mean `dry-run`"),
        ("excute", "Did you mean `execute`"),
        ("xyzzy", "/rollback help"),
        ("dry-run", "needs a version"),
        ("dry-run 2025-10-20", "is not a migration version"),
        ("dry-run 2025_10_20_999999 prod", "Unknown version `2025_10_20_999999`"),
        ("dry-run 2025_10_20_120001 prdo", "Did you mean `prod`"),
        ("status nowhere", "Unknown target `nowhere`"),
        ("execute 2025_10_20_120001 prod", "does not take"),
        ("restore", "needs a backup"),
        ("cancel prod", "does not take"),
    ],
)
def test_bad_input_is_one_line_with_usage_or_suggestion(text: str, must_contain: str) -> None:
    with pytest.raises(CommandError) as err:
        parse(text, TWO, versions_for)
    message = str(err.value)
    assert must_contain in message and "\n" not in message


def test_no_targets_configured() -> None:
    with pytest.raises(CommandError, match="No target is configured"):
        parse("status", [])


def test_plan_summary_reads_a_dry_run_report_or_a_bare_plan() -> None:
    report = {"dry_run": True, "plan": {"hash": "h", "to": V1, "versions": [V2]}, "warnings": ["drops 3 rows"]}
    plan = summarize("prod", report)
    assert (plan.hash, plan.to_version, plan.versions, plan.warnings) == ("h", V1, (V2,), ("drops 3 rows",))
    bare = summarize("prod", {"hash": "h2", "to": V1, "versions": [{"version": V2}]})
    assert bare.versions == (V2,) and not bare.empty
    assert summarize("prod", {"hash": "h3", "to": V2, "versions": []}).empty


def test_a_dry_run_is_read_once_with_its_sql_and_where_it_was_answered() -> None:
    saved = {"plan": {"hash": "h", "to": V1, "versions": [V2],
                      "steps": [{"version": V2, "name": "add_col", "sql": " ALTER TABLE t DROP COLUMN c; "}]},
             "source": {"channel": "C1", "thread_ts": "17.5"}, "net": "escrow"}
    dry_run = DryRunPlan.from_dict(saved)
    assert dry_run.sql == f"-- {V2} add_col\nALTER TABLE t DROP COLUMN c;\n"
    assert (dry_run.source_channel, dry_run.source_thread_ts, dry_run.net) == ("C1", "17.5", "escrow")
    bare = DryRunPlan.from_dict({"hash": "h2", "to": V1, "versions": [V2]})
    assert bare.sql is None and bare.source_thread_ts is None and bare.summary("prod").versions == (V2,)


def test_an_undo_or_repair_check_not_shaped_as_one_is_a_refusal() -> None:
    undo = UndoCheck.from_dict({"ok": True, "hash": "h", "versions": [V2],
                                "restored": [{"relation": "t", "kind": "column", "rows": 3}]})
    assert (undo.ok, undo.hash, undo.versions, undo.restored) == (True, "h", (V2,), (RestoredRelation("t", "column", 3),))
    assert not UndoCheck.from_dict("boom").ok and not UndoCheck.from_dict({"ok": "yes"}).ok
    assert UndoCheck.from_dict({"ok": False, "error": "no escrow"}).error == "no escrow"
    repair = RepairPlanCheck.from_dict({"ok": True, "text": "run 2 statements", "hash": "r"})
    assert (repair.ok, repair.text, repair.hash) == (True, "run 2 statements", "r")
    assert RepairPlanCheck.from_dict(None) == RepairPlanCheck(ok=False)
    assert RepairPlanCheck.from_dict({"ok": False, "error": "unknown version"}).error == "unknown version"


NOW = 1_800_000_000.0
POLICY = Policy(approvers=("U_DAVE",), approver_group="S_DBA")


def request(**kw: object) -> Request:
    values: dict[str, object] = dict(id="RB-AAAAAA", kind="rollback", target="prod", channel="C_INCIDENT",
                                     thread_ts="1.0", requester="U_ALICE", status=RequestStatus.PENDING,
                                     created_at=NOW, expires_at=NOW + 900)
    values.update(kw)
    return Request(**values)  # type: ignore[arg-type]


def test_approval_rules() -> None:
    req = request()
    assert approval.may_approve(req, "U_DAVE", "C_INCIDENT", NOW, POLICY) is None
    assert approval.may_approve(req, "U_BOB", "C_INCIDENT", NOW, POLICY, group_members=["U_BOB"]) is None
    assert approval.may_approve(req, "U_ALICE", "C_INCIDENT", NOW, POLICY, ["U_ALICE"]) is Refusal.SELF_APPROVAL
    assert approval.may_approve(req, "U_CAROL", "C_INCIDENT", NOW, POLICY, ["U_BOB"]) is Refusal.NOT_APPROVER
    assert approval.may_approve(req, "U_DAVE", "C_OTHER", NOW, POLICY) is Refusal.WRONG_CHANNEL
    assert approval.may_approve(req, "U_DAVE", "C_INCIDENT", NOW + 900, POLICY) is Refusal.EXPIRED
    decided = request(status=RequestStatus.APPROVED)
    assert approval.may_approve(decided, "U_DAVE", "C_INCIDENT", NOW, POLICY) is Refusal.ALREADY_DECIDED
    # The requester may withdraw (reject/cancel); a non-approver may not.
    assert approval.may_reject(req, "U_ALICE", "C_INCIDENT", NOW, POLICY) is None
    assert approval.may_reject(req, "U_CAROL", "C_INCIDENT", NOW, POLICY) is Refusal.NOT_APPROVER
    assert approval.may_cancel(req, "U_ALICE", "C_INCIDENT", NOW, POLICY) is None
    assert approval.may_cancel(req, "U_CAROL", "C_INCIDENT", NOW, POLICY) is Refusal.NOT_ALLOWED_TO_CANCEL
    assert approval.needs_group_lookup("U_BOB", POLICY) and not approval.needs_group_lookup("U_DAVE", POLICY)


def test_request_access_rules() -> None:
    open_policy = Policy()
    assert approval.may_request("U_ANY", "C_ANY", open_policy) is None
    strict = Policy(channels=("C_INCIDENT",), requesters=("U_ALICE",))
    assert approval.may_request("U_ALICE", "C_INCIDENT", strict) is None
    assert approval.may_request("U_ALICE", "C_RANDOM", strict) is Refusal.CHANNEL_NOT_ALLOWED
    assert approval.may_request("U_CAROL", "C_INCIDENT", strict) is Refusal.REQUESTER_NOT_ALLOWED


# -- the verb table (issue 9) and the wording (issue 8) -------------------------------------------------


def test_every_verb_and_alias_parses_from_the_table() -> None:
    for verb in verbs.VERBS:
        for word in (verb.name, *verb.aliases):
            args = " ".join({"version": V1, "backup": "x.dump", "state": "on", "request_id": "RB-7K3F9Q",
                             "pid": "12345", "watch": "stop",
                             "tables": "users", "snapshot": "1234"}[a.name]
                            for a in verb.arguments if a.required)
            assert parse(f"{word.upper()} {args}", ONE, versions_for).verb == verb.name


def test_maintenance_parses_state_in_any_order() -> None:
    assert parse("maintenance OFF", ONE) == Command(verb="maintenance", target="prod", state="off")
    assert parse("maintenance staging on", TWO) == Command(verb="maintenance", target="staging", state="on")
    with pytest.raises(CommandError, match="say which one"):
        parse("maintenance on", TWO)
    with pytest.raises(CommandError, match="does not take `on`"):
        parse("status on", TWO)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("dry-run nonsense", "`nonsense` is not a migration version: versions look like 2025_10_20_120001"),
        ("dry-run 20251020 prod", "`20251020` is not a migration version"),
        ("dry-run prdo", "Did you mean `prod`"),  # a typo of a target is still called one
        ("maintenance sideways", "`sideways` is not a maintenance state: say `on` or `off`"),
        ("restore ../etc/passwd", "`../etc/passwd` is not a backup name"),
        ("cancel nope", "`cancel` does not take `nope`"),
    ],
)
def test_a_parse_error_names_the_argument_and_its_shape(text: str, expected: str) -> None:
    with pytest.raises(CommandError) as err:
        parse(text, ONE, versions_for)
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_a_version_is_checked_for_a_real_date_when_the_folder_is_out_of_sight() -> None:
    assert parse(f"dry-run {V1}", ONE).version == V1
    with pytest.raises(CommandError, match="is not a migration version"):
        parse("dry-run 2025_02_30_120000", ONE)  # no folder to look in, and no 30 February


def test_escape_is_idempotent_and_covers_mrkdwn() -> None:
    assert messages.escape("<version> & <@U1>") == "&lt;version&gt; &amp; &lt;@U1&gt;"
    assert messages.escape(messages.escape("a < b & c")) == messages.escape("a < b & c")
    assert messages.escape("&lt;already&gt; &amp;") == "&lt;already&gt; &amp;"


def test_usage_and_help_come_from_the_table_escaped() -> None:
    for verb in verbs.VERBS:
        assert messages.code(verbs.usage(verb)) in messages.verb_help(verb.name)
    assert "<" not in messages.help_text() and "&lt;version&gt;" in messages.verb_help("dry-run")
    assert verbs.usage(verbs.verb("cancel")) == "/rollback cancel [RB-XXXXXX]"
    assert verbs.usage(verbs.verb("maintenance")) == "/rollback maintenance on|off [target]"


def test_bot_texts_give_no_command_line_flags() -> None:
    req = request(status=RequestStatus.PENDING)
    texts = [messages.no_worker("rollback"), messages.queue_unreachable(), messages.no_plan("prod"),
             messages.empty_plan("prod"), messages.help_text(), messages.no_targets(),
             messages.backup_check_timed_out("prod", "x.dump", 60), messages.request_text(req),
             messages.target_busy(req, None)]
    for text in texts:
        # the bot's own flags (`--overwrite`, `--new-droplet`) are words of a verb, not the CLI's
        assert not re.search(r"(^|\s|`)--(?!overwrite|new-droplet)[a-z]", text), text
        assert not re.search(r"<(?![@!]|http)", text), text  # only mentions and links are Slack tokens


def test_maintenance_rule() -> None:
    latest = request(status=RequestStatus.FAILED)
    assert approval.may_switch_maintenance(latest, "U_ALICE", POLICY) is None  # its requester
    assert approval.may_switch_maintenance(latest, "U_DAVE", POLICY) is None  # an approver
    assert approval.may_switch_maintenance(None, "U_BOB", POLICY, ["U_BOB"]) is None  # by the group
    assert approval.may_switch_maintenance(latest, "U_CAROL", POLICY) is Refusal.NOT_ALLOWED_MAINTENANCE
    assert approval.may_switch_maintenance(None, "U_ALICE", POLICY) is Refusal.NOT_ALLOWED_MAINTENANCE
    strict = Policy(channels=("C_INCIDENT",), requesters=("U_ALICE",), approvers=("U_DAVE",))
    assert approval.may_request("U_DAVE", "C_INCIDENT", strict, Who.REQUESTER_OR_APPROVER) is None
    assert approval.may_request("U_DAVE", "C_INCIDENT", strict) is Refusal.REQUESTER_NOT_ALLOWED
    assert approval.may_request("U_DAVE", "C_RANDOM", strict, Who.REQUESTER_OR_APPROVER) is Refusal.CHANNEL_NOT_ALLOWED


WORDS = st.sampled_from(["status", "dry-run", "execute", "restore", "maintenance", "cancel", "report", "help",
                         "on", "off", "prod", "staging", V1, V2, "RB-7K3F9Q", "x.dump", "<!channel>", "&", "--to"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(WORDS, st.text(min_size=1, max_size=12)), max_size=5))
def test_any_input_parses_or_gets_one_escaped_line(words: list[str]) -> None:
    text = " ".join(words)
    try:
        command = parse(text, TWO, versions_for)
    except CommandError as err:
        message = str(err)
        assert message and "\n" not in message
        assert not re.search(r"<(?![@!]|http)", message)  # user text never becomes a link or a mention
        assert "<!" not in message
    else:
        assert verbs.lookup(command.verb) is not None


# -- help for a person under stress (issue 18 item 6) ---------------------------------------------------


def _help_lines() -> list[str]:
    return messages.help_text().splitlines()


def test_help_lists_the_main_path_first_then_the_playbooks_steps_in_order() -> None:
    lines = _help_lines()
    verb_lines = [line for line in lines if line.startswith("`")]
    assert [line.split("`")[1] for line in verb_lines[:3]] == ["status", "dry-run", "execute"]
    headers = [line.strip("*") for line in lines[1:] if line.startswith("*") and line.endswith("*")]
    assert headers == ["Assess", "Protect", "Roll back", "Recover", "After"]
    assert lines.index(messages.MAIN_PATH_TITLE) < lines.index("*Assess*")
    # each verb sits under its own step's header
    current = None
    for line in lines[1:]:
        if line.startswith("*") and line.endswith("*"):
            current = line.strip("*")
        elif line.startswith("`") and current is not None:
            verb = verbs.verb(line.split("`")[1])
            assert verb.group is None or verb.group.value == current, line


def test_help_shows_every_verb_exactly_once_on_one_short_line() -> None:
    named = [line.split("`")[1] for line in _help_lines() if line.startswith("`")]
    assert sorted(named) == sorted(v.name for v in verbs.VERBS)
    for line in _help_lines():
        if line.startswith("`"):
            assert len(line) <= 72, line


@pytest.mark.parametrize("verb", verbs.VERBS, ids=lambda v: v.name)
def test_help_of_each_verb_gives_its_usage_and_an_example(verb: verbs.Verb) -> None:
    answer = messages.verb_help(verb.name)
    assert messages.code(verbs.usage(verb)) in answer
    assert f"Example: {messages.code(verb.example)}" in answer
    assert verb.example.startswith(f"/rollback {verb.word} ")
    assert parse(verb.example.removeprefix("/rollback "), TWO + ["prod-restored"]).verb == verb.name  # it runs


def test_help_of_an_unknown_verb_is_one_line() -> None:
    answer = messages.verb_help("rolback")
    assert "\n" not in answer and "No verb `rolback`" in answer and "Did you mean `rollback`" not in answer
    assert "`/rollback help` lists them" in answer
    assert parse("help rolback", ONE) == Command(verb="help", topic="rolback")


def test_snapshot_restore_with_new_droplet_is_its_own_verb_and_kind() -> None:
    plain = parse("snapshot-restore 123 prod", TWO)
    assert plain == Command(verb="snapshot-restore", target="prod", snapshot="123")
    new = parse("snapshot-restore 123 --new-droplet restored-db prod", TWO)
    assert new == Command(verb="snapshot-restore --new-droplet", target="prod", snapshot="123", new_name="restored-db")
    assert parse("snapshot-restore --new-droplet 123", ONE).new_name is None
    assert verbs.verb(new.verb).approval is not verbs.verb(plain.verb).approval
    assert "in place" in verbs.verb("snapshot-restore").help
    with pytest.raises(CommandError, match="does not take `bad_name!`.*--new-droplet") as err:
        parse("snapshot-restore 123 --new-droplet bad_name! prod", TWO)
    assert "\n" not in str(err.value)


def test_a_restore_summary_names_what_the_manifest_says_of_the_backup() -> None:
    ours = messages.restore_summary("prod", "b1.dump", {"created_at": "2026-01-02T03:04", "size_bytes": 2048,
                                                        "sha256": "abcdef0123456789"})
    assert ours == ("restore b1.dump (taken 2026-01-02T03:04, 2.0 KB, sha256 abcdef012345) into prod; "
                    "checksum and `pg_restore --list` verified when asked")
    by_hand = messages.restore_summary("prod", "x.sql", {"verified_by": "read whole"})
    assert by_hand == "restore x.sql into prod; not ours, read whole when asked"
    assert messages.restore_summary("prod", "b2.dump", None).startswith("restore b2.dump into prod; checksum")
    assert PreviewCheck(ok=True, params={"backup": "b3.dump"}).backup == "b3.dump"
    assert PreviewCheck(ok=True).backup is None
