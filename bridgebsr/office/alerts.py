"""Telling the operators when the machinery breaks: one line to the Apprise tag `operators`.

The Prefect automations (`flows/automations.py`) start the `operator-alert` flow when a run of
ours fails or crashes, or when the hourly monitor has not completed for a while; the flow
calls `alert_operators`. The line goes through the post office to every service of the Apprise
config tagged `operators` (chat, webhooks, or `mailtos://` entries of their own), never to the
contacts of the case store, and to the local log when no service carries the tag. It needs no
case store: an alert must still go out when the store is what broke.
"""

from html import escape

from bridgebsr.bootstrap import Runtime
from bridgebsr.office.delivery import post_office
from notifications.post import ChannelResult
from notifications.render import Message

OPERATORS = "operators"


def run_line(*, flow: str, run: str, state: str, link: str | None) -> str:
    """The alert for a run of ours that ended badly: flow, run, state and where to look."""
    where = f": {link}" if link else ""
    return f"bridgebsr: {flow} run '{run}' is {state}{where}"


def note_line(note: str, link: str | None) -> str:
    """The alert for anything else the automations notice (a monitor gone silent)."""
    where = f": {link}" if link else ""
    return f"bridgebsr: {note}{where}"


def alert_operators(rt: Runtime, line: str) -> list[ChannelResult]:
    """Send `line` to the services tagged `operators`; the local log when none is."""
    message = Message(line, lambda suffix: escape(line) if suffix == "html" else line)
    return post_office(rt).deliver(
        to=OPERATORS, tags=[OPERATORS], message=message, allowed=frozenset({"chat"})
    )
