"""Races: several processes make changes to one case at the same instant, on a SQLite file and
on PostgreSQL.

One pool of worker processes serves the whole module (tests/reliability/_races.py): for each
race every worker gets one change, gets ready for it, waits at a shared barrier, and all of
them make their change at once through the same use cases as the CLI. Whatever the order the
database let them through in, the end must be the state of exactly one serial order: each
change either applied in full or refused with one of the project's own errors (the CLI's one
line, exit 1), never a raw database error; the audit trail says what the rows say.
"""

import csv
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, text
from sqlmodel import col, select

from bridgebsr.bootstrap import Runtime, build_runtime
from bridgebsr.demo import load_consortium
from bridgebsr.exchange.catalog import checksum, load_catalog
from bridgebsr.monitor.sweep import MONITOR_ACTOR
from bridgebsr.office import cases, progress
from bridgebsr.settings import Settings
from bridgebsr.store import migrate
from bridgebsr.store.db import read_session, write_session
from models import Case, CaseEvent, Decision, GateDecision, Source
from tests.conftest import BACKENDS, BEFORE_ACCEPTANCE, BEFORE_COUNCIL, at, pg_schema
from tests.reliability._races import Ended, Job, Pool, Store

pytestmark = pytest.mark.slow

DATA = Path(__file__).parents[2] / "bridgebsr" / "data"
TEMPLATES = Path(__file__).parents[2] / "bridgebsr" / "templates"
LEAD = "soren.ostergaard@scanbalt.example"  # pilot-lead at SCANBALT
SME_OWNER = "anders.bogh@scanbalt.example"  # case-owner at SCANBALT
COUNCIL_GATE, SME_GATE = "council-approval", "sme-acceptance"
NEW_KIND, EDITED_KIND = "sme-race-new", "sme-race-edited"
WORKERS = 6


def _holders(role: str) -> list[str]:
    with (DATA / "contacts.csv").open(encoding="utf-8") as fh:
        return [row["email"] for row in csv.DictReader(fh) if row["role"] == role]


COUNCIL = _holders("council-member")  # six of them; the council gate needs three
ADVISORS = _holders("sme-advisor")  # four of them; the SME acceptance gate needs one


@pytest.fixture(scope="module")
def pool() -> Iterator[Pool]:
    """The worker processes, started once for every race of the module."""
    workers = Pool(WORKERS)
    workers.start()
    try:
        yield workers
    finally:
        workers.stop()


class Race:
    """A migrated store with the consortium on one backend, the extra template folders the
    workers may load, and the runtime the test prepares and inspects cases with."""

    def __init__(self, rt: Runtime, where: Store, edited: Store) -> None:
        self.rt, self.where, self.edited = rt, where, edited

    def jobs(self, what: str, args: Sequence[tuple[str, ...]], day: str) -> list[Job]:
        """One job per argument tuple, all on this store, all at 10:00 UTC on `day`."""
        return [Job(self.where, what, a, at(day)) for a in args]


def _template(kind: str, prefix: str, title: str) -> str:
    shipped = (TEMPLATES / "shared-sme-service.yaml").read_text(encoding="utf-8")
    return (
        shipped.replace("kind: shared-sme-service", f"kind: {kind}")
        .replace("key_prefix: SME", f"key_prefix: {prefix}")
        .replace("title: Shared SME support service request", f"title: {title}")
    )


def _folders(root: Path) -> tuple[str, str]:
    """Two template folders: the new kinds as first written, and one of them edited."""
    first, edited = root / "templates", root / "edited-templates"
    for folder in (first, edited):
        folder.mkdir()
        (folder / f"{NEW_KIND}.yaml").write_text(_template(NEW_KIND, "RCN", "New"))
    (first / f"{EDITED_KIND}.yaml").write_text(_template(EDITED_KIND, "RCE", "As first"))
    (edited / f"{EDITED_KIND}.yaml").write_text(_template(EDITED_KIND, "RCE", "Edited"))
    return str(first), str(edited)


