"""Portfolio KPIs (bridgebsr.reports.kpis) on a small portfolio with known answers.

The portfolio is made through the real use cases (open, progress, decide, close, cancel) with
explicit dates, once per database (a SQLite file and PostgreSQL), and read as of Monday
20 April 2026. Every expected value is worked out by hand below from the shipped templates and
the public holidays of the owners' countries (2026: Maundy Thursday 2 April is a holiday in
Denmark and Norway, not in Sweden; Good Friday 3 April and Easter Monday 6 April everywhere
here; 1 May and Ascension 14 May in Sweden). "wd" is working days, counted in (start, end].

The cases (keys in the order opened):

- IP-2026-0001: ip-integration, owner Søren (pilot lead, SCANBALT, DK), from Wed 18 March.
  kickoff (Søren, DK, 10 wd) is due Wed 1 April; done Tue 7 April: 1 wd late in Denmark
  (2 and 3 April and 6 April are holidays), 6 calendar days.
- SME-2026-0001: owner Anders (case owner, SCANBALT, DK), from Mon 12 January, served to the
  end on the plan of test_cases (no holiday until Easter): nda waived early, cluster-search
  2 wd late, match-proposal 1 wd late, service-plan 1 wd early, the rest on the day;
  triaged as financing; accepted after 2 wd; completed Fri 13 March.
- SME-2026-0002: owner Oskar (LUNDBACK-DX, SE), from Wed 25 March; request-intake (due
  Thu 26 March) done Tue 7 April: late last month, done now. Nothing else done.
- SME-2026-0003: owner Rūta (GINTARELIS-BIO, LT), from Mon 2 February; intake on time, then
  cancelled Tue 10 February with needs-interview (due Fri 6 February) still open.
- SME-2026-0004: owner Ingrid (ORLAND-MARINE, NO), from Mon 12 January; everything up to the
  match on its due day, triaged as IP; the SME declined on Thu 5 February (cancelled).
- SME-2026-0005: owner Henrik (OSTERSJO-VITA, SE), from Mon 9 March; everything up to the
  match on its due day, triaged as EU programme; the acceptance gate has been open since
  Tue 31 March.

No lead partner of an SME request here has an sme-advisor, so, by the rule of who holds a role
for a case, those items are the SME pilot's lead's: in this portfolio Elin's (an sme-advisor,
in Sweden). nda is Nikolaj's where SCANBALT leads (the legal advisor there, in Denmark), else
Elin's too; case-owner items are the case owner's.
"""

import math
import pickle
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import create_engine, text
from sqlmodel import Session, col, func, select

from bridgebsr.bootstrap import Runtime, build_runtime
from bridgebsr.demo import load_consortium, load_demo
from bridgebsr.errors import InvalidInput
from bridgebsr.office import cases, items, progress
from bridgebsr.reports import kpis, readers
from bridgebsr.reports.frames import rows_of
from bridgebsr.reports.groups import Grouping
from bridgebsr.rules import planning
from bridgebsr.settings import Settings
from bridgebsr.store import case_rows as store
from bridgebsr.store import migrate
from bridgebsr.store.db import write_session
from models import (
    CASE_OWNER,
    Case,
    CaseStatus,
    Decision,
    Gate,
    Milestone,
    Partner,
    PartnerKind,
)
from tests.conftest import PG_ADMIN_URL, at

AS_OF = date(2026, 4, 20)
OPS = "ops@bridgebsr"
LEAD = "soren.ostergaard@scanbalt.example"
SME_OWNER = "anders.bogh@scanbalt.example"
SME_ADVISOR = "elin.sjoberg@mva.example"
SE_OWNER = "oskar.lundback@lundback-dx.example"
LT_OWNER = "ruta.zemaityte@gintarelis-bio.example"
NO_OWNER = "ingrid.odegard@orland-marine.example"
SE_INVESTOR = "henrik.oberg@ostersjo-vita.example"
IP, S1, S2, S3, S4, S5 = (
    "IP-2026-0001",
    "SME-2026-0001",
    "SME-2026-0002",
    "SME-2026-0003",
    "SME-2026-0004",
    "SME-2026-0005",
)
SME = "shared-sme-service"
IPI = "ip-integration"


# --- the portfolio ---------------------------------------------------------------------------


def _open(rt: Runtime, kind: str, owner: str, start: str) -> str:
    with write_session(rt.engine) as session:
        return cases.open_case(
            session=session,
            catalog=rt.catalog,
            kind=kind,
            title=f"A {kind} case of {owner}",
            owner_email=owner,
            start=date.fromisoformat(start),
            now=at(start),
        ).key


def _do(
    rt: Runtime, key: str, milestone: str, action: str, day: str, service: str | None = None
) -> None:
    """A milestone step; `service` is the service type a triage captures."""
    with write_session(rt.engine) as session:
        progress.progress_milestone(
            session=session,
            case_key=key,
            milestone_key=milestone,
            action=action,
            actor=progress.Actor(OPS),
            now=at(day),
            fields={"service_type": service} if service else None,
        )


def _decide(rt: Runtime, key: str, decision: Decision, day: str) -> None:
    with write_session(rt.engine) as session:
        progress.decide_gate(
            session=session,
            case_key=key,
            gate_key="sme-acceptance",
            decision=decision,
            actor=progress.Actor(SME_ADVISOR),
            now=at(day),
        )


def _change(rt: Runtime, key: str, action: str, day: str) -> None:
    with write_session(rt.engine) as session:
        cases.change_case(
            session=session,
            key=key,
            action=action,
            reason=f"reason to {action}",
            actor=OPS,
            now=at(day),
        )


def _until_the_match(rt: Runtime, key: str, days: list[str], service: str) -> None:
    """request-intake, needs-interview, triage-decision (capturing `service`), nda,
    cluster-search, match-proposal."""
    keys = ["request-intake", "needs-interview", "triage-decision", "nda", "cluster-search"]
    for milestone, day in zip([*keys, "match-proposal"], days, strict=True):
        _do(
            rt, key, milestone, "complete", day, service if milestone == "triage-decision" else None
        )


