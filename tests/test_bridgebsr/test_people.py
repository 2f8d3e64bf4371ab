"""People coming and going, on a SQLite file and on PostgreSQL: `contacts add` and `edit` for
one person without a file, `contacts away` with a deputy, and the deputy acting for the
absent person (a milestone step, a gate vote) only while they are away."""

import json
import multiprocessing
from datetime import date, datetime
from typing import Any

import pytest
from sqlmodel import col, select

from bridgebsr.bootstrap import Runtime, build_runtime
from bridgebsr.errors import BridgeError, IllegalTransition, InvalidInput
from bridgebsr.office import cases, people, progress
from bridgebsr.rules.people import Away, acting_for, away_now, check_absence
from bridgebsr.settings import Settings
from bridgebsr.store.db import read_session, write_session
from models import (
    Absence,
    CaseEvent,
    Contact,
    Decision,
    DirectoryEvent,
    GateDecision,
    Milestone,
)
from tests.conftest import BEFORE_COUNCIL, at
from tests.test_bridgebsr.test_cli_input import cli, one_error_line, store_env

LEAD = "soren.ostergaard@scanbalt.example"  # pilot-lead at SCANBALT, Denmark
DEPUTY = "anders.bogh@scanbalt.example"  # case-owner at SCANBALT, Denmark
COUNCIL = "peter.moller-jensen@mva.example"  # a council member (MVA, Denmark)
IP_KEY = "IP-2026-0001"
MONDAY = date(2026, 3, 2)


# --- the rule ------------------------------------------------------------------------------------


def _away(cid: int, starts: str, ends: str, deputy: int, zone: str = "Europe/Copenhagen") -> Away:
    return Away(
        cid, f"p{cid}@x.example", zone, date.fromisoformat(starts), date.fromisoformat(ends), deputy
    )


def test_an_absence_counts_in_the_absent_persons_own_dates() -> None:
    helsinki = _away(1, "2026-06-01", "2026-06-05", 9, zone="Europe/Helsinki")
    lisbon = _away(2, "2026-06-01", "2026-06-05", 9, zone="Europe/Lisbon")
    # 22:30 UTC on 31 May is 1 June in Helsinki, still 31 May in Lisbon (23:30).
    evening = datetime.fromisoformat("2026-05-31T22:30:00+00:00")
    assert set(away_now([helsinki, lisbon], evening)) == {1}
    # 22:30 UTC on 5 June: Helsinki is back (6 June), Lisbon still away.
    later = datetime.fromisoformat("2026-06-05T22:30:00+00:00")
    assert set(away_now([helsinki, lisbon], later)) == {2}
    assert [a.contact_id for a in acting_for([helsinki, lisbon], 9, later)] == [2]
    assert acting_for([helsinki, lisbon], 8, later) == []


@pytest.mark.parametrize(
    ("starts", "ends", "deputy", "says"),
    [
        ("2026-06-10", "2026-06-09", 9, "before --from"),
        ("2026-06-10", "2026-06-12", 1, "--deputy is the person"),
        ("2026-06-05", "2026-06-07", 9, "already away 2026-06-01 to 2026-06-05"),
        ("2026-05-20", "2026-06-01", 9, "already away"),
    ],
)
def test_an_absence_is_refused_when_it_cannot_be(
    starts: str, ends: str, deputy: int, says: str
) -> None:
    existing = [_away(1, "2026-06-01", "2026-06-05", 9)]
    with pytest.raises(InvalidInput, match=says):
        check_absence(1, date.fromisoformat(starts), date.fromisoformat(ends), deputy, existing)


def test_an_absence_just_after_another_is_fine() -> None:
    existing = [_away(1, "2026-06-01", "2026-06-05", 9), _away(2, "2026-06-06", "2026-06-09", 9)]
    check_absence(1, date(2026, 6, 6), date(2026, 6, 9), 9, existing)


# --- contacts add and edit ---------------------------------------------------------------------


