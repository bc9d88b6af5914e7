"""The sandbox's people: who can be picked on the page, and who the tests act as."""

from __future__ import annotations

from sandbox.slack_api import SlackUser

ALICE = SlackUser(id="U_ALICE", name="alice", real_name="Alice Example", title="engineer")
BOB = SlackUser(id="U_BOB", name="bob", real_name="Bob Example", title="engineer & approver")
CAROL = SlackUser(id="U_CAROL", name="carol", real_name="Carol Example", title="engineer, not an approver")

SANDBOX_USERS = (ALICE, BOB, CAROL)
APPROVER_GROUP = "S_DBA"
SANDBOX_USERGROUPS = {APPROVER_GROUP: [BOB.id]}
SANDBOX_USERGROUP_HANDLES = {APPROVER_GROUP: "dba"}  # shown for `<!subteam^S_DBA>` mentions
INCIDENT_CHANNEL = "C_INCIDENT"
