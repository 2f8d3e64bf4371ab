"""Requests for a new due date: who may ask and answer and what is refused (on a SQLite file),
an acceptance that is exactly a reschedule (on SQLite and PostgreSQL), the CLI's words, and
the Prefect form's vote entered by a pilot lead for an approver (`decide_gate(entered_for=)`).
Two answers at the same instant race in tests/reliability/test_races_requests.py."""

import json
import shutil
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlmodel import col, select

from bridgebsr.bootstrap import Runtime
from bridgebsr.demo import load_consortium
from bridgebsr.errors import IllegalTransition, InvalidInput, NotFound, StaleCase
from bridgebsr.office import people, requests
from bridgebsr.office.progress import Actor, decide_gate
from bridgebsr.reports.actions import needs_action
from bridgebsr.store.db import read_session, write_session
from models import CaseEvent, DateRequest, Decision, GateDecision, Notification, Source
from notifications.render import render
from tests.conftest import BEFORE_COUNCIL, DEMO_AS_OF, at, migrated, run_here
from tests.test_bridgebsr.test_monitor import (
    COORDINATOR,
    DESK_OWNER,
    DESK_STUDY,
    IP_KEY,
    LEAD,
    MONDAY,
    _case,
    _change,
    _milestone,
    _open,
    _progress,
)

DAY = MONDAY + timedelta(days=3)
COUNCILLOR = "peter.moller-jensen@mva.example"  # council-member at MVA
DEPUTY = "matthias.koehler@steinbeis.example"
WHY = "the regional workshops moved to May"


@pytest.fixture
def lite(tmp_path: Path) -> Iterator[Runtime]:
    """A SQLite case store with the consortium and the IP case IP-2026-0001 (led by SCANBALT:
    its pilot lead is LEAD; its desk study is the IP pilot's lead's, DESK_OWNER)."""
    with migrated(f"sqlite:///{tmp_path / 'cases.db'}", tmp_path / "home") as rt:
        load_consortium(rt)
        _open(rt)
        yield rt


def _ask(rt: Runtime, due: date, *, by: str = DESK_OWNER, **kw: Any) -> requests.DateAsk:
    with write_session(rt.engine) as session:
        return requests.ask_new_date(
            session=session,
            case_key=kw.pop("case_key", IP_KEY),
            item_key=kw.pop("item_key", DESK_STUDY),
            due=due,
            reason=kw.pop("reason", WHY),
            actor=by,
            source=Source.WEB,
            now=at(kw.pop("day", DAY).isoformat()),
            **kw,
        )


def _answer(rt: Runtime, number: int, accept: bool, by: str = LEAD, **kw: Any) -> Any:
    with write_session(rt.engine) as session:
        return requests.answer_date_request(
            session=session,
            request_id=number,
            accept=accept,
            actor=by,
            comment=kw.pop("comment", ""),
            source=Source.CLI,
            now=at(kw.pop("day", DAY).isoformat()),
            **kw,
        )


def _waiting(rt: Runtime, for_actor: str | None = None) -> list[dict[str, Any]]:
    with read_session(rt.engine) as session:
        return requests.pending_requests(
            session=session, for_actor=for_actor, now=at((DAY + timedelta(days=2)).isoformat())
        )


def _events(rt: Runtime, prefix: str) -> list[CaseEvent]:
    with read_session(rt.engine) as session:
        query = select(CaseEvent).where(col(CaseEvent.kind).startswith(prefix))
        return list(session.exec(query.order_by(col(CaseEvent.id))))


def _notices(rt: Runtime, step: str) -> list[Notification]:
    with read_session(rt.engine) as session:
        found = session.exec(select(Notification).order_by(col(Notification.id))).all()
    return [n for n in found if str(n.rule).startswith(step)]


def _request_rows(rt: Runtime) -> list[DateRequest]:
    with read_session(rt.engine) as session:
        return list(session.exec(select(DateRequest).order_by(col(DateRequest.id))))


# --- asking ------------------------------------------------------------------------------------