def test_contacts_add_then_edit_from_the_command_line(consortium: Runtime) -> None:
    env = store_env(consortium)
    added = cli(
        env, "contacts", "add", "Jane.Doe@SCANBALT.example", "--name", "Jane Doe",
        "--partner", "scanbalt", "--role", "coordinator", "--json",
    )  # fmt: skip
    assert added.code == 0, added
    assert json.loads(added.stdout)["added"] == {
        "email": "jane.doe@scanbalt.example",
        "name": "Jane Doe",
        "partner": "SCANBALT",
        "role": "coordinator",
        "country": "DK",  # the partner's
        "timezone": "Europe/Copenhagen",  # the country's main zone
        "leads": "",
    }
    edited = cli(
        env, "contacts", "edit", "jane.doe@scanbalt.example", "--country", "SE",
        "--leads", "ip-integration", "--partner", "MVA",
    )  # fmt: skip
    assert edited.code == 0, edited
    assert edited.stdout.splitlines() == [
        "jane.doe@scanbalt.example: changed partner, country, timezone, leads",
        "  partner: SCANBALT -> MVA",
        "  country: DK -> SE",
        "  timezone: Europe/Copenhagen -> Europe/Stockholm",
        "  leads: - -> ip-integration",
    ]
    as_json = cli(
        env, "contacts", "edit", "jane.doe@scanbalt.example", "--name", "Jane D", "--json"
    )
    change = json.loads(as_json.stdout)
    assert (change["before"]["name"], change["after"]["name"]) == ("Jane Doe", "Jane D")
    assert change["after"]["timezone"] == "Europe/Stockholm"
    with read_session(consortium.engine) as session:
        jane = session.exec(
            select(Contact).where(Contact.email == "jane.doe@scanbalt.example")
        ).one()
    assert (jane.name, jane.country, jane.leads) == ("Jane D", "SE", "ip-integration")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("add", LEAD, "--name", "S", "--partner", "SCANBALT", "--role", "pilot-lead"),
         f"contact {LEAD} exists already"),
        (("add", "x@scanbalt.example", "--name", "X", "--partner", "NOPE", "--role", "coordinator"),
         "--partner: no partner 'NOPE'"),
        (("add", "x@scanbalt.example", "--name", "X", "--partner", "SCANBALT", "--role", "boss"),
         "--role: 'boss' is not a role"),
        (("add", "not-an-address", "--name", "X", "--partner", "SCANBALT", "--role", "coordinator"),
         "EMAIL: 'not-an-address' is not an email address"),
        (("add", "x@scanbalt.example", "--name", "X" * 201, "--partner", "SCANBALT",
          "--role", "coordinator"), "--name: 201 characters; at most 200"),
        (("add", "x@scanbalt.example", "--name", "X", "--partner", "SCANBALT",
          "--role", "coordinator", "--timezone", "Mars/Base"), "--timezone: 'Mars/Base'"),
        (("edit", "nobody@scanbalt.example", "--name", "N"), "no contact nobody@scanbalt.example"),
        (("edit", LEAD, "--role", "boss"), "--role: 'boss' is not a role"),
        (("edit", LEAD, "--leads", "no-such-pilot"), "--leads: 'no-such-pilot' is not a pilot"),
        (("edit", LEAD, "--country", "XX"), "--country: 'XX' is not an ISO 3166-1"),
        (("edit", LEAD), "nothing to change"),
    ],
)  # fmt: skip
def test_contacts_add_and_edit_refuse_in_one_line(
    consortium: Runtime, args: tuple[str, ...], says: str
) -> None:
    with read_session(consortium.engine) as session:
        before = [c.model_dump() for c in session.exec(select(Contact).order_by(col(Contact.id)))]
    one_error_line(cli(store_env(consortium), "contacts", *args), says)
    with read_session(consortium.engine) as session:
        after = [c.model_dump() for c in session.exec(select(Contact).order_by(col(Contact.id)))]
    assert after == before


def test_a_retired_contact_cannot_be_edited_nor_be_away(consortium: Runtime) -> None:
    with write_session(consortium.engine) as session:
        lead = session.exec(select(Contact).where(Contact.email == LEAD)).one()
        deputy = session.exec(select(Contact).where(Contact.email == DEPUTY)).one()
        lead.retired_at, lead.successor_id = at("2026-05-01"), deputy.id
        session.commit()
    env = store_env(consortium)
    one_error_line(
        cli(env, "contacts", "edit", LEAD, "--name", "S"),
        f"cannot edit {LEAD}: retired on 2026-05-01; their successor is {DEPUTY}",
    )
    one_error_line(
        cli(env, "contacts", "away", DEPUTY, "--from", "2026-06-01", "--to", "2026-06-02",
            "--deputy", LEAD, "--as-of", "2026-05-20"),
        f"cannot name as deputy {LEAD}: retired",
    )  # fmt: skip


