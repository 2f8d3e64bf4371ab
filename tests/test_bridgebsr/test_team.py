"""Case teams, reassignment and retirement, on a SQLite file and on PostgreSQL: the roles rule
as fast unit tests, then `case team`, `case open --team`, `case reassign`, `milestone
reassign` and `contacts retire` through their use cases and a few through the command line."""

import csv
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlmodel import col, select

from bridgebsr.bootstrap import Runtime
from bridgebsr.errors import IllegalTransition, InvalidInput, NotFound, StaleCase
from bridgebsr.monitor.sweep import run_monitor
from bridgebsr.office import bulk, cases, progress, retire, team
from bridgebsr.office.delivery import deliver
from bridgebsr.office.progress import Actor
from bridgebsr.rules.ladder import step_day
from bridgebsr.rules.roles import (
    case_role_holders,
    check_handover,
    check_team_role,
    parse_assignments,
)
from bridgebsr.store import case_rows as store
from bridgebsr.store import directory_events
from bridgebsr.store.db import read_session, write_session
from models import (
    CaseEvent,
    Decision,
    MilestoneStatus,
    Notification,
    TeamMember,
)
from tests.conftest import BEFORE_COUNCIL, at
from tests.test_bridgebsr.test_cli_input import cli, one_error_line, store_env

ZONE = "Europe/Copenhagen"
LEAD = "soren.ostergaard@scanbalt.example"  # pilot-lead at SCANBALT (DK)
IP_PILOT_LEAD = "karin.astrom@mva.example"  # leads ip-integration; holds ip-expert by default
EXPERT = "matthias.koehler@steinbeis.example"  # ip-expert at STEINBEIS (DE)
EXPERT2 = "grzegorz.rozanski@ippt-pan.example"  # ip-expert at IPPT-PAN (PL)
LEGAL = "nikolaj.brond@scanbalt.example"  # legal-advisor at SCANBALT
FINANCE = "laerke.dahl@scanbalt.example"  # finance-officer at SCANBALT
CASE_OWNER2 = "anders.bogh@scanbalt.example"  # case-owner at SCANBALT
COUNCILLOR = "peter.moller-jensen@mva.example"  # council-member at MVA
MONDAY = date(2026, 3, 2)
EXPERT_ITEMS = (  # the ip-expert's milestones of ip-integration, in template order
    "bottleneck-desk-study",
    "bottleneck-report",
    "indicator-set",
    "expert-panel",
    "trial-evaluation",
)


# --- the rules ---------------------------------------------------------------------------------


class _P:
    def __init__(self, name: str, partner_id: int) -> None:
        self.name, self.partner_id = name, partner_id


def test_a_case_teams_holder_comes_before_the_lead_partner_and_the_pilot_lead() -> None:
    here, there, lead, member = _P("here", 1), _P("there", 2), _P("lead", 3), _P("member", 2)
    assert case_role_holders([there, here], 1, [lead], member) == [member]
    assert case_role_holders([there, here], 1, [lead], None) == [here]
    assert case_role_holders([there], 1, [lead], None) == [lead]
    assert case_role_holders([], 1, [], member) == [member]


def test_team_assignments_are_role_equals_email_each_role_once() -> None:
    assert parse_assignments([" ip-expert = a@x.example "], "--team") == {
        "ip-expert": "a@x.example"
    }
    with pytest.raises(InvalidInput, match="is not ROLE=EMAIL"):
        parse_assignments(["ip-expert"], "--team")
    with pytest.raises(InvalidInput, match="named twice"):
        parse_assignments(["a=b@x.example", "a=c@x.example"], "--set")


def test_a_team_role_is_one_of_the_templates_and_not_the_case_owner() -> None:
    roles = ["coordinator", "ip-expert", "case-owner"]
    assert check_team_role(" ip-expert ", roles, "case K", "ip") == "ip-expert"
    with pytest.raises(InvalidInput, match="'cook' is not a role of ip; give one of: coord"):
        check_team_role("cook", roles, "case K", "ip")
    with pytest.raises(InvalidInput, match="case reassign"):
        check_team_role("case-owner", roles, "case K", "ip")