def _make_portfolio(rt: Runtime) -> None:
    load_consortium(rt)
    with rt.engine.begin() as conn:  # Elin leads the SME pilot here (see the module's notes)
        conn.execute(text("UPDATE contacts SET leads = '' WHERE leads = :k"), {"k": SME})
        elin = {"k": SME, "e": SME_ADVISOR}
        conn.execute(text("UPDATE contacts SET leads = :k WHERE email = :e"), elin)
    assert _open(rt, IPI, LEAD, "2026-03-18") == IP
    assert _open(rt, SME, SME_OWNER, "2026-01-12") == S1
    assert _open(rt, SME, SE_OWNER, "2026-03-25") == S2
    assert _open(rt, SME, LT_OWNER, "2026-02-02") == S3
    assert _open(rt, SME, NO_OWNER, "2026-01-12") == S4
    assert _open(rt, SME, SE_INVESTOR, "2026-03-09") == S5

    _do(rt, IP, "kickoff", "complete", "2026-04-07")

    _do(rt, S1, "request-intake", "complete", "2026-01-13")
    _do(rt, S1, "needs-interview", "complete", "2026-01-16")
    _do(rt, S1, "triage-decision", "complete", "2026-01-20", "financing")
    _do(rt, S1, "nda", "waive", "2026-01-21")
    _do(rt, S1, "cluster-search", "complete", "2026-02-02")
    _do(rt, S1, "match-proposal", "complete", "2026-02-04")
    _decide(rt, S1, Decision.APPROVE, "2026-02-06")
    _do(rt, S1, "service-plan", "complete", "2026-02-12")
    _do(rt, S1, "service-delivery", "complete", "2026-02-27")
    _do(rt, S1, "feedback", "complete", "2026-03-09")
    _do(rt, S1, "follow-up-call", "complete", "2026-03-10")
    _do(rt, S1, "kpi-record", "complete", "2026-03-12")
    _change(rt, S1, "close", "2026-03-13")

    _do(rt, S2, "request-intake", "complete", "2026-04-07")

    _do(rt, S3, "request-intake", "complete", "2026-02-03")
    _change(rt, S3, "cancel", "2026-02-10")

    days = ["2026-01-13", "2026-01-16", "2026-01-20", "2026-01-28", "2026-01-29", "2026-02-03"]
    _until_the_match(rt, S4, days, "ip")
    _decide(rt, S4, Decision.REJECT, "2026-02-05")

    days = ["2026-03-10", "2026-03-13", "2026-03-17", "2026-03-25", "2026-03-26", "2026-03-31"]
    _until_the_match(rt, S5, days, "eu-programme")


def _postgres_url(request: pytest.FixtureRequest) -> tuple[str, str]:
    if not request.getfixturevalue("pg_ready"):
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}; start it to run this test")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    admin.dispose()
    return f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}", schema


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def portfolio(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Runtime]:
    """The portfolio above, made once per database for the whole module (tests only read)."""
    home = tmp_path_factory.mktemp("kpis")
    schema = None
    if request.param == "sqlite":
        url = f"sqlite:///{home / 'cases.db'}"
    else:
        url, schema = _postgres_url(request)
    rt = build_runtime(Settings(home=home / "home", database_url=url))
    migrate.upgrade(rt.engine)
    _make_portfolio(rt)
    yield rt
    rt.engine.dispose()
    if schema is not None:
        admin = create_engine(PG_ADMIN_URL)
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture(scope="module")
def frames(portfolio: Runtime) -> kpis.Frames:
    """The portfolio as of Monday 20 April 2026."""
    return kpis.load(portfolio.engine, as_of=AS_OF)


def _rows(table: pd.DataFrame, key: str | list[str]) -> dict[Any, dict[str, Any]]:
    """Rows by key (a tuple of values for several key columns), NaN as None."""
    keys = [key] if isinstance(key, str) else key
    out = {}
    for record in table.to_dict("records"):
        row = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in record.items()}
        label = tuple(row[k] for k in keys)
        out[label[0] if len(label) == 1 else label] = row
    return out


def _pick(row: dict[str, Any], *columns: str) -> dict[str, Any]:
    return {c: row[c] for c in columns}


def _day(value: Any) -> str | None:
    return None if pd.isna(value) else pd.Timestamp(value).date().isoformat()


# --- case counts -----------------------------------------------------------------------------


def test_case_counts_by_pilot_partner_and_country(frames: kpis.Frames) -> None:
    columns = ["cases", "open", "active", "on_hold", "completed", "cancelled"]
    by_pilot = _rows(kpis.build_case_counts(frames), "pilot")
    assert {k: [r[c] for c in columns] for k, r in by_pilot.items()} == {
        IPI: [1, 1, 1, 0, 0, 0],
        SME: [5, 2, 2, 0, 1, 2],  # S2 and S5 open, S1 completed, S3 and S4 cancelled
    }
    by_partner = _rows(kpis.build_case_counts(frames, ("partner",)), "partner")
    assert {k: [r[c] for c in columns] for k, r in by_partner.items()} == {
        "GINTARELIS-BIO": [1, 0, 0, 0, 0, 1],
        "LUNDBACK-DX": [1, 1, 1, 0, 0, 0],
        "ORLAND-MARINE": [1, 0, 0, 0, 0, 1],
        "OSTERSJO-VITA": [1, 1, 1, 0, 0, 0],
        "SCANBALT": [2, 1, 1, 0, 1, 0],  # the IP case and SME-1
    }
    by_country = _rows(kpis.build_case_counts(frames, ("country",)), "country")
    assert {k: r["cases"] for k, r in by_country.items()} == {"DK": 2, "LT": 1, "NO": 1, "SE": 2}
    both = kpis.build_case_counts(frames, ("pilot", "country"))
    assert list(both[["pilot", "country", "cases"]].itertuples(index=False, name=None)) == [
        (IPI, "DK", 1),
        (SME, "DK", 1),
        (SME, "LT", 1),
        (SME, "NO", 1),
        (SME, "SE", 2),
    ]


def test_an_unknown_dimension_is_refused(frames: kpis.Frames) -> None:
    with pytest.raises(InvalidInput, match="choose one or more of pilot, partner, country"):
        kpis.build_milestone_kpis(frames, ("owner",))
    with pytest.raises(InvalidInput, match="nothing"):
        kpis.build_case_counts(frames, ())


# --- milestones ------------------------------------------------------------------------------


