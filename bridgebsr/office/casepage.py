"""A case's page on the partners' door, as one person may see it, and the checks the door's
actions make against it before calling the use cases.

Scope is `rules.access` (a deputy sees and acts for whom they stand in for now, as on My
items: `store.absences.standing_in`); the page is `office.queries.show_case` with the case's
team, fields, evidence and each gate's evidence text, and what the reader may do on it."""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from functools import partial
from typing import Any

from sqlalchemy import select
from sqlmodel import Session, col

from bridgebsr.errors import BridgeError, IllegalTransition, NotFound
from bridgebsr.office.mine import absent_people
from bridgebsr.office.queries import show_case
from bridgebsr.rules.access import (
    Access,
    CaseFacts,
    access,
    may_decide,
    may_progress,
    sees_case,
    whose_vote,
)
from bridgebsr.rules.people import Person
from bridgebsr.rules.requests import case_leads
from bridgebsr.store import case_rows
from bridgebsr.store import requests as date_requests
from bridgebsr.store.absences import standing_in
from bridgebsr.store.access import case_scope
from bridgebsr.store.people import load_directory
from models import CaseStatus, FieldSpec, Gate, GateStatus


@dataclass
class CasePage:
    """A case as one person may see it (`access`): the whole of it, or only its gates they
    may vote on."""

    access: Access
    case: dict[str, Any]


def case_page(
    *, session: Session, key: str, person: Person, today: date, now: datetime | None = None
) -> CasePage:
    """The case `key` as `person` may see it at `now` (default: noon UTC of `today`):
    `Access.NONE` (and nothing) when outside their scope, as for a case that does not exist.
    A deputy sees, and may act on, the items of whom they stand in for now."""
    conn = session.connection()
    found = case_scope(conn, key)
    if found is None:
        return CasePage(Access.NONE, {})
    case_id, version, _, facts = found
    kind = facts.kind
    at = now or datetime.combine(today, time(12), UTC)
    standing = standing_in(conn, person.id, at)
    covering = {a.contact_id for a in standing}
    absent = absent_people(session, standing)
    level = (
        Access.FULL
        if sees_case(person, facts, covering)
        else access(person, facts, _open_roles(conn, case_id), covering, absent)
    )
    if level is Access.NONE:
        return CasePage(level, {})
    try:
        shown = show_case(session=session, key=key, today=today)
    except NotFound:
        return CasePage(Access.NONE, {})
    evidence: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for link in shown["evidence"]:
        evidence.setdefault((link["item_kind"], link["item_key"]), []).append(link)
    for gate in shown["gates"]:
        voted = {d["by"] for d in gate["decisions"] if d["round"] == gate["round"]}
        gate["evidence"] = gate["to_look_at"]
        gate["approvals"] = sum(
            1
            for d in gate["decisions"]
            if d["round"] == gate["round"] and d["decision"] == "approve"
        )
        role = gate["approver_role"]
        is_open = (
            gate["status"] == GateStatus.OPEN.value and shown["status"] == CaseStatus.ACTIVE.value
        )
        may = partial(_may_still, role, facts.team, voted)
        voter = whose_vote(person, absent, may) if is_open else None
        gate["may_vote"] = voter is not None
        gate["for"] = voter.email if voter is not None and voter is not person else None
        gate["voted"] = person.email in voted
        gate["links"] = evidence.get(("gate", gate["key"]), [])
    if level is Access.VOTE:
        return CasePage(level, _vote_only(shown))
    directory = load_directory(conn)
    template = case_rows.pinned_template(session, kind, version)
    leads = {p.id for p in case_leads(directory, facts.lead_partner_id, kind, facts.team)}
    waiting = date_requests.waiting_on_case(conn, case_id)
    for m in shown["milestones"]:
        if m["key"] in waiting:
            number, asker, due = waiting[m["key"]]
            m["request"] = {"id": number, "by": asker, "due": due.isoformat()}
            m["request"]["mine"] = asker == person.email
        holder = directory.by_email.get(m["owner"]) if m["owner"] else None
        owner = holder.id if holder else None
        m["owner_name"] = holder.name if holder else m["owner"]
        m["may_act"] = shown["status"] == CaseStatus.ACTIVE.value and may_progress(
            person, owner, facts, item_role=m["owner_role"], covering=covering, leads=leads
        )
        m["links"] = evidence.get(("milestone", m["key"]), [])
        m["captures"] = [_capture(spec) for spec in template.captured(m["key"])]
    shown["team"] = [
        {"role": role, "name": directory.people[cid].name, "email": directory.people[cid].email}
        for role, cid in sorted(facts.team.items())
        if cid in directory.people
    ]
    shown["events"].reverse()  # newest first
    return CasePage(level, shown)