def test_only_open_milestones_change_hands() -> None:
    for status in (MilestoneStatus.PLANNED, MilestoneStatus.IN_PROGRESS, MilestoneStatus.BLOCKED):
        check_handover("K", "m", status)
    for status in (MilestoneStatus.DONE, MilestoneStatus.WAIVED):
        with pytest.raises(IllegalTransition, match="it is"):
            check_handover("K", "m", status)


# --- helpers -----------------------------------------------------------------------------------


def _open(rt: Runtime, team_: dict[str, str] | None = None, day: date = MONDAY) -> str:
    with write_session(rt.engine) as session:
        return cases.open_case(
            session=session,
            catalog=rt.catalog,
            kind="ip-integration",
            title="Teamed",
            owner_email=LEAD,
            start=day,
            now=at(day.isoformat()),
            team=team_,
        ).key


def _owners(rt: Runtime, key: str) -> dict[str, str | None]:
    with read_session(rt.engine) as session:
        found = session.execute(
            text(
                "SELECT m.key, c.email FROM milestones m JOIN cases k ON k.id = m.case_id "
                "LEFT JOIN contacts c ON c.id = m.owner_id WHERE k.key = :key"
            ),
            {"key": key},
        ).all()
    return {str(m): e for m, e in found}


def _rows(session: Any, key: str) -> list[tuple[str, str]]:
    return [
        (r, e)
        for r, e in session.execute(
            text(
                "SELECT t.role, c.email FROM case_team t JOIN cases k ON k.id = t.case_id "
                "JOIN contacts c ON c.id = t.contact_id WHERE k.key = :key"
            ),
            {"key": key},
        ).all()
    ]


def _events(rt: Runtime, key: str, kind: str) -> list[CaseEvent]:
    with read_session(rt.engine) as session:
        case = store.case_by_key(session, key)
        return list(
            session.exec(
                select(CaseEvent)
                .where(CaseEvent.case_id == case.id, CaseEvent.kind == kind)
                .order_by(col(CaseEvent.id))
            )
        )


def _outbox(rt: Runtime, **where: Any) -> list[tuple[str, str, str, str]]:
    """(recipient, subject, rule, status) of outbox rows, oldest first."""
    with read_session(rt.engine) as session:
        rows = session.execute(
            text(
                "SELECT c.email, n.subject, n.rule, n.status FROM notifications n "
                "JOIN contacts c ON c.id = n.recipient_id ORDER BY n.id"
            )
        ).all()
    found = [(a, b, c, d) for a, b, c, d in rows]
    if "to" in where:
        found = [r for r in found if r[0] == where["to"]]
    if "subject" in where:
        found = [r for r in found if r[1] == where["subject"]]
    return found


def _version(rt: Runtime, key: str) -> int:
    with read_session(rt.engine) as session:
        return store.case_by_key(session, key).version


def _set(rt: Runtime, key: str, day: str, sets: dict[str, str], **kw: Any) -> team.Work:
    with write_session(rt.engine) as session:
        return team.set_team(
            session=session, key=key, sets=sets, actor=Actor(LEAD), now=at(day), **kw
        )


def _reassign(rt: Runtime, key: str, item: str, to: str, day: str, **kw: Any) -> None:
    with write_session(rt.engine) as session:
        team.reassign_milestone(
            session=session,
            key=key,
            milestone_key=item,
            to=to,
            actor=Actor(LEAD),
            now=at(day),
            **kw,
        )


def _retire(rt: Runtime, who: str, successor: str, day: str) -> retire.Retired:
    with write_session(rt.engine) as session:
        return retire.retire_contact(
            session=session, email_=who, successor=successor, actor=Actor(LEAD), now=at(day)
        )


def _monitor(rt: Runtime, day: date) -> None:
    run_monitor(rt.engine, now=at(day.isoformat(), 7), zone=ZONE)


def _due(rt: Runtime, key: str, item: str) -> date:
    with read_session(rt.engine) as session:
        loaded = store.load_case(session, key, for_update=False)
        return next(m.planned_due for m in loaded.plan.milestones if m.key == item)


def _calendar(rt: Runtime, email: str) -> Any:
    with read_session(rt.engine) as session:
        return store.contact_by_email(session.connection(), email).calendar