@pytest.fixture(scope="module", params=BACKENDS)
def race(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, pg_ready: bool
) -> Iterator[Race]:
    """One store per backend for the whole module; each race works on cases of its own."""
    with ExitStack() as stack:
        root = tmp_path_factory.mktemp(f"races-{request.param}")
        if request.param == "sqlite":
            url = f"sqlite:///{root / 'cases.db'}"
        else:
            url = stack.enter_context(pg_schema(pg_ready))
        first, edited = _folders(root)
        home = root / "home"
        rt = build_runtime(Settings(home=home, database_url=url, template_dirs=first))
        stack.callback(rt.engine.dispose)
        migrate.upgrade(rt.engine)
        load_consortium(rt)
        yield Race(rt, Store(url, home, first), Store(url, home, edited))


# --- preparing cases, reading the store ---------------------------------------------------------


def _open(rt: Runtime, kind: str, owner: str, start: date) -> str:
    with write_session(rt.engine) as session:
        return cases.open_case(
            session=session,
            catalog=rt.catalog,
            kind=kind,
            title="raced",
            owner_email=owner,
            start=start,
            now=at(start.isoformat()),
        ).key


def _complete(rt: Runtime, key: str, milestones: Sequence[str], day: str, by: str) -> None:
    for milestone in milestones:
        with write_session(rt.engine) as session:
            progress.progress_milestone(
                session=session,
                case_key=key,
                milestone_key=milestone,
                action="complete",
                actor=progress.Actor(by),
                now=at(day),
            )


def _ip_case(race: Race) -> str:
    return _open(race.rt, "ip-integration", LEAD, date(2026, 3, 2))


def _ip_at_council(race: Race) -> str:
    """An IP case whose council-approval gate opened on 2026-12-22."""
    key = _ip_case(race)
    _complete(race.rt, key, BEFORE_COUNCIL, "2026-12-22", LEAD)
    return key


def _sme_at_acceptance(race: Race) -> str:
    """An SME request whose sme-acceptance gate opened on 2026-02-03."""
    key = _open(race.rt, "shared-sme-service", SME_OWNER, date(2026, 1, 12))
    _complete(race.rt, key, BEFORE_ACCEPTANCE, "2026-02-03", SME_OWNER)
    return key


def _one(race: Race, sql: str, **params: Any) -> Any:
    with race.rt.engine.connect() as conn:
        return conn.execute(text(sql), params).one()


def _case(race: Race, key: str) -> Any:
    return _one(race, "SELECT status, version FROM cases WHERE key = :key", key=key)


def _gate(race: Race, key: str, gate: str) -> Any:
    return _one(
        race,
        "SELECT g.status, g.round, g.deadline, g.expired_on FROM gates g"
        " JOIN cases c ON c.id = g.case_id"
        " WHERE c.key = :key AND g.key = :gate",
        key=key,
        gate=gate,
    )


def _decisions(race: Race, key: str, gate: str) -> list[tuple[str, str, int]]:
    """Every vote on a gate: (approver, decision, round)."""
    with race.rt.engine.connect() as conn:
        found = conn.execute(
            text(
                "SELECT p.email, d.decision, d.round FROM gate_decisions d"
                " JOIN gates g ON g.id = d.gate_id JOIN cases c ON c.id = g.case_id"
                " JOIN contacts p ON p.id = d.approver_id"
                " WHERE c.key = :key AND g.key = :gate ORDER BY d.id"
            ),
            {"key": key, "gate": gate},
        )
        return [(email, decision, rnd) for email, decision, rnd in found]


def _events(race: Race, key: str) -> list[CaseEvent]:
    """A case's audit trail, oldest first."""
    with read_session(race.rt.engine) as session:
        case = session.exec(select(Case).where(Case.key == key)).one()
        return list(
            session.exec(
                select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(col(CaseEvent.id))
            )
        )


def _since(race: Race, key: str, before: Sequence[CaseEvent]) -> list[CaseEvent]:
    return _events(race, key)[len(before) :]


def _clean(ended: Sequence[Ended], refusals: set[str]) -> list[Ended]:
    """Every change applied or refused with one of `refusals` (one line, as the CLI prints
    it), none crashed; the ones applied."""
    for e in ended:
        assert e.outcome in {"ok", "refused"}, f"{e.who}: {e.error}\n{e.detail}"
        if e.outcome == "refused":
            assert e.error in refusals and "\n" not in e.detail, f"{e.who}: {e.error} {e.detail}"
    return [e for e in ended if e.outcome == "ok"]


# --- gates ---------------------------------------------------------------------------------------


