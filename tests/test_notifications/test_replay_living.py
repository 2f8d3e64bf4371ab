"""Time travel through a living case: an IP-integration pilot replayed day by day for 120 days
while the people on it change what the case is.

As in `test_replay`, the operator runs `bridgebsr monitor` and `bridgebsr notifications
dispatch` at 09:00 Copenhagen time each day, and what arrives in the local log must be exactly
the escalation ladder's messages from the pilot's template. Along the way the case lives:

- day 9: the kick-off is handed from its pilot lead to the IP pilot's lead in Sweden
  (`milestone reassign`): both are told; the reminder already sent is not sent again to the
  new owner, the steps still to come are hers, on her working days;
- day 24: the desk study gets a later agreed due date (`milestone reschedule`): its ladder
  counts from the new date, and the bottleneck report after it moves too;
- day 49: the case is rebaselined (`case rebaseline`) after the kick-off finished late: the
  regional workshops' ladder counts from their new agreed date;
- day 56: a legal check is added to this case only (`milestone add`): its ladder fires;
- day 72: the legal check, two days late, gets a new agreed date (`milestone reschedule`): it
  is no longer late, and its ladder starts again from the new date, up to its late step;
- days 77 to 91: the case owner is away, his coordinator deputising (`contacts away`): the
  workshops' reminders reach her, saying for whom; their due-day notice, after, reaches him;
- day 84: an IP expert joins the Estonian partner (`contacts add`), to lead the IP pilot;
- day 87: the IP pilot's lead retires (`contacts retire`) with the new expert as her
  successor, who gets one notice listing what she took over and every later step of those
  items, on her own working days (Estonia's midsummer holidays move a reminder); nothing more
  reaches the retired address.

The expected messages are worked out here from the template file, the shipped directory, the
story's dates and each person's public holidays from the `holidays` package. The plan's dates
are read from `case show` as the story goes (as `test_replay` reads them at open), and checked
on their own against what each command promises. Every day something arrives, something
happens, and every Sunday, the day is run twice: the second run sends nothing.
"""

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import holidays
import pytest
import yaml

from tests.test_notifications.test_replay import (
    AFTER_RUN,
    BEFORE_RUN,
    CASE_OWNER,
    DAYS,
    END,
    LEAD_PARTNER,
    START,
    STEP_LINE,
    TEMPLATE,
    Bridgebsr,
    LocalLog,
    Person,
    as_of,
    differences,
    local,
    open_home,
    read_directory,
    run_moment,
)

SOREN = "soren.ostergaard@scanbalt.example"  # pilot-lead at SCANBALT (DK): owns the kick-off
KARIN = "karin.astrom@mva.example"  # pilot-lead at MVA (SE), leads the IP pilot: its ip-expert
SUCCESSOR = "liis.tamm@biotech-ee.example"  # joins EBA (EE) as ip-expert: her successor
METTE = "mette.sorensen@scanbalt.example"  # coordinator at SCANBALT (DK): the late step, deputy
NIKOLAJ = "nikolaj.brond@scanbalt.example"  # legal-advisor at SCANBALT (DK)

KICKOFF, DESK, WORKSHOPS, REPORT, INDICATORS = (
    "kickoff",
    "bottleneck-desk-study",
    "regional-workshops",
    "bottleneck-report",
    "indicator-set",
)
ADDED = "legal-check"
ADDED_DAYS = 10

REASSIGN_AT = local(date(2026, 3, 11), BEFORE_RUN)
RESCHEDULE_AT = local(date(2026, 3, 26), BEFORE_RUN)
NEW_DUE = date(2026, 6, 5)
REBASELINE_AT = local(date(2026, 4, 20), BEFORE_RUN)
ADDED_AT = local(date(2026, 4, 27), BEFORE_RUN)
AWAY_FROM, AWAY_TO = date(2026, 5, 18), date(2026, 6, 1)
JOIN_AT = local(date(2026, 5, 25), BEFORE_RUN)
RETIRE_AT = local(date(2026, 5, 28), BEFORE_RUN)
RESCHEDULE_LATE_AT = local(date(2026, 5, 13), BEFORE_RUN)
ADDED_NEW_DUE = date(2026, 5, 29)

WINDOW = [START + timedelta(days=i) for i in range(DAYS)]
FINISHED = ("done", "waived")