# --- a case team --------------------------------------------------------------------------------


def test_a_case_opened_with_a_team_gives_its_roles_items_to_the_team(consortium: Runtime) -> None:
    rt = consortium
    plain = _open(rt)
    teamed = _open(rt, {"ip-expert": EXPERT, "legal-advisor": LEGAL})
    assert {_owners(rt, plain)[m] for m in EXPERT_ITEMS} == {IP_PILOT_LEAD}
    assert {_owners(rt, teamed)[m] for m in EXPERT_ITEMS} == {EXPERT}
    with read_session(rt.engine) as session:
        shown = team.show_team(session=session, key=teamed)
        assert sorted(_rows(session, teamed)) == [("ip-expert", EXPERT), ("legal-advisor", LEGAL)]
    by_role = {r["role"]: r for r in shown["team"]}
    assert by_role["ip-expert"] == {"role": "ip-expert", "who": EXPERT, "source": "team"}
    assert by_role["pilot-lead"]["source"] == "lead partner"
    assert by_role["council-member"]["source"] == "pilot lead"  # none at SCANBALT
    assert by_role["case-owner"] == {"role": "case-owner", "who": LEAD, "source": "case"}
    (opened,) = _events(rt, teamed, "case.open")
    assert opened.after is not None
    assert opened.after["team"] == {"ip-expert": EXPERT, "legal-advisor": LEGAL}


def test_opening_with_a_bad_team_is_refused_with_one_line(consortium: Runtime) -> None:
    with pytest.raises(InvalidInput, match="--team: 'cook' is not a role of ip-integration"):
        _open(consortium, {"cook": EXPERT})
    with pytest.raises(NotFound, match="--team ip-expert=nobody@x.example: no contact"):
        _open(consortium, {"ip-expert": "nobody@x.example"})


def test_setting_a_team_role_hands_its_open_items_over(consortium: Runtime) -> None:
    rt = consortium
    key = _open(rt, {"ip-expert": EXPERT})
    with write_session(rt.engine) as session:
        progress.progress_milestone(
            session=session, case_key=key, milestone_key="kickoff", action="complete",
            actor=Actor(LEAD), now=at("2026-03-13"),
        )  # fmt: skip
        progress.progress_milestone(
            session=session, case_key=key, milestone_key="bottleneck-desk-study",
            action="waive", actor=Actor(LEAD), now=at("2026-03-13"),
        )  # fmt: skip
    version = _version(rt, key)
    work = _set(rt, key, "2026-03-16", {"ip-expert": EXPERT2}, expected_version=version)
    owners = _owners(rt, key)
    assert owners["bottleneck-desk-study"] == EXPERT  # waived: stays as it was
    assert {owners[m] for m in EXPERT_ITEMS[1:]} == {EXPERT2}
    assert _version(rt, key) == version + 1 == work.loaded.case.version
    (changed,) = _events(rt, key, "team.set")
    assert (changed.before, changed.after) == ({"holder": EXPERT}, {"holder": EXPERT2})
    moved = _events(rt, key, "milestone.reassign")
    assert [e.subject for e in moved] == list(EXPERT_ITEMS[1:])
    assert moved[0].before == {"owner": EXPERT}
    assert moved[0].after == {"owner": EXPERT2, "why": "team role ip-expert"}
    told = _outbox(rt)
    assert {(r[0], r[1]) for r in told} == {
        (who, m) for who in (EXPERT, EXPERT2) for m in EXPERT_ITEMS[1:]
    }
    assert {r[2] for r in told} == {f"handover-v{version + 1}"}
    # Refusals: a stale view, an unknown role, a retired person, nothing to change.
    with pytest.raises(StaleCase, match=f"is at version {version + 1}, not {version}"):
        _set(rt, key, "2026-03-16", {"ip-expert": EXPERT}, expected_version=version)
    with pytest.raises(InvalidInput, match=f"case {key}: 'cook' is not a role"):
        _set(rt, key, "2026-03-16", {"cook": EXPERT})
    with pytest.raises(IllegalTransition, match="nothing to change"):
        _set(rt, key, "2026-03-16", {"ip-expert": EXPERT2})
    _retire(rt, EXPERT, EXPERT2, "2026-03-16")
    with pytest.raises(IllegalTransition, match=f"{EXPERT} has retired"):
        _set(rt, key, "2026-03-17", {"legal-advisor": EXPERT})