# --- contacts away -------------------------------------------------------------------------------


def test_contacts_away_records_lists_and_cancels(consortium: Runtime) -> None:
    env = store_env(consortium)
    args = ("contacts", "away", LEAD, "--as-of", "2026-05-20")
    done = cli(env, *args, "--from", "2026-06-01", "--to", "2026-06-10", "--deputy", DEPUTY)
    assert done.code == 0, done
    assert f"{DEPUTY} gets their notices" in done.stdout
    one_error_line(
        cli(env, *args, "--from", "2026-06-10", "--to", "2026-06-12", "--deputy", COUNCIL),
        f"{LEAD} is already away 2026-06-01 to 2026-06-10",
    )
    one_error_line(
        cli(env, *args, "--from", "2026-06-12", "--to", "2026-06-11", "--deputy", COUNCIL),
        "--to 2026-06-11 is before --from 2026-06-12",
    )
    one_error_line(
        cli(env, *args, "--from", "2026-06-12", "--to", "2026-06-14", "--deputy", LEAD),
        "--deputy is the person who is away",
    )
    one_error_line(
        cli(env, *args, "--from", "2026-06-12", "--to", "2026-06-14", "--deputy", "x@y.example"),
        "--deputy: no contact x@y.example",
    )
    one_error_line(cli(env, *args, "--from", "2026-06-12"), "missing --to, --deputy")
    listed = json.loads(cli(env, "contacts", "away", LEAD, "--list", "--json").stdout)
    assert [(a["from"], a["to"], a["deputy"]) for a in listed] == [
        ("2026-06-01", "2026-06-10", DEPUTY)
    ]
    # Cancelled on 4 June: the person is back that day; the days away stay on record.
    back = cli(env, "contacts", "away", LEAD, "--cancel", "--as-of", "2026-06-04", "--json")
    assert json.loads(back.stdout)["after"]["to"] == "2026-06-03"
    one_error_line(
        cli(env, "contacts", "away", LEAD, "--cancel", "--as-of", "2026-06-04"),
        f"{LEAD} has no absence now or later to cancel",
    )
    # One not begun yet is removed.
    cli(env, *args, "--from", "2026-07-01", "--to", "2026-07-03", "--deputy", DEPUTY)
    gone = cli(
        env, "contacts", "away", LEAD, "--cancel", "--from", "2026-07-02", "--as-of", "2026-06-04"
    )
    assert gone.stdout.startswith(f"cancelled: {LEAD} away 2026-07-01 to 2026-07-03")
    with read_session(consortium.engine) as session:
        rows = session.exec(select(Absence)).all()
    assert [(a.starts, a.ends) for a in rows] == [(date(2026, 6, 1), date(2026, 6, 3))]


# --- the deputy acts for the absent person -------------------------------------------------------


def _away_from(rt: Runtime, who: str, starts: str, ends: str, deputy: str) -> None:
    with write_session(rt.engine) as session:
        people.set_absence(
            session=session,
            email=who,
            starts=date.fromisoformat(starts),
            ends=date.fromisoformat(ends),
            deputy=deputy,
            now=at("2026-03-01"),
        )


def _open_ip(rt: Runtime) -> None:
    with write_session(rt.engine) as session:
        cases.open_case(
            session=session,
            catalog=rt.catalog,
            kind="ip-integration",
            title="An IP case",
            owner_email=LEAD,
            start=MONDAY,
            now=at(MONDAY.isoformat()),
        )


def _step(rt: Runtime, item: str, action: str, day: str, by: str) -> None:
    with write_session(rt.engine) as session:
        progress.progress_milestone(
            session=session,
            case_key=IP_KEY,
            milestone_key=item,
            action=action,
            actor=progress.Actor(by),
            now=at(day),
        )


def _vote(rt: Runtime, decision: Decision, day: str, by: str) -> None:
    with write_session(rt.engine) as session:
        progress.decide_gate(
            session=session,
            case_key=IP_KEY,
            gate_key="council-approval",
            decision=decision,
            actor=progress.Actor(by, comment="fine"),
            now=at(day),
        )


