"""The partners' door's scope: the SQL filters (`store.access`) pick the same cases and gates
as the rules (`rules.access`) for every person of the demo portfolio, and My items and the
case page keep to them."""

from collections.abc import Iterator
from datetime import UTC, date, datetime

from sqlmodel import col, select

from bridgebsr.bootstrap import Runtime
from bridgebsr.demo import load_demo
from bridgebsr.office import casepage, mine
from bridgebsr.office.progress import Actor
from bridgebsr.office.team import set_team
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
from bridgebsr.store.access import decidable
from bridgebsr.store.db import read_session, write_session
from bridgebsr.store.people import load_directory
from models import Case, Gate, GateStatus

TODAY = date(2026, 11, 26)
NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)
TEAMED = "dace.vitolina@biotech-lv.example"  # a founder at LBA, put on one IP case's team


def _person(**kw: object) -> Person:
    base: dict[str, object] = {
        "id": 1,
        "email": "a@x.example",
        "name": "A",
        "role": "founder",
        "partner_id": 10,
        "partner_code": "X",
        "country": "DK",
        "timezone": "Europe/Copenhagen",
        "leads": (),
        "area": ("DK", None),
    }
    return Person(**(base | kw))  # type: ignore[arg-type]


def test_each_way_into_a_case_and_no_other() -> None:
    case = CaseFacts(
        owner_id=2, lead_partner_id=20, kind="ip", team={"ip-expert": 3}, item_owners={4}
    )
    outsider = _person()
    assert not sees_case(outsider, case)
    assert sees_case(_person(role="coordinator"), case)
    for way in ({"id": 2}, {"partner_id": 20}, {"leads": ("ip",)}, {"id": 3}, {"id": 4}):
        assert sees_case(_person(**way), case), way
    council = _person(role="council-member")
    assert access(council, case, {"council-member"}) is Access.VOTE
    assert access(council, case, {"coordinator"}) is Access.NONE
    assert access(outsider, case, {"ip-expert"}) is Access.NONE
    assert may_decide(_person(id=3), "ip-expert", case.team)
    assert sees_case(outsider, case, covering={4})  # standing in for an item's owner


def test_each_way_to_progress_an_item_and_no_other() -> None:
    """Owner 4's item held through the team role ip-expert (3) of case owner 2's case: who may
    start, complete or waive it."""
    case = CaseFacts(
        owner_id=2, lead_partner_id=20, kind="ip", team={"ip-expert": 3}, item_owners={4}
    )

    def may(
        person: Person, covering: frozenset[int] = frozenset(), leads: frozenset[int] = frozenset()
    ) -> bool:
        return may_progress(person, 4, case, item_role="ip-expert", covering=covering, leads=leads)

    assert not may(_person())
    assert not may(_person(partner_id=20))  # seeing the case is not enough
    assert not may(_person(id=5), covering=frozenset({6}))  # standing in for someone else
    assert not may_progress(_person(id=3), 4, case, item_role="other-role")
    for way in ({"id": 4}, {"id": 2}, {"id": 3}, {"leads": ("ip",)}, {"role": "coordinator"}):
        assert may(_person(**way)), way
    assert may(_person(id=5), covering=frozenset({4}))  # the owner's deputy while they are away
    assert may(_person(id=5), leads=frozenset({5}))  # a pilot lead of this case


def test_a_vote_is_the_readers_own_first_then_the_first_absent_approvers() -> None:
    reader = _person(id=1, role="founder")
    first, second = _person(id=2, role="council-member"), _person(id=3, role="council-member")
    council = {2, 3}

    def may(p: Person) -> bool:
        return p.role == "council-member" and p.id in council

    def never_read() -> Iterator[Person]:
        raise AssertionError("whom the reader stands in for is not read")
        yield reader

    assert whose_vote(first, never_read(), may) is first  # their own vote comes first
    assert whose_vote(reader, [first, second], may) is first
    council.discard(2)  # the first absent approver has voted
    assert whose_vote(reader, [first, second], may) is second
    council.clear()
    assert whose_vote(reader, [first, second], may) is None


def test_sql_scope_is_the_rule_for_everyone(consortium: Runtime) -> None:
    keys = load_demo(consortium, TODAY)
    ip_case = next(k for k in keys if k.startswith("IP"))
    with write_session(consortium.engine) as session:
        set_team(
            session=session, key=ip_case, sets={"ip-expert": TEAMED}, actor=Actor("t@x"), now=NOW
        )
    with read_session(consortium.engine) as session:
        directory = load_directory(session.connection())
        cases = session.exec(select(Case.id, Case.key).order_by(col(Case.key))).all()
        facts = {key: casepage.checked_facts(session, key) for _, key in cases}
        gates = session.exec(
            select(Gate.id, Gate.approver_role, Case.key)
            .join(Case, col(Case.id) == Gate.case_id)
            .where(Gate.status == GateStatus.OPEN)
        ).all()
        assert gates, "the demo has open gates"
        for person in directory.people.values():
            by_rule = [k for _, k in cases if sees_case(person, facts[k])]
            assert mine.visible_case_keys(session, person) == by_rule, person.email
            may = {g for g, role, key in gates if may_decide(person, role, facts[key].team)}
            by_sql = session.exec(
                select(Gate.id).where(Gate.status == GateStatus.OPEN, decidable(person))
            ).all()
            assert set(by_sql) == may, person.email
        teamed = directory.by_email[TEAMED]
        # Her team's IP case, and the mentoring exchange her partner (LBA) leads in the demo.
        mentoring = next(k for k in keys if k.startswith("MENT-"))
        assert mine.visible_case_keys(session, teamed) == sorted([ip_case, mentoring])


def test_my_items_and_case_page_keep_to_scope(consortium: Runtime) -> None:
    keys = load_demo(consortium, TODAY)
    with read_session(consortium.engine) as session:
        directory = load_directory(session.connection())
        council = directory.by_email["paivi.kaariainen@bioforum-oulu.example"]
        items = mine.my_items(session=session, person=council, today=TODAY)
        assert items.gates, "a council member has the IP council gate to vote on"
        gate = items.gates[0]
        assert "expert-panel minutes" in gate["evidence"]
        page = casepage.case_page(session=session, key=gate["case"], person=council, today=TODAY)
        assert page.access is Access.VOTE
        assert [g["key"] for g in page.case["gates"]] == [gate["item"]]
        assert "events" not in page.case and "milestones" not in page.case
        founder = directory.by_email["triin.saask@biotech-ee.example"]  # EBA: on no case
        for key in keys:
            shut = casepage.case_page(session=session, key=key, person=founder, today=TODAY)
            assert shut.access is Access.NONE and shut.case == {}
        assert mine.my_items(session=session, person=founder, today=TODAY).cases == []
        lead = directory.by_email["soren.ostergaard@scanbalt.example"]  # leads the SME pilot
        led = mine.my_items(session=session, person=lead, today=TODAY, limit=3)
        assert len(led.cases) == 3 and led.cases_total == len([k for k in keys if "SME" in k])
        assert len(led.due) == 3 and led.due_total > 3  # the first three of many, by due date
        assert [r["due"] for r in led.due] == sorted(r["due"] for r in led.due)
        coordinator = directory.by_email["mette.sorensen@scanbalt.example"]
        full = casepage.case_page(
            session=session, key=gate["case"], person=coordinator, today=TODAY
        )
        assert full.access is Access.FULL and full.case["events"] and full.case["milestones"]
