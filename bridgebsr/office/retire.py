"""`contacts retire`: a person leaves, and a successor takes over everything they held.

In one transaction: every case not closed where the retiree owns the case or an open
milestone, holds a team role, or may still vote on an open or pending gate is loaded (and
locked) in id order and handed over: the case owner, each open milestone (`milestone.reassign`
events, the ladder steps already sent to the retiree kept from the successor as a handover
keeps them), each team role (`team.set`), and each gate vote not cast yet in the gate's
round (the successor is made the holder of the gate's approver role on that case's team).
Each case moves to its next version with one audit event per change. Then the contact is
marked retired (`retired_at`, `successor_id`) and their signed links stop working (their
link generation moves on), every notice still waiting for them in the outbox is
`suppressed`, and ONE notice tells the successor what they took over. History keeps the
retiree: events name them by address, decisions by contact id, and nothing is rewritten.

From then on no notice reaches the retired address: the directory snapshot the monitor and
the openings read leaves retired contacts out, so they hold no role and are told nothing.
"""

from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel import Session

from bridgebsr.errors import IllegalTransition, InvalidInput
from bridgebsr.office.progress import Actor
from bridgebsr.office.team import Work, active_person, email, finish, hand_over
from bridgebsr.rules.lifecycle import Change
from bridgebsr.store import case_rows as store
from bridgebsr.store import directory_events
from bridgebsr.store import team as team_store
from models import OPEN_MILESTONE, CaseStatus, GateStatus, NoticePayload, OutboxNotice
from models.notices import TAKEOVER
from notifications.enqueue import enqueue

SHOWN = 20  # items named in the successor's notice; the rest are counted
RETIRED = "the recipient has retired"


@dataclass
class Retired:
    """What a retirement handed to the successor, as `CASE/ITEM` (`CASE` for a case owned,
    `CASE/role` for a team role or a gate's approver role)."""

    retiree: str
    successor: str
    cases: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    votes: list[str] = field(default_factory=list)
    suppressed: int = 0
    notices: int = 0

    def summary(self) -> str:
        """One line for the CLI."""
        return (
            f"{self.retiree} retired; {self.successor} took over {len(self.cases)} case(s), "
            f"{len(self.items)} open item(s), {len(self.roles)} team role(s) and "
            f"{len(self.votes)} gate vote(s); {self.suppressed} waiting notice(s) suppressed"
        )

    def listing(self) -> str:
        """What the successor's notice says they took over."""
        parts = []
        for label, names in (
            ("case(s) owned", self.cases),
            ("open item(s)", self.items),
            ("team role(s)", self.roles),
            ("gate vote(s)", self.votes),
        ):
            if names:
                more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
                parts.append(f"{len(names)} {label}: {', '.join(names[:SHOWN])}{more}")
        return f"you took over from {self.retiree}: " + "; ".join(parts)


def retire_contact(
    *, session: Session, email_: str, successor: str, actor: Actor, now: datetime
) -> Retired:
    """Retire the contact `email_`, handing everything they hold to `successor`."""
    conn = session.connection()
    retiree = store.contact_by_email(conn, email_)
    if team_store.retired_at(conn, retiree.id) is not None:
        raise IllegalTransition(f"{retiree.email} has retired already")
    heir = active_person(session, successor)
    if heir.id == retiree.id:
        raise InvalidInput(f"--successor {successor}: someone other than {retiree.email}")
    done = Retired(retiree.email, heir.email)
    why = f"{retiree.email} retired"
    done.suppressed = team_store.suppress(conn, recipient_id=retiree.id, why=RETIRED)
    first: Work | None = None
    for key in team_store.cases_touching(conn, retiree.id, retiree.role):
        loaded = store.load_case(session, key)
        work = Work(loaded, store.local_date(now, loaded.timezone), now)
        work.emails.update({retiree.id: retiree.email, heir.id: heir.email})
        case = loaded.case
        if case.owner_id == retiree.id:
            case.owner_id = heir.id
            work.changes.append(
                Change("case.reassign", None, {"owner": retiree.email}, {"owner": heir.email})
            )
            done.cases.append(case.key)
        for m in loaded.plan.milestones:
            if m.owner_id == retiree.id and m.status in OPEN_MILESTONE:
                hand_over(work, m, heir, why)
                done.items.append(f"{case.key}/{m.key}")
        team = team_store.load_teams(conn, [case.id]).get(case.id, {})
        takes = {role for role, held in team.items() if held == retiree.id}
        done.roles += [f"{case.key}/{role}" for role in sorted(takes)]
        waiting = [
            g for g in loaded.plan.gates if g.status in (GateStatus.OPEN, GateStatus.PENDING)
        ]
        cast = team_store.voters(conn, [g.id for g in waiting])
        for g in waiting:
            role = g.approver_role
            holds = team.get(role) == retiree.id or (role == retiree.role and role not in team)
            if holds and (g.id, g.round, retiree.id) not in cast:
                done.votes.append(f"{case.key}/{g.key}")
                takes.add(role)
        for role in sorted(takes):
            team_store.set_member(conn, case.id, role, heir.id, now, new=role not in team)
            before = {"holder": email(work, team.get(role))}
            work.changes.append(Change("team.set", role, before, {"holder": heir.email}))
        if work.changes:
            finish(session, work, actor, None, notify=False, commit=False)
            # The notice is filed under an active case where there is one (dispatch drops
            # a notice whose case is on hold).
            active = case.status is CaseStatus.ACTIVE
            if first is None or (active and first.loaded.case.status is not CaseStatus.ACTIVE):
                first = work
    team_store.retire(conn, retiree.id, heir.id, now)
    directory_events.record(
        conn,
        kind="contact.retire",
        subject=retiree.email,
        actor=actor.email,
        now=now,
        source=actor.source,
        before={"retired_at": None, "successor": None},
        after={"retired_at": now, "successor": heir.email},
        source_ref=actor.source_ref,
        comment=actor.comment,
    )
    if first is not None:
        done.notices = len(enqueue(conn, [_notice(first, done, retiree.id, heir.id)], now=now))
    session.commit()
    return done


def _notice(work: Work, done: Retired, retiree_id: int, heir_id: int) -> OutboxNotice:
    """The one notice to the successor, filed under the first case they took over."""
    case = work.loaded.case
    payload = NoticePayload(
        case=case.key,
        case_title=case.title,
        pilot=case.kind,
        country=case.country,
        item="takeover",
        item_kind="milestone",
        item_title=f"what you took over from {done.retiree}",
        due=work.today,
        days_late=0,
        step=f"{TAKEOVER}{retiree_id}",
        offset=0,
        round=1,
        note=done.listing(),
    )
    return OutboxNotice(
        case_id=case.id,
        recipient_id=heir_id,
        recipient=done.successor,
        urgent=False,
        fire_on=work.today,
        payload=payload,
    )
