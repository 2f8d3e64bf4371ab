"""My items, a case's page and the actions on it: plain HTML forms, each through the same use
case as the CLI (`office.progress`), audited with `source=web`, as of the case version the
page showed. Every page is read as the signed-in person sees it (`office.mine`); a case
outside their scope is refused as any other denied page is (`auth.deny`)."""

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from urllib.parse import urlencode

from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from bridgebsr.errors import BridgeError, IllegalTransition, InvalidInput, StaleCase
from bridgebsr.office import casepage, mine
from bridgebsr.office.progress import Actor, decide_gate, progress_milestone, refuse
from bridgebsr.office.requests import (
    answer_date_request,
    ask_new_date,
    pending_requests,
    withdraw_date_request,
)
from bridgebsr.rules.access import Access
from bridgebsr.rules.people import Person
from bridgebsr.store.case_rows import local_date
from bridgebsr.store.db import read_session, write_session
from bridgebsr.web import auth
from bridgebsr.web.pages.feeds import feed_links
from bridgebsr.web.render import render
from bridgebsr.web.timeline import timeline
from models import Decision, Source

STALE = "someone changed this case since you opened the page; here it is as it is now"
HISTORY = 30  # events shown on a case page
FIELD = "field."  # the prefix of a captured field's input
WITHIN = RECENT = 14  # My items: due within, done within the last, so many days
# What a redirect after an action says, by the action's name.
DONE = {
    "start": "Started {item}.",
    "complete": "Completed {item}.",
    "approve": "Your approval of {item} is recorded.",
    "reject": "Your rejection of {item} is recorded.",
    "asked": "Your request for a new date for {item} went to the pilot lead.",
    "withdrawn": "Your request for a new date for {item} is withdrawn; its date stands.",
}
ANSWERED = {"accept": "Accepted: the item is rescheduled.", "decline": "Declined."}


@dataclass(frozen=True)
class _Viewer:
    person: Person
    now: datetime

    @property
    def today(self) -> date:
        return local_date(self.now, self.person.timezone)

    def case_page(self, session: Session, key: str) -> casepage.CasePage:
        """Case `key` as this person may see it now (`casepage.case_page`)."""
        return casepage.case_page(
            session=session, key=key, person=self.person, today=self.today, now=self.now
        )


def _viewer(request: Request) -> _Viewer:
    return _Viewer(auth.viewer(request), request.app.state.clock())


def _engine(request: Request) -> Any:
    return request.app.state.runtime.engine


def _notice(request: Request, items: Any = None) -> str:
    """The confirmation a redirect after an action asks for (`items`: the keys it may name)."""
    done, item = request.query_params.get("done", ""), request.query_params.get("item", "")
    if done not in DONE or (items is not None and item not in items):
        return ""
    return DONE[done].format(item=item)


# --- My items ----------------------------------------------------------------------------


def me(request: Request) -> Response:
    """My items: what the person owns, the gates they may vote on, the cases they are on."""
    who = _viewer(request)
    with read_session(_engine(request)) as session:
        items = mine.my_items(
            session=session,
            person=who.person,
            today=who.today,
            within=WITHIN,
            recent=RECENT,
            now=who.now,
        )
        requests = pending_requests(session=session, for_actor=who.person.email, now=who.now)
    answers = bool(requests or who.person.leads or auth.is_coordinator(who.person))
    context = {
        "person": who.person,
        "today": who.today,
        "items": items,
        "within": WITHIN,
        "recent": RECENT,
        "requests": requests if answers else None,
        "feeds": feed_links(request, who.person),
        "notice": ANSWERED.get(request.query_params.get("answered", ""), ""),
    }
    return render(request, "me.html", context)


# --- a case's page -----------------------------------------------------------------------


def case(request: Request) -> Response:
    """A case's page as the person may see it; refused outside their scope."""
    who = _viewer(request)
    return _case_page(request, who, request.path_params["key"])


def _case_page(
    request: Request,
    who: _Viewer,
    key: str,
    *,
    error: str = "",
    status: int = 200,
    open_item: str = "",
) -> Response:
    with read_session(_engine(request)) as session:
        page = who.case_page(session, key)
    if page.access is Access.NONE:
        auth.deny(request, "out-of-scope", contact_id=who.person.id)
    shown = page.case
    chart = None
    if page.access is Access.FULL:
        chart = timeline([*shown["milestones"], *shown["gates"]], who.today)
    context = {
        "person": who.person,
        "today": who.today,
        "access": page.access.value,
        "case": shown,
        "chart": chart,
        "history": HISTORY,
        "notice": "" if error else _notice(request, _keys(shown)),
        "error": error,
        "open_item": open_item,
        "date_requests": True,
    }
    return render(request, "case.html", context, status=status)


