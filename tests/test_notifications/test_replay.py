"""Time travel: an IP-integration pilot replayed day by day for 120 days with `--as-of`.

Each day the operator runs `bridgebsr monitor` and `bridgebsr notifications dispatch` at 09:00
Copenhagen time, as the scheduled flows would, while the people on the case complete
milestones and vote on the Innovation Council gate, some on time and some late. What arrives
in the local log (the `bridgebsr://` channel) must be exactly the escalation ladder's messages
from the pilot's template: every step to every recipient once, on that recipient's working
day; nothing about items finished before a step falls due; nothing to approvers who have
already voted; nothing new when the same day is run twice.

The expected messages are worked out here from the template file, the shipped directory and
the case's due dates, with each recipient's public holidays from the `holidays` package.
"""

import csv
import json
import os
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import holidays
import pytest
import yaml
from typer.testing import CliRunner

from bridgebsr.cli import app
from bridgebsr.rules.calendars import subdivision_of

SHIPPED = Path(__file__).parents[2] / "bridgebsr"
TEMPLATE = SHIPPED / "templates" / "ip-integration.yaml"
PARTNERS_CSV = SHIPPED / "data" / "partners.csv"
CONTACTS_CSV = SHIPPED / "data" / "contacts.csv"

ZONE = ZoneInfo("Europe/Copenhagen")
START = date(2026, 3, 2)  # a Monday; the case starts the day the replay does
DAYS = 120
END = START + timedelta(days=DAYS - 1)
RUN_AT = time(9, 0)  # working hours all over ScanBalt: no notice waits for a recipient's night
BEFORE_RUN, AFTER_RUN = time(8, 0), time(15, 0)

CASE_OWNER = "anders.bogh@scanbalt.example"  # case-owner at SCANBALT (DK), the lead partner
LEAD_PARTNER = "SCANBALT"
GATE = "council-approval"
COUNCIL_DK = "peter.moller-jensen@mva.example"
COUNCIL_DE = "juergen.weiss@bioconvalley.example"
COUNCIL_PL = "malgorzata.zurawska@ippt-pan.example"

Notice = tuple[date, str, str, str, str]  # (day, recipient, case, item, step)


def local(day: date, clock: time) -> datetime:
    """A moment in Copenhagen."""
    return datetime.combine(day, clock, tzinfo=ZONE)


def as_of(moment: datetime) -> str:
    """The `--as-of` value for a moment in Copenhagen (the CLI's default zone)."""
    return moment.strftime("%Y-%m-%dT%H:%M")


def run_moment(day: date) -> datetime:
    """When the day's monitor and dispatch run."""
    return local(day, RUN_AT)


# --- The pilot's story: who does what, when -------------------------------------------------


@dataclass(frozen=True)
class Act:
    """One thing a person does on the case: completes a milestone or votes on the gate."""

    at: datetime
    args: tuple[str, ...]
    item: str
    by: str
    closes: bool  # whether it finishes the item (a vote short of the quorum does not)


def story(key: str, owners: dict[str, str]) -> list[Act]:
    """The case's progress over the window, in order.

    - kickoff is left late (every step up to `late-10` to the coordinator), then finished;
    - regional-workshops is finished early, after its first reminder only;
    - bottleneck-desk-study is finished on its due day, after that day's notices went out;
    - the rest of the draft-model stage is rushed through, so the Council gate opens on
      19 May with its deadline four calendar weeks later, on 16 June;
    - one council member votes between the reminders, one on the deadline after its notice;
      the gate expires one vote short, and a third vote passes it on 22 June.
    """

    def done(milestone: str, day: date, clock: time = BEFORE_RUN) -> Act:
        moment = local(day, clock)
        by = owners[milestone]
        args = ("milestone", "complete", key, milestone, "--by", by, "--as-of", as_of(moment))
        return Act(moment, args, milestone, by, closes=True)

    def vote(by: str, day: date, clock: time, *, last: bool = False) -> Act:
        moment = local(day, clock)
        args = ("gate", "approve", key, GATE, "--by", by, "--as-of", as_of(moment))
        return Act(moment, args, GATE, by, closes=last)

    rushed = ("bottleneck-report", "indicator-set", "baseline-data", "model-draft")
    return [
        done("kickoff", date(2026, 4, 1)),
        done("regional-workshops", date(2026, 5, 12)),
        done("bottleneck-desk-study", date(2026, 5, 15), AFTER_RUN),
        *(done(m, date(2026, 5, 18)) for m in rushed),
        done("expert-panel", date(2026, 5, 19)),
        done("model-revision", date(2026, 5, 19)),
        vote(COUNCIL_DK, date(2026, 6, 8), BEFORE_RUN),
        vote(COUNCIL_DE, date(2026, 6, 16), AFTER_RUN),
        vote(COUNCIL_PL, date(2026, 6, 22), BEFORE_RUN, last=True),
    ]