def test_planned_dates_follow_each_owners_holidays(frames: kpis.Frames) -> None:
    facts = kpis.milestone_facts(frames)
    s2 = facts[facts["case"] == S2]
    planned = {str(m): _day(d) for m, d in zip(s2["milestone"], s2["planned_due"], strict=True)}
    # SME-2 from Wed 25 March, in Sweden unless said: intake +1 wd Thu 26 March; needs +3 wd
    # Tue 31 March; triage +2 wd Thu 2 April (Maundy Thursday works in Sweden); nda (Nikolaj,
    # DK) starts 1 Danish wd after triage, Tue 7 April (2, 3 and 6 April are holidays), +5 wd
    # Tue 14 April; cluster-search +7 wd after triage skipping 3 and 6 April: Wed 15 April;
    # match +3 wd Mon 20 April; the gate (case calendar, SE) +5 wd Mon 27 April; plan +3 wd
    # Thu 30 April; delivery +10 wd skipping 1 May and 14 May: Mon 18 May; follow-up 10
    # calendar days later, Thu 28 May, +1 wd Fri 29 May; feedback 10 calendar days, Thu
    # 28 May; kpi-record +2 wd after the follow-up: Tue 2 June.
    assert planned == {
        "request-intake": "2026-03-26",
        "needs-interview": "2026-03-31",
        "triage-decision": "2026-04-02",
        "nda": "2026-04-14",
        "cluster-search": "2026-04-15",
        "match-proposal": "2026-04-20",
        "service-plan": "2026-04-30",
        "service-delivery": "2026-05-18",
        "follow-up-call": "2026-05-29",
        "feedback": "2026-05-28",
        "kpi-record": "2026-06-02",
    }
    kickoff = facts[(facts["case"] == IP) & (facts["milestone"] == "kickoff")].iloc[0]
    # 10 Danish wd from Wed 18 March: 19, 20, 23-27, 30, 31 March, 1 April.
    assert _day(kickoff["planned_due"]) == "2026-04-01"


def test_a_slip_across_easter_counts_working_days_of_the_owners_country(
    frames: kpis.Frames,
) -> None:
    facts = kpis.milestone_facts(frames)
    by_key = {(r["case"], str(r["milestone"])): r for r in facts.to_dict("records")}
    kickoff = by_key[(IP, "kickoff")]
    # Due Wed 1 April, done Tue 7 April: 6 calendar days, but Maundy Thursday, Good Friday
    # and Easter Monday are Danish holidays: 1 working day late (2 in Sweden).
    assert (_day(kickoff["finished_on"]), kickoff["slip_working_days"]) == ("2026-04-07", 1.0)
    assert (kickoff["on_time"], kickoff["overdue_now"]) == (False, False)
    intake = by_key[(S2, "request-intake")]
    # Elin (SE): due Thu 26 March, done Tue 7 April: 27, 30, 31 March, 1, 2 and 7 April.
    assert intake["slip_working_days"] == 6.0
    early = by_key[(S1, "service-plan")]
    assert early["slip_working_days"] == -1.0 and early["on_time"]  # due Fri 13, done Thu 12


def test_milestone_kpis_by_pilot(frames: kpis.Frames) -> None:
    table = _rows(kpis.build_milestone_kpis(frames), "pilot")
    # IP: 14 milestones, kickoff done 1 wd late, nothing else due before 20 April.
    assert table[IPI] == {
        "pilot": IPI,
        "milestones": 14,
        "open": 13,
        "done": 1,
        "waived": 0,
        "done_on_time": 0,
        "done_late": 1,
        "done_on_time_baseline": 0,  # nothing rescheduled: the agreed plan is the original
        "on_time_pct": 0.0,
        "on_time_baseline_pct": 0.0,
        "median_slip_working_days": 1.0,
        "p90_slip_working_days": 1.0,
        "overdue_now": 0,
    }
    # SME, cancelled SME-3 and SME-4 left out: SME-1, -2 and -5, 3 x 11 milestones.
    # Done: SME-1 10 (nda waived), SME-2 1, SME-5 6 = 17; open 0 + 10 + 5 = 15.
    # Slips (wd): SME-1 0, 0, 0, 2, 1, -1, 0, 0, 0, 0; SME-2 6; SME-5 six times 0.
    # Sorted: -1, thirteen 0s, 1, 2, 6. On time: 14 of 17 = 82.35 %. Median: the 9th, 0.
    # p90: position 0.9 x 16 = 14.4, between 1 and 2: 1.4.
    # Overdue on 20 April: SME-2 needs-interview (31 March), triage-decision (2 April), nda
    # (14 April), cluster-search (15 April) (match-proposal is due today); SME-5 service-plan
    # (14 April). 5.
    assert table[SME] == {
        "pilot": SME,
        "milestones": 33,
        "open": 15,
        "done": 17,
        "waived": 1,
        "done_on_time": 14,
        "done_late": 3,
        "done_on_time_baseline": 14,
        "on_time_pct": 82.35,
        "on_time_baseline_pct": 82.35,
        "median_slip_working_days": 0.0,
        "p90_slip_working_days": pytest.approx(1.4),
        "overdue_now": 5,
    }


def test_milestone_kpis_by_partner_and_country(frames: kpis.Frames) -> None:
    columns = (
        "milestones",
        "done",
        "on_time_pct",
        "median_slip_working_days",
        "p90_slip_working_days",
        "overdue_now",
    )
    by_partner = _rows(kpis.build_milestone_kpis(frames, ("partner",)), "partner")
    # SCANBALT leads the IP case and SME-1: slips 1 (kickoff) and SME-1's ten: -1, seven 0s,
    # 1, 1, 2; on time 8 of 11 = 72.73 %; median (6th) 0; p90 at 0.9 x 10 = 9: 1.
    # Partners with only cancelled cases keep a row with nothing measured.
    assert {k: _pick(r, *columns) for k, r in by_partner.items()} == {
        "GINTARELIS-BIO": dict(zip(columns, (0, 0, None, None, None, 0), strict=True)),
        "LUNDBACK-DX": dict(zip(columns, (11, 1, 0.0, 6.0, 6.0, 4), strict=True)),
        "ORLAND-MARINE": dict(zip(columns, (0, 0, None, None, None, 0), strict=True)),
        "OSTERSJO-VITA": dict(zip(columns, (11, 6, 100.0, 0.0, 0.0, 1), strict=True)),
        "SCANBALT": dict(zip(columns, (25, 11, 72.73, 0.0, 1.0, 0), strict=True)),
    }
    by_country = _rows(kpis.build_milestone_kpis(frames, ("country",)), "country")
    # SE is SME-2 and SME-5: slips 6 and six 0s; on time 6 of 7 = 85.71 %; p90 at
    # 0.9 x 6 = 5.4, between 0 and 6: 2.4.
    assert _pick(by_country["SE"], *columns) == dict(
        zip(columns, (22, 7, 85.71, 0.0, pytest.approx(2.4), 5), strict=True)
    )
    assert _pick(by_country["DK"], *columns) == _pick(by_partner["SCANBALT"], *columns)