def _keys(shown: dict[str, Any]) -> set[str]:
    return {i["key"] for i in [*shown.get("milestones", []), *shown.get("gates", [])]}


# --- actions -----------------------------------------------------------------------------


async def milestone_action(request: Request) -> Response:
    """Start or complete a milestone (its owner, the case's owner, the pilot's lead or a
    coordinator), as of the page's version of the case."""
    who = _viewer(request)
    form = await request.form()
    auth.check_csrf(request, form)
    key, item = request.path_params["key"], request.path_params["item"]
    action = str(form.get("action", ""))
    if action not in ("start", "complete"):
        return await run_in_threadpool(
            _case_page, request, who, key, error="choose Start or Complete", status=400
        )

    def act(session: Session) -> None:
        page = who.case_page(session, key)
        casepage.require_may_progress(page, item)
        progress_milestone(
            session=session,
            case_key=key,
            milestone_key=item,
            action=action,
            actor=Actor(who.person.email, source=Source.WEB, comment=_text(form, "note")),
            now=who.now,
            on=_day(form, "on"),
            expected_version=_version(form),
            fields=_fields(form) if action == "complete" else None,
            evidence=_links(form) if action == "complete" else (),
        )

    return await _run(request, who, key, item, action, act)


async def gate_vote(request: Request) -> Response:
    """Approve or reject a gate as one of its approvers, as of the page's version."""
    who = _viewer(request)
    form = await request.form()
    auth.check_csrf(request, form)
    key, gate = request.path_params["key"], request.path_params["gate"]
    choice = str(form.get("decision", ""))
    if choice not in ("approve", "reject"):
        return await run_in_threadpool(
            _case_page, request, who, key, error="choose Approve or Reject", status=400
        )

    def act(session: Session) -> None:
        page = who.case_page(session, key)
        casepage.require_may_vote(page, gate)
        decide_gate(
            session=session,
            case_key=key,
            gate_key=gate,
            decision=Decision(choice),
            actor=Actor(who.person.email, source=Source.WEB, comment=_text(form, "comment")),
            now=who.now,
            expected_version=_version(form),
            evidence=_links(form),
        )

    return await _run(request, who, key, gate, choice, act)


async def new_date(request: Request) -> Response:
    """Ask for a new due date for a milestone, with a reason (its owner, the case's owner);
    the pilot lead answers."""
    who = _viewer(request)
    form = await request.form()
    auth.check_csrf(request, form)
    key, item = request.path_params["key"], request.path_params["item"]

    def act(session: Session) -> None:
        page = who.case_page(session, key)
        casepage.require_may_progress(page, item)
        due = _day(form, "due")
        if due is None:
            raise InvalidInput("due: give the new due date (YYYY-MM-DD)")
        ask_new_date(
            session=session,
            case_key=key,
            item_key=item,
            due=due,
            reason=_text(form, "reason"),
            actor=who.person.email,
            source=Source.WEB,
            now=who.now,
            expected_version=_version(form),
        )

    return await _run(request, who, key, item, "asked", act)


async def answer(request: Request) -> Response:
    """Accept or decline a request for a new date, as a pilot lead of its case or the
    coordinator (the use case says who may); then My items again."""
    who = _viewer(request)
    form = await request.form()
    auth.check_csrf(request, form)
    choice = str(form.get("answer", ""))
    try:
        request_id = int(request.path_params["id"])
    except ValueError:
        auth.deny(request, "out-of-scope", contact_id=who.person.id)

    def work() -> None:
        if choice not in ANSWERED:
            raise InvalidInput("choose Accept or Decline")
        with write_session(_engine(request)) as session:
            answer_date_request(
                session=session,
                request_id=request_id,
                accept=choice == "accept",
                actor=who.person.email,
                comment=_text(form, "comment"),
                source=Source.WEB,
                now=who.now,
                expected_version=_version(form),
            )

    try:
        await run_in_threadpool(work)
    except StaleCase:
        return _refused(request, STALE, 409)
    except BridgeError as refused:
        return _refused(request, str(refused), 400)
    return RedirectResponse(f"/me?{urlencode({'answered': choice})}", status_code=303)