def test_an_owner_asks_and_the_pilot_lead_is_told_and_sees_it(lite: Runtime) -> None:
    due = _milestone(lite.engine, IP_KEY, DESK_STUDY).planned_due
    version = _case(lite.engine, IP_KEY).version
    asked = _ask(lite, due + timedelta(days=20), expected_version=version)

    assert (asked.status, asked.asked_by, asked.current_due) == ("pending", DESK_OWNER, due)
    assert asked.told == (LEAD,)
    (row,) = _request_rows(lite)
    assert (row.id, row.item_key, row.requested_due, row.source) == (
        asked.id,
        DESK_STUDY,
        due + timedelta(days=20),
        Source.WEB,
    )
    (event,) = _events(lite, "date.")
    assert (event.kind, event.actor, event.source, event.comment) == (
        "date.requested",
        DESK_OWNER,
        Source.WEB,
        WHY,
    )
    (notice,) = _notices(lite, "date-asked-")
    message = render(notice.payload)
    assert f"{DESK_OWNER} asks to move {DESK_STUDY}" in message.title
    assert f"requests accept|decline {asked.id}" in message.text
    assert _case(lite.engine, IP_KEY).version == version  # asking changes no date
    (listed,) = _waiting(lite, LEAD)
    assert (listed["id"], listed["case"], listed["age_days"]) == (asked.id, IP_KEY, 2)
    assert listed["leads"] == [LEAD] and listed["reason"] == WHY
    assert [r["id"] for r in _waiting(lite, COORDINATOR)] == [asked.id]
    assert _waiting(lite, DESK_OWNER) == [] and len(_waiting(lite)) == 1
    # The report's "needs action" section lists it, with names.
    shown = needs_action(lite.engine, today=DAY + timedelta(days=3), forecast=pd.DataFrame())
    (line,) = shown["requests"].to_dict("records")
    assert (line["id"], line["item"], line["age_days"]) == (asked.id, DESK_STUDY, 3)
    assert line["leads"] == "Søren Østergaard (SCANBALT)"
    assert needs_action(lite.engine, today=DAY, forecast=pd.DataFrame(), partner="MVA")[
        "requests"
    ].empty


def test_asking_is_refused_with_one_line_and_nothing_written(lite: Runtime) -> None:
    due = _milestone(lite.engine, IP_KEY, DESK_STUDY).planned_due
    later = due + timedelta(days=10)
    refusals: list[tuple[type[Exception], str, dict[str, Any]]] = [
        (InvalidInput, "say why", {"reason": "  "}),
        (IllegalTransition, "only its owner", {"by": COUNCILLOR}),
        (InvalidInput, "is not after today", {"due": DAY}),
        (InvalidInput, "already due on", {"due": due}),
        (NotFound, "no milestone 'nope'", {"item_key": "nope"}),
        (NotFound, "no contact", {"by": "nobody@example.org"}),
        (StaleCase, "someone changed it", {"expected_version": 99}),
    ]
    for error, words, kw in refusals:
        with pytest.raises(error, match=words) as caught:
            _ask(lite, kw.pop("due", later), **kw)
        assert "\n" not in str(caught.value)
    assert _request_rows(lite) == [] and _events(lite, "date.") == []
    _ask(lite, later)
    with pytest.raises(IllegalTransition, match="still waiting for an answer"):
        _ask(lite, later + timedelta(days=5))
    _progress(lite, IP_KEY, "kickoff", "complete", DAY, LEAD)
    with pytest.raises(IllegalTransition, match="it is done; only open items move"):
        _ask(lite, later, item_key="kickoff", by=LEAD)
    _change(lite, IP_KEY, "hold", DAY)
    with pytest.raises(IllegalTransition, match="on_hold"):
        _ask(lite, later, item_key="regional-workshops")
    assert len(_request_rows(lite)) == 1


def test_a_deputy_asks_for_the_owner_only_while_they_are_away(lite: Runtime) -> None:
    later = _milestone(lite.engine, IP_KEY, DESK_STUDY).planned_due + timedelta(days=10)
    with pytest.raises(IllegalTransition, match="only its owner"):
        _ask(lite, later, by=DEPUTY)
    with write_session(lite.engine) as session:
        people.set_absence(
            session=session,
            email=DESK_OWNER,
            starts=DAY,
            ends=DAY + timedelta(days=4),
            deputy=DEPUTY,
            now=at(MONDAY.isoformat()),
        )
    asked = _ask(lite, later, by=DEPUTY)
    assert asked.asked_by == DEPUTY


# --- answering ---------------------------------------------------------------------------------


