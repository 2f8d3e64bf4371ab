"""The weekly report: built once a week, kept in the case store, sent to the people who read it.

`weekly_report` works out this week's readers (`rules.weekly.readers`: the coordinator(s) and
pilot leads get the whole portfolio, each other contact of a partner leading an open case that
partner's version), builds the versions not stored yet this week through `render` (the
report writers of `bridgebsr.reports.weekly`, passed in by the caller: the reports sit above
the use cases), stores each version's files (the email's summary, the HTML page, the XLSX
workbook) in one transaction and deletes weekly reports older than `KEEP_WEEKS` weeks. A
second run the same week stores nothing new: what was sent is what stays stored.

With `send`, each reader who has no ok receipt of this week's report (`deliveries`, kind
`report 2026-W49`) and is not in their quiet hours now (`notifications.preferences`, the
same night as their notices) gets one email: the summary in the body, links to the stored
files under BRIDGEBSR_PUBLIC_URL, the workbook attached; its receipt is written as soon as it
is sent. A reader whose email failed, or whose night it was, is sent it by the next run (the
flow runs hourly on Monday mornings); a second run after a complete one sends nothing.
Delivery is at least once: two runs at the very same moment could both send (the scheduled
flow is the one sender); on SQLite the write lock keeps them from storing twice.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import partial
from html import escape

from sqlalchemy import Engine

from bridgebsr.bootstrap import Runtime
from bridgebsr.errors import NotFound
from bridgebsr.office.delivery import post_office
from bridgebsr.rules import weekly as rule
from bridgebsr.store import reports as store
from bridgebsr.store.db import read_session, write_session
from bridgebsr.store.reports import StoredFile
from notifications.post import Attachment, PostOffice
from notifications.preferences import quiet_until
from notifications.render import Message

HTML, XLSX = "text/html", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# A version's files: kind -> (file name's start, suffix, media type). The summary is the
# email's body; the page and the workbook are the report.
FILES = {
    "summary": ("summary", "html", HTML),
    "page": ("portfolio", "html", HTML),
    "workbook": ("portfolio", "xlsx", XLSX),
}


@dataclass(frozen=True)
class Version:
    """One version of the week's report as the report writers made it: its scope (a partner's
    code, or `rule.WHOLE`) and each file's bytes by kind (`FILES`)."""

    scope: str
    files: dict[str, bytes]


# What builds the versions of the given scopes as of a day (`bridgebsr.reports.weekly.render`).
Render = Callable[[Engine, date, Sequence[str]], list[Version]]


@dataclass(frozen=True)
class Sent:
    """One email of the weekly report: to whom, which version, and how it went."""

    email: str
    scope: str
    ok: bool
    detail: str = ""


@dataclass
class Weekly:
    """What one run did: the week's stored files, the ones it stored, who got it."""

    name: str
    day: date
    files: list[StoredFile]
    built: list[str] = field(default_factory=list)  # scopes built by this run
    pruned: int = 0
    sent: list[Sent] = field(default_factory=list)
    already: list[str] = field(default_factory=list)  # readers who had it before this run
    held: list[tuple[str, datetime]] = field(default_factory=list)  # in their night: until

    def links(self, public_url: str | None) -> list[tuple[StoredFile, str | None]]:
        """Each stored file with its address (None without a public URL)."""
        return [(f, link(public_url, f)) for f in self.files]


def filename(kind: str, day: date, scope: str) -> str:
    """The stored file name of one kind of file of one version (`portfolio-2026-W49-MVA.xlsx`)."""
    stem, suffix, _ = FILES[kind]
    own = "".join(c if c.isalnum() or c == "-" else "-" for c in scope)
    return f"{stem}-{rule.week_of(day)}{'-' + own if own else ''}.{suffix}"


def link(public_url: str | None, stored: StoredFile) -> str | None:
    """Where the web app serves a stored file: PUBLIC_URL/reports/<id>/<filename>."""
    if not public_url:
        return None
    return f"{public_url.rstrip('/')}/reports/{stored.id}/{stored.filename}"


def weekly_report(
    rt: Runtime,
    *,
    now: datetime,
    render: Render,
    send: bool = False,
    keep: int = rule.KEEP_WEEKS,
) -> Weekly:
    """Store this week's report (the versions not stored yet) and, with `send`, email it to
    each reader who has not had it this week."""
    post = post_office(rt) if send else None  # a channel that can never deliver: before any work
    day = now.astimezone(rt.settings.zone()).date()
    name = rule.report_name(day)
    with read_session(rt.engine) as session:
        chosen = rule.readers(store.readers(session), store.leading_partners(session))
        stored = {f.scope for f in store.files_of(session, name)}
    scopes = sorted({rule.WHOLE, *(scope for _, scope in chosen.values())})
    missing = [s for s in scopes if s not in stored]
    versions = render(rt.engine, day, missing) if missing else []
    out = Weekly(name=name, day=day, files=[])
    with write_session(rt.engine) as session:
        stored = {f.scope for f in store.files_of(session, name)}  # a run at the same time
        for version in versions:
            if version.scope in stored:
                continue
            for kind, content in version.files.items():
                store.save(
                    session,
                    name=name,
                    scope=version.scope,
                    filename=filename(kind, day, version.scope),
                    media_type=FILES[kind][2],
                    content=content,
                    now=now,
                )
            out.built.append(version.scope)
        out.pruned = store.prune(
            session, prefix=rule.PREFIX, older_than=rule.oldest_kept(day, keep)
        )
        session.commit()
    with read_session(rt.engine) as session:
        out.files = store.files_of(session, name)
    if post is not None:
        _send(rt, post, out, chosen, now)
    return out


