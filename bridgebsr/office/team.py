"""Use cases on who does what on one case: its team (`case team`, `--set`/`--unset`), and
handing a milestone or the case itself to someone else (`milestone reassign`, `case
reassign`). Each change is one transaction under the case's next version, with an audit event
per change naming the old and the new holder, and a handover notice in the outbox to both.

What a handover does to the escalation ladder: the steps the old owner was sent stay sent,
and the new owner is not sent them again for the same due date (each is recorded for the new
owner as `suppressed`, so the outbox's dedupe keys hold it: the handover notice told them
where the item stands); the steps still to come go to the new owner, on the new owner's
working days (the monitor reads the owner's calendar), and the item's forecast moves with
that calendar from now on. A step waiting (not sent yet) for the old owner that tells only
the owner is `suppressed`; one that also tells other roles is left to go.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlmodel import Session

from bridgebsr.errors import IllegalTransition, NotFound
from bridgebsr.office import announce
from bridgebsr.office.progress import Actor
from bridgebsr.rules import lifecycle, roles
from bridgebsr.rules import progress as rules
from bridgebsr.rules.lifecycle import Change
from bridgebsr.rules.people import Directory, Person
from bridgebsr.rules.rows import MilestoneRow
from bridgebsr.store import case_rows as store
from bridgebsr.store import team as team_store
from bridgebsr.store.people import load_directory
from models import CASE_OWNER, NODE_OWNER, OPEN_MILESTONE, NoticePayload, OutboxNotice
from models.notices import HANDOVER
from notifications.enqueue import dedupe_key, enqueue

HANDED_OVER = "handed over: the new owner was told where the item stands"
NO_LONGER_OWNER = "handed over: the recipient no longer owns the item"


@dataclass
class Work:
    """A case loaded for a change of hands: what moved, and who is to be told."""

    loaded: store.Loaded
    today: date
    now: datetime
    changes: list[Change] = field(default_factory=list)
    handed: list[tuple[MilestoneRow, int | None, Person]] = field(default_factory=list)
    told: list[tuple[int, str, str]] = field(default_factory=list)  # (contact, email, note)
    emails: dict[int, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.loaded.case.key


def begin(
    session: Session, key: str, doing: str, now: datetime, expected_version: int | None
) -> Work:
    """Load (and lock) a case for a change of hands, refusing a stale view first."""
    loaded = store.load_case(session, key)
    store.check_version(loaded.case, expected_version)
    lifecycle.require_case_active(loaded.case.key, loaded.case.status, doing)
    return Work(loaded, store.local_date(now, loaded.timezone), now)


def active_person(session: Session, email: str) -> Person:
    """The contact with this address, refused when they have retired."""
    conn = session.connection()
    found = store.contact_by_email(conn, email)
    if team_store.retired_at(conn, found.id) is not None:
        raise IllegalTransition(
            f"{found.email} has retired; give someone still working (their successor?)"
        )
    return found


def email(work: Work, contact_id: int | None) -> str | None:
    """A contact's address (read once per change)."""
    if contact_id is None:
        return None
    if contact_id not in work.emails:
        work.emails.update(team_store.emails_of(work.loaded.conn, [contact_id]))
    return work.emails.get(contact_id)


def hand_over(work: Work, milestone: MilestoneRow, to: Person, why: str) -> None:
    """Give an open milestone to `to` (nothing when it is theirs already)."""
    roles.check_handover(work.key, milestone.key, milestone.status)
    if milestone.owner_id == to.id:
        return
    old = milestone.owner_id
    milestone.owner_id = to.id
    work.loaded.plan.calendars.setdefault(to.id, to.calendar)
    work.changes.append(
        Change(
            "milestone.reassign",
            milestone.key,
            {"owner": email(work, old)},
            {"owner": to.email, "why": why},
        )
    )
    work.handed.append((milestone, old, to))