# (day, who reads it, case, item, step, for whom a deputy reads it or ""); a handover's and a
# takeover's step are `handover` and `takeover` (their keys carry a version or an id).
Notice = tuple[date, str, str, str, str, str]
Sent = tuple[str, date | None, str, str]  # (item, due date when not the original, step, to)

ITEM_LINE = re.compile(r"(?m)^Item:.*\((?:milestone|gate) ([a-z0-9-]+)\)\s*$")
FOR_WHOM = re.compile(r"\(for (\S+@\S+)\)\s*$")
NOTE_STEP = re.compile(r"^(handover|takeover)-[a-z0-9-]+$")


# --- The story ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Act:
    """One command someone runs on the case, at a moment of the story."""

    at: datetime
    args: tuple[str, ...]
    label: str
    timed: bool = True  # whether the command takes --as-of

    def argv(self) -> list[str]:
        return [*self.args, "--as-of", as_of(self.at)] if self.timed else list(self.args)


@dataclass(frozen=True)
class Away:
    """An absence, both days included, and who deputises."""

    person: str
    first: date
    last: date
    deputy: str


AWAY = [Away(CASE_OWNER, AWAY_FROM, AWAY_TO, METTE)]


def story(key: str) -> list[Act]:
    """The case's life over the window, in order (see the module's docstring)."""
    by = ("--by", CASE_OWNER)

    def done(day: date, item: str, who: str, clock: Any = BEFORE_RUN) -> Act:
        args = ("milestone", "complete", key, item, "--by", who)
        return Act(local(day, clock), args, f"done {item}")

    return [
        Act(REASSIGN_AT, ("milestone", "reassign", key, KICKOFF, "--to", KARIN, *by), "reassign"),
        done(date(2026, 3, 25), KICKOFF, KARIN),  # 7 working days late: the workshops slip
        Act(
            RESCHEDULE_AT,
            (
                *("milestone", "reschedule", key, DESK, "--due", NEW_DUE.isoformat()),
                *by,
                "--reason",
                "the TTO licensing data comes in May",
            ),
            "reschedule",
        ),
        Act(
            REBASELINE_AT,
            ("case", "rebaseline", key, *by, "--reason", "the kick-off took a week longer"),
            "rebaseline",
        ),
        Act(
            ADDED_AT,
            (
                *("milestone", "add", key, "--key", ADDED, "--title", "Legal check of TTO clauses"),
                *("--owner", "legal-advisor", "--duration", str(ADDED_DAYS), "--after", KICKOFF),
                *by,
            ),
            "add",
        ),
        Act(
            local(date(2026, 5, 11), BEFORE_RUN),
            (
                *("contacts", "away", CASE_OWNER, "--from", AWAY_FROM.isoformat()),
                *("--to", AWAY_TO.isoformat(), "--deputy", METTE),
            ),
            "away",
        ),
        Act(
            RESCHEDULE_LATE_AT,
            (
                *("milestone", "reschedule", key, ADDED, "--due", ADDED_NEW_DUE.isoformat()),
                *by,
                "--reason",
                "the TTO sent its clauses late",
            ),
            "reschedule late",
        ),
        Act(
            JOIN_AT,
            (
                *("contacts", "add", SUCCESSOR, "--name", "Liis Tamm", "--partner", "EBA"),
                *("--role", "ip-expert", "--country", "EE", "--leads", "ip-integration"),
            ),
            "join",
            timed=False,
        ),
        Act(
            RETIRE_AT,
            ("contacts", "retire", KARIN, "--successor", SUCCESSOR, "--by", METTE),
            "retire",
        ),
        done(date(2026, 6, 3), WORKSHOPS, CASE_OWNER, AFTER_RUN),  # on its due day
        done(date(2026, 6, 10), DESK, SUCCESSOR),
        done(date(2026, 6, 12), ADDED, NIKOLAJ, AFTER_RUN),  # after its late step went out
    ]


# --- The plan as `case show` gives it ------------------------------------------------------


@dataclass(frozen=True)
class State:
    """One milestone as the case shows it."""

    owner: str
    status: str
    original: date  # its due date when first planned: its ladder's keys count from it
    start: date
    due: date  # the agreed due date in force: its ladder counts from it
    forecast_start: date
    forecast_due: date
    overdue: bool

    @property
    def open(self) -> bool:
        return self.status not in FINISHED