def _send(
    rt: Runtime,
    post: PostOffice,
    out: Weekly,
    chosen: dict[str, tuple[rule.Reader, str]],
    now: datetime,
) -> None:
    """Email the week's report to each reader who has not had it; one receipt per email."""
    kind = rule.delivery_kind(out.day)
    files = {(f.scope, f.filename): f for f in out.files}
    with read_session(rt.engine) as session:
        had = store.had(session, kind=kind, recipients=[r.id for r, _ in chosen.values()])
        wanted = {scope for email, (r, scope) in chosen.items() if r.id not in had}
        sent_files = [
            f
            for f in out.files
            if f.scope in wanted and f.filename != filename("page", out.day, f.scope)
        ]  # the summary (the body) and the workbook (attached) of each version sent
        contents = store.contents(session, [f.id for f in sent_files])
    public = rt.settings.public_url
    year, week, _ = out.day.isocalendar()
    heading = f"Bridge-BSR weekly report, week {week} of {year}"
    for email, (reader, scope) in sorted(chosen.items()):
        if reader.id in had:
            out.already.append(email)
            continue
        if (night_ends := quiet_until(now, reader.zone, reader.quiet)) is not None:
            out.held.append((email, night_ends))
            continue
        summary, page, book = (
            files.get((scope, filename(k, out.day, scope))) for k in ("summary", "page", "workbook")
        )
        if summary is None or page is None or book is None:
            continue  # a version that was not stored; nothing to send
        title = f"{heading}: {scope}" if scope else heading
        html = _body(reader.name, contents[summary.id], link(public, page), book.filename)
        text = f"{title}. The workbook is attached ({book.filename})."
        if (url := link(public, page)) is not None:
            text += f" The full report: {url}"
        result = post.mail(
            to=email,
            message=Message(title, partial(_fill, html=html, text=text)),
            attach=[Attachment(book.filename, book.media_type, contents[book.id])],
        )
        with write_session(rt.engine) as session:
            store.receipt(
                session,
                recipient=reader.id,
                at=now,
                kind=kind,
                ok=result.ok,
                title=title if scope else f"{title}: whole portfolio",
                channels=[{"channel": result.channel, "ok": result.ok, "detail": result.detail}],
            )
            session.commit()
        out.sent.append(Sent(email, scope, result.ok, result.detail))


def _fill(suffix: str, *, html: str, text: str) -> str:
    """The email's body as HTML; as text (the local log without a sending account), a line."""
    return html if suffix == "html" else text


def _body(who: str, summary: bytes, page: str | None, attached: str) -> str:
    """The email's HTML: a greeting, where the full report is, then the summary."""
    where = f"The workbook is attached ({escape(attached)})."
    if page:
        shown = escape(page, quote=True)
        where += f" The full report with its charts: <a href='{shown}'>{shown}</a>."
    return "\n".join(
        [
            "<!doctype html><html lang='en'><head><meta charset='utf-8'></head><body>",
            f"<p>Dear {escape(who)},</p>",
            f"<p>here is this week's Bridge-BSR portfolio report. {where}</p>",
            summary.decode("utf-8"),
            "</body></html>",
        ]
    )


def stored(rt: Runtime, report_id: int) -> tuple[StoredFile, bytes]:
    """One stored report file and its bytes."""
    with read_session(rt.engine) as session:
        found = store.content(session, report_id)
    if found is None:
        raise NotFound(f"no stored report {report_id}; see `bridgebsr reports list`")
    return found


def readable(rt: Runtime, report_id: int, contact_id: int) -> tuple[StoredFile, bytes] | None:
    """The stored report file `report_id` and its bytes if contact `contact_id` may read it
    (`rules.weekly.may_read`: the whole portfolio's readers any, others their partner's
    version); None when there is no such file or they may not."""
    with read_session(rt.engine) as session:
        who = store.reader(session, contact_id)
        found = store.content(session, report_id)
    if who is None or found is None or not rule.may_read(who, found[0].scope):
        return None
    return found


def stored_list(rt: Runtime, *, limit: int = 100) -> list[StoredFile]:
    """The newest stored report files first."""
    with read_session(rt.engine) as session:
        return store.listing(session, limit=limit)