def test_milestones_counted_per_case(portfolio: Runtime) -> None:
    """The counts per case and the slips `load` makes from the milestone rows, and a copy of
    the frames (pickled) has the same rows."""
    frames = kpis.load(portfolio.engine, as_of=AS_OF)
    counts = frames.milestone_counts.assign(case=frames.cases["key"]).set_index("case")
    columns = ["milestones", "done", "waived", "done_on_time", "due_unfinished"]
    # SME-1: nda waived, 8 of the 10 done on time (cluster-search and match-proposal late).
    # SME-2: intake done late; needs-interview, triage, nda and cluster-search due before
    # 20 April and open (the match is due that day). IP: 14, kickoff done late.
    assert {k: list(counts.loc[k, columns]) for k in (S1, S2, IP)} == {
        S1: [11, 10, 1, 8, 0],
        S2: [11, 1, 0, 0, 4],
        IP: [14, 1, 0, 0, 0],
    }
    assert len(frames.slips) == counts["done"].sum()
    copied = pickle.loads(pickle.dumps(frames))
    pd.testing.assert_frame_equal(copied.milestones, frames.milestones)
    pd.testing.assert_frame_equal(copied.milestone_counts, frames.milestone_counts)
    for dims in (("pilot",), ("partner", "country")):
        pd.testing.assert_frame_equal(
            kpis.build_milestone_kpis(copied, dims), kpis.build_milestone_kpis(frames, dims)
        )


def _sorted(slips: pd.DataFrame) -> pd.DataFrame:
    return slips.sort_values(["case_id", "slip_working_days"], ignore_index=True)


# --- SLA breaches, after the fact ------------------------------------------------------------


def test_a_milestone_late_last_month_and_done_now_is_a_breach_of_last_month(
    frames: kpis.Frames,
) -> None:
    facts = kpis.milestone_facts(frames)
    intake = facts[(facts["case"] == S2) & (facts["milestone"] == "request-intake")].iloc[0]
    # Due Thu 26 March, done Tue 7 April: not overdue now, but breached from 27 March.
    assert not intake["overdue_now"]
    assert intake["breached"]
    assert str(intake["breach_month"]) == "2026-03"
    assert intake["breach_state"] == "finished late"


def test_sla_breaches_list_every_late_milestone_oldest_first(frames: kpis.Frames) -> None:
    table = kpis.build_sla_breaches(frames)
    got = [
        (
            r["case"],
            r["milestone"],
            str(r["breach_month"]),
            r["working_days_late"],
            r["breach_state"],
        )
        for r in table.to_dict("records")
    ]
    assert got == [
        # SME-1 cluster-search: due Thu 29 January, done Mon 2 February (Anders, DK).
        (S1, "cluster-search", "2026-01", 2.0, "finished late"),
        # SME-1 match-proposal: due Tue 3 February, done Wed 4 February.
        (S1, "match-proposal", "2026-02", 1.0, "finished late"),
        # SME-3 needs-interview (Elin, SE): due Fri 6 February, still open when the case was
        # cancelled on Tue 10 February: late 9 and 10 February. (triage-decision, due on the
        # day of the cancellation, is no breach; SME-4's open items were due after its end.)
        (S3, "needs-interview", "2026-02", 2.0, "open when case closed"),
        # SME-2 request-intake: late in March, done in April.
        (S2, "request-intake", "2026-03", 6.0, "finished late"),
        # SME-2 needs-interview: due Tue 31 March, open: 1, 2, 7-10, 13-17, 20 April = 12 wd.
        (S2, "needs-interview", "2026-04", 12.0, "open"),
        # IP kickoff: due Wed 1 April, done Tue 7 April, 1 Danish wd.
        (IP, "kickoff", "2026-04", 1.0, "finished late"),
        # SME-2 triage-decision: due Thu 2 April: 7-10, 13-17, 20 April = 10 wd.
        (S2, "triage-decision", "2026-04", 10.0, "open"),
        # Due Tue 14 April: SME-2 nda (Nikolaj, DK) and SME-5 service-plan (Henrik, SE):
        # 15, 16, 17 and 20 April.
        (S2, "nda", "2026-04", 4.0, "open"),
        (S5, "service-plan", "2026-04", 4.0, "open"),
        # SME-2 cluster-search: due Wed 15 April: 16, 17, 20 April.
        (S2, "cluster-search", "2026-04", 3.0, "open"),
    ]
    # Waived before its due date (SME-1 nda, waived 21 January, due 28 January): no breach.
    assert not ((table["case"] == S1) & (table["milestone"] == "nda")).any()


def test_sla_breaches_by_month(frames: kpis.Frames) -> None:
    table = kpis.build_sla_breaches_by_month(frames)
    columns = ["breaches", "finished_late", "still_open", "open_when_closed"]
    got = {
        (str(r["month"]), r["pilot"]): (
            [r[c] for c in columns],
            r["median_working_days_late"],
            r["max_working_days_late"],
        )
        for r in table.to_dict("records")
    }
    assert got == {
        ("2026-01", SME): ([1, 1, 0, 0], 2.0, 2.0),
        ("2026-02", SME): ([2, 1, 0, 1], 1.5, 2.0),
        ("2026-03", SME): ([1, 1, 0, 0], 6.0, 6.0),
        ("2026-04", IPI): ([1, 1, 0, 0], 1.0, 1.0),
        # 12, 10, 4, 4 and 3 wd late: median 4.
        ("2026-04", SME): ([5, 0, 5, 0], 4.0, 12.0),
    }
    assert list(table["month"].astype(str)) == [
        "2026-01",
        "2026-02",
        "2026-03",
        "2026-04",
        "2026-04",
    ]


# --- stages and gates ------------------------------------------------------------------------


def test_stage_cycle_times(frames: kpis.Frames) -> None:
    table = kpis.build_stage_cycle_times(frames)
    sme = _rows(table[table["pilot"] == SME], "stage")
    assert list(sme) == ["intake", "triage", "matching", "acceptance", "delivery", "follow-up"]
    columns = (
        "passed",
        "median_working_days",
        "p90_working_days",
        "median_calendar_days",
        "in_stage_now",
        "median_age_working_days",
    )
    # SME-1 (DK): intake 12 -> 16 January (4 wd); triage -> 20 January (2 wd, 4 days);
    # matching -> 4 February, the last of nda (waived 21 January), cluster-search and the match
    # (11 wd, 15 days); acceptance -> 6 February (2 wd); delivery -> 27 February (15 wd,
    # 21 days); follow-up -> 12 March (9 wd, 13 days).
    # SME-5 (SE): intake 9 -> 13 March (4 wd); triage -> 17 March (2 wd, 4 days); matching ->
    # 31 March (10 wd, 14 days); in acceptance since then: 12 wd to 20 April (3 and 6 April
    # are holidays).
    # SME-2 (SE): in intake since 25 March: 16 wd to 20 April. Cancelled cases are left out.
    # Matching: 11 and 10 wd, median 10.5, p90 10 + 0.9 = 10.9.
    assert {k: _pick(r, *columns) for k, r in sme.items()} == {
        "intake": dict(zip(columns, (2, 4.0, 4.0, 4.0, 1, 16.0), strict=True)),
        "triage": dict(zip(columns, (2, 2.0, 2.0, 4.0, 0, None), strict=True)),
        "matching": dict(zip(columns, (2, 10.5, pytest.approx(10.9), 14.5, 0, None), strict=True)),
        "acceptance": dict(zip(columns, (1, 2.0, 2.0, 2.0, 1, 12.0), strict=True)),
        "delivery": dict(zip(columns, (1, 15.0, 15.0, 21.0, 0, None), strict=True)),
        "follow-up": dict(zip(columns, (1, 9.0, 9.0, 13.0, 0, None), strict=True)),
    }
    ip = _rows(table[table["pilot"] == IPI], "stage")
    # The IP case is still scoping (kickoff done, the desk study and workshops not): since
    # Wed 18 March, 20 Danish wd to 20 April (2, 3 and 6 April are holidays).
    assert _pick(ip["scoping"], "passed", "in_stage_now", "median_age_working_days") == {
        "passed": 0,
        "in_stage_now": 1,
        "median_age_working_days": 20.0,
    }
    assert list(ip)[:3] == ["scoping", "indicators", "draft-model"]