def test_unsetting_a_team_role_falls_back_to_the_lead_partner(consortium: Runtime) -> None:
    rt = consortium
    key = _open(rt, {"legal-advisor": FINANCE})
    with write_session(rt.engine) as session:
        team.set_team(
            session=session, key=key, sets={}, unsets=["legal-advisor"], actor=Actor(LEAD),
            now=at("2026-03-03"),
        )  # fmt: skip
        shown = team.show_team(session=session, key=key)
    row = next(r for r in shown["team"] if r["role"] == "legal-advisor")
    assert row == {"role": "legal-advisor", "who": LEGAL, "source": "lead partner"}
    with pytest.raises(NotFound, match="names no legal-advisor"):
        with write_session(rt.engine) as session:
            team.set_team(
                session=session, key=key, sets={}, unsets=["legal-advisor"], actor=Actor(LEAD),
                now=at("2026-03-03"),
            )  # fmt: skip


# --- reassignment ------------------------------------------------------------------------------


def test_a_reassigned_milestone_keeps_sent_steps_and_sends_the_rest_to_its_new_owner(
    consortium: Runtime,
) -> None:
    rt = consortium
    key = _open(rt)
    item = "bottleneck-desk-study"  # owned by the ip pilot lead (no ip-expert at SCANBALT)
    due = _due(rt, key, item)
    remind10 = step_day(_calendar(rt, IP_PILOT_LEAD), due, -10)
    _monitor(rt, remind10)
    deliver(rt, now=at(remind10.isoformat(), 10))
    assert _outbox(rt, subject=item) == [(IP_PILOT_LEAD, item, "remind-10", "sent")]
    _reassign(rt, key, item, EXPERT2, remind10.isoformat(), expected_version=_version(rt, key))
    assert _owners(rt, key)[item] == EXPERT2
    (event,) = _events(rt, key, "milestone.reassign")
    assert event.before is not None and event.after is not None
    assert event.before["owner"] == IP_PILOT_LEAD  # and the case forecast, when it moved
    assert (event.after["owner"], event.after["why"]) == (EXPERT2, "reassigned")
    _monitor(rt, remind10)  # the same day again: remind-10 is not sent to the new owner
    rows = _outbox(rt, subject=item)
    assert (IP_PILOT_LEAD, item, "remind-10", "sent") in rows  # sent stays sent
    assert (EXPERT2, item, "remind-10", "suppressed") in rows
    assert {(r[0], r[3]) for r in rows if r[2].startswith("handover-")} == {
        (IP_PILOT_LEAD, "pending"),
        (EXPERT2, "pending"),
    }
    remind2 = step_day(_calendar(rt, EXPERT2), due, -2)  # the new owner's working days
    _monitor(rt, remind2)
    later = [r for r in _outbox(rt, subject=item) if r[2] == "remind-2"]
    assert later == [(EXPERT2, item, "remind-2", "pending")]
    # Handed back before it went: the waiting owner's reminder is no longer wanted, and the
    # steps EXPERT2 had are kept from the pilot lead too.
    _reassign(rt, key, item, IP_PILOT_LEAD, remind2.isoformat())
    later = [r for r in _outbox(rt, subject=item) if r[2] == "remind-2"]
    assert later == [
        (EXPERT2, item, "remind-2", "suppressed"),
        (IP_PILOT_LEAD, item, "remind-2", "suppressed"),
    ]


def test_reassigning_refuses_finished_items_the_same_owner_and_strangers(
    consortium: Runtime,
) -> None:
    rt = consortium
    key = _open(rt)
    with write_session(rt.engine) as session:
        progress.progress_milestone(
            session=session, case_key=key, milestone_key="kickoff", action="complete",
            actor=Actor(LEAD), now=at("2026-03-13"),
        )  # fmt: skip
    with pytest.raises(IllegalTransition, match="kickoff of .* it is done"):
        _reassign(rt, key, "kickoff", EXPERT, "2026-03-13")
    with pytest.raises(IllegalTransition, match="already"):
        _reassign(rt, key, "bottleneck-desk-study", IP_PILOT_LEAD, "2026-03-13")
    with pytest.raises(NotFound, match="no contact nobody@x.example"):
        _reassign(rt, key, "bottleneck-desk-study", "nobody@x.example", "2026-03-13")
    with pytest.raises(NotFound, match="has no milestone 'nope'"):
        _reassign(rt, key, "nope", EXPERT, "2026-03-13")
    with pytest.raises(StaleCase):
        _reassign(rt, key, "bottleneck-desk-study", EXPERT, "2026-03-13", expected_version=1)


