"""Messages from outbox rows: plain text and HTML for email, markdown for chat, from the
editable files in `templates/` (`notice.*` for one notice, `bundle.*` for a daily digest or an
overflow summary). Text from the case store is HTML-escaped in the HTML version.

A folder of the operator's own texts (`use_notice_texts`) replaces the shipped files of the same
name; a text it does not hold is the shipped one."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from datetime import date
from functools import cached_property, lru_cache, partial
from html import escape
from pathlib import Path
from string import Template
from typing import Any

from models.notices import (
    DATE_ANSWERED,
    DATE_ASKED,
    DATE_WITHDRAWN,
    HANDOVER,
    TAKEOVER,
    VOTE_ENTERED,
    NoticePayload,
)

TEMPLATES = Path(__file__).parent / "templates"
BUNDLE_LINES = 100  # items listed in a digest or summary; the rest are counted
_SUFFIXES = ("txt", "md", "html")  # the order of the parts of `_line`
TEXTS = tuple(f"{kind}.{suffix}" for kind in ("notice", "bundle") for suffix in _SUFFIXES)
# The $fields each text is filled with (`_notice`, `_bundle`, `_cover_fields`); a payload's
# optional fields (`baseline`, `run`, `note`) are filled only when the notice has them.
_COVER = frozenset({"cover_text", "cover_md", "cover_html"})
_DOOR = frozenset({"door_text", "door_md", "door_html"})
_NOTICE = frozenset(
    {f.name for f in dataclass_fields(NoticePayload)}
    | {"headline", "due_long", "lateness", "action", "run_text", "run_md"}
    | {"look_text", "look_md", "look_html"}
    | _COVER
    | _DOOR
)
_BUNDLE = frozenset({"headline", "intro", "items"}) | _COVER | _DOOR


@dataclass
class _Texts:
    """The operator's folder of notice texts in this process (None: the shipped texts)."""

    folder: Path | None = None


_texts = _Texts()


def use_notice_texts(folder: Path | None) -> None:
    """Take each notice text found in `folder` instead of the shipped one, from now on in this
    process (None: the shipped texts only)."""
    _texts.folder = folder


def text_path(name: str, templates: Path = TEMPLATES) -> Path:
    """The file text `name` is read from: the operator's, when their folder has it and
    `templates` is the shipped folder, else the one in `templates`."""
    if templates == TEMPLATES and _texts.folder is not None:
        own = _texts.folder / name
        if own.is_file():
            return own
    return templates / name


def known_fields(name: str) -> frozenset[str]:
    """The $fields text `name` (`notice.html`, `bundle.txt`, ...) is filled with."""
    if name.startswith("bundle."):
        return _BUNDLE
    return _NOTICE | {"run_html"} if name.endswith(".html") else _NOTICE


def unknown_fields(path: Path) -> list[str]:
    """The placeholders of the text at `path` that nothing fills (`$nosuch`), and any `$`
    that is no placeholder (write `$$` for a dollar sign), in order of appearance."""
    template = Template(path.read_text(encoding="utf-8"))
    known = known_fields(path.name)
    found: list[str] = []
    for match in template.pattern.finditer(template.template):
        named = match.group("named") or match.group("braced")
        what = f"${named}" if named else None
        if named and named in known:
            continue
        if what is None and match.group("invalid") is not None:
            what = "a lone $ (write $$ for a dollar sign)"
        if what and what not in found:
            found.append(what)
    return found


@dataclass(frozen=True)
class Message:
    """What one message says: a title, and the same body as plain text, markdown and HTML.

    Each body is filled from its template when a channel first reads it, so a message that
    goes only to chat never fills the email's HTML. `fill` takes the template's suffix
    (`txt`, `md` or `html`) and gives that body."""

    title: str
    fill: Callable[[str], str] = field(repr=False, compare=False)

    @cached_property
    def text(self) -> str:
        return self.fill("txt")

    @cached_property
    def markdown(self) -> str:
        return self.fill("md")

    @cached_property
    def html(self) -> str:
        return self.fill("html")


@dataclass(frozen=True)
class Notice:
    """One outbox row's payload, and the Prefect UI run to follow it in (if there is one)."""

    payload: dict[str, Any]
    link: str | None = None
    urgent: bool = False