Snapshot = dict[str, State]


def snapshot(shown: dict[str, Any]) -> Snapshot:
    day = date.fromisoformat
    return {
        m["key"]: State(
            owner=m["owner"],
            status=m["status"],
            original=day(m["baseline_due"]),
            start=day(m["planned_start"]),
            due=day(m["planned_due"]),
            forecast_start=day(m["forecast_start"]),
            forecast_due=day(m["forecast_due"]),
            overdue=bool(m["overdue"]),
        )
        for m in shown["milestones"]
    }


# --- The expected messages -----------------------------------------------------------------


@dataclass(frozen=True)
class Told:
    """A message that is no ladder step (a handover, a takeover), to whom, on which day."""

    day: date
    to: str
    item: str
    step: str


def reader(email: str, day: date) -> tuple[str, str]:
    """Who reads a notice for `email` on `day`: their deputy while they are away (with whom
    it is for), else they."""
    for a in AWAY:
        if a.person == email and a.first <= day <= a.last:
            return a.deputy, email
    return email, ""


def expected_notices(
    key: str,
    timeline: list[tuple[datetime, Snapshot]],
    told: list[Told],
    retired: dict[str, datetime],
    ladder: list[dict[str, Any]],
    people: dict[str, Person],
) -> list[Notice]:
    """Every message of the window, day by day, as the plan stood at each run.

    On a run, each recipient of an open milestone gets the latest step of its ladder they
    have reached in their own working days, counted from its agreed due date in force, unless
    they were sent that step for that date already (a due date back on the original counts
    as the original). An owner's role means the milestone's owner; any other role its
    holders at the lead partner. A new owner counts as sent what the old owner was sent about
    the item (the handover told them where it stands). Nobody retired is told anything.
    """
    holders: dict[str, list[str]] = {}
    for person in people.values():
        if person.partner == LEAD_PARTNER:
            holders.setdefault(person.role, []).append(person.email)
    steps = sorted(ladder, key=lambda s: int(s["offset"]))

    sent: set[Sent] = set()
    owners: dict[str, str] = {}
    out: list[Notice] = []
    plan: Snapshot = {}
    changes = iter(timeline)
    upcoming = next(changes, None)
    for day in WINDOW:
        moment = run_moment(day)
        while upcoming is not None and upcoming[0] < moment:
            plan = upcoming[1]
            for item, state in plan.items():
                old = owners.get(item)
                if old is not None and old != state.owner:
                    sent |= {
                        (i, d, s, state.owner) for i, d, s, to in sent if (i, to) == (item, old)
                    }
                owners[item] = state.owner
            upcoming = next(changes, None)
        for t in told:
            if t.day == day:
                deputy, for_whom = reader(t.to, day)
                out.append((day, deputy, key, t.item, t.step, for_whom))
        for item, state in plan.items():
            if not state.open:
                continue
            latest: dict[str, str] = {}
            for step in steps:
                for role in step["notify"]:
                    for email in [state.owner] if role == "owner" else holders[role]:
                        if email in retired and retired[email] < moment:
                            continue
                        if people[email].step_day(state.due, int(step["offset"])) <= day:
                            latest[email] = str(step["key"])
            due = None if state.due == state.original else state.due
            for email, step_key in latest.items():
                if (item, due, step_key, email) not in sent:
                    sent.add((item, due, step_key, email))
                    deputy, for_whom = reader(email, day)
                    out.append((day, deputy, key, item, step_key, for_whom))
    return out


# --- What arrived ----------------------------------------------------------------------------


def read_notice(day: date, line: dict[str, Any]) -> Notice:
    """What a delivered message is about: the case from its title, the item and step from its
    body, and from its title whom a deputy reads it for."""
    title, body = str(line["title"]).strip(), str(line["body"])
    items, steps = ITEM_LINE.findall(body), STEP_LINE.findall(body)
    assert len(items) == 1 and len(steps) == 1, f"cannot tell what this message is about: {line}"
    for_whom = FOR_WHOM.search(title)
    step = NOTE_STEP.sub(r"\1", steps[0])
    case_key = title.partition(":")[0].strip()
    return (day, str(line["to"]), case_key, items[0], step, for_whom[1] if for_whom else "")


