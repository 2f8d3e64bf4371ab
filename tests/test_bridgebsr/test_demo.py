"""The demo portfolio on a SQLite file and on PostgreSQL: loaded once per backend, read by
the checks below; the last one loads it again and sees nothing change."""

from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import date
from typing import Any

import pytest
from sqlalchemy import Engine, func, text
from sqlmodel import col, select

from bridgebsr.bootstrap import Runtime
from bridgebsr.demo import load_demo
from bridgebsr.office import queries
from bridgebsr.store.db import read_session
from models import FINISHED_MILESTONE, Case, Milestone
from tests.conftest import BACKENDS, migrated, pg_schema

AS_OF = date(2026, 11, 26)
TABLES = ("partners", "contacts", "cases", "milestones", "gates", "gate_decisions", "case_events")


def _dump(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as conn:
        return {
            t: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {t} ORDER BY id"))]
            for t in TABLES
        }


def _ip_key(keys: list[str]) -> str:
    (key,) = [k for k in keys if k.startswith("IP-")]
    return key


Demo = tuple[Runtime, list[str]]


@pytest.fixture(scope="module", params=BACKENDS)
def demo(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, pg_ready: bool
) -> Iterator[Demo]:
    """A migrated store on each backend with the demo loaded once, and the keys it opened."""
    with ExitStack() as stack:
        home = tmp_path_factory.mktemp("demo-store")
        if request.param == "sqlite":
            url = f"sqlite:///{home / 'cases.db'}"
        else:
            url = stack.enter_context(pg_schema(pg_ready))
        rt = stack.enter_context(migrated(url, home / "home"))
        yield rt, load_demo(rt, AS_OF)


def test_the_demo_opens_one_ip_one_foundation_twelve_sme_and_one_of_each_activity(
    demo: Demo,
) -> None:
    rt, keys = demo
    assert len(keys) == len(set(keys)) == 20
    assert Counter(k.split("-")[0] for k in keys) == {
        "IP": 1,
        "LSF": 1,
        "SME": 12,
        **dict.fromkeys(["CSA", "IPA", "FIN", "IAP", "ICR", "MENT"], 1),
    }
    with read_session(rt.engine) as session:
        rows = queries.list_cases(session=session, today=AS_OF)
    assert sorted(keys) == [r["key"] for r in rows]
    assert Counter(r["kind"] for r in rows) == {
        "cluster-mentoring": 1,
        "cluster-strategy-analysis": 1,
        "council-review-round": 1,
        "innovation-action-plan": 1,
        "ip-bottleneck-analysis": 1,
        "sme-financing-analysis": 1,
        "ip-integration": 1,
        "life-science-foundation": 1,
        "shared-sme-service": 12,
    }
    assert {r["status"] for r in rows} == {"active"}
    # The consortium came with it: 13 partners, 30 contacts as shipped.
    with rt.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM partners")).scalar_one() == 13
        assert conn.execute(text("SELECT count(*) FROM contacts")).scalar_one() == 30


def test_the_demo_ip_case_waits_for_the_council(demo: Demo) -> None:
    rt, keys = demo
    key = _ip_key(keys)
    with read_session(rt.engine) as session:
        shown = queries.show_case(session=session, key=key, today=AS_OF)
    gates = {g["key"]: g for g in shown["gates"]}
    council = gates["council-approval"]
    assert (council["status"], council["round"], council["decisions"]) == ("open", 1, [])
    assert date.fromisoformat(council["deadline"]) > AS_OF
    assert gates["adoption"]["status"] == "pending"
    assert shown["stage"] == "council-review"
    status = {m["key"]: m["status"] for m in shown["milestones"]}
    assert status["model-revision"] == "done"
    assert status["cluster-agreements"] == "planned"


def test_the_demo_has_overdue_milestones(demo: Demo) -> None:
    rt, _ = demo
    with read_session(rt.engine) as session:
        late = session.exec(
            select(func.count(col(Milestone.id))).where(
                col(Milestone.planned_due) < AS_OF,
                col(Milestone.status).not_in(list(FINISHED_MILESTONE)),
            )
        ).one()
        overdue = queries.list_cases(session=session, today=AS_OF, overdue=True)
        first = queries.show_case(session=session, key="SME-2026-0001", today=AS_OF)
    assert late > 0
    assert 0 < len(overdue) < 20
    # The newest request (opened 8 days before, nothing done) is late with its intake.
    assert "SME-2026-0001" in {r["key"] for r in overdue}
    intake = {m["key"]: m for m in first["milestones"]}["request-intake"]
    assert (intake["status"], intake["overdue"]) == ("planned", True)


def test_loading_the_demo_again_opens_nothing(demo: Demo) -> None:
    rt, keys = demo
    assert len(keys) == 20
    before = _dump(rt.engine)
    assert load_demo(rt, AS_OF) == []
    assert _dump(rt.engine) == before
    with read_session(rt.engine) as session:
        assert session.exec(select(func.count(col(Case.id)))).one() == 20