def finish(
    session: Session,
    work: Work,
    actor: Actor,
    expected_version: int | None,
    *,
    notify: bool = True,
    commit: bool = True,
) -> None:
    """Reforecast (an item's new owner's calendar dates it from now on), write what moved
    under the case's next version with one audit event per change, tell both sides of each
    handover (unless not `notify`), and commit (unless not `commit`: a larger change goes
    on). Refused with nothing written when nothing changes."""
    if not work.changes:
        raise IllegalTransition(f"nothing to change on case {work.key}: it is so already")
    loaded = work.loaded
    more = rules.settle(loaded.plan, loaded.template, work.today, work.changes)
    store.save_case(loaded, now=work.now, expected_version=expected_version)
    store.record(
        loaded.conn,
        loaded.case.id,
        [*work.changes, *more],
        actor=actor.email,
        now=work.now,
        source=actor.source,
        source_ref=actor.source_ref,
        comment=actor.comment,
    )
    tell(work, notify=notify)
    if commit:
        session.commit()


def tell(work: Work, *, notify: bool = True) -> None:
    """Handover notices to both sides (unless not `notify`; the step names the case version
    the change made, so each change's notices are new ones); the ladder steps the old owner
    was sent kept from the new one (`suppressed` for them); and the reminders still waiting
    for the old owner that tell only the owner `suppressed` (a step that also tells another
    role is left: they may hold it)."""
    case = work.loaded.case
    step, day = f"{HANDOVER}v{case.version}", work.today
    notices: list[OutboxNotice] = []
    copies: list[OutboxNotice] = []
    gone: list[str] = []  # ladder notices waiting for an old owner as the owner
    conn = work.loaded.conn
    ladder = work.loaded.template.ladder
    owners_only = {s.key for s in ladder if set(s.notify) == {NODE_OWNER}}
    for milestone, old, new in work.handed:
        was = email(work, old)
        if notify:
            note = f"{milestone.key} handed over from {was or 'no one'} to {new.email}"
            payload = announce.about(
                case,
                item=milestone.key,
                title=milestone.title,
                due=milestone.planned_due,
                today=work.today,
                step=step,
                note=note,
                round_=milestone.round,
            )
            notices.append(announce.notice(case.id, (new.id, new.email), payload, day))
            if old is not None and was is not None:
                notices.append(announce.notice(case.id, (old, was), payload, day))
        if old is not None:
            gone.extend(
                key
                for key, rule in team_store.waiting_steps(conn, case.id, milestone.key, old)
                if rule in owners_only
            )
            for sent in team_store.steps_sent(conn, case.id, milestone.key, old):
                said = NoticePayload.read(sent)
                if said.item_kind == "milestone" and said.note is None:
                    copies.append(announce.notice(case.id, (new.id, new.email), said, day))
    for contact_id, address, note in work.told if notify else ():
        payload = announce.about(
            case,
            item="case",
            title=case.title,
            due=case.target_date,
            today=work.today,
            step=step,
            note=note,
        )
        notices.append(announce.notice(case.id, (contact_id, address), payload, day))
    enqueue(conn, notices, now=work.now)
    stored = enqueue(conn, copies, now=work.now)
    team_store.suppress(conn, keys=[dedupe_key(n) for n in stored], why=HANDED_OVER)
    team_store.suppress(conn, keys=gone, why=NO_LONGER_OWNER)


# --- the commands ------------------------------------------------------------------------------


def show_team(*, session: Session, key: str) -> dict[str, Any]:
    """Who holds each role of a case's template on this case, and why: its team, else its
    lead partner's holders, else its pilot's leads (`rules.roles.case_role_holders`)."""
    loaded = store.load_case(session, key, for_update=False)
    case, conn = loaded.case, loaded.conn
    directory = load_directory(conn)
    team = team_store.load_teams(conn, [case.id]).get(case.id, {})
    owner = directory.people.get(case.owner_id)
    rows = [{"role": CASE_OWNER, "who": owner.email if owner else "-", "source": "case"}]
    for role in loaded.template.roles:
        if role == CASE_OWNER:
            continue
        holders = directory.role_holders(role, case.lead_partner_id, case.kind, team)
        rows.append(
            {
                "role": role,
                "who": ", ".join(p.email for p in holders) or "-",
                "source": _source(directory, role, case.lead_partner_id, team, holders),
            }
        )
    return {"case": case.key, "version": case.version, "team": rows}