def test_answers_are_refused_to_others_without_a_reason_and_twice(lite: Runtime) -> None:
    due = _milestone(lite.engine, IP_KEY, DESK_STUDY).planned_due
    asked = _ask(lite, due + timedelta(days=10))
    with pytest.raises(IllegalTransition, match="only its pilot lead or the coordinator"):
        _answer(lite, asked.id, True, by=DESK_OWNER)
    with pytest.raises(InvalidInput, match="say why you decline"):
        _answer(lite, asked.id, False)
    with pytest.raises(NotFound, match="no date request #999"):
        _answer(lite, 999, True)
    with pytest.raises(StaleCase):
        _answer(lite, asked.id, True, expected_version=99)
    assert [r.status for r in _request_rows(lite)] == ["pending"]

    declined = _answer(lite, asked.id, False, by=COORDINATOR, comment="the council meets first")
    assert (declined.status, declined.decided_by) == ("declined", COORDINATOR)
    with pytest.raises(IllegalTransition, match="already declined by mette"):
        _answer(lite, asked.id, True)
    assert _milestone(lite.engine, IP_KEY, DESK_STUDY).planned_due == due
    (row,) = _request_rows(lite)
    assert (row.status, row.decided_by, row.comment) == (
        "declined",
        COORDINATOR,
        "the council meets first",
    )
    kinds = [(e.kind, e.actor) for e in _events(lite, "date.")]
    assert kinds == [("date.requested", DESK_OWNER), ("date.declined", COORDINATOR)]
    (told,) = _notices(lite, "date-answered-")
    assert told.recipient_id == row.requested_by_id
    assert "declined moving" in render(told.payload).title
    assert _waiting(lite) == []
    _ask(lite, due + timedelta(days=30))  # answered, the item may be asked about again


def test_an_accepted_request_is_the_reschedule_with_its_reason(consortium: Runtime) -> None:
    rt = consortium
    _open(rt)
    due = _milestone(rt.engine, IP_KEY, DESK_STUDY).planned_due
    asked = _ask(rt, due + timedelta(days=45))
    version = _case(rt.engine, IP_KEY).version

    done = _answer(rt, asked.id, True, comment="agreed", expected_version=version)

    assert done.status == "accepted"
    assert _milestone(rt.engine, IP_KEY, DESK_STUDY).planned_due == due + timedelta(days=45)
    assert _case(rt.engine, IP_KEY).version == version + 1
    (move,) = _events(rt, "milestone.reschedule")
    assert (move.actor, move.source, move.comment) == (LEAD, Source.CLI, WHY)
    (accepted,) = _events(rt, "date.accepted")
    assert accepted.comment == "agreed" and accepted.id < move.id
    (told,) = _notices(rt, "date-answered-")
    assert told.payload["due"] == (due + timedelta(days=45)).isoformat()
    assert [r.status for r in _request_rows(rt)] == ["accepted"]


def test_an_acceptance_the_reschedule_refuses_leaves_the_request_waiting(lite: Runtime) -> None:
    due = _milestone(lite.engine, IP_KEY, DESK_STUDY).planned_due
    asked = _ask(lite, due + timedelta(days=10))
    with pytest.raises(IllegalTransition, match="no longer after today"):
        _answer(lite, asked.id, True, day=due + timedelta(days=12))
    _change(lite, IP_KEY, "hold", DAY)
    with pytest.raises(IllegalTransition, match="on_hold"):
        _answer(lite, asked.id, True)
    assert [r.status for r in _request_rows(lite)] == ["pending"]
    assert _events(lite, "date.accepted") == [] and _notices(lite, "date-answered-") == []


# --- withdrawing ------------------------------------------------------------------------------


def _withdraw(rt: Runtime, number: int, by: str = DESK_OWNER, **kw: Any) -> Any:
    with write_session(rt.engine) as session:
        return requests.withdraw_date_request(
            session=session,
            request_id=number,
            actor=by,
            comment=kw.pop("comment", ""),
            source=Source.WEB,
            now=at(kw.pop("day", DAY).isoformat()),
        )