def _action(payload: dict[str, Any]) -> str:
    kind, late = payload.get("item_kind"), int(payload.get("days_late") or 0)
    step = str(payload.get("step") or "")
    if step.startswith(HANDOVER):
        return (
            "If it is yours now, it is due as shown and its reminders come to you; if it moved "
            "away from you, there is nothing more to do."
        )
    if step.startswith(TAKEOVER):
        return "These are yours from now on: each one's reminders reach you as its dates come."
    if step.startswith(DATE_ASKED):
        number = step.removeprefix(DATE_ASKED)
        return (
            f"Accept or decline it (request #{number}) on your page, or with `bridgebsr requests "
            f"accept|decline {number} --by YOUR-EMAIL`; accepted, the item is rescheduled."
        )
    if step.startswith(DATE_ANSWERED):
        return (
            "Accepted, the item is due on the new date from now on; declined, the date shown "
            "stands."
        )
    if step.startswith(DATE_WITHDRAWN):
        return "There is nothing to answer: the agreed date stands."
    if step == VOTE_ENTERED:
        return (
            "The vote stands in your name. If it is not what you decided, tell the pilot lead "
            "and the coordinator at once."
        )
    if kind == "gate":
        if payload.get("step") == "expired":
            return "The deadline has passed: decide now, or the escalation ladder takes over."
        return "Record your decision with `bridgebsr gate approve|reject` or in the Prefect UI."
    if late:
        return "Finish it, or tell the pilot lead what it waits for and when it will be done."
    return "Plan to finish it by the due date, or tell the pilot lead now if it will slip."


def headline(payload: dict[str, Any]) -> str:
    """The one line that says what a notice is about."""
    late = int(payload.get("days_late") or 0)
    if payload.get("note"):
        return f"{payload.get('case')}: {payload.get('note')}"
    if payload.get("step") == "expired":
        return f"{payload.get('case')}: gate {payload.get('item')} is past its deadline"
    if late:
        return f"{payload.get('case')}: {payload.get('item')} is {late} day(s) late"
    return f"{payload.get('case')}: {payload.get('item')} is due {payload.get('due')}"


def _long_date(value: Any) -> str:
    try:
        return f"{date.fromisoformat(str(value)):%A %d %B %Y}"
    except ValueError:
        return str(value)


@lru_cache(maxsize=64)
def _template(path: Path, modified: int) -> Template:
    return Template(path.read_text(encoding="utf-8"))


def _fill(name: str, templates: Path, fields: dict[str, str]) -> str:
    path = text_path(name, templates)
    # Read again when the project office edits the file (its modification time changes).
    return _template(path, path.stat().st_mtime_ns).safe_substitute(fields)


@dataclass(frozen=True)
class Cover:
    """A message a deputy reads for someone away: whom for, and their last day away."""

    for_whom: str
    until: date | None = None

    @property
    def line(self) -> str:
        """The line the message starts with."""
        until = f"{self.until:%A %d %B %Y}" if self.until else "further notice"
        return f"For {self.for_whom}, who is away until {until}: you are their deputy."


@dataclass(frozen=True)
class Door:
    """Where the reader acts on a message in the partners' door: their personal link (to
    their page), and for a notice about one item, the link straight to it. Both are signed
    for the reader when the message is made, and never stored."""

    page: str
    item: str | None = None


def _door_fields(door: Door | None) -> dict[str, str]:
    """The `door_*` fields: the links to act on a message (email: both; chat: one, short)."""
    if door is None:
        return {"door_text": "", "door_md": "", "door_html": ""}
    page = f'<a href="{escape(door.page)}">your items</a>'
    if door.item is None:
        return {
            "door_text": f"\nYour items: {door.page}\n",
            "door_md": f"\n[Your items]({door.page})",
            "door_html": f"<p>Open {page} in the partners' door.</p>",
        }
    return {
        "door_text": f"\nOpen it: {door.item}\nYour items: {door.page}\n",
        "door_md": f"\n[Open it]({door.item})",
        "door_html": (
            f'<p><a href="{escape(door.item)}">Open it in the partners\' door</a> (or {page}).</p>'
        ),
    }


def render(
    payload: dict[str, Any],
    templates: Path = TEMPLATES,
    link: str | None = None,
    cover: Cover | None = None,
    door: Door | None = None,
) -> Message:
    """Fill the notice templates with one outbox row's payload; with `cover`, for a deputy
    reading it for someone away (a line first in the message, and a note in the title);
    with `door`, the reader's links to act on it."""
    return Message(
        _titled(headline(payload), cover),
        partial(_notice, payload, templates, link, cover, door),
    )


def _titled(title: str, cover: Cover | None) -> str:
    return f"{title} (for {cover.for_whom})" if cover else title