def test_six_approvals_at_once_pass_a_three_of_six_gate_once(race: Race, pool: Pool) -> None:
    key = _ip_at_council(race)
    before, trail = _case(race, key), _events(race, key)
    votes = [(key, COUNCIL_GATE, "approve", who) for who in COUNCIL]
    ended = pool.race(race.jobs("gate", votes, "2026-12-23"))

    won = _clean(ended, {"IllegalTransition"})
    assert len(won) == 3, [(e.who, e.outcome, e.detail) for e in ended]
    assert sorted(e.detail for e in won) == ["approved", "open", "open"]
    assert _decisions(race, key, COUNCIL_GATE) == [
        (who, "approve", 1) for who in _in_order(race, key, [e.job.args[3] for e in won])
    ]
    assert tuple(_gate(race, key, COUNCIL_GATE)[:2]) == ("approved", 1)
    kinds = Counter(e.kind for e in _since(race, key, trail) if e.subject == COUNCIL_GATE)
    assert kinds == {"gate.vote": 2, "gate.approve": 1}
    assert _case(race, key).version == before.version + 3
    assert all("it is approved" in e.detail for e in ended if e.outcome == "refused")


def _in_order(race: Race, key: str, voters: list[str]) -> list[str]:
    """The voters in the order their votes were audited."""
    order = [e.actor for e in _events(race, key) if e.kind in {"gate.vote", "gate.approve"}]
    assert sorted(order) == sorted(voters)
    return order


def test_approvals_and_rejections_at_once_on_a_one_of_m_gate_decide_it_once(
    race: Race, pool: Pool
) -> None:
    key = _sme_at_acceptance(race)
    before, trail = _case(race, key), _events(race, key)
    votes = [
        (key, SME_GATE, d, who) for d, who in zip(["approve", "reject"] * 2, ADVISORS, strict=True)
    ]
    ended = pool.race(race.jobs("gate", votes, "2026-02-04"))

    (won,) = _clean(ended, {"IllegalTransition"})
    decision, voter = won.job.args[2], won.job.args[3]
    assert _decisions(race, key, SME_GATE) == [(voter, decision, 1)]
    kinds = [e.kind for e in _since(race, key, trail) if e.kind.startswith(("gate.", "case."))]
    if decision == "approve":
        assert (kinds, tuple(_case(race, key))) == (
            ["gate.approve"],
            ("active", before.version + 1),
        )
        assert _gate(race, key, SME_GATE).status == "approved"
    else:
        assert kinds == ["gate.reject", "case.cancel"]
        assert tuple(_case(race, key)) == ("cancelled", before.version + 1)
        assert _gate(race, key, SME_GATE).status == "rejected"


def test_the_monitor_timing_out_a_gate_and_votes_on_its_deadline_agree(
    race: Race, pool: Pool
) -> None:
    key = _sme_at_acceptance(race)
    deadline = _gate(race, key, SME_GATE).deadline
    day = (date.fromisoformat(str(deadline)) + timedelta(days=1)).isoformat()
    trail = _events(race, key)
    votes = [
        (key, SME_GATE, d, who)
        for d, who in zip(["approve", "approve", "reject"], ADVISORS[:3], strict=True)
    ]
    monitors = race.jobs("monitor", [(), ()], day)
    ended = pool.race([*monitors, *race.jobs("gate", votes, day)])

    won = _clean(ended, {"IllegalTransition"})
    assert all("failures []" in e.detail for e in won if e.job.what == "monitor"), [
        (e.who, e.outcome, e.detail) for e in ended
    ]
    events = [e for e in _since(race, key, trail) if e.kind != "milestone.overdue"]
    decided = [e for e in events if e.kind in {"gate.approve", "gate.reject"}]
    assert len(decided) == 1, [(e.kind, e.actor) for e in events]
    timed_out = [e for e in ended if f"{key} {SME_GATE}: rejected" in e.detail]
    votes_won = [e for e in won if e.job.what == "gate"]
    if decided[0].actor == MONITOR_ACTOR:  # the deadline passed first: rejected, no vote
        assert [e.kind for e in events] == ["gate.expired", "gate.reject", "case.cancel"]
        assert (len(timed_out), votes_won, _decisions(race, key, SME_GATE)) == (1, [], [])
    else:  # a vote came first: the monitor found nothing left to time out
        (vote,) = votes_won
        decision, voter = vote.job.args[2], vote.job.args[3]
        cancel = ["case.cancel"] if decision == "reject" else []
        assert [e.kind for e in events] == [f"gate.{decision}", *cancel] and timed_out == []
        assert _decisions(race, key, SME_GATE) == [(voter, decision, 1)]
    rejected = decided[0].kind == "gate.reject"
    assert _gate(race, key, SME_GATE).status == ("rejected" if rejected else "approved")
    assert _case(race, key).status == ("cancelled" if rejected else "active")