# --- The replay ------------------------------------------------------------------------------


@dataclass
class Replay:
    """What the replay did and saw."""

    key: str
    people: dict[str, Person]
    opened: Snapshot
    before: dict[str, Snapshot] = field(default_factory=dict)  # just before each act
    after: dict[str, Snapshot] = field(default_factory=dict)  # just after each act
    timeline: list[tuple[datetime, Snapshot]] = field(default_factory=list)
    actual: list[Notice] = field(default_factory=list)
    expected: list[Notice] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # dispatch trouble
    repeats: list[str] = field(default_factory=list)  # what a second run of a day sent
    takeover: list[dict[str, Any]] = field(default_factory=list)  # the successor's message
    handovers: list[dict[str, Any]] = field(default_factory=list)  # the reassignment's
    final_outbox: Counter[str] = field(default_factory=Counter)


@pytest.fixture(scope="module")
def replay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replay]:
    """The case's 120 days, run once for every test of this module."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        home = open_home(tmp_path_factory.mktemp("living") / "home", monkeypatch)
        yield run_replay(home)


def run_replay(home: Path) -> Replay:
    cli = Bridgebsr()
    template: dict[str, Any] = yaml.safe_load(TEMPLATE.read_text(encoding="utf-8"))
    opened = local(START, BEFORE_RUN)
    key = cli(
        *("case", "open", "ip-integration", "--title", "Transregional IP model, living"),
        *("--owner", CASE_OWNER, "--partner", LEAD_PARTNER, "--start", START.isoformat()),
        *("--as-of", as_of(opened)),
    ).strip()

    def show(moment: datetime) -> Snapshot:
        return snapshot(cli.json("case", "show", key, "--as-of", as_of(moment)))

    first = show(opened)
    people = read_directory()
    off = holidays.country_holidays("EE", years=(START.year, END.year))
    people[SUCCESSOR] = Person(SUCCESSOR, "ip-expert", "EBA", off)
    r = Replay(key, people, first, timeline=[(opened, first)])
    acts = story(key)

    def do(act: Act) -> None:
        r.before[act.label] = show(act.at)
        cli(*act.argv())
        r.after[act.label] = show(act.at)
        r.timeline.append((act.at, r.after[act.label]))

    log = LocalLog(home / "notifications.log")
    for day in WINDOW:
        moment = run_moment(day)
        for act in acts:
            if act.at.date() == day and act.at < moment:
                do(act)
        written = cli.json("monitor", "--as-of", as_of(moment))
        sent = cli.json("notifications", "dispatch", "--as-of", as_of(moment))
        lines = log.new_lines()
        arrived = [read_notice(day, line) for line in lines]
        r.actual += arrived
        for line, notice in zip(lines, arrived, strict=True):
            if notice[4] == "takeover":
                r.takeover.append(line)
            if notice[4] == "handover":
                r.handovers.append(line)
        if written["failures"] or sent["failed"] or sent["retrying"] or sent.get("held"):
            r.problems.append(f"{day}: monitor {written['failures']}, dispatch {sent}")
        if sent["sent"] != len(lines):
            r.problems.append(
                f"{day}: dispatch reported {sent['sent']} sent, the log got {len(lines)}"
            )
        if lines or day.weekday() == 6 or any(a.at.date() == day for a in acts):
            again = cli.json("monitor", "--as-of", as_of(moment))
            resent = cli.json("notifications", "dispatch", "--as-of", as_of(moment))
            repeated = log.new_lines()
            if again["notifications"] or resent["sent"] or repeated:
                r.repeats.append(
                    f"{day} run twice: {again['notifications']} new outbox row(s), "
                    f"{resent['sent']} sent again: {[x['title'] for x in repeated]}"
                )
        for act in acts:
            if act.at.date() == day and act.at > moment:
                do(act)

    reassigned = r.before["reassign"][KICKOFF].owner
    told = [
        Told(REASSIGN_AT.date(), reassigned, KICKOFF, "handover"),
        Told(REASSIGN_AT.date(), KARIN, KICKOFF, "handover"),
        Told(RETIRE_AT.date(), SUCCESSOR, "takeover", "takeover"),
    ]
    r.expected = expected_notices(
        key, r.timeline, told, {KARIN: RETIRE_AT}, template["ladder"], r.people
    )
    outbox = cli.json("notifications", "list", "--limit", "1000")
    r.final_outbox = Counter(str(row["status"]) for row in outbox)
    return r


# --- The proof -------------------------------------------------------------------------------


def test_every_notice_reaches_the_right_person_on_the_right_day_once(replay: Replay) -> None:
    wrong = differences(replay.expected, replay.actual)
    assert not wrong and not replay.problems, (
        f"what arrived differs from the ladder:\n{wrong}\n" + "\n".join(replay.problems)
    )


def test_the_story_covers_each_change_of_hands_and_dates(replay: Replay) -> None:
    """The expected messages hold what the story is about (so that the comparison above
    proves it): who gets what around the reassignment, the added item's whole ladder, the
    deputy's reading, the successor's takeover and later steps, nothing after retirement."""
    said = Counter((n[3], n[4], n[1], n[5]) for n in replay.expected)
    for wanted, times in {
        (KICKOFF, "remind-10", SOREN, ""): 1,  # before the handover
        (KICKOFF, "handover", SOREN, ""): 1,
        (KICKOFF, "handover", KARIN, ""): 1,
        (KICKOFF, "remind-2", KARIN, ""): 1,  # the new owner's next step, not the one sent
        (KICKOFF, "due", KARIN, ""): 1,
        (KICKOFF, "due", SOREN, ""): 1,  # as the pilot lead
        (ADDED, "remind-10", NIKOLAJ, ""): 2,  # for its first date, then for the new one
        (ADDED, "remind-2", NIKOLAJ, ""): 2,
        (ADDED, "due", NIKOLAJ, ""): 2,
        (ADDED, "due", SOREN, ""): 2,
        (ADDED, "late-10", METTE, ""): 1,  # late against the new date only
        (WORKSHOPS, "remind-10", METTE, CASE_OWNER): 1,  # read by the deputy
        (WORKSHOPS, "remind-2", METTE, CASE_OWNER): 1,
        (WORKSHOPS, "due", CASE_OWNER, ""): 1,  # he is back
        ("takeover", "takeover", SUCCESSOR, ""): 1,
        (REPORT, "remind-10", SUCCESSOR, ""): 1,  # handed over by the retirement
    }.items():
        assert said[wanted] == times, f"the story should send {wanted} {times}x: {sorted(said)}"
    assert (KICKOFF, "remind-10", KARIN, "") not in said
    # The successor's reminder falls on her working day, not on her predecessor's.
    (reminder,) = [n for n in replay.expected if n[3:5] == (REPORT, "remind-10")]
    due = replay.after["retire"][REPORT].due
    successor, retiree = replay.people[SUCCESSOR], replay.people[KARIN]
    assert reminder[0] == successor.step_day(due, -10) != retiree.step_day(due, -10)
    assert any(n[1] == KARIN and n[3] == DESK for n in replay.expected)  # before she left
    retired = [n for n in replay.expected if n[1] == KARIN and n[0] >= RETIRE_AT.date()]
    assert not retired


def test_running_a_day_twice_sends_nothing_new(replay: Replay) -> None:
    assert not replay.repeats, "\n".join(replay.repeats)
    assert replay.final_outbox["sent"] == len(replay.expected)


def test_nothing_reaches_a_retired_address_and_the_successor_is_told_once(
    replay: Replay,
) -> None:
    late = [n for n in replay.actual if KARIN in (n[1], n[5]) and n[0] >= RETIRE_AT.date()]
    assert not late, f"the retired address was told: {late}"
    (takeover,) = replay.takeover
    assert takeover["to"] == SUCCESSOR
    for item in (DESK, REPORT, INDICATORS):
        assert f"{replay.key}/{item}" in str(takeover["body"]), takeover["body"]
    now = replay.after["retire"]
    assert {k for k, s in now.items() if s.open and s.owner == KARIN} == set()
    handed = {k for k, s in replay.before["retire"].items() if s.open and s.owner == KARIN}
    assert handed >= {DESK, REPORT, INDICATORS}
    assert all(now[k].owner == SUCCESSOR for k in handed)


def test_the_deputy_reads_the_absent_owners_notices_and_he_the_ones_after(
    replay: Replay,
) -> None:
    about = [n for n in replay.actual if n[3] == WORKSHOPS]
    for day, to, _, _, step, for_whom in about:
        away = AWAY_FROM <= day <= AWAY_TO
        if for_whom or (away and step != "due"):
            assert (to, for_whom, away) == (METTE, CASE_OWNER, True), about
    assert [n[4] for n in about if n[1] == CASE_OWNER] == ["due"], about


# --- The plan each command promises ----------------------------------------------------------


def test_a_reassignment_hands_the_kickoff_over(replay: Replay) -> None:
    before, after = replay.before["reassign"], replay.after["reassign"]
    assert (before[KICKOFF].owner, after[KICKOFF].owner) == (SOREN, KARIN)
    assert after[KICKOFF].due == before[KICKOFF].due  # dates stay


def test_a_reschedule_moves_the_item_and_what_follows_it(replay: Replay) -> None:
    before, after = replay.before["reschedule"], replay.after["reschedule"]
    desk, report, indicators = after[DESK], after[REPORT], after[INDICATORS]
    assert (desk.due, desk.start, desk.original) == (
        NEW_DUE,
        before[DESK].start,
        before[DESK].original,
    )
    # Finish to start: the report follows the later of the desk study and the workshops,
    # for its template duration in its owner's working days; the indicator set after it.
    owner = replay.people[report.owner]
    assert report.start == max(NEW_DUE, after[WORKSHOPS].due)
    assert report.due == owner.step_day(report.start, 20)
    assert indicators.start == report.due
    assert indicators.due == replay.people[indicators.owner].step_day(indicators.start, 30)
    for unmoved in (KICKOFF, WORKSHOPS):
        assert after[unmoved] == before[unmoved]


def test_a_late_item_rescheduled_is_no_longer_late(replay: Replay) -> None:
    before, after = replay.before["reschedule late"], replay.after["reschedule late"]
    assert before[ADDED].overdue and not after[ADDED].overdue
    assert (after[ADDED].due, after[ADDED].original) == (ADDED_NEW_DUE, before[ADDED].original)
    assert {k: v for k, v in after.items() if k != ADDED} == {
        k: v for k, v in before.items() if k != ADDED
    }


def test_a_rebaseline_makes_the_forecast_the_agreed_plan(replay: Replay) -> None:
    before, after = replay.before["rebaseline"], replay.after["rebaseline"]
    for item, was in before.items():
        now = after[item]
        assert now.original == was.original, item
        if was.open:
            assert (now.start, now.due) == (was.forecast_start, was.forecast_due), item
        else:
            assert (now.start, now.due) == (was.start, was.due), item
    # The kick-off finished 7 working days late: the workshops after it moved by as many.
    workshops = replay.people[after[WORKSHOPS].owner]
    assert after[WORKSHOPS].due > before[WORKSHOPS].due
    assert after[WORKSHOPS].due == workshops.step_day(after[WORKSHOPS].start, 35)


def test_a_rebaseline_keeps_a_reschedule_agreed_since_the_last_progress(replay: Replay) -> None:
    # Nothing was finished or started between the reschedule and the rebaseline: the date the
    # team agreed for the desk study is still the best forecast, and stays the agreed plan.
    assert replay.before["rebaseline"][DESK].forecast_due == NEW_DUE
    assert replay.after["rebaseline"][DESK].due == NEW_DUE


def test_an_added_item_is_planned_from_the_day_it_is_added(replay: Replay) -> None:
    added = replay.after["add"][ADDED]
    owner = replay.people[NIKOLAJ]
    assert ADDED not in replay.before["add"]
    assert (added.owner, added.status) == (NIKOLAJ, "planned")
    assert added.start == ADDED_AT.date()
    assert added.due == added.original == owner.step_day(added.start, ADDED_DAYS)


def test_an_added_item_is_not_forecast_to_start_before_it_was_added(replay: Replay) -> None:
    added = replay.after["add"][ADDED]
    assert (added.forecast_start, added.forecast_due) == (added.start, added.due)


def test_the_old_owner_is_not_asked_to_finish_what_was_handed_over(replay: Replay) -> None:
    (old,) = [line for line in replay.handovers if line["to"] == SOREN]
    assert "handed over" in str(old["title"])
    assert "finish it" not in str(old["body"]), old["body"]
