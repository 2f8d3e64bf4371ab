"""The opening planner is pure, and planning many cases at once gives each case what planning
it alone gives (`rules.opening`); a progress step follows the lifecycle rules
(`rules.progress`)."""

from datetime import UTC, date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridgebsr.errors import IllegalTransition, InvalidInput
from bridgebsr.exchange.catalog import load_catalog
from bridgebsr.rules import opening, rows
from bridgebsr.rules import progress as rules
from bridgebsr.rules.calendars import work_area
from bridgebsr.rules.people import Directory, Person
from bridgebsr.rules.rows import Organisation
from models import MilestoneStatus

NOW = datetime(2026, 4, 15, 10, tzinfo=UTC)
TEMPLATES = load_catalog().templates
ORGS = [
    Organisation(1, "SCANBALT", "DK", "Hovedstaden", "Europe/Copenhagen"),
    Organisation(2, "BCV", "DE", "Mecklenburg-Vorpommern", "Europe/Berlin"),
    Organisation(3, "STEINBEIS", "DE", "Baden-Württemberg", "Europe/Berlin"),
]


def _person(pid: int, role: str, org: Organisation, country: str, leads: str = "") -> Person:
    return Person(
        pid, f"p{pid}@example.org", f"P {pid}", role, org.id, org.code, country,
        org.timezone, tuple(k for k in leads.split(",") if k),
        work_area(country, org.country, org.region),
    )  # fmt: skip


PEOPLE = [
    _person(1, "case-owner", ORGS[0], "DK"),
    _person(2, "sme-advisor", ORGS[1], "DE"),
    _person(3, "pilot-lead", ORGS[0], "DK", "shared-sme-service,ip-integration"),
    _person(4, "case-owner", ORGS[2], "DE"),
    _person(5, "ip-officer", ORGS[2], "DE"),
    _person(6, "pilot-lead", ORGS[1], "DE", "life-science-foundation"),
    _person(7, "case-owner", ORGS[1], "SE"),
]
DIRECTORY = Directory.of(PEOPLE, ORGS)

openings = st.builds(
    opening.Opening,
    template=st.sampled_from(sorted(TEMPLATES.values(), key=lambda t: t.kind)),
    title=st.just("A case"),
    owner=st.sampled_from(PEOPLE),
    lead=st.sampled_from(ORGS),
    start=st.dates(date(2025, 1, 1), date(2026, 6, 30)),
    today=st.just(NOW.date()),
)


def _rows(planned: opening.Planned) -> list[tuple[object, ...]]:
    plan = planned.plan
    return [
        rows.values(row, rows.columns(type(row)))
        for row in [plan.case, *plan.milestones, *plan.gates]
    ]


@settings(max_examples=60, deadline=None)
@given(cases=st.lists(openings, min_size=1, max_size=12))
def test_a_batch_plans_each_case_as_it_alone_is_planned(cases: list[opening.Opening]) -> None:
    batch = opening.Planner(DIRECTORY, NOW)
    together = [batch.plan(c, f"K-{i}", source_ref=None) for i, c in enumerate(cases)]
    for i, (case, planned) in enumerate(zip(cases, together, strict=True)):
        alone = opening.open_case(DIRECTORY, case, f"K-{i}", NOW, source_ref=None)
        assert _rows(planned) == _rows(alone)
        assert planned.events == alone.events
    # What one case's progress changes leaves the next case's plan as it was.
    first = together[0].plan.milestones[0]
    first.status = MilestoneStatus.DONE
    again = batch.plan(cases[0], "K-0", source_ref=None)
    assert again.plan.milestones[0].status is MilestoneStatus.PLANNED


def _sme() -> opening.Planned:
    case = opening.Opening(
        TEMPLATES["shared-sme-service"], "SME", PEOPLE[0], ORGS[0], date(2026, 3, 2), NOW.date()
    )
    return opening.open_case(DIRECTORY, case, "SME-2026-0001", NOW, source_ref=None)


def test_a_step_follows_the_lifecycle_rules_and_settling_notes_the_forecast() -> None:
    plan = _sme().plan
    by_key = {m.key: m for m in plan.milestones}
    intake, interview = by_key["request-intake"], by_key["needs-interview"]
    with pytest.raises(IllegalTransition, match="predecessors not finished: request-intake"):
        rules.step(plan, interview, "start", date(2026, 3, 3))
    done = rules.step(plan, intake, "complete", date(2026, 3, 10))
    assert (intake.status, intake.finished_on) == (MilestoneStatus.DONE, date(2026, 3, 10))
    assert done.after["days_late"] == (date(2026, 3, 10) - intake.planned_due).days
    with pytest.raises(InvalidInput, match="before predecessor request-intake"):
        rules.step(plan, interview, "start", date(2026, 3, 9))
    before = plan.case.forecast_date
    rules.settle(plan, TEMPLATES["shared-sme-service"], NOW.date(), [done])
    assert plan.case.forecast_date != before  # the work left is planned again from today
    assert done.before["case_forecast"] == before.isoformat()
    assert done.after["case_forecast"] == plan.case.forecast_date.isoformat()