def test_stage_spans_of_one_case(frames: kpis.Frames) -> None:
    spans = kpis.stage_spans(frames)
    s1 = spans[spans["case"] == S1]
    got = [(str(r["stage"]), _day(r["entered"]), _day(r["left"])) for r in s1.to_dict("records")]
    assert got == [
        ("intake", "2026-01-12", "2026-01-16"),
        ("triage", "2026-01-16", "2026-01-20"),
        ("matching", "2026-01-20", "2026-02-04"),
        ("acceptance", "2026-02-04", "2026-02-06"),
        ("delivery", "2026-02-06", "2026-02-27"),
        ("follow-up", "2026-02-27", "2026-03-12"),
    ]
    s2 = spans[spans["case"] == S2]
    # Entered intake on its start; nothing after it has been reached.
    assert [_day(d) for d in s2["entered"]] == ["2026-03-25"] + [None] * 5


def test_gate_decision_times(frames: kpis.Frames) -> None:
    table = _rows(kpis.build_gate_times(frames), ["pilot", "gate"])
    # sme-acceptance opened three times: SME-1 (4 February, approved 6 February: 2 Danish wd),
    # SME-4 (3 February, declined 5 February: 2 Norwegian wd), SME-5 (31 March, waiting:
    # 12 Swedish wd to 20 April). No IP gate has opened yet.
    assert table == {
        (SME, "sme-acceptance"): {
            "pilot": SME,
            "gate": "sme-acceptance",
            "rounds": 3,
            "decided": 2,
            "approved": 1,
            "rejected": 1,
            "decided_after_deadline": 0,
            "median_decision_working_days": 2.0,
            "p90_decision_working_days": 2.0,
            "median_decision_calendar_days": 2.0,
            "waiting_now": 1,
            "median_waiting_working_days": 12.0,
        }
    }
    rounds = _rows(kpis.gate_rounds(frames), "case")
    # Deadlines: 5 wd after opening in the case's calendar. SME-5's passed on 9 April (1, 2,
    # 7, 8, 9 April); the gate still waits (the monitor applies timeouts, not the report).
    assert {
        k: (_day(r["opened_on"]), _day(r["deadline"]), str(r["outcome"])) for k, r in rounds.items()
    } == {
        S1: ("2026-02-04", "2026-02-11", "approved"),
        S4: ("2026-02-03", "2026-02-10", "rejected"),
        S5: ("2026-03-31", "2026-04-09", "waiting"),
    }


REVIEW_TEMPLATE = """\
kind: council-review
version: 1
title: A draft reviewed by the council
key_prefix: REV
roles: [coordinator, pilot-lead, council-member]
stages:
  - {key: prep, title: Preparation}
  - {key: review, title: Review}
  - {key: wrap-up, title: Wrap-up}
milestones:
  - {key: draft, title: Draft, stage: prep, owner: pilot-lead, duration: 5}
  - {key: finish, title: Finish, stage: wrap-up, owner: pilot-lead, duration: 5, after: [verdict]}
gates:
  - key: verdict
    title: The council's verdict
    stage: review
    after: [draft]
    deadline: 5
    approvers: {role: council-member, required: 1}
    on_reject: {rework: prep}
"""
COUNCIL_MEMBER = "peter.moller-jensen@mva.example"


def test_a_gate_sent_back_for_rework_counts_every_round(db_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "council-review.yaml").write_text(REVIEW_TEMPLATE, encoding="utf-8")
    rt = build_runtime(
        Settings(home=tmp_path / "home", database_url=db_url, template_dirs=str(folder))
    )
    migrate.upgrade(rt.engine)
    load_consortium(rt)
    key = _open(rt, "council-review", LEAD, "2026-03-02")
    # draft (Søren, DK) is due Mon 9 March and done that day: the verdict opens, deadline
    # 5 wd later, Mon 16 March. The council rejects it on Wed 11 March (2 wd): back to prep.
    _do(rt, key, "draft", "complete", "2026-03-09")
    with write_session(rt.engine) as session:
        progress.decide_gate(
            session=session,
            case_key=key,
            gate_key="verdict",
            decision=Decision.REJECT,
            actor=progress.Actor(COUNCIL_MEMBER),
            now=at("2026-03-11"),
        )
    # The draft, done again on Fri 13 March, opens round 2 (deadline Fri 20 March), approved
    # on Thu 19 March: 16, 17, 18 and 19 March, 4 wd, 6 days.
    _do(rt, key, "draft", "complete", "2026-03-13")
    with write_session(rt.engine) as session:
        progress.decide_gate(
            session=session,
            case_key=key,
            gate_key="verdict",
            decision=Decision.APPROVE,
            actor=progress.Actor(COUNCIL_MEMBER),
            now=at("2026-03-19"),
        )
    frames = kpis.load(rt.engine, as_of=date(2026, 3, 20))
    rounds = kpis.gate_rounds(frames)
    got = [
        (
            r["round"],
            _day(r["opened_on"]),
            _day(r["deadline"]),
            _day(r["decided_on"]),
            str(r["outcome"]),
            r["decision_working_days"],
            r["decision_calendar_days"],
        )
        for r in rounds.to_dict("records")
    ]
    assert got == [
        (1, "2026-03-09", "2026-03-16", "2026-03-11", "rejected", 2.0, 2.0),
        (2, "2026-03-13", "2026-03-20", "2026-03-19", "approved", 4.0, 6.0),
    ]
    times = _rows(kpis.build_gate_times(frames), "gate")["verdict"]
    # Decision times 2 and 4 wd: median 3, p90 2 + 0.9 x 2 = 3.8; 2 and 6 days: median 4.
    assert _pick(
        times,
        "rounds",
        "decided",
        "approved",
        "rejected",
        "median_decision_working_days",
        "p90_decision_working_days",
        "median_decision_calendar_days",
    ) == {
        "rounds": 2,
        "decided": 2,
        "approved": 1,
        "rejected": 1,
        "median_decision_working_days": 3.0,
        "p90_decision_working_days": pytest.approx(3.8),
        "median_decision_calendar_days": 4.0,
    }
    # The rework counts in prep: entered on 2 March, left when the draft was done again on
    # 13 March (9 wd); review from then to the approval (4 wd); wrap-up since 19 March.
    spans = kpis.stage_spans(frames).replace({np.nan: None})
    assert [
        (str(r["stage"]), _day(r["left"]), r["working_days"], r["age_working_days"])
        for r in spans.to_dict("records")
    ] == [
        ("prep", "2026-03-13", 9.0, None),
        ("review", "2026-03-19", 4.0, None),
        ("wrap-up", None, None, 1.0),
    ]
    # Done on time, reopened, done again four days after its due date: a breach of March.
    breach = kpis.build_sla_breaches(frames).iloc[0]
    assert (breach["milestone"], str(breach["breach_month"]), breach["working_days_late"]) == (
        "draft",
        "2026-03",
        4.0,
    )
    rt.engine.dispose()