def _last_event(rt: Runtime) -> CaseEvent:
    with read_session(rt.engine) as session:
        return session.exec(select(CaseEvent).order_by(col(CaseEvent.id).desc())).first()  # type: ignore[return-value]


def _leads_item(rt: Runtime) -> str:
    with read_session(rt.engine) as session:
        lead = session.exec(select(Contact).where(Contact.email == LEAD)).one()
        owned = session.exec(
            select(Milestone.key).where(Milestone.owner_id == lead.id).order_by(col(Milestone.seq))
        ).all()
    assert owned
    return owned[0]


def test_a_deputy_completes_an_absent_owners_item_on_their_behalf(consortium: Runtime) -> None:
    _open_ip(consortium)
    item = _leads_item(consortium)
    _away_from(consortium, LEAD, "2026-03-09", "2026-03-13", DEPUTY)
    _step(consortium, item, "start", "2026-03-10", DEPUTY)
    event = _last_event(consortium)
    assert (event.kind, event.actor) == ("milestone.start", DEPUTY)
    assert event.after and event.after["on_behalf_of"] == LEAD
    assert event.after["away_until"] == "2026-03-13"
    # Once the owner is back, the deputy stands in for no one: refused, nothing written.
    with pytest.raises(IllegalTransition, match=f"{DEPUTY} may not complete {item}"):
        _step(consortium, item, "complete", "2026-03-16", DEPUTY)
    assert _last_event(consortium).kind == "milestone.start"
    _step(consortium, item, "complete", "2026-03-16", LEAD)
    event = _last_event(consortium)
    assert event.actor == LEAD and "on_behalf_of" not in (event.after or {})


def test_a_deputy_votes_for_an_absent_approver_only_while_they_are_away(
    consortium: Runtime,
) -> None:
    _open_ip(consortium)
    for key in BEFORE_COUNCIL:
        _step(consortium, key, "complete", "2026-12-22", LEAD)
    _away_from(consortium, COUNCIL, "2026-12-23", "2026-12-24", DEPUTY)
    # The day before the absence, the case owner is no council member: refused.
    with pytest.raises(IllegalTransition, match="it needs a council-member"):
        _vote(consortium, Decision.APPROVE, "2026-12-22", DEPUTY)
    _vote(consortium, Decision.APPROVE, "2026-12-23", DEPUTY)
    with read_session(consortium.engine) as session:
        votes = session.exec(select(GateDecision, Contact.email).join(Contact)).all()
    assert [(email, d.decision) for d, email in votes] == [(COUNCIL, Decision.APPROVE)]
    event = _last_event(consortium)
    assert (event.kind, event.actor, event.comment) == ("gate.vote", DEPUTY, "fine")
    assert event.after and event.after["on_behalf_of"] == COUNCIL
    # The absent approver has voted now (through their deputy): not twice.
    with pytest.raises(IllegalTransition, match="it needs a council-member"):
        _vote(consortium, Decision.REJECT, "2026-12-24", DEPUTY)
    # Back at work, the deputy stands in for no one.
    with pytest.raises(IllegalTransition, match=f"{DEPUTY} cannot decide"):
        _vote(consortium, Decision.APPROVE, "2026-12-28", DEPUTY)


def test_the_gate_command_counts_the_deputys_vote_for_the_absent_approver(
    consortium: Runtime,
) -> None:
    _open_ip(consortium)
    for key in BEFORE_COUNCIL:
        _step(consortium, key, "complete", "2026-12-22", LEAD)
    env = store_env(consortium)
    assert cli(env, "contacts", "away", COUNCIL, "--from", "2026-12-23", "--to", "2026-12-24",
               "--deputy", DEPUTY, "--as-of", "2026-12-22").code == 0  # fmt: skip
    done = cli(env, "gate", "approve", IP_KEY, "council-approval", "--by", DEPUTY,
               "--as-of", "2026-12-23")  # fmt: skip
    assert done.code == 0, done
    assert "vote 1 of" in done.stdout
    one_error_line(
        cli(env, "gate", "approve", IP_KEY, "council-approval", "--by", DEPUTY,
            "--as-of", "2026-12-29"),
        f"{DEPUTY} cannot decide gate council-approval",
    )  # fmt: skip