def _cover_fields(cover: Cover | None) -> dict[str, str]:
    """The `cover_*` fields of every template: the deputy's line, or empty."""
    if cover is None:
        return {"cover_text": "", "cover_md": "", "cover_html": ""}
    return {
        "cover_text": f"{cover.line}\n\n",
        "cover_md": f"_{cover.line}_\n\n",
        "cover_html": f"<p><i>{escape(cover.line)}</i></p>\n",
    }


def _notice(
    payload: dict[str, Any],
    templates: Path,
    link: str | None,
    cover: Cover | None,
    door: Door | None,
    suffix: str,
) -> str:
    late = int(payload.get("days_late") or 0)
    fields = {
        **{k: str(v) for k, v in payload.items()},
        "headline": headline(payload),
        "due_long": _long_date(payload.get("due")),
        "lateness": f" ({late} day(s) late)" if late else "",
        "action": _action(payload),
        "run_text": f"\nFollow it in the Prefect UI: {link}\n" if link else "",
        "run_md": f"\n[Follow it in the Prefect UI]({link})" if link else "",
    }
    look = str(payload.get("to_look_at") or "")
    fields["look_text"] = f"\nBefore deciding, look at: {look}\n" if look else ""
    fields["look_md"] = f"\n**Before deciding, look at:** {look}\n" if look else ""
    if suffix == "html":
        fields = {k: escape(v) for k, v in fields.items()}
        fields["run_html"] = (
            f'<p>Follow it in the Prefect UI: <a href="{escape(link)}">{escape(link)}</a></p>'
            if link
            else ""
        )
        fields["look_html"] = (
            f"<p><b>Before deciding, look at:</b> {escape(look)}</p>" if look else ""
        )
    fields |= _cover_fields(cover) | _door_fields(door)
    return _fill(f"notice.{suffix}", templates, fields)


def _line(notice: Notice) -> tuple[str, str, str]:
    p = notice.payload
    mark = "URGENT " if notice.urgent else ""
    what = f"{headline(p)} ({p.get('item_title')}, step {p.get('step')})"
    text = f"- {mark}{what}" + (f"\n  {notice.link}" if notice.link else "")
    md = f"- {'**urgent** ' if mark else ''}{what}" + (
        f" [run]({notice.link})" if notice.link else ""
    )
    html = (
        f"<li>{'<b>urgent</b> ' if mark else ''}{escape(what)}"
        + (f' <a href="{escape(notice.link)}">run</a>' if notice.link else "")
        + "</li>"
    )
    return text, md, html


def render_bundle(
    kind: str,
    notices: Sequence[Notice],
    *,
    day: date,
    cap: int = 0,
    templates: Path = TEMPLATES,
    cover: Cover | None = None,
    door: Door | None = None,
) -> Message:
    """One message for many notices: the daily `digest` of what is not urgent, or the
    `overflow` summary of what is past the recipient's daily cap (`cover`: as for `render`;
    `door`: the reader's personal link, to see them all)."""
    count = len(notices)
    if kind == "digest":
        title = f"Daily digest for {day:%a %d %b %Y}: {count} notice(s)"
        intro = "What needs you, gathered into one message as you asked."
    else:
        title = f"{count} more notice(s) on {day:%a %d %b %Y}, past your daily limit of {cap}"
        intro = (
            f"You had {cap} messages today, the most you asked for; "
            "these came after, gathered here instead of one message each."
        )
    return Message(
        _titled(title, cover),
        partial(_bundle, title, intro, tuple(notices), templates, cover, door),
    )


def _bundle(
    title: str,
    intro: str,
    notices: Sequence[Notice],
    templates: Path,
    cover: Cover | None,
    door: Door | None,
    suffix: str,
) -> str:
    count = len(notices)
    ordered = sorted(notices, key=lambda n: (not n.urgent, str(n.payload.get("case"))))
    lines = [_line(n) for n in ordered[:BUNDLE_LINES]]
    if count > BUNDLE_LINES:
        more = f"... and {count - BUNDLE_LINES} more: `bridgebsr notifications list`"
        lines.append((f"- {more}", f"- {more}", f"<li>{escape(more)}</li>"))
    part = _SUFFIXES.index(suffix)
    fields = {"headline": title, "intro": intro}
    if suffix == "html":
        fields = {k: escape(v) for k, v in fields.items()}
    items = "\n".join(line[part] for line in lines)
    fields |= _cover_fields(cover) | _door_fields(door)
    return _fill(f"bundle.{suffix}", templates, {**fields, "items": items})