# --- the shared SME service ------------------------------------------------------------------


def test_sme_service_by_country_and_service_type(frames: kpis.Frames) -> None:
    table = _rows(kpis.build_sme_service(frames), ["country", "service_type"])
    columns = (
        "requests",
        "open",
        "completed",
        "cancelled",
        "responded",
        "median_first_response_working_days",
        "median_first_response_calendar_days",
        "median_delivery_working_days",
        "median_delivery_calendar_days",
    )
    # First response: start to the first milestone done (request-intake everywhere): 1 wd,
    # except SME-2 (25 March to 7 April, Sweden: 26, 27, 30, 31 March, 1, 2, 7 April: 7 wd,
    # 13 days). Delivery: SME-1 from Mon 12 January to its completion on Fri 13 March: nine
    # weeks less a Monday, 44 wd, 60 days. Triage captured financing (SME-1), IP (SME-4)
    # and an EU programme (SME-5); SME-2 and SME-3 were never triaged.
    assert {k: _pick(r, *columns) for k, r in table.items()} == {
        ("DK", "financing"): dict(zip(columns, (1, 0, 1, 0, 1, 1.0, 1.0, 44.0, 60.0), strict=True)),
        ("LT", "untriaged"): dict(zip(columns, (1, 0, 0, 1, 1, 1.0, 1.0, None, None), strict=True)),
        ("NO", "ip"): dict(zip(columns, (1, 0, 0, 1, 1, 1.0, 1.0, None, None), strict=True)),
        ("SE", "eu-programme"): dict(
            zip(columns, (1, 1, 0, 0, 1, 1.0, 1.0, None, None), strict=True)
        ),
        ("SE", "untriaged"): dict(
            zip(columns, (1, 1, 0, 0, 1, 7.0, 13.0, None, None), strict=True)
        ),
    }
    by_type = _rows(kpis.build_sme_service(frames, ("service_type",)), "service_type")
    assert {k: r["requests"] for k, r in by_type.items()} == {
        "eu-programme": 1,
        "financing": 1,
        "ip": 1,
        "untriaged": 2,
    }


def test_cases_by_the_service_type_field(frames: kpis.Frames) -> None:
    """Grouped by the choice field: the three triaged requests each captured one type; SME-2
    and SME-3 hold none."""
    table = kpis.build_field_counts(frames, "service_type")
    got = {
        (r["pilot"], r["service_type"]): (r["cases"], r["open"], r["completed"], r["cancelled"])
        for r in table.to_dict("records")
    }
    assert got == {
        (SME, "eu-programme"): (1, 1, 0, 0),
        (SME, "financing"): (1, 0, 1, 0),
        (SME, "ip"): (1, 0, 0, 1),
        (SME, "unspecified"): (2, 1, 0, 1),
    }
    assert table.attrs["labels"] == {"service_type": "Service type"}


# --- forecast --------------------------------------------------------------------------------


def _planner_forecast(rt: Runtime, key: str, today: date) -> date:
    """What `planning.reforecast` would make of a case today (computed, not saved)."""
    with Session(rt.engine) as session:
        loaded = store.load_case(session, key, for_update=False)
    planning.reforecast(loaded.plan, loaded.template, today)
    return loaded.case.forecast_date


def test_forecast_and_the_cases_at_risk(portfolio: Runtime, frames: kpis.Frames) -> None:
    table = kpis.build_forecast(frames)
    rows = _rows(table, "case")
    assert set(rows) == {IP, S2, S5}  # the open cases
    columns = (
        "target_date",
        "forecast_date",
        "slip_working_days",
        "slip_calendar_days",
        "at_risk",
        "driving_item",
    )
    # SME-2 as of 20 April: needs-interview may not be due before today (20 April), triage
    # +2 wd 22 April, cluster-search +7 wd skipping 1 May: 4 May, match 7 May, the gate +5 wd
    # skipping Ascension: 15 May, plan 20 May, delivery +10 wd 3 June, follow-up 10 days on,
    # Sat 13 June, +1 wd Mon 15 June, kpi-record +2 wd Wed 17 June. The target was Tue 2 June:
    # 11 Swedish wd (Sat 6 June is National Day) and 15 days late. The item to chase is the
    # first open one on the critical path: needs-interview.
    assert _pick(rows[S2], *columns) == {
        "target_date": pd.Timestamp("2026-06-02"),
        "forecast_date": pd.Timestamp("2026-06-17"),
        "slip_working_days": 11.0,
        "slip_calendar_days": 15.0,
        "at_risk": True,
        "driving_item": "needs-interview",
    }
    # SME-5: the gate, open since 31 March, may be decided today at the earliest (20 April);
    # plan 23 April, delivery +10 wd skipping 1 May: 8 May, follow-up Mon 18 May + 1 wd,
    # kpi-record 21 May. Planned: gate 9 April, plan 14 April, delivery 28 April, follow-up
    # 8 + 10 days: Mon 11 May, kpi-record Wed 13 May. 5 Swedish wd late (14 May is a holiday).
    assert _pick(rows[S5], *columns) == {
        "target_date": pd.Timestamp("2026-05-13"),
        "forecast_date": pd.Timestamp("2026-05-21"),
        "slip_working_days": 5.0,
        "slip_calendar_days": 8.0,
        "at_risk": True,
        "driving_item": "sme-acceptance",
    }
    # The IP case: kickoff's day late pushes its whole chain; the planner agrees to the day.
    ip = rows[IP]
    assert ip["at_risk"] and ip["slip_working_days"] >= 1
    assert ip["forecast_date"].date() == _planner_forecast(portfolio, IP, AS_OF)
    for key in (S2, S5):
        assert rows[key]["forecast_date"].date() == _planner_forecast(portfolio, key, AS_OF)
    # At risk first, the largest slip first.
    assert list(table["case"])[:2] == [S2, S5]