# --- The directory and each recipient's working days ----------------------------------------


@dataclass(frozen=True)
class Person:
    """A contact with the public holidays of the place they work."""

    email: str
    role: str
    partner: str
    off: holidays.HolidayBase = field(repr=False, compare=False)

    def working(self, day: date) -> bool:
        """Monday to Friday and not a public holiday here."""
        return day.weekday() < 5 and day not in self.off

    def step_day(self, due: date, offset: int) -> date:
        """`offset` of this person's working days from `due` (before it when negative); a
        day off speaks on the next working day."""
        day, left = due, abs(offset)
        step = timedelta(days=1 if offset >= 0 else -1)
        while left:
            day += step
            left -= self.working(day)
        while not self.working(day):
            day += timedelta(days=1)
        return day


def read_directory() -> dict[str, Person]:
    """The shipped consortium: each contact's role, partner and holidays (their country's,
    and their state's where they work in their partner's country)."""
    with PARTNERS_CSV.open(encoding="utf-8") as f:
        partners = {row["code"]: row for row in csv.DictReader(f)}
    people = {}
    with CONTACTS_CSV.open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            partner, country = partners[row["partner"]], row["country"]
            region = partner["region"] if partner["country"] == country else None
            off = holidays.country_holidays(
                country, subdiv=subdivision_of(country, region), years=(START.year, END.year)
            )
            people[row["email"]] = Person(row["email"], row["role"], row["partner"], off)
    return people


# --- The expected messages -----------------------------------------------------------------


@dataclass
class Item:
    """A milestone or gate as the ladder sees it: its due date (a gate's deadline), who owns
    it, when it opens and closes, and for a gate who may decide and who voted when."""

    key: str
    due: date
    owner: str | None = None
    approver_role: str | None = None  # set for a gate
    opens: datetime | None = None
    closes: datetime | None = None
    votes: dict[str, datetime] = field(default_factory=dict)

    @property
    def is_gate(self) -> bool:
        return self.approver_role is not None

    def open_at(self, moment: datetime) -> bool:
        started = self.opens is None or self.opens < moment
        return started and (self.closes is None or moment < self.closes)

    def voted_by(self, email: str, moment: datetime) -> bool:
        return email in self.votes and self.votes[email] < moment


def expected_notices(
    case_key: str, items: list[Item], ladder: list[dict[str, Any]], people: dict[str, Person]
) -> list[Notice]:
    """Every (day, recipient, case, item, step) the ladder asks for within the window.

    A role a step names means its holders at the lead partner (anyone holding it when the
    lead partner has nobody); `owner` means a milestone's owner, or a gate's approvers who
    have not voted yet. Once a gate's deadline has passed it is not reminded any more: the
    day after the deadline, its approvers still to vote and the recipients of the ladder's
    urgent steps are told once that it has expired.
    """
    by_role: dict[str, list[Person]] = {}
    for person in people.values():
        by_role.setdefault(person.role, []).append(person)

    def named(roles: list[str], item: Item) -> dict[str, Person]:
        found: dict[str, Person] = {}
        for role in roles:
            if role == "owner" and item.approver_role is not None:
                chosen = by_role[item.approver_role]
            elif role == "owner":
                assert item.owner is not None
                chosen = [people[item.owner]]
            else:
                holders = by_role.get(role, [])
                chosen = [p for p in holders if p.partner == LEAD_PARTNER] or holders
            found.update((p.email, p) for p in chosen)
        return found

    def still_asked(item: Item, email: str, moment: datetime) -> bool:
        return item.open_at(moment) and not item.voted_by(email, moment)

    out: list[Notice] = []
    for item in items:
        for step in ladder:
            for email, person in named(step["notify"], item).items():
                day = person.step_day(item.due, int(step["offset"]))
                if item.is_gate and day > item.due:
                    continue  # past its deadline a gate's notice is its expiry
                if START <= day <= END and still_asked(item, email, run_moment(day)):
                    out.append((day, email, case_key, item.key, str(step["key"])))
        if item.is_gate:
            day = item.due + timedelta(days=1)
            urgent = [role for s in ladder if s.get("urgent") for role in s["notify"]]
            for email in named(["owner", *urgent], item):
                if START <= day <= END and still_asked(item, email, run_moment(day)):
                    out.append((day, email, case_key, item.key, "expired"))
    return out