def test_a_new_case_owner_takes_the_case_owners_open_items(consortium: Runtime) -> None:
    rt = consortium
    key = _open(rt)
    assert _owners(rt, key)["regional-workshops"] == LEAD
    with write_session(rt.engine) as session:
        team.reassign_case(
            session=session, key=key, owner=CASE_OWNER2, actor=Actor(LEAD), now=at("2026-03-03"),
            expected_version=1,
        )  # fmt: skip
    with read_session(rt.engine) as session:
        assert (
            store.case_by_key(session, key).owner_id
            == store.contact_by_email(session.connection(), CASE_OWNER2).id
        )
    owners = _owners(rt, key)
    assert owners["regional-workshops"] == owners["baseline-data"] == CASE_OWNER2
    assert owners["kickoff"] == LEAD  # a pilot-lead item stays
    (event,) = _events(rt, key, "case.reassign")
    assert (event.before, event.after) == ({"owner": LEAD}, {"owner": CASE_OWNER2})
    told = {(r[0], r[1]) for r in _outbox(rt) if r[2].startswith("handover-")}
    assert {("anders.bogh@scanbalt.example", "case"), (LEAD, "case")} <= told
    with pytest.raises(IllegalTransition, match="already"):
        with write_session(rt.engine) as session:
            team.reassign_case(
                session=session, key=key, owner=CASE_OWNER2, actor=Actor(LEAD),
                now=at("2026-03-03"),
            )  # fmt: skip


# --- retirement --------------------------------------------------------------------------------


def test_retiring_hands_everything_over_in_one_notice_and_silences_the_address(
    consortium: Runtime,
) -> None:
    rt = consortium
    key = _open(rt, {"ip-expert": EXPERT})
    other = _open(rt, {"ip-expert": EXPERT})
    item = "bottleneck-desk-study"
    day = step_day(_calendar(rt, EXPERT), _due(rt, key, item), -10)
    _monitor(rt, day)
    assert (EXPERT, item, "remind-10", "pending") in _outbox(rt, to=EXPERT)
    before = len(_outbox(rt))
    done = _retire(rt, EXPERT, EXPERT2, day.isoformat())
    assert sorted(done.items) == sorted(f"{k}/{m}" for k in (key, other) for m in EXPERT_ITEMS)
    assert done.roles == [f"{key}/ip-expert", f"{other}/ip-expert"]
    assert done.notices == 1 and done.suppressed >= 2
    for k in (key, other):
        assert {_owners(rt, k)[m] for m in EXPERT_ITEMS} == {EXPERT2}
        assert ("ip-expert", EXPERT2) in _team_rows(rt, k)
        assert _version(rt, k) == 2
        assert len(_events(rt, k, "milestone.reassign")) == len(EXPERT_ITEMS)
    new = _outbox(rt)[before:]
    notices = [r for r in new if r[2].startswith("takeover-")]
    assert notices == [(EXPERT2, "takeover", notices[0][2], "pending")]
    assert [r for r in new if r[3] == "pending" and r[0] != EXPERT2] == []
    assert {r[3] for r in _outbox(rt, to=EXPERT)} == {"suppressed"}
    with read_session(rt.engine) as session:
        row = session.execute(
            text("SELECT retired_at, successor_id FROM contacts WHERE email = :e"), {"e": EXPERT}
        ).one()
        assert row[0] is not None and row[1] is not None
        payload = session.exec(
            select(Notification.payload).where(col(Notification.rule).startswith("takeover-"))
        ).one()
    assert payload["note"].startswith(f"you took over from {EXPERT}: ")
    # The directory's history has the retirement, once, naming the successor.
    with read_session(rt.engine) as session:
        events = directory_events.history(session.connection(), EXPERT)
    retired = [e for e in events if e.kind == "contact.retire"]
    assert len(retired) == 1 and retired[0].actor == LEAD
    assert retired[0].after is not None and retired[0].after["successor"] == EXPERT2
    # The next passes tell the retired address nothing.
    for later in (day, _due(rt, key, item)):
        _monitor(rt, later)
        assert {r[3] for r in _outbox(rt, to=EXPERT)} == {"suppressed"}
    with pytest.raises(IllegalTransition, match="has retired already"):
        _retire(rt, EXPERT, EXPERT2, day.isoformat())