# --- purity, an empty store, the demo --------------------------------------------------------


def test_builds_do_not_change_their_input(portfolio: Runtime) -> None:
    fresh = kpis.load(portfolio.engine, as_of=AS_OF)
    before = {
        name: getattr(fresh, name).copy(deep=True)
        for name in ("cases", "milestone_counts", "milestones", "gates", "events", "fields")
    }
    before["slips"] = _sorted(fresh.slips)
    tables = kpis.build_all(fresh)
    assert set(tables) == {
        "cases_by_pilot",
        "cases_by_partner",
        "cases_by_country",
        "milestones_by_pilot",
        "milestones_by_partner",
        "milestones_by_country",
        "stage_cycle_times",
        "gate_times",
        "sla_breaches",
        "sla_breaches_by_month",
        "sme_service",
        "forecast",
        "cases_by_sector",
        "cases_by_service_type",
        "field_totals_by_pilot",
        "field_totals_by_partner",
        "field_totals_by_country",
        "case_fields",
    }
    for name, frame in before.items():
        pd.testing.assert_frame_equal(
            _sorted(fresh.slips) if name == "slips" else getattr(fresh, name), frame
        )
    # Loading through a session (the driver's cursor, in its transaction, every row at once)
    # reads the same store as loading from the engine (Arrow, the counts from the database),
    # table by table and dtype by dtype.
    with Session(portfolio.engine) as session:
        again = kpis.load(session, as_of=AS_OF)
    for name, frame in before.items():
        pd.testing.assert_frame_equal(
            _sorted(again.slips) if name == "slips" else getattr(again, name), frame
        )
    assert again.templates == fresh.templates


def test_the_engine_load_reads_through_arrow(portfolio: Runtime) -> None:
    with readers.reader(portfolio.engine) as read:
        assert read.arrow


def test_a_large_select_read_in_two_ranges_gives_every_row_once_in_order(
    portfolio: Runtime,
) -> None:
    """The SQLite children read the milestones in two ranges of their id at once; the rows
    are those of one read, in the same order, whatever types each child narrowed to."""
    query = select(col(Milestone.id), col(Milestone.seq), col(Milestone.case_id)).order_by(
        col(Milestone.id)
    )
    with readers.reader(portfolio.engine) as read:
        whole = read.integers(query, ["id", "seq", "case_id"])
        parts = read.integers_large(query, ["id", "seq", "case_id"], col(Milestone.id))()
    assert len(whole) > 10 and whole["id"].is_unique
    pd.testing.assert_frame_equal(parts, whole)


def test_the_arrow_load_reads_one_snapshot(consortium: Runtime) -> None:
    """What is fetched soon (the milestones) and the rest come from the same moment, whatever
    writers commit while the load runs."""
    count = select(func.count()).select_from(Partner)
    with readers.reader(consortium.engine) as read:
        assert read.arrow
        before = int(read.records(count, ["n"])["n"].iloc[0])
        with write_session(consortium.engine) as session:
            session.add(
                Partner(
                    code="LATE",
                    name="Meanwhile",
                    kind=PartnerKind.CLUSTER,
                    country="DK",
                    region="Hovedstaden",
                    timezone="Europe/Copenhagen",
                )
            )
            session.commit()
        later = read.integers_soon(count, ["n"])
        assert int(read.records(count, ["n"])["n"].iloc[0]) == before
        assert int(later()["n"].iloc[0]) == before
    with readers.reader(consortium.engine) as read:
        assert int(read.records(count, ["n"])["n"].iloc[0]) == before + 1


def test_the_load_reads_every_row_at_once(consortium: Runtime) -> None:
    """Everything `load` gives comes from the store as it was when it ran: what is written
    after does not show."""
    key = _open(consortium, SME, SME_OWNER, "2026-03-02")
    _do(consortium, key, "request-intake", "complete", "2026-03-03")
    frames = kpis.load(consortium.engine, as_of=AS_OF)
    _open(consortium, SME, SE_OWNER, "2026-03-03")
    _do(consortium, key, "needs-interview", "complete", "2026-03-04")
    assert set(frames.milestones["case_id"]) == set(frames.cases.index)
    assert len(frames.cases) == 1 and len(frames.gates) == 1 and frames.fields.isna().all().all()
    assert int((frames.milestones["status"] == "done").sum()) == 1


def test_an_added_milestone_is_read_like_the_templates_own(consortium: Runtime) -> None:
    """Through Arrow and through a session alike: its key, stage and stage order as stored,
    counted with its case's milestones, measured against its agreed date, in the
    breaches when late."""
    key = _open(consortium, SME, SME_OWNER, "2026-03-02")
    _add_to(consortium, key, "extra-review", "needs-interview+1", date(2026, 3, 2))
    fresh = kpis.load(consortium.engine, as_of=AS_OF)
    with Session(consortium.engine) as session:
        again = kpis.load(session, as_of=AS_OF)
        stored = {m.key: m for m in session.exec(select(Milestone))}
    pd.testing.assert_frame_equal(fresh.milestones, again.milestones)
    assert fresh.added == again.added and list(fresh.added) == list(fresh.cases.index)
    ((item,),) = fresh.added.values()
    added = stored["extra-review"]
    assert (item.seq, item.step.key, item.step.duration) == (added.seq, added.key, 5)
    m = fresh.milestones.set_index("key")
    assert m.loc["extra-review", "stage"] == added.stage == stored["needs-interview"].stage
    assert m.loc["extra-review", "stage_order"] == m.loc["needs-interview", "stage_order"]
    assert m.loc["extra-review", "sla_due"].date() == added.planned_due
    assert fresh.milestone_counts["milestones"].tolist() == [len(stored)]
    breaches = kpis.build_sla_breaches(fresh)
    assert "extra-review" in set(breaches["milestone"])  # due in March, open on 20 April


