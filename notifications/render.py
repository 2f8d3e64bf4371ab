"""Messages from outbox rows: plain text for email, markdown for chat, from editable files."""

from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class Message:
    """What one notice says: a title and the same body as plain text and markdown."""

    title: str
    text: str
    markdown: str


def _action(payload: dict[str, Any]) -> str:
    kind, late = payload.get("item_kind"), int(payload.get("days_late") or 0)
    if kind == "gate":
        if payload.get("step") == "expired":
            return "The deadline has passed: decide now, or the escalation ladder takes over."
        return "Record your decision with `bridgebsr gate approve|reject` or in the Prefect UI."
    if late:
        return "Finish it, or tell the pilot lead what it waits for and when it will be done."
    return "Plan to finish it by the due date, or tell the pilot lead now if it will slip."


def render(payload: dict[str, Any], templates: Path = TEMPLATES) -> Message:
    """Fill the notice templates with one outbox row's payload."""
    late = int(payload.get("days_late") or 0)
    step = str(payload.get("step", ""))
    if step == "expired":
        headline = f"{payload.get('case')}: gate {payload.get('item')} is past its deadline"
    elif late:
        headline = f"{payload.get('case')}: {payload.get('item')} is {late} day(s) late"
    else:
        headline = f"{payload.get('case')}: {payload.get('item')} is due {payload.get('due')}"
    fields = {
        **{k: str(v) for k, v in payload.items()},
        "headline": headline,
        "lateness": f" ({late} day(s) late)" if late else "",
        "action": _action(payload),
    }
    text = Template((templates / "notice.txt").read_text(encoding="utf-8")).safe_substitute(fields)
    markdown = Template((templates / "notice.md").read_text(encoding="utf-8")).safe_substitute(
        fields
    )
    return Message(title=headline, text=text, markdown=markdown)
