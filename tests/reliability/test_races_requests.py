"""Two pilot leads answering one request for a new date at the same instant, on a SQLite file
and on PostgreSQL (worker processes released at once: tests/reliability/_races.py): one
accepts, the other declines; exactly one answer is recorded, the other refused in one line,
and the store agrees with the winner (a reschedule only if the acceptance won)."""

from collections.abc import Iterator
from datetime import date

import pytest

from bridgebsr.office import people, requests
from bridgebsr.store.db import write_session
from models import DateRequest, Source
from tests.conftest import at
from tests.reliability._races import Pool
from tests.reliability.test_races import (  # noqa: F401 (the module's store fixture)
    LEAD,
    SME_OWNER,
    Race,
    _case,
    _clean,
    _events,
    _open,
    _since,
    race,
)

pytestmark = pytest.mark.slow

SECOND_LEAD = "second.lead@scanbalt.example"  # a second pilot-lead at SCANBALT
ITEM = "cluster-search"  # an SME case owner's milestone


@pytest.fixture(scope="module")
def pair() -> Iterator[Pool]:
    """Two worker processes for the module's races."""
    workers = Pool(2)
    workers.start()
    try:
        yield workers
    finally:
        workers.stop()


def _asked(store: Race) -> tuple[str, int, date]:
    """An SME case led by SCANBALT, whose two pilot leads may answer its owner's request."""
    key = _open(store.rt, "shared-sme-service", SME_OWNER, date(2026, 1, 12))
    with write_session(store.rt.engine) as session:
        people.add_contact(
            session=session,
            given={
                "email": SECOND_LEAD,
                "name": "Second Lead",
                "partner": "SCANBALT",
                "role": "pilot-lead",
            },
            roles={"pilot-lead"},
            now=at("2026-01-12"),
        )
    due = date(2026, 4, 1)
    with write_session(store.rt.engine) as session:
        asked = requests.ask_new_date(
            session=session,
            case_key=key,
            item_key=ITEM,
            due=due,
            reason="the SME's founder is abroad",
            actor=SME_OWNER,
            source=Source.WEB,
            now=at("2026-01-13"),
        )
    assert set(asked.told) == {LEAD, SECOND_LEAD}
    return key, asked.id, due


def test_two_leads_answering_one_request_at_once_one_answer_wins(
    race: Race,  # noqa: F811
    pair: Pool,
) -> None:
    key, number, due = _asked(race)
    before, trail = _case(race, key), _events(race, key)
    args = [(str(number), "accept", LEAD), (str(number), "decline", SECOND_LEAD)]
    ended = pair.race(race.jobs("answer", args, "2026-01-14"))

    (won,) = _clean(ended, {"IllegalTransition"})
    (lost,) = [e for e in ended if e.outcome == "refused"]
    status = won.detail
    assert f"request #{number} was already {status} by {won.job.args[2]}" in lost.detail
    answers = [e for e in _since(race, key, trail) if e.kind.startswith("date.")]
    assert [(e.kind, e.actor) for e in answers] == [(f"date.{status}", won.job.args[2])]
    moves = [e for e in _since(race, key, trail) if e.kind == "milestone.reschedule"]
    if status == "accepted":
        assert [m.after["due"] for m in moves] == [due.isoformat()]
        assert _case(race, key).version == before.version + 1
    else:
        assert moves == [] and _case(race, key).version == before.version
    with race.rt.engine.connect() as conn:
        row = conn.execute(
            DateRequest.__table__.select().where(DateRequest.__table__.c.id == number)  # type: ignore[attr-defined]
        ).one()
    assert (row.status, row.decided_by) == (status, won.job.args[2])