def test_a_milestone_marked_done_without_a_finish_date_is_not_done(consortium: Runtime) -> None:
    """As `milestone_facts` has it (no finish date, nothing to measure): counted open, and
    overdue once its due date has passed, in the counts per case as in the facts."""
    _open(consortium, SME, SME_OWNER, "2026-03-02")
    with consortium.engine.begin() as conn:
        conn.execute(text("UPDATE milestones SET status = 'done' WHERE key = 'needs-interview'"))
    frames = kpis.load(consortium.engine, as_of=AS_OF)
    assert (frames.milestone_counts["done"].sum(), len(frames.slips)) == (0, 0)
    table = kpis.build_milestone_kpis(frames)
    facts = kpis.milestone_facts(frames)
    assert list(table[["milestones", "open", "done", "overdue_now"]].iloc[0]) == [
        len(facts),
        int(facts["open"].sum()),
        0,
        int(facts["overdue_now"].sum()),
    ]
    assert facts.loc[facts["milestone"] == "needs-interview", "overdue_now"].item()


def test_group_statistics_agree_with_pandas() -> None:
    """Whole numbers in a short range are sorted by counting, anything else by comparing:
    the same medians, p90s, means and extremes as pandas either way."""
    rng = np.random.default_rng(7)
    groups = rng.integers(0, 5, 3000)
    for values in (
        rng.integers(-20, 40, 3000).astype(float),
        rng.integers(-(10**9), 10**9, 3000).astype(float),
        rng.normal(size=3000),
    ):
        values[::17] = np.nan
        grouping = Grouping({"g": groups})
        got = grouping.table(grouping.stats(values, "v", ("median", "p90", "mean", "min", "max")))
        by = pd.Series(values).groupby(groups)
        expected = pd.DataFrame(
            {
                "median_v": by.median(),
                "p90_v": by.quantile(0.9),
                "mean_v": by.mean(),
                "min_v": by.min(),
                "max_v": by.max(),
            }
        ).rename_axis("g")
        pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-12)


def test_case_rows_are_found_by_id() -> None:
    ids = np.array([0, 1, 2, 3, 4, 5, -1, 10**12, 99], dtype=np.int64)
    for keys in ([3, 1, 2], [10**12, 5], [], [0, 2, 4]):
        index = pd.Index(np.array(keys, dtype=np.int64))
        assert list(rows_of(index, ids)) == list(index.get_indexer(ids))


def test_an_empty_store_gives_empty_tables(rt: Runtime) -> None:
    frames = kpis.load(rt.engine, as_of=AS_OF)
    tables = kpis.build_all(frames)
    assert all(table.empty for table in tables.values())
    assert list(tables["milestones_by_pilot"].columns)[:3] == ["pilot", "milestones", "open"]
    assert "at_risk" in tables["forecast"].columns


def _add_to(rt: Runtime, case: str, key: str, after: str, today: date) -> None:
    """A milestone added to one case only (`milestone add`), as of `today`."""
    with write_session(rt.engine) as session:
        items.add_milestone(
            session=session,
            case_key=case,
            key=key,
            title="Added for this case",
            owner=CASE_OWNER,
            duration=5,
            after=after,
            actor=progress.Actor(OPS),
            now=at(today.isoformat()),
        )


def test_the_forecast_matches_the_planner_on_the_demo(tmp_path: Path) -> None:
    """The vectorised rescheduling gives every demo item the planner's dates and path: the
    template's items, and milestones added to one case only (one case adding two in a row,
    two others the same one, which they are rescheduled with at once, a fourth one of its
    own)."""
    rt = build_runtime(Settings(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'c.db'}"))
    migrate.upgrade(rt.engine)
    today = date(2026, 6, 15)
    load_demo(rt, today)  # ends by reforecasting every case as of `today`
    with Session(rt.engine) as session:
        open_sme = list(
            session.exec(
                select(Case.key)
                .where(Case.kind == SME, Case.status == CaseStatus.ACTIVE)
                .order_by(col(Case.key))
            )
        )
    first, second, third, fourth = open_sme[:4]
    for case in (first, second, third):
        _add_to(rt, case, "extra-review", "kpi-record+2", today)  # after the last: a new end
    _add_to(rt, first, "second-review", "extra-review", today)  # after an added one
    _add_to(rt, fourth, "early-check", "request-intake", today)  # off the critical path
    frames = kpis.load(rt.engine, as_of=today)
    ids = frames.cases.index[frames.cases["key"].isin([first, second, third, fourth])]
    assert set(frames.added) == {int(i) for i in ids}
    items_ = kpis.forecast_items(frames)
    with Session(rt.engine) as session:
        stored = {
            (case, node.key): (node.forecast_start, node.forecast_due, node.critical)
            for model in (Milestone, Gate)
            for node, case in session.exec(select(model, Case.key).where(model.case_id == Case.id))
        }
    got = {
        (r["case"], r["item"]): (
            r["forecast_start"].date(),
            r["forecast_due"].date(),
            bool(r["critical"]),
        )
        for r in items_.to_dict("records")
    }
    # 20 open cases: the pilots' 174 items, the other six activities' 58; five items added.
    assert len(got) == len(stored) == 174 + 58 + 5
    assert got == stored
    forecast = kpis.build_forecast(frames)
    assert (forecast["forecast_date"] == forecast["stored_forecast_date"]).all()
    driving = dict(zip(forecast["case"], forecast["driving_item"], strict=True))
    assert got[(first, "second-review")][2] and driving[first] != "kpi-record"
    added = frames.milestones[frames.milestones["key"].isin(["extra-review", "early-check"])]
    assert len(added) == 4 and (added["stage_order"] >= 0).all() and added["stage"].notna().all()
    rt.engine.dispose()


def test_the_arrow_child_reads_through_the_drivers_arrow_stream(tmp_path: Path) -> None:
    """`arrow_fetch` takes the ADBC SQLite driver's rows through the Arrow PyCapsule stream
    interface (public on both sides) and answers with narrowed Arrow IPC: run in-process on a
    file nobody else opens, so that a driver or pyarrow dropping that interface fails here."""
    import io
    import json
    import sqlite3

    import pyarrow as pa

    from bridgebsr.reports import arrow_fetch

    path = tmp_path / "rows.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (n INTEGER, s TEXT)")
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(1, "a"), (300, None)])
    conn.close()
    commands = io.StringIO("pin\n" + json.dumps("SELECT n, s FROM t ORDER BY n") + "\n")
    out = io.BytesIO()
    arrow_fetch.serve(str(path), commands, out)
    answer = out.getvalue()
    head, _, rest = answer.partition(b"\n")
    assert head == b"ready"
    pinned, _, rest = rest.partition(b"\n")
    assert pinned == b"pinned"
    ok, _, payload = rest.partition(b"\n")
    assert ok.startswith(b"ok ") and int(ok[3:]) == len(payload)
    table = pa.ipc.open_stream(pa.py_buffer(payload)).read_all()
    assert table.to_pydict() == {"n": [1, 300], "s": ["a", None]}
    assert table.schema.field("n").type == pa.int16()  # narrowed from the driver's int64