# --- races -------------------------------------------------------------------------------------


def _racer(
    settings: Settings, job: tuple[str, str], barrier: Any, results: Any
) -> None:  # pragma: no cover - runs in a worker process
    """One worker: get ready, wait for the others, then add a contact or record an absence."""
    rt = build_runtime(settings)
    roles, kinds = rt.catalog.roles(), set(rt.catalog.templates)
    with rt.engine.connect():
        pass  # connected before the start
    what, deputy = job
    barrier.wait(timeout=60)
    try:
        with write_session(rt.engine) as session:
            if what == "vote":  # council-approval, by the approver or their deputy
                progress.decide_gate(
                    session=session,
                    case_key=IP_KEY,
                    gate_key="council-approval",
                    decision=Decision.APPROVE,
                    actor=progress.Actor(deputy),
                    now=at("2026-12-23"),
                )
            elif what == "add":
                given = {"email": "new@scanbalt.example", "name": deputy, "partner": "SCANBALT"}
                people.add_contact(
                    session=session,
                    given=given | {"role": "coordinator"},
                    roles=roles,
                    kinds=kinds,
                    now=at("2026-05-20"),
                )
            else:
                people.set_absence(
                    session=session,
                    email=LEAD,
                    starts=date(2026, 6, 1),
                    ends=date(2026, 6, 5),
                    deputy=deputy,
                    now=at("2026-05-20"),
                )
        results.put(("ok", ""))
    except BridgeError as exc:
        results.put(("refused", str(exc)))
    except Exception as exc:  # noqa: BLE001 - reported to the test
        results.put(("crashed", f"{type(exc).__name__}: {exc}"))
    finally:
        rt.engine.dispose()


def _race(rt: Runtime, jobs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(len(jobs)), ctx.Queue()
    workers = [
        ctx.Process(target=_racer, args=(rt.settings, job, barrier, results)) for job in jobs
    ]
    for w in workers:
        w.start()
    ended = [results.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(timeout=60)
    return ended


DEPUTIES = [DEPUTY, COUNCIL, "mette.sorensen@scanbalt.example", "nikolaj.brond@scanbalt.example"]


def test_overlapping_absences_recorded_at_once_leave_one(consortium: Runtime) -> None:
    ended = _race(consortium, [("away", d) for d in DEPUTIES])
    assert sorted(o for o, _ in ended) == ["ok", "refused", "refused", "refused"], ended
    assert all("is already away 2026-06-01 to 2026-06-05" in m for o, m in ended if o != "ok")
    with read_session(consortium.engine) as session:
        assert len(session.exec(select(Absence)).all()) == 1
        query = select(DirectoryEvent.kind).where(DirectoryEvent.subject == LEAD)
        kinds = session.exec(query.order_by(col(DirectoryEvent.id)))
        assert list(kinds) == ["contact.import", "absence.add"]


def test_an_absent_approver_and_their_deputy_voting_at_once_cast_one_vote(
    consortium: Runtime,
) -> None:
    """Both votes would be the council member's: released at one instant, one counts and the
    other is refused, on either store."""
    _open_ip(consortium)
    for key in BEFORE_COUNCIL:
        _step(consortium, key, "complete", "2026-12-22", LEAD)
    _away_from(consortium, COUNCIL, "2026-12-23", "2026-12-24", DEPUTY)
    ended = _race(consortium, [("vote", DEPUTY), ("vote", COUNCIL)])
    assert sorted(o for o, _ in ended) == ["ok", "refused"], ended
    with read_session(consortium.engine) as session:
        votes = session.exec(select(GateDecision, Contact.email).join(Contact)).all()
    assert [email for _, email in votes] == [COUNCIL]


def test_one_address_added_at_once_is_added_once(consortium: Runtime) -> None:
    ended = _race(consortium, [("add", f"Name {n}") for n in range(4)])
    assert sorted(o for o, _ in ended) == ["ok", "refused", "refused", "refused"], ended
    assert all("exists already" in m for o, m in ended if o != "ok")
    with read_session(consortium.engine) as session:
        added = session.exec(select(DirectoryEvent).where(DirectoryEvent.kind == "contact.add"))
        assert [e.subject for e in added] == ["new@scanbalt.example"]