def _may_still(role: str, team: Mapping[str, int], voted: set[str], person: Person) -> bool:
    """Whether `person` may vote on a gate needing `role` (`may_decide`) and has not voted
    this round (`voted`: the addresses that have)."""
    return may_decide(person, role, team) and person.email not in voted


def _capture(spec: FieldSpec) -> dict[str, Any]:
    """A field a completion captures, as the form asks for it."""
    return {
        "key": spec.key,
        "label": spec.title(),
        "help": spec.help,
        "kind": spec.kind.value,
        "required": spec.required,
        "choices": list(spec.choices),
    }


def _vote_only(shown: dict[str, Any]) -> dict[str, Any]:
    """What a voter outside the case's scope is shown: the case's name and version, the gates
    they may vote on (with evidence text and votes so far), and the evidence links given."""
    return {
        "key": shown["key"],
        "title": shown["title"],
        "kind": shown["kind"],
        "status": shown["status"],
        "version": shown["version"],
        "gates": [g for g in shown["gates"] if g["may_vote"] or g["voted"]],
        "evidence": shown["evidence"],
    }


def _open_roles(conn: Any, case_id: int) -> set[str]:
    """The approver roles of the case's open gates."""
    query = select(col(Gate.approver_role)).where(
        col(Gate.case_id) == case_id, col(Gate.status) == GateStatus.OPEN
    )
    return set(conn.execute(query).scalars())


class OutOfScope(BridgeError):
    """An action asked of a case the person does not see (nothing of it may be shown)."""


class NotAllowed(BridgeError):
    """An action on a case the person sees, on an item or gate they may not act on."""


def require_may_progress(page: CasePage, item: str) -> None:
    """Refuse unless `page`'s reader may start or complete milestone `item` of it."""
    if page.access is Access.NONE:
        raise OutOfScope(f"you may not update {item} of this case")
    if page.access is not Access.FULL or not any(
        m["key"] == item and m["may_act"] for m in page.case["milestones"]
    ):
        raise NotAllowed(f"you may not update {item} of this case")


def require_own_request(page: CasePage, item: str, number: int) -> None:
    """Refuse unless `page`'s reader asked request `number`, waiting on milestone `item`."""
    if page.access is Access.NONE:
        raise OutOfScope(f"you may not change {item} of this case")
    milestones = page.case.get("milestones", [])
    asked = [m.get("request") for m in milestones if m["key"] == item]
    if not asked or not asked[0] or asked[0]["id"] != number or not asked[0]["mine"]:
        raise NotAllowed(f"you have no request #{number} waiting on {item} of this case")


def require_may_vote(page: CasePage, gate: str) -> None:
    """Refuse unless `page`'s reader may vote on gate `gate` of it now (`may_decide`, and
    not voted yet this round), themselves or for an absent approver they stand in for."""
    if page.access is Access.NONE:
        raise OutOfScope(f"you may not vote on {gate} of this case")
    gates = page.case.get("gates", [])
    if any(g["key"] == gate and g["may_vote"] for g in gates):
        return
    if any(g["key"] == gate and g["voted"] for g in gates):
        raise IllegalTransition(f"you have already voted on {gate} in this round")
    raise NotAllowed(f"you may not vote on {gate} of this case")


def checked_facts(session: Session, key: str) -> CaseFacts:
    """The scope facts of case `key` (a case that does not exist: `NotFound`)."""
    found = case_scope(session.connection(), key)
    if found is None:
        raise NotFound(f"no case {key}")
    return found[3]