@contextmanager
def _stalled_votes(race: Race, key: str, voter: str, seconds: float) -> Iterator[None]:
    """For `seconds`, an uncommitted vote of `voter` on the council gate of `key` holds up
    another vote of theirs after it has read the case and before it writes anything."""
    gate_id = _one(
        race,
        "SELECT g.id FROM gates g JOIN cases c ON c.id = g.case_id"
        " WHERE c.key = :key AND g.key = :gate",
        key=key,
        gate=COUNCIL_GATE,
    )[0]
    voter_id = _one(race, "SELECT id FROM contacts WHERE email = :e", e=voter)[0]
    with race.rt.engine.connect() as conn:
        vote = {"gate_id": gate_id, "round": 1, "approver_id": voter_id, "comment": ""}
        table = GateDecision.__table__  # type: ignore[attr-defined]
        conn.execute(
            insert(table).values(
                **vote, decision=Decision.REJECT, at=at("2027-01-20"), source=Source.CLI
            )
        )
        release = threading.Timer(seconds, conn.rollback)
        release.start()
        try:
            yield
        finally:
            release.join()


def test_the_monitor_marking_a_gate_expired_and_a_rejection_sending_it_back_agree(
    race: Race, pool: Pool
) -> None:
    key = _ip_at_council(race)  # the council gate's deadline is 2027-01-19; it escalates
    trail = _events(race, key)
    reject = race.jobs("gate", [(key, COUNCIL_GATE, "reject", COUNCIL[0])], "2027-01-20")
    with _stalled_votes(race, key, COUNCIL[0], seconds=1.5):
        ended = pool.race([*reject, *race.jobs("monitor", [()], "2027-01-20")])

    _clean(ended, set())
    assert "failures []" in ended[1].detail, ended[1].detail
    # Marked in round 1 or not at all, the gate is back in round 2 with nothing marked.
    status, rnd, _, expired_on = _gate(race, key, COUNCIL_GATE)
    assert (status, rnd, expired_on) == ("pending", 2, None)
    events = [e for e in _since(race, key, trail) if e.subject == COUNCIL_GATE]
    kinds = [e.kind for e in events]
    assert kinds in (["gate.reject", "gate.reopen"], ["gate.expired", "gate.reject", "gate.reopen"])
    assert all((e.after or {}).get("round") == 1 for e in events if e.kind == "gate.expired")
    assert _decisions(race, key, COUNCIL_GATE) == [(COUNCIL[0], "reject", 1)]


# --- milestones and cases ------------------------------------------------------------------------


def test_one_of_several_changes_to_one_milestone_at_once_wins(race: Race, pool: Pool) -> None:
    key = _ip_case(race)
    before, trail = _case(race, key), _events(race, key)
    actions = ["complete"] * (WORKERS - 1) + ["waive"]
    ended = pool.race(
        race.jobs("milestone", [(key, "kickoff", a, LEAD) for a in actions], "2026-03-03")
    )

    (won,) = _clean(ended, {"IllegalTransition"})
    action = won.job.args[2]
    done = [e for e in _since(race, key, trail) if e.subject == "kickoff"]
    assert [e.kind for e in done] == [f"milestone.{action}"]
    assert won.detail == {"complete": "done", "waive": "waived"}[action]
    status = _one(
        race,
        "SELECT status FROM milestones WHERE key = 'kickoff' AND case_id ="
        " (SELECT id FROM cases WHERE key = :key)",
        key=key,
    )[0]
    assert status == won.detail
    assert _case(race, key).version == before.version + 1