def _source(
    directory: Directory, role: str, lead: int, team: Mapping[str, int], holders: list[Person]
) -> str:
    if not holders:
        return "-"
    if team.get(role) == holders[0].id:
        return "team"
    if holders[0].partner_id == lead and holders[0] in directory.by_role.get(role, []):
        return "lead partner"
    return "pilot lead"


def set_team(
    *,
    session: Session,
    key: str,
    sets: Mapping[str, str],
    unsets: Sequence[str] = (),
    actor: Actor,
    now: datetime,
    expected_version: int | None = None,
) -> Work:
    """Name (`sets`: role -> email) or clear (`unsets`) holders of roles on a case's team;
    naming one hands that role's open milestones on this case to them."""
    work = begin(session, key, "change the team", now, expected_version)
    case, conn = work.loaded.case, work.loaded.conn
    template = work.loaded.template
    team = team_store.load_teams(conn, [case.id]).get(case.id, {})
    where = f"case {case.key}"
    wanted = {
        roles.check_team_role(r, template.roles, where, case.kind): e for r, e in sets.items()
    }
    cleared = [roles.check_team_role(r, template.roles, where, case.kind) for r in unsets]
    if both := sorted(set(wanted) & set(cleared)):
        raise IllegalTransition(f"role {both[0]} is both set and unset; give one of them")
    for role, address in wanted.items():
        person = active_person(session, address)
        held = team.get(role)
        if held == person.id:
            continue
        team_store.set_member(conn, case.id, role, person.id, now, new=held is None)
        work.changes.append(
            Change("team.set", role, {"holder": email(work, held)}, {"holder": person.email})
        )
        for m in work.loaded.plan.milestones:
            if m.owner_role == role and m.status in OPEN_MILESTONE:
                hand_over(work, m, person, f"team role {role}")
    for role in cleared:
        held = team.get(role)
        if held is None:
            raise NotFound(f"case {case.key}'s team names no {role}; nothing to unset")
        team_store.unset_member(conn, case.id, role)
        work.changes.append(Change("team.unset", role, {"holder": email(work, held)}, {}))
    finish(session, work, actor, expected_version)
    return work


def reassign_milestone(
    *,
    session: Session,
    key: str,
    milestone_key: str,
    to: str,
    actor: Actor,
    now: datetime,
    expected_version: int | None = None,
) -> MilestoneRow:
    """Give one open milestone to another person."""
    work = begin(session, key, f"reassign milestone {milestone_key}", now, expected_version)
    milestone = _milestone(work, milestone_key)
    person = active_person(session, to)
    roles.check_handover(work.key, milestone.key, milestone.status)
    if milestone.owner_id == person.id:
        raise IllegalTransition(f"{milestone.key} of {work.key} is {person.email}'s already")
    hand_over(work, milestone, person, "reassigned")
    finish(session, work, actor, expected_version)
    return milestone


def reassign_case(
    *,
    session: Session,
    key: str,
    owner: str,
    actor: Actor,
    now: datetime,
    expected_version: int | None = None,
) -> Work:
    """Make someone else the case owner; the open milestones the old owner held through the
    template's case-owner role follow."""
    work = begin(session, key, "reassign the case", now, expected_version)
    case = work.loaded.case
    person = active_person(session, owner)
    old = case.owner_id
    if old == person.id:
        raise IllegalTransition(f"case {case.key} is {person.email}'s already")
    case.owner_id = person.id
    was = email(work, old)
    work.changes.append(Change("case.reassign", None, {"owner": was}, {"owner": person.email}))
    for m in work.loaded.plan.milestones:
        if m.owner_role == CASE_OWNER and m.owner_id == old and m.status in OPEN_MILESTONE:
            hand_over(work, m, person, "case owner")
    note = f"case owner changed from {was} to {person.email}"
    work.told.append((person.id, person.email, note))
    if was is not None:
        work.told.append((old, was, note))
    finish(session, work, actor, expected_version)
    return work


def _milestone(work: Work, key: str) -> MilestoneRow:
    for m in work.loaded.plan.milestones:
        if m.key == key.strip():
            return m
    known = ", ".join(m.key for m in work.loaded.plan.milestones)
    raise NotFound(f"case {work.key} has no milestone '{key}' (it has: {known})")