def test_retiring_an_approver_hands_their_pending_votes_to_the_successor(
    consortium: Runtime,
) -> None:
    rt = consortium
    key = _open(rt)
    done = _retire(rt, COUNCILLOR, FINANCE, "2026-03-03")
    assert f"{key}/council-approval" in done.votes
    assert ("council-member", FINANCE) in _team_rows(rt, key)
    with write_session(rt.engine) as session:
        loaded = store.load_case(session, key)
        assert loaded.plan.case.version == 2
    # The successor may vote on the gate once it opens (they hold the role on its team).
    for m in BEFORE_COUNCIL:
        with write_session(rt.engine) as session:
            progress.progress_milestone(
                session=session, case_key=key, milestone_key=m, action="waive",
                actor=Actor(LEAD), now=at("2026-03-04"),
            )  # fmt: skip
    with write_session(rt.engine) as session:
        gate = progress.decide_gate(
            session=session, case_key=key, gate_key="council-approval",
            decision=Decision.APPROVE, actor=Actor(FINANCE), now=at("2026-03-05"),
        )  # fmt: skip
    assert gate.round == 1
    with pytest.raises(InvalidInput, match="someone other than"):
        _retire(rt, FINANCE, FINANCE, "2026-03-06")


def _team_rows(rt: Runtime, key: str) -> list[tuple[str, str]]:
    with read_session(rt.engine) as session:
        return _rows(session, key)


def test_team_rows_are_one_holder_per_role(consortium: Runtime) -> None:
    key = _open(consortium, {"ip-expert": EXPERT})
    with read_session(consortium.engine) as session:
        rows = list(session.exec(select(TeamMember)))
    assert [(r.role, r.case_id > 0) for r in rows] == [("ip-expert", True)]
    assert key


# --- the command line --------------------------------------------------------------------------


def test_the_team_commands_on_the_command_line(consortium: Runtime) -> None:
    env = store_env(consortium)
    opening = ("--start", "2026-03-02", "--team", f"ip-expert={EXPERT}", "--as-of", "2026-03-02")
    done = cli(env, "case", "open", "ip-integration", "--title", "T", "--owner", LEAD, *opening)
    assert done.code == 0, done
    key = done.stdout.strip()
    shown = cli(env, "case", "team", key, "--json")
    assert shown.code == 0, shown
    assert '"source": "team"' in shown.stdout
    moved = cli(env, "case", "team", key, "--set", f"ip-expert={EXPERT2}", "--by", LEAD,
                "--if-version", "1", "--as-of", "2026-03-03")  # fmt: skip
    assert moved.code == 0 and "5 open item(s) handed over" in moved.stdout, moved
    one_error_line(
        cli(env, "case", "team", key, "--set", "ip-expert", "--as-of", "2026-03-03"),
        "--set 'ip-expert' is not ROLE=EMAIL",
    )
    one_error_line(
        cli(
            env,
            "milestone",
            "reassign",
            key,
            "kickoff",
            "--to",
            EXPERT,
            "--by",
            LEAD,
            "--if-version",
            "1",
            "--as-of",
            "2026-03-03",
        ),  # fmt: skip
        "is at version 2, not 1",
    )
    ok = cli(env, "milestone", "reassign", key, "kickoff", "--to", EXPERT, "--by", LEAD,
             "--as-of", "2026-03-03")  # fmt: skip
    assert ok.code == 0 and "kickoff handed over" in ok.stdout, ok
    ok = cli(env, "case", "reassign", key, "--owner", CASE_OWNER2, "--by", LEAD,
             "--as-of", "2026-03-03")  # fmt: skip
    assert ok.code == 0 and "now owned by" in ok.stdout, ok
    gone = cli(env, "contacts", "retire", EXPERT2, "--successor", EXPERT, "--by", LEAD,
               "--as-of", "2026-03-04")  # fmt: skip
    assert gone.code == 0 and f"{EXPERT2} retired; {EXPERT} took over" in gone.stdout, gone
    one_error_line(
        cli(env, "contacts", "retire", EXPERT2, "--successor", EXPERT, "--as-of", "2026-03-04"),
        "has retired already",
    )