def test_items_added_to_one_case_at_once_get_one_key_each_and_seqs_of_their_own(
    race: Race, pool: Pool
) -> None:
    key = _ip_case(race)
    before, trail = _case(race, key), _events(race, key)
    same = [(key, "raced-item", "kickoff", LEAD)] * (WORKERS // 2)
    others = [(key, f"raced-{i}", "kickoff+1", LEAD) for i in range(WORKERS - len(same))]
    ended = pool.race(race.jobs("add", [*same, *others], "2026-03-03"))

    won = _clean(ended, {"IllegalTransition"})
    assert {e.job.args[1] for e in won} == {"raced-item", *(a[1] for a in others)}
    assert len(won) == 1 + len(others)  # one of the same key, every other key
    added = [e for e in _since(race, key, trail) if e.kind == "milestone.add"]
    assert sorted(e.subject or "" for e in added) == sorted(e.job.args[1] for e in won)
    seqs = [int(e.detail) for e in won]
    assert len(set(seqs)) == len(seqs)
    assert _case(race, key).version == before.version + len(won)


def test_reschedules_of_one_milestone_from_one_version_at_once_one_wins(
    race: Race, pool: Pool
) -> None:
    key = _ip_case(race)
    before, trail = _case(race, key), _events(race, key)
    dues = [(date(2026, 7, 1) + timedelta(days=i)).isoformat() for i in range(WORKERS)]
    args = [(key, "bottleneck-desk-study", due, LEAD, str(before.version)) for due in dues]
    ended = pool.race(race.jobs("reschedule", args, "2026-03-03"))

    (won,) = _clean(ended, {"StaleCase"})
    moves = [e for e in _since(race, key, trail) if e.kind == "milestone.reschedule"]
    assert [m.after["due"] for m in moves] == [won.job.args[2]] == [won.detail]
    assert _case(race, key).version == before.version + 1


def test_case_changes_at_once_follow_one_serial_order(race: Race, pool: Pool) -> None:
    key = _ip_case(race)
    before, trail = _case(race, key), _events(race, key)
    actions = ["hold", "hold", "cancel", "cancel", "close", "resume"]
    ended = pool.race(race.jobs("case", [(key, a, LEAD) for a in actions], "2026-03-03"))

    won = _clean(ended, {"IllegalTransition"})
    changes = [e for e in _since(race, key, trail) if e.kind.startswith("case.")]
    status = "active"
    for event in changes:  # each applied change started from where the one before left it
        assert event.before == {"status": status}, [(e.kind, e.before, e.after) for e in changes]
        status = (event.after or {})["status"]
    assert Counter(e.kind for e in changes) == Counter(f"case.{e.job.args[1]}" for e in won)
    assert tuple(_case(race, key)) == (status, before.version + len(won))
    assert any(e.job.args[1] == "cancel" for e in won)  # cancel is allowed from active and held


# --- opening: the template pin and the key --------------------------------------------------------


def _pins(race: Race, kind: str) -> list[tuple[int, str]]:
    with race.rt.engine.connect() as conn:
        found = conn.execute(
            text("SELECT version, checksum FROM template_versions WHERE kind = :kind"),
            {"kind": kind},
        )
        return [(version, digest) for version, digest in found]


def test_the_first_cases_of_a_new_kind_opened_at_once_all_open(race: Race, pool: Pool) -> None:
    ended = pool.race(race.jobs("open", [(NEW_KIND, SME_OWNER)] * WORKERS, "2026-03-02"))

    won = _clean(ended, set())
    assert sorted(e.detail for e in won) == [f"RCN-2026-{n:04d}" for n in range(1, WORKERS + 1)]
    template = race.rt.catalog.get(NEW_KIND)
    assert _pins(race, NEW_KIND) == [(template.version, checksum(template))]


def test_an_edited_template_racing_the_first_cases_of_its_kind_is_refused_or_wins(
    race: Race, pool: Pool
) -> None:
    first = [Job(race.where, "open", (EDITED_KIND, SME_OWNER), at("2026-03-02"))] * 4
    edited = [Job(race.edited, "open", (EDITED_KIND, SME_OWNER), at("2026-03-02"))] * 2
    ended = pool.race([*first, *edited])

    won = _clean(ended, {"InvalidInput"})
    (pinned,) = _pins(race, EDITED_KIND)
    winners = {e.job.store for e in won}
    assert len(winners) == 1 and len(won) == (4 if race.where in winners else 2)
    (store,) = winners
    template = load_catalog([Path(store.template_dirs)]).get(EDITED_KIND)
    assert pinned == (template.version, checksum(template))
    assert all("was edited after cases were opened" in e.detail for e in ended if e not in won)
