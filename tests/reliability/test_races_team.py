"""Two people handing one milestone to two others at the same instant, on a SQLite file and
on PostgreSQL (worker processes released at once: tests/reliability/_races.py): each saw the
case at the same version, so one wins and the other is refused as stale, with nothing of
it written."""

from collections.abc import Iterator

import pytest

from tests.reliability._races import Pool
from tests.reliability.test_races import (  # noqa: F401 (the module's store fixture)
    Race,
    _case,
    _clean,
    _events,
    _ip_case,
    _since,
    race,
)

pytestmark = pytest.mark.slow

EXPERTS = ("matthias.koehler@steinbeis.example", "grzegorz.rozanski@ippt-pan.example")


@pytest.fixture(scope="module")
def pair() -> Iterator[Pool]:
    """Two worker processes for the module's races."""
    workers = Pool(2)
    workers.start()
    try:
        yield workers
    finally:
        workers.stop()


def test_two_reassignments_of_one_item_at_once_one_wins_one_is_stale(
    race: Race,  # noqa: F811
    pair: Pool,
) -> None:
    key = _ip_case(race)
    before, trail = _case(race, key), _events(race, key)
    version = str(before.version)
    jobs = race.jobs(
        "reassign",
        [(key, "bottleneck-desk-study", who, version) for who in EXPERTS],
        "2026-03-03",
    )
    ended = pair.race(jobs)

    (won,) = _clean(ended, {"StaleCase"})
    (lost,) = [e for e in ended if e.outcome == "refused"]
    assert f"is at version {before.version + 1}, not {before.version}" in lost.detail
    moved = [e for e in _since(race, key, trail) if e.kind == "milestone.reassign"]
    assert [e.after["owner"] for e in moved] == [won.job.args[2]]
    assert _case(race, key).version == before.version + 1