# --- case import's team column ----------------------------------------------------------------


def _import_rows(rt: Runtime, path: Path, rows: list[list[str]]) -> bulk.BulkReport:
    with path.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(rows)
    with write_session(rt.engine) as session:
        return bulk.import_cases(
            session=session, catalog=rt.catalog, cases=path, now=at("2026-03-02")
        )


HEADER = ["ref", "kind", "title", "owner", "start", "team"]


def test_an_imported_team_column_gives_its_roles_items_to_the_team(
    consortium: Runtime, tmp_path: Path
) -> None:
    rt = consortium
    cell = f"ip-expert={EXPERT};legal-advisor={LEGAL}"
    rows = [
        HEADER,
        ["a", "ip-integration", "Teamed", LEAD, "2026-03-02", cell],
        ["b", "ip-integration", "Plain", LEAD, "2026-03-02", ""],
    ]
    report = _import_rows(rt, tmp_path / "cases.csv", rows)
    (a, key_a), (b, key_b) = report.created
    assert {_owners(rt, key_a)[m] for m in EXPERT_ITEMS} == {EXPERT}
    assert {_owners(rt, key_b)[m] for m in EXPERT_ITEMS} == {IP_PILOT_LEAD}
    assert sorted(_team_rows(rt, key_a)) == [("ip-expert", EXPERT), ("legal-advisor", LEGAL)]
    assert _team_rows(rt, key_b) == []


def test_a_bad_team_cell_is_named_by_row_and_column(consortium: Runtime, tmp_path: Path) -> None:
    rows = [
        HEADER,
        ["a", "ip-integration", "T", LEAD, "2026-03-02", "cook=a@x.example"],
        ["b", "ip-integration", "T", LEAD, "2026-03-02", "ip-expert=nobody@x.example"],
        ["c", "ip-integration", "T", LEAD, "2026-03-02", "ip-expert"],
    ]
    with pytest.raises(InvalidInput) as refused:
        _import_rows(consortium, tmp_path / "cases.csv", rows)
    assert refused.value.problems == [
        "cases.csv: row 2, column F (team): 'cook' is not a role of ip-integration; give one "
        "of: coordinator, council-member, ip-expert, legal-advisor, pilot-lead",
        "cases.csv: row 3, column F (team): no contact nobody@x.example (or retired) for ip-expert",
        "cases.csv: row 4, column F (team): 'ip-expert' is not ROLE=EMAIL "
        "(ip-expert=anna@example.org)",
    ]


def test_the_monitor_tells_the_case_teams_holder_of_a_role(consortium: Runtime) -> None:
    rt = consortium
    key = _open(rt, {"ip-expert": EXPERT2, "pilot-lead": LEGAL})
    plain = _open(rt)
    item = "bottleneck-desk-study"
    due = max(_due(rt, key, item), _due(rt, plain, item))  # by each owner's calendar
    _monitor(rt, due + timedelta(days=1))  # its `due` step tells the owner and the pilot lead
    with read_session(rt.engine) as session:
        rows = session.execute(
            text(
                "SELECT k.key, c.email FROM notifications n JOIN cases k ON k.id = n.case_id "
                "JOIN contacts c ON c.id = n.recipient_id WHERE n.subject = :item "
                "AND n.rule = 'due'"
            ),
            {"item": item},
        ).all()
    told = {(k, e) for k, e in rows}
    assert {e for k, e in told if k == key} == {EXPERT2, LEGAL}
    assert {e for k, e in told if k == plain} == {IP_PILOT_LEAD, LEAD}
