"""What the sandbox says to a person: on its page, and in the terminal of `python -m sandbox`."""

from __future__ import annotations

COMMAND_PREFIX = "/rollback"
MENTION_PREFIX = "@rollback"  # `@rollback …` (or `@rollback-bot …`) typed on the page mentions the bot

# -- the page's answers (one line each; shown under the composer) ------------------------------------

PICK_A_PERSON = "pick who you are first"
ONLY_ROLLBACK_COMMANDS = (f"only {COMMAND_PREFIX} commands reach the bot here, e.g. {COMMAND_PREFIX} help "
                          f"(in a thread: {MENTION_PREFIX} help)")
NO_SUCH_THREAD = "that thread is gone; pick another message to reply to"
BOT_NOT_CONNECTED = "the bot is not connected to this page"
BOT_DID_NOT_ANSWER = "the bot did not answer"
BODY_NOT_JSON = f'the request body must be JSON, e.g. {{"user": "U_ALICE", "text": "{COMMAND_PREFIX} help"}}'
BODY_NOT_OBJECT = "the request body must be a JSON object"
NO_WORKER_CONTROL = "this page does not run the worker"
SINCE_NOT_A_NUMBER = "since must be a whole number (the last state's version)"


def http_status(status: int) -> str:
    return f"HTTP {status}"


def not_in_threads(command: str) -> str:
    """Slack's own answer to a slash command typed in a thread, and what to do instead."""
    return f"{command} is not supported in threads: mention the bot instead, e.g. {MENTION_PREFIX} status"


# -- notes only the person sees, in the channel ------------------------------------------------------

def you_ran(text: str) -> str:
    return f"You ran `{text}`"


def bot_did_not_answer(err: object) -> str:
    return f"The bot did not answer ({err}). Is it running?"


def bot_refused(what: str, status: int) -> str:
    return f"The bot refused the {what} (HTTP {status})."


# -- why the sandbox could not start or stopped --------------------------------------------------------

def process_exited(name: str, status: int | None, log_tail: str) -> str:
    return f"the {name} exited with status {status}:\n{log_tail}"


def exit_status(code: int) -> str:
    return f"exit status {code}"


def killed_by(signal_name: str) -> str:
    return f"killed by {signal_name}"


def worker_stopped(how: str) -> str:
    return (f"sandbox: the worker stopped ({how}); the bot and the page keep running. Requests now meet "
            "\"no worker is listening\" (within a minute); restart the worker from the page's header.")


def not_ready(what: str, timeout: float, workdir: object) -> str:
    return f"the {what} did not become ready within {timeout:.0f}s; see {workdir}"


def page_port_busy(port: int, reason: str | None) -> str:
    return f"cannot serve the page on port {port} ({reason}); choose another with --port or SANDBOX_PORT"


def bot_port_busy(port: int) -> str:
    return f"port {port} is in use; choose another with --bot-port"


def another_sandbox(database: str) -> str:
    return (f"another sandbox is running with the database {database} on this server; "
            "stop it first (Ctrl-C in its terminal)")


# -- the terminal of `python -m sandbox` -------------------------------------------------------------

STARTING = "sandbox: starting PostgreSQL, Redis, the example database, a worker and the bot ..."
STOPPING = "sandbox: stopping and removing throwaway data ..."
REAL_SLACK = "sandbox: bot and worker are connected to your Slack workspace (SLACK_BOT_TOKEN is set);"
SOCKET_MODE = "sandbox: the bot uses Socket Mode."
NO_APPROVERS = "sandbox: SANDBOX_APPROVERS (Slack user ids) is empty: every approval will be refused."


def could_not_start(err: object) -> str:
    return f"sandbox: could not start: {err}"


def request_urls(port: int | None) -> str:
    return f"sandbox: point the app's request URLs at this machine's port {port} (/slack/events)."


def hint(version: str) -> str:
    """What to type first: the playbook's scenario, rolling back to `version`."""
    return f"type: {COMMAND_PREFIX} status, then {COMMAND_PREFIX} dry-run {version}"


def in_your_channel(version: str) -> str:
    return "sandbox: in your incident channel, " + hint(version)


def open_page(url: str | None, version: str) -> str:
    return f"sandbox: open {url}\nsandbox: {hint(version)}"


def logs_in(workdir: object) -> str:
    return f"sandbox: logs in {workdir} (or run with --logs); Ctrl-C stops everything"


def stopped_because(err: object) -> str:
    return f"sandbox: {err}"


def unknown_scenario(name: str, known: list[str]) -> str:
    return f"unknown scenario {name!r}; known: {', '.join(known)}"
def rows_lost(users: int) -> str:
    return (f"(scenario 4) The app's bad deploy just deleted {users} users and, by cascade, their projects. "
            "Get them back without losing newer rows: `/rollback backups` names the backup, then "
            "`/rollback recover <backup> users,projects`.")