# --- Running the CLI in-process and reading what arrived ------------------------------------


class Bridgebsr:
    """`bridgebsr` run in-process against the home in BRIDGEBSR_HOME."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: str) -> str:
        result = self.runner.invoke(app, list(args), catch_exceptions=False)
        assert result.exit_code == 0, f"bridgebsr {' '.join(args)}: {result.output}"
        return result.output

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "--json"))


class LocalLog:
    """The `bridgebsr://` channel's file, read as it grows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen = 0

    def new_lines(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        lines = self.path.read_text(encoding="utf-8").splitlines()
        fresh, self.seen = lines[self.seen :], len(lines)
        return [json.loads(line) for line in fresh]


STEP_LINE = re.compile(r"(?im)^\W*step\W+([a-z0-9-]+)\s*$")


def as_notice(day: date, line: dict[str, Any], item_keys: set[str]) -> Notice:
    """What a delivered message is about: case and item from its title, step from its body."""
    title, body = str(line["title"]), str(line["body"])
    case_key, _, rest = title.partition(":")
    items = [word for word in re.findall(r"[a-z0-9-]+", rest) if word in item_keys]
    steps = STEP_LINE.findall(body)
    assert len(items) == 1 and len(steps) == 1, f"cannot tell what this message is about: {line}"
    return (day, str(line["to"]), case_key.strip(), items[0], steps[0])


def open_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`home` initialised with the shipped consortium and no channel but the local log, and
    the environment pointing at it."""
    for name in list(os.environ):
        if name.startswith(("BRIDGEBSR_", "PREFECT_API")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("BRIDGEBSR_HOME", str(home))
    cli = Bridgebsr()
    cli("init")
    cli("partners", "import", str(PARTNERS_CSV))
    cli("contacts", "import", str(CONTACTS_CSV))
    return home


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An initialised home with the shipped consortium and no channel but the local log."""
    yield open_home(tmp_path / "home", monkeypatch)


def differences(expected: list[Notice], actual: list[Notice]) -> str:
    """Missing and unexpected messages, one per line, in date order."""
    want, got = Counter(expected), Counter(actual)
    lines = [f"missing    {n}" for n in sorted((want - got).elements())]
    lines += [f"unexpected {n}" for n in sorted((got - want).elements())]
    return "\n".join(lines)


def test_a_pilot_replayed_for_120_days_sends_each_ladder_message_once_on_its_day(
    home: Path,
) -> None:
    cli = Bridgebsr()
    template: dict[str, Any] = yaml.safe_load(TEMPLATE.read_text(encoding="utf-8"))
    ladder: list[dict[str, Any]] = template["ladder"]
    gate_spec = next(g for g in template["gates"] if g["key"] == GATE)
    people = read_directory()

    opened = local(START, BEFORE_RUN)
    title = "Transregional IP model"
    key = cli(
        *("case", "open", "ip-integration", "--title", title, "--owner", CASE_OWNER),
        *("--partner", LEAD_PARTNER, "--start", START.isoformat(), "--as-of", as_of(opened)),
    ).strip()
    shown = cli.json("case", "show", key, "--as-of", as_of(opened))
    owners = {m["key"]: m["owner"] for m in shown["milestones"]}
    acts = story(key, owners)

    # The case as the ladder sees it: milestones due on their planned dates, closed when the
    # story finishes them; the gate opens when its last predecessor is finished and is due
    # its deadline's number of days later.
    items = {
        m["key"]: Item(m["key"], date.fromisoformat(m["planned_due"]), owner=m["owner"])
        for m in shown["milestones"]
    }
    for act in acts:
        if act.item in items and act.closes:
            items[act.item].closes = act.at
    assert gate_spec.get("days") == "calendar"
    opens = max(a.at for a in acts if a.item in gate_spec["after"])
    gate = Item(
        GATE,
        opens.date() + timedelta(days=int(gate_spec["deadline"])),
        approver_role=gate_spec["approvers"]["role"],
        opens=opens,
        closes=next(a.at for a in acts if a.item == GATE and a.closes),
        votes={a.by: a.at for a in acts if a.item == GATE},
    )
    expected = expected_notices(key, [*items.values(), gate], ladder, people)

    # The story covers every kind of step: the whole ladder on a late milestone, a milestone
    # finished after its first reminder, the owner and the pilot lead told on a due day, and
    # a gate reminded, expired and voted on along the way.
    assert Counter((n[3], n[4]) for n in expected) == {
        ("kickoff", "remind-10"): 1,
        ("kickoff", "remind-2"): 1,
        ("kickoff", "due"): 1,  # the pilot lead owns it: one message for both roles
        ("kickoff", "late-10"): 1,
        ("regional-workshops", "remind-10"): 1,
        ("bottleneck-desk-study", "remind-10"): 1,
        ("bottleneck-desk-study", "remind-2"): 1,
        ("bottleneck-desk-study", "due"): 2,
        (GATE, "remind-10"): 6,
        (GATE, "remind-2"): 5,
        (GATE, "due"): 6,
        (GATE, "expired"): 5,
    }
    item_keys = {*items, GATE}
    window = [START + timedelta(days=i) for i in range(DAYS)]
    # Run twice on every day something is sent, and on Sundays, when nothing is.
    rerun_days = {n[0] for n in expected} | {day for day in window if day.weekday() == 6}

    log = LocalLog(home / "notifications.log")
    actual: list[Notice] = []
    problems: list[str] = []
    for day in window:
        moment = run_moment(day)
        for act in acts:
            if act.at.date() == day and act.at < moment:
                cli(*act.args)
        if day == opens.date():
            now_open = cli.json("case", "show", key, "--as-of", as_of(moment))["gates"]
            council = next(g for g in now_open if g["key"] == GATE)
            assert (council["status"], council["deadline"]) == ("open", gate.due.isoformat())
        written = cli.json("monitor", "--as-of", as_of(moment))
        sent = cli.json("notifications", "dispatch", "--as-of", as_of(moment))
        lines = log.new_lines()
        actual += [as_notice(day, line, item_keys) for line in lines]
        if written["failures"] or sent["failed"] or sent["retrying"] or sent.get("held"):
            problems.append(f"{day}: monitor {written['failures']}, dispatch {sent}")
        if sent["sent"] != len(lines):
            problems.append(
                f"{day}: dispatch reported {sent['sent']} sent, the log got {len(lines)}"
            )
        if day in rerun_days:
            again = cli.json("monitor", "--as-of", as_of(moment))
            resent = cli.json("notifications", "dispatch", "--as-of", as_of(moment))
            repeated = log.new_lines()
            if again["notifications"] or resent["sent"] or repeated:
                problems.append(
                    f"{day} run twice: {again['notifications']} new outbox row(s), "
                    f"{resent['sent']} sent again: {[x['title'] for x in repeated]}"
                )
        for act in acts:
            if act.at.date() == day and act.at > moment:
                cli(*act.args)

    wrong = differences(expected, actual)
    assert not wrong and not problems, (
        f"what arrived differs from the ladder:\n{wrong}\n" + "\n".join(problems)
    )
    final = cli.json("case", "show", key, "--as-of", as_of(run_moment(END)))
    assert next(g for g in final["gates"] if g["key"] == GATE)["status"] == "approved"
    outbox = cli.json("notifications", "list", "--limit", "1000")
    assert Counter(row["status"] for row in outbox) == {"sent": len(expected)}
