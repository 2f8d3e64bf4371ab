"""Calendar feeds (RFC 5545, built with `icalendar`) of milestones and gate deadlines.

Who sees what:

- Cases: active and on-hold cases only. Draft, completed and cancelled cases are left out, so
  their events drop out of a subscribed calendar. Events of an on-hold case are TENTATIVE and
  say "(case on hold)".
- A partner feed (`partner=CODE`) holds every milestone and gate of the cases whose lead
  partner is that partner, and nothing of any other case: not even an item of another
  partner's case that one of this partner's people owns or may approve. A partner sees only
  its own cases.
- A contact feed (`contact=EMAIL`) holds the milestones the person owns, the gates they may
  decide and every milestone and gate of the cases they own. "May decide" follows
  `progress.decide_gate` and the monitor (`_recipients` asks every holder of a gate's
  approver role, not only those at the lead partner): any contact whose role is the gate's
  approver role, whatever their partner.

Events, one all-day event each (DTEND is the next day, TRANSP transparent):

- Every milestone, on its forecast due date (for a finished one the schedule keeps the day it
  finished there). Done ones start with "✓ "; waived ones are CANCELLED.
- Every gate that is not yet decided: a pending gate on its forecast due date, an open one on
  its deadline. An approved gate stays, with "✓ ", on the day it was decided. A gate sent
  back for rework starts a new round, which is a new event; the old round's event leaves.

Calendar apps update an event rather than add a second one when its UID stays the same and
its SEQUENCE grows. UIDs name the case and the item, never a date:
`<case key>/<milestone key>@bridgebsr` and `<case key>/gate/<gate key>/r<round>@bridgebsr`.
SEQUENCE is the case's `version`, which every change to a case or its items raises
(`store.claim`); LAST-MODIFIED is the case's `updated_at`; DTSTAMP is `now`. The same store
and `now` give the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from icalendar import Calendar, Event
from icalendar.enums import STATUS, TRANSP
from sqlalchemy import or_, select
from sqlalchemy.orm import aliased
from sqlmodel import Session, col

from bridgebsr.errors import InvalidInput
from bridgebsr.rules.texts import email_key, is_control
from models import (
    Case,
    CaseStatus,
    Contact,
    Gate,
    GateStatus,
    Milestone,
    MilestoneStatus,
    Partner,
)

PRODID = "-//Bridge-BSR//bridgebsr//EN"
UID_DOMAIN = "bridgebsr"
SHOWN_CASES = (CaseStatus.ACTIVE, CaseStatus.ON_HOLD)
SHOWN_GATES = (GateStatus.PENDING, GateStatus.OPEN, GateStatus.APPROVED)
DONE = "✓ "


@dataclass(frozen=True)
class Feed:
    """A built calendar and whom it is for."""

    who: str
    calendar: Calendar

    @property
    def events(self) -> int:
        """How many events the calendar holds."""
        return len(self.calendar.events)

    def to_ical(self) -> bytes:
        """The calendar as RFC 5545 text."""
        text: bytes = self.calendar.to_ical()
        return text


@dataclass(frozen=True)
class _Scope:
    """Which items a feed shows: a partner's cases, or one person's items."""

    name: str  # calendar name
    who: str  # for messages
    uid: str
    timezone: str
    partner_id: int | None = None
    contact_id: int | None = None
    role: str | None = None

    def milestones(self) -> Any:
        if self.partner_id is not None:
            return col(Case.lead_partner_id) == self.partner_id
        return or_(
            col(Milestone.owner_id) == self.contact_id, col(Case.owner_id) == self.contact_id
        )

    def gates(self) -> Any:
        if self.partner_id is not None:
            return col(Case.lead_partner_id) == self.partner_id
        return or_(col(Gate.approver_role) == self.role, col(Case.owner_id) == self.contact_id)


@dataclass(frozen=True)
class _CaseFacts:
    case: Case
    partner: str
    owner_name: str
    owner_email: str

    @property
    def on_hold(self) -> bool:
        return self.case.status is CaseStatus.ON_HOLD

    def lines(self) -> list[str]:
        c = self.case
        return [
            c.title,
            f"Case {c.key} · pilot {c.kind} · case {c.status.value.replace('_', ' ')} · "
            f"stage {c.current_stage or '-'} · lead partner {self.partner}",
            f"Case owner: {self.owner_name} <{self.owner_email}>",
        ]


def feed(
    *,
    session: Session,
    partner: str | None = None,
    contact: str | None = None,
    now: datetime,
) -> bytes:
    """The RFC 5545 calendar of one partner's cases or one person's items, as bytes."""
    return build(session=session, partner=partner, contact=contact, now=now).to_ical()


def build(
    *,
    session: Session,
    partner: str | None = None,
    contact: str | None = None,
    now: datetime,
) -> Feed:
    """The calendar of one partner's cases (`partner`) or one person's items (`contact`)."""
    if now.tzinfo is None:
        raise InvalidInput("a calendar feed needs an aware `now` (with a time zone)")
    scope = _scope(session, partner, contact)
    stamp = now.astimezone(UTC)
    calendar = Calendar.new(prodid=PRODID, name=_calendar_name(scope.name), uid=scope.uid)
    if scope.timezone:
        calendar.add("x-wr-timezone", scope.timezone)
    events = [*_milestone_events(session, scope, stamp), *_gate_events(session, scope, stamp)]
    for event in sorted(events, key=lambda e: (e.start, str(e.uid))):
        calendar.add_component(event)
    return Feed(who=scope.who, calendar=calendar)


def _scope(session: Session, partner: str | None, contact: str | None) -> _Scope:
    code = partner.strip().upper() if partner and partner.strip() else None
    email = email_key(contact) if contact and contact.strip() else None
    if (code is None) == (email is None):
        raise InvalidInput("give exactly one of --partner CODE or --contact EMAIL")
    if code is not None:
        found = session.execute(select(Partner).where(col(Partner.code) == code)).scalars().first()
        if found is None or found.id is None:
            raise InvalidInput(f"no partner '{code}'; see `bridgebsr partners list`")
        return _Scope(
            name=f"Bridge-BSR · {found.code} ({found.name})",
            who=f"partner {found.code}",
            uid=f"feed/partner/{found.code}@{UID_DOMAIN}",
            timezone=found.timezone,
            partner_id=found.id,
        )
    assert email is not None
    person = session.execute(select(Contact).where(col(Contact.email) == email)).scalars().first()
    if person is None or person.id is None:
        raise InvalidInput(f"no contact '{email}'; see `bridgebsr contacts list`")
    return _Scope(
        name=f"Bridge-BSR · {person.name}",
        who=f"{person.name} <{person.email}>",
        uid=f"feed/contact/{person.email}@{UID_DOMAIN}",
        timezone=person.timezone,
        contact_id=person.id,
        role=person.role,
    )


def _milestone_events(session: Session, scope: _Scope, stamp: datetime) -> list[Event]:
    case_owner, item_owner = aliased(Contact), aliased(Contact)
    rows = session.execute(
        select(
            Milestone,
            Case,
            col(Partner.code),
            col(case_owner.name),
            col(case_owner.email),
            col(item_owner.name),
            col(item_owner.email),
        )
        .join(Case, col(Case.id) == col(Milestone.case_id))
        .join(Partner, col(Partner.id) == col(Case.lead_partner_id))
        .join(case_owner, col(case_owner.id) == col(Case.owner_id))
        .outerjoin(item_owner, col(item_owner.id) == col(Milestone.owner_id))
        .where(col(Case.status).in_(SHOWN_CASES), scope.milestones())
    ).all()
    return [
        _milestone_event(m, _CaseFacts(case, code, cname, cemail), oname, oemail, stamp)
        for m, case, code, cname, cemail, oname, oemail in rows
    ]


def _gate_events(session: Session, scope: _Scope, stamp: datetime) -> list[Event]:
    case_owner = aliased(Contact)
    rows = session.execute(
        select(Gate, Case, col(Partner.code), col(case_owner.name), col(case_owner.email))
        .join(Case, col(Case.id) == col(Gate.case_id))
        .join(Partner, col(Partner.id) == col(Case.lead_partner_id))
        .join(case_owner, col(case_owner.id) == col(Case.owner_id))
        .where(
            col(Case.status).in_(SHOWN_CASES),
            col(Gate.status).in_(SHOWN_GATES),
            scope.gates(),
        )
    ).all()
    return [
        _gate_event(g, _CaseFacts(case, code, cname, cemail), stamp)
        for g, case, code, cname, cemail in rows
    ]


def _milestone_event(
    m: Milestone,
    facts: _CaseFacts,
    owner_name: str | None,
    owner_email: str | None,
    stamp: datetime,
) -> Event:
    done = m.status is MilestoneStatus.DONE
    who = f"{owner_name} <{owner_email}> ({m.owner_role})" if owner_email else None
    slip = (m.forecast_due - m.planned_due).days
    lines = [
        f"Milestone {m.key} · {m.title} · stage {m.stage} · {m.status.value.replace('_', ' ')}",
        f"Planned due {m.planned_due} · forecast due {m.forecast_due} ({slip:+d} days)"
        + (f" · finished {m.finished_on}" if m.finished_on else ""),
        f"Owner: {who or f'role {m.owner_role} (nobody assigned)'}",
    ]
    status = STATUS.CANCELLED if m.status is MilestoneStatus.WAIVED else None
    return _event(
        facts,
        uid=f"{facts.case.key}/{m.key}@{UID_DOMAIN}",
        day=m.forecast_due,
        summary=f"{DONE if done else ''}{facts.case.key} · {m.title}",
        lines=lines,
        category="milestone",
        status=status,
        stamp=stamp,
    )


def _gate_event(g: Gate, facts: _CaseFacts, stamp: datetime) -> Event:
    approved = g.status is GateStatus.APPROVED
    if approved:
        day, when = g.decided_on or g.forecast_due, f"decided {g.decided_on}"
    elif g.deadline is not None:
        day, when = g.deadline, f"decision due by {g.deadline}"
    else:
        day, when = g.forecast_due, f"expected to open for decision by {g.forecast_due}"
    slip = (g.forecast_due - g.planned_due).days
    lines = [
        f"Gate {g.key} · {g.title} · stage {g.stage} · {g.status.value} · round {g.round}",
        f"Planned due {g.planned_due} · forecast due {g.forecast_due} ({slip:+d} days) · {when}",
        f"Approvers: {g.required} of role {g.approver_role}",
    ]
    return _event(
        facts,
        uid=f"{facts.case.key}/gate/{g.key}/r{g.round}@{UID_DOMAIN}",
        day=day,
        summary=f"{DONE if approved else ''}{facts.case.key} · Gate: {g.title}",
        lines=lines,
        category="gate",
        status=None,
        stamp=stamp,
    )


def _event(
    facts: _CaseFacts,
    *,
    uid: str,
    day: date,
    summary: str,
    lines: list[str],
    category: str,
    status: STATUS | None,
    stamp: datetime,
) -> Event:
    if status is None:
        status = STATUS.TENTATIVE if facts.on_hold else STATUS.CONFIRMED
    if facts.on_hold:
        summary += " (case on hold)"
    case = facts.case
    return Event.new(
        uid=uid,
        stamp=stamp,
        start=day,
        end=day + timedelta(days=1),
        summary=summary,
        description="\n".join([*facts.lines(), *lines]),
        categories=[category, case.kind],
        sequence=case.version,
        status=status,
        transparency=TRANSP.TRANSPARENT,
        last_modified=_utc(case.updated_at),
    )


def _calendar_name(text: str) -> str:
    """Stored text as a calendar's name: icalendar writes the name as it is (texts of events
    it escapes), and RFC 5545 allows no control character in a line, so each becomes a
    space."""
    if text.isprintable():  # the usual case: no control character, nothing to do
        return text
    return "".join(" " if is_control(ch) else ch for ch in text)


def _utc(value: datetime) -> datetime:
    # Stored times are UTC; a driver that drops the zone still means UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
