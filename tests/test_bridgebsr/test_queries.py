"""Listing the gates waiting for a decision reads the same as asking for each gate alone."""

from datetime import UTC, date, datetime

from sqlmodel import select

from bridgebsr.bootstrap import Runtime
from bridgebsr.demo import load_demo
from bridgebsr.office import gate_views
from bridgebsr.office.progress import Actor, decide_gate, refuse_decision
from bridgebsr.store.db import read_session, write_session
from models import Contact, Decision, Source


def test_waiting_gates_match_gate_view_with_votes_and_refusals(consortium: Runtime) -> None:
    load_demo(consortium, date(2026, 11, 26))
    now = datetime(2026, 11, 26, 12, tzinfo=UTC)
    with read_session(consortium.engine) as session:
        (first,) = [
            v for v in gate_views.waiting_gates(session=session) if v.pilot == "ip-integration"
        ]
        voter = session.exec(
            select(Contact.email).where(Contact.role == first.approver_role).order_by(Contact.email)
        ).first()
    assert voter is not None
    with write_session(consortium.engine) as session:
        decide_gate(
            session=session,
            case_key=first.case_key,
            gate_key=first.gate_key,
            decision=Decision.APPROVE,
            actor=Actor(voter),
            now=now,
        )
    # A refused submission of the gate form counts (its run waits under a new key); a refusal
    # on the web is on the history only.
    for source in (Source.FLOW, Source.WEB):
        with write_session(consortium.engine) as session:
            refuse_decision(
                session=session,
                case_key=first.case_key,
                gate_key=first.gate_key,
                actor=Actor("someone@else.example", source),
                reason="not an approver",
                now=now,
            )
    with read_session(consortium.engine) as session:
        listed = gate_views.waiting_gates(session=session)
        one_by_one = [
            gate_views.gate_view(session=session, case_key=v.case_key, gate_key=v.gate_key)
            for v in listed
        ]
    assert listed == one_by_one
    (after,) = [v for v in listed if (v.case_key, v.gate_key) == (first.case_key, first.gate_key)]
    assert (after.votes, after.approvals, after.refused) == (1, 1, 1)
