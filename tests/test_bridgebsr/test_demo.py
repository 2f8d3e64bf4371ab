"""The demo portfolio on a SQLite file and on PostgreSQL."""

from collections import Counter
from datetime import date
from typing import Any

from sqlalchemy import Engine, func, text
from sqlmodel import col, select

from bridgebsr import queries
from bridgebsr.bootstrap import Runtime
from bridgebsr.db import read_session
from bridgebsr.demo import load_demo
from models import FINISHED_MILESTONE, Case, Milestone

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


def test_the_demo_opens_one_ip_one_foundation_and_twelve_sme_cases(rt: Runtime) -> None:
    keys = load_demo(rt, AS_OF)
    assert len(keys) == len(set(keys)) == 14
    assert Counter(k.split("-")[0] for k in keys) == {"IP": 1, "LSF": 1, "SME": 12}
    with read_session(rt.engine) as session:
        rows = queries.list_cases(session=session, today=AS_OF)
    assert sorted(keys) == [r["key"] for r in rows]
    assert Counter(r["kind"] for r in rows) == {
        "ip-integration": 1,
        "life-science-foundation": 1,
        "shared-sme-service": 12,
    }
    assert {r["status"] for r in rows} == {"active"}
    # The consortium came with it: 13 partners, 30 contacts as shipped.
    with rt.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM partners")).scalar_one() == 13
        assert conn.execute(text("SELECT count(*) FROM contacts")).scalar_one() == 30


def test_the_demo_ip_case_waits_for_the_council(rt: Runtime) -> None:
    key = _ip_key(load_demo(rt, AS_OF))
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


def test_the_demo_has_overdue_milestones(rt: Runtime) -> None:
    load_demo(rt, AS_OF)
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
    assert 0 < len(overdue) < 14
    # The newest request (opened 8 days before, nothing done) is late with its intake.
    assert "SME-2026-0001" in {r["key"] for r in overdue}
    intake = {m["key"]: m for m in first["milestones"]}["request-intake"]
    assert (intake["status"], intake["overdue"]) == ("planned", True)


def test_loading_the_demo_again_opens_nothing(rt: Runtime) -> None:
    assert len(load_demo(rt, AS_OF)) == 14
    before = _dump(rt.engine)
    assert load_demo(rt, AS_OF) == []
    assert _dump(rt.engine) == before
    with read_session(rt.engine) as session:
        assert session.exec(select(func.count(col(Case.id)))).one() == 14