async def withdraw(request: Request) -> Response:
    """Withdraw one's own request for a new date before it is answered (from the item's row
    of the case page); then the case page again."""
    who = _viewer(request)
    form = await request.form()
    auth.check_csrf(request, form)
    key, item = _text(form, "case"), _text(form, "item")
    try:
        request_id = int(request.path_params["id"])
    except ValueError:
        auth.deny(request, "out-of-scope", contact_id=who.person.id)

    def act(session: Session) -> None:
        page = who.case_page(session, key)
        casepage.require_own_request(page, item, request_id)
        withdraw_date_request(
            session=session,
            request_id=request_id,
            actor=who.person.email,
            comment="",
            source=Source.WEB,
            now=who.now,
        )

    return await _run(request, who, key, item, "withdrawn", act)


def _refused(request: Request, why: str, status: int) -> Response:
    context = {"heading": "Not recorded", "text": f"{why}. Open My items again to answer."}
    return render(request, "message.html", context, status=status)


async def _run(
    request: Request, who: _Viewer, key: str, item: str, done: str, act: Any
) -> Response:
    """Run `act` in one write transaction off the event loop; then see the case page again
    (303), or the page with why it was refused."""

    def work() -> None:
        with write_session(_engine(request)) as session:
            act(session)

    try:
        await run_in_threadpool(work)
    except casepage.OutOfScope:
        auth.deny(request, "out-of-scope", contact_id=who.person.id)
    except StaleCase:
        return await run_in_threadpool(
            _case_page, request, who, key, error=STALE, status=409, open_item=item
        )
    except (casepage.NotAllowed, IllegalTransition) as refused:
        await run_in_threadpool(_audit, request, who, key, item, done, str(refused))
        status = 403 if isinstance(refused, casepage.NotAllowed) else 400
        return await run_in_threadpool(
            _case_page, request, who, key, error=str(refused), status=status, open_item=item
        )
    except BridgeError as refused:
        return await run_in_threadpool(
            _case_page, request, who, key, error=str(refused), status=400, open_item=item
        )
    query = urlencode({"done": done, "item": item})
    return RedirectResponse(f"/cases/{key.upper()}?{query}", status_code=303)


def _audit(request: Request, who: _Viewer, key: str, item: str, done: str, why: str) -> None:
    """Record a refused action on the case's audit trail (`office.progress.refuse`), as the
    Prefect gate form's refusals are."""
    kind = "gate" if done in ("approve", "reject") else "milestone"
    with write_session(_engine(request)) as session:
        refuse(
            session=session,
            case_key=key,
            item=kind,
            key=item,
            actor=Actor(who.person.email, source=Source.WEB),
            reason=why,
            now=who.now,
            action=done,
        )


def _text(form: Any, name: str) -> str:
    return str(form.get(name) or "").strip()


def _links(form: Any) -> list[str]:
    """The evidence links given, one a line (the use case checks each)."""
    return [line.strip() for line in _text(form, "evidence").splitlines() if line.strip()]


def _fields(form: Any) -> dict[str, str]:
    """The captured fields filled in (`field.<name>`), by name."""
    found = {}
    for name, value in form.multi_items():
        if name.startswith(FIELD) and str(value).strip():
            found[name.removeprefix(FIELD)] = str(value).strip()
    return found


def _day(form: Any, name: str) -> date | None:
    text = _text(form, name)
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"{name}: '{text}' is not a date (YYYY-MM-DD)") from None


def _version(form: Any) -> int:
    text = _text(form, "version")
    if not text.isdigit():
        raise InvalidInput("the form has no case version; open the case page again")
    return int(text)


routes: list[BaseRoute] = [
    Route("/me", me, methods=["GET"]),
    Route("/cases/{key}", case, methods=["GET"]),
    Route("/cases/{key}/milestones/{item}", milestone_action, methods=["POST"]),
    Route("/cases/{key}/gates/{gate}", gate_vote, methods=["POST"]),
    Route("/cases/{key}/milestones/{item}/new-date", new_date, methods=["POST"]),
    Route("/requests/{id}", answer, methods=["POST"]),
    Route("/requests/{id}/withdraw", withdraw, methods=["POST"]),
]