def test_the_asker_withdraws_a_waiting_request_and_the_leads_are_told(lite: Runtime) -> None:
    due = _milestone(lite.engine, IP_KEY, DESK_STUDY).planned_due
    asked = _ask(lite, due + timedelta(days=10))
    version = _case(lite.engine, IP_KEY).version
    with pytest.raises(IllegalTransition, match=f"only {DESK_OWNER}, who asked, may"):
        _withdraw(lite, asked.id, by=LEAD)  # a lead declines instead
    with pytest.raises(NotFound, match="no date request #99"):
        _withdraw(lite, 99)
    done = _withdraw(lite, asked.id, comment="  the workshops stay  ")
    assert (done.status, done.decided_by, done.comment) == (
        "withdrawn",
        DESK_OWNER,
        "the workshops stay",
    )
    assert [r.status for r in _request_rows(lite)] == ["withdrawn"] and _waiting(lite) == []
    (event,) = _events(lite, "date.withdrawn")
    assert (event.actor, event.subject, event.source) == (DESK_OWNER, DESK_STUDY, Source.WEB)
    assert _milestone(lite.engine, IP_KEY, DESK_STUDY).planned_due == due  # the date stands
    assert _case(lite.engine, IP_KEY).version == version
    (told,) = _notices(lite, "date-withdrawn-")
    assert told.dedupe_key.endswith(f"/date-withdrawn-{asked.id}/{LEAD}")
    message = render(told.payload)
    assert f"{DESK_OWNER} withdrew the request to move {DESK_STUDY}" in message.title
    assert "nothing to answer" in message.text
    with pytest.raises(
        IllegalTransition, match=f"already withdrawn by {DESK_OWNER}; nothing to answer"
    ):
        _answer(lite, asked.id, True)
    with pytest.raises(IllegalTransition, match="nothing to withdraw"):
        _withdraw(lite, asked.id)
    again = _ask(lite, due + timedelta(days=12))  # the item may be asked for again
    _answer(lite, again.id, False, comment="council first")
    with pytest.raises(IllegalTransition, match=f"already declined by {LEAD}; nothing to withdraw"):
        _withdraw(lite, again.id)


# --- the Prefect form's vote, entered by a pilot lead ------------------------------------------


def test_a_pilot_lead_enters_an_approvers_vote_and_no_one_else_may(lite: Runtime) -> None:
    for milestone in BEFORE_COUNCIL:
        _progress(lite, IP_KEY, milestone, "complete", DAY, LEAD)

    def vote(by: str, approver: str) -> None:
        with write_session(lite.engine) as session:
            decide_gate(
                session=session,
                case_key=IP_KEY,
                gate_key="council-approval",
                decision=Decision.APPROVE,
                actor=Actor(by, Source.FLOW, "run-1", "sound"),
                now=at(DAY.isoformat()),
                entered_for=approver,
            )

    with pytest.raises(IllegalTransition, match="only a pilot lead of IP-2026-0001"):
        vote(COUNCILLOR, COUNCILLOR)  # an approver cannot type their own name in the form
    with pytest.raises(IllegalTransition, match="needs a council-member"):
        vote(LEAD, DESK_OWNER)
    vote(LEAD, COUNCILLOR)
    (event,) = [e for e in _events(lite, "gate.") if e.kind == "gate.vote"]
    assert (event.actor, event.source, event.source_ref) == (LEAD, Source.FLOW, "run-1")
    assert event.after is not None and event.after["on_behalf_of"] == COUNCILLOR
    with read_session(lite.engine) as session:
        (decision,) = session.exec(select(GateDecision)).all()
    assert decision.comment == "sound"
    # The approver hears at once that a vote stands in their name, and from whom.
    (told,) = _notices(lite, "vote-entered")
    assert told.dedupe_key == f"g:{IP_KEY}/council-approval/r1/vote-entered/{COUNCILLOR}"
    assert (told.fire_on, told.urgent) == (DAY, False)
    message = render(told.payload)
    assert (
        message.title
        == f"{IP_KEY}: {LEAD} entered your decision 'approve' on gate council-approval"
    )
    assert "If it is not what you decided, tell the pilot lead" in message.text


# --- the command line --------------------------------------------------------------------------


def test_the_commands_ask_list_refuse_in_one_line_and_accept(
    demo_home: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    shutil.copytree(demo_home, home)
    owner, key, item = "oskar.lundback@lundback-dx.example", "SME-2026-0009", "service-plan"
    asked = run_here(
        home, "milestone", "ask-date", key, item, "--due", "2026-12-15", "--reason", "lab shut",
        "--by", owner, "--as-of", DEMO_AS_OF, "--json",
    )  # fmt: skip
    assert asked.returncode == 0, asked.stderr
    number = str(json.loads(asked.stdout)["id"])
    listed = run_here(home, "requests", "list", "--by", LEAD, "--json", "--as-of", DEMO_AS_OF)
    assert [r["item"] for r in json.loads(listed.stdout)] == [item]
    refused = run_here(home, "requests", "decline", number, "--by", LEAD, "--as-of", DEMO_AS_OF)
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr == "error: say why you decline: --comment 'why the date stays'\n"
    accepted = run_here(home, "requests", "accept", number, "--by", LEAD, "--as-of", DEMO_AS_OF)
    assert accepted.returncode == 0, accepted.stderr
    assert f"{item} now due 2026-12-15; {owner} is told" in accepted.stdout
