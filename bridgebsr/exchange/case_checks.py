"""Checking the files of `case import` against the catalog and the directory before
anything is written: every problem named at once, with its file, row and column (the
import's own validation; `office.bulk` documents the checks)."""

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from bridgebsr.errors import InvalidInput
from bridgebsr.exchange.case_sheets import Dates, Inputs, Part, Problems, check_columns
from bridgebsr.exchange.catalog import Catalog, checksum
from bridgebsr.rules import fields as field_rules
from bridgebsr.rules.people import Directory, Person
from bridgebsr.rules.roles import check_team_role, parse_assignments
from bridgebsr.rules.rows import Organisation
from bridgebsr.rules.texts import email_address, email_key, fitting
from models import Case, MilestoneStatus, Template

CASE_COLUMNS = (("ref", "kind", "title", "owner", "start"), ("partner", "target", "team"))
PROGRESS_COLUMNS = (("case", "milestone", "status"), ("started_on", "finished_on", "by"))
STATUSES = {
    "in_progress": MilestoneStatus.IN_PROGRESS,
    "done": MilestoneStatus.DONE,
    "waived": MilestoneStatus.WAIVED,
}
REF_MAX = 120


class Kind:
    """A template as the checks read it: its milestones, gates, links and strictness."""

    def __init__(self, template: Template) -> None:
        self.template = template
        self.digest = checksum(template)
        self.prefix = template.key_prefix
        self.m_keys = [m.key for m in template.milestones]
        self.m_index = {key: i for i, key in enumerate(self.m_keys)}
        self.g_keys = {g.key for g in template.gates}
        nodes = [*template.milestones, *template.gates]
        self.preds = {spec.key: [d.key for d in spec.after] for spec in nodes}
        self.strict = {spec.key: template.is_strict(spec) for spec in template.milestones}


@dataclass(frozen=True)
class Step:
    """One validated progress row."""

    row: int
    milestone: str
    status: MilestoneStatus
    started_on: date | None
    finished_on: date | None
    by: str | None


@dataclass
class NewCase:
    """One validated case row."""

    row: int
    ref: str
    kind: Kind
    title: str
    owner: Person
    lead: Organisation
    start: date
    target: date | None
    today: date
    steps: list[Step] = field(default_factory=list)
    team: tuple[tuple[str, int], ...] = ()  # (role, contact id): its case team
    fields: tuple[tuple[str, Any], ...] = ()  # (field, stored value): its field values


@dataclass(frozen=True)
class Valid:
    cases: list[NewCase]
    progress_label: str


def _nonempty(value: str) -> str:
    if not value:
        raise ValueError("empty; every row needs a value here")
    return value


class Validator:
    """Checks the input files against the catalog, the directory and the templates pinned
    ((kind, version) -> checksum) as of `now`."""

    def __init__(
        self,
        inputs: Inputs,
        catalog: Catalog,
        directory: Directory,
        pinned: dict[tuple[str, int], str],
        now: datetime,
    ) -> None:
        self.inputs, self.catalog, self.directory, self.now = inputs, catalog, directory, now
        self.pinned = pinned
        self.problems = Problems()
        self.dates = Dates()
        self.kinds: dict[str, Kind] = {}
        self.todays: dict[str, date] = {}
        self.emails: dict[str, str | None] = {}

    def run(self) -> Valid:
        # Besides its own columns, the cases sheet may have one per field of any template.
        self.field_columns = sorted(
            {k for t in self.catalog.templates.values() for k in t.field_specs()}
            - {*CASE_COLUMNS[0], *CASE_COLUMNS[1]}
        )
        headers = [check_columns(self.inputs.cases, CASE_COLUMNS, tuple(self.field_columns))]
        if self.inputs.progress is not None:
            headers.append(check_columns(self.inputs.progress, PROGRESS_COLUMNS))
        if refused := [h for h in headers if h]:
            raise InvalidInput(refused[0] if len(refused) == 1 else "; ".join(refused), refused)
        cases = self._cases(self.inputs.cases)
        if self.inputs.progress is not None:
            self._progress(self.inputs.progress, cases)
        self.problems.raise_if_any()
        valid = [c for c in cases.values() if isinstance(c, NewCase)]
        label = self.inputs.progress.label if self.inputs.progress else ""
        return Valid(valid, label)

    def _add(self, part: Part, rank: int, row: int, column: str, message: str) -> None:
        self.problems.add(part, rank, row, column, message)

    def _cell(self, part: Part, rank: int, row: int, column: str, check: Any, *args: Any) -> Any:
        try:
            return check(*args)
        except ValueError as exc:
            self._add(part, rank, row, column, str(exc))
            return None

    def _kind(self, value: str) -> Kind:
        name = value.strip().lower()
        if name not in self.kinds:
            template = self.catalog.templates.get(name)
            if template is None:
                known = ", ".join(sorted(self.catalog.templates)) or "none"
                raise ValueError(f"unknown pilot kind '{value}' (known: {known})")
            self.kinds[name] = Kind(template)
        return self.kinds[name]

    def _owner(self, value: str) -> Person:
        found = self.directory.by_email.get(email_key(_nonempty(value)))
        if found is None:
            raise ValueError(f"no contact {value}; add it with `bridgebsr contacts import`")
        return found

    def _partner(self, value: str) -> Organisation:
        found = self.directory.orgs_by_code.get(value.upper())
        if found is None:
            raise ValueError(f"no partner {value}; add it with `bridgebsr partners import`")
        return found

    def _team(self, value: str, kind: Kind) -> tuple[tuple[str, int], ...]:
        """`role=email;role=email`: roles of the kind's template, contacts not retired."""
        members = []
        try:
            named = parse_assignments([v for v in value.split(";") if v.strip()], "team")
        except InvalidInput as exc:
            raise ValueError(str(exc).removeprefix("team ").removeprefix("team: ")) from None
        for role, address in named.items():
            try:
                check_team_role(role, kind.template.roles, "team", kind.template.kind)
            except InvalidInput as exc:
                raise ValueError(str(exc).removeprefix("team: ")) from None
            found = self.directory.by_email.get(email_key(address))
            if found is None:
                raise ValueError(f"no contact {address} (or retired) for {role}")
            members.append((role, found.id))
        return tuple(members)

    def _title(self, value: str) -> str:
        return fitting(_nonempty(value), Case, "title")

    def _date(self, value: str) -> date:
        return self.dates.parse(_nonempty(value))

    def _ref(self, value: str) -> str:
        if len(_nonempty(value)) > REF_MAX:
            raise ValueError(f"{len(value)} characters; a ref has at most {REF_MAX}")
        return value

    def _today(self, zone: str) -> date:
        if zone not in self.todays:
            self.todays[zone] = self.now.astimezone(ZoneInfo(zone)).date()
        return self.todays[zone]

    def _cases(self, part: Part) -> dict[str, NewCase | None]:
        """Valid case rows by ref (None for a ref whose row has problems)."""
        out: dict[str, NewCase | None] = {}
        first_row: dict[str, int] = {}
        pinned_checked: set[str] = set()
        cell = self._cell
        for n, raw in part.sheet.rows:
            before = len(self.problems.found)
            ref = cell(part, 0, n, "ref", self._ref, raw["ref"])
            kind: Kind | None = cell(part, 0, n, "kind", self._kind, raw["kind"])
            title = cell(part, 0, n, "title", self._title, raw["title"])
            owner: Person | None = cell(part, 0, n, "owner", self._owner, raw["owner"])
            start = cell(part, 0, n, "start", self._date, raw["start"])
            lead: Organisation | None = None
            if raw.get("partner"):
                lead = cell(part, 0, n, "partner", self._partner, raw["partner"])
            elif owner is not None:
                lead = self.directory.orgs[owner.partner_id]
            target = None
            if raw.get("target"):
                target = cell(part, 0, n, "target", self.dates.parse, raw["target"])
                if target is not None and start is not None and target < start:
                    self._add(part, 0, n, "target", f"{target} is before the start ({start})")
            team: tuple[tuple[str, int], ...] = ()
            if raw.get("team") and kind is not None:
                team = cell(part, 0, n, "team", self._team, raw["team"], kind) or ()
            values = self._fields(part, n, raw, kind) if kind is not None else ()
            if kind is not None and kind.template.kind not in pinned_checked:
                pinned_checked.add(kind.template.kind)
                stored = self.pinned.get((kind.template.kind, kind.template.version))
                if stored is not None and stored != kind.digest:
                    self._add(
                        part,
                        0,
                        n,
                        "kind",
                        f"template {kind.template.kind} version {kind.template.version} was "
                        "edited after cases were opened with it; raise `version:` in the file "
                        "so running cases keep theirs",
                    )
            if ref is not None and ref in first_row:
                self._add(part, 0, n, "ref", f"'{ref}' also appears in row {first_row[ref]}")
                continue
            if ref is None:
                continue
            first_row[ref] = n
            ok = len(self.problems.found) == before
            if ok and kind and owner and lead and start and title:
                today = self._today(lead.timezone)
                out[ref] = NewCase(
                    n,
                    ref,
                    kind,
                    title,
                    owner,
                    lead,
                    start,
                    target,
                    today,
                    team=team,
                    fields=values,
                )
            else:
                out[ref] = None
        return out

    def _fields(
        self, part: Part, n: int, raw: dict[str, str], kind: Kind
    ) -> tuple[tuple[str, Any], ...]:
        """The row's field cells, checked by the one field rule (`rules.fields`, the checker
        of the kind built once); a problem is named by its column."""
        given = {c: raw[c] for c in self.field_columns if raw.get(c)}
        checker = field_rules.for_template(kind.template)
        for column in [c for c in given if c not in checker.specs]:
            known = ", ".join(checker.specs) or "none"
            self._add(part, 0, n, column, f"{kind.template.kind} has no such field ({known})")
            del given[column]
        try:
            values = checker.check(given)
        except ValueError as exc:
            column, _, why = str(exc).partition(": ")
            self._add(part, 0, n, column, why)
            return ()
        held = {k: v for k, v in values.items() if v is not None}
        for name in field_rules.missing_at_open(kind.template, held):
            self._add(part, 0, n, name, f"empty; a {kind.template.kind} case needs it")
        return tuple(held.items())

    def _progress(self, part: Part, cases: dict[str, NewCase | None]) -> None:
        cell = self._cell
        label = self.inputs.cases.label
        seen: dict[tuple[str, str], int] = {}
        broken: set[tuple[str, str]] = set()  # rows with problems: not blamed on successors
        for n, raw in part.sheet.rows:
            before = len(self.problems.found)
            ref = cell(part, 1, n, "case", _nonempty, raw["case"])
            key = cell(part, 1, n, "milestone", _nonempty, raw["milestone"])
            status = cell(part, 1, n, "status", _status, raw["status"])
            started = finished = None
            if raw.get("started_on"):
                started = cell(part, 1, n, "started_on", self.dates.parse, raw["started_on"])
            if raw.get("finished_on"):
                finished = cell(part, 1, n, "finished_on", self.dates.parse, raw["finished_on"])
            by = cell(part, 1, n, "by", self._email, raw["by"]) if raw.get("by") else None
            if status is MilestoneStatus.IN_PROGRESS:
                if not raw.get("started_on"):
                    self._add(
                        part, 1, n, "started_on", "empty; in_progress needs the day it started"
                    )
                if raw.get("finished_on"):
                    self._add(
                        part,
                        1,
                        n,
                        "finished_on",
                        "an in_progress milestone has not finished; leave this empty or say done",
                    )
            elif status is not None and not raw.get("finished_on"):
                self._add(
                    part, 1, n, "finished_on", f"empty; {status.value} needs the day it finished"
                )
            if started and finished and finished < started:
                self._add(part, 1, n, "finished_on", f"{finished} is before it started ({started})")
            if ref is None or key is None:
                continue
            if ref not in cases:
                self._add(
                    part, 1, n, "case", f"no case '{ref}' in {label} (give a ref of a row there)"
                )
                continue
            if (ref, key) in seen:
                self._add(
                    part,
                    1,
                    n,
                    "milestone",
                    f"'{key}' of '{ref}' also appears in row {seen[ref, key]}",
                )
                continue
            seen[ref, key] = n
            if len(self.problems.found) > before:
                broken.add((ref, key))
            case = cases[ref]
            if case is None:
                continue  # its row has problems, reported there
            if key not in case.kind.m_index:
                self._add(part, 1, n, "milestone", _not_a_milestone(case.kind, key))
                continue
            if status is not None:
                case.steps.append(Step(n, key, status, started, finished, by))
            else:
                broken.add((ref, key))
        for case in cases.values():
            if case is not None and case.steps:
                self._check_case(part, case, {k for r, k in broken if r == case.ref})

    def _email(self, value: str) -> str:
        if value not in self.emails:
            try:
                self.emails[value] = email_address(value)
            except ValueError:
                self.emails[value] = None
                raise
        found = self.emails[value]
        if found is None:
            raise ValueError(f"'{value}' is not an email address")
        return found

    def _check_case(self, part: Part, case: NewCase, broken: set[str]) -> None:
        """The dates against the case and today, and the lifecycle rules between milestones."""
        steps = {s.milestone: s for s in case.steps}
        held = dict(case.fields)
        for s in case.steps:
            if s.status is MilestoneStatus.DONE:
                checker = field_rules.captures(case.kind.template, s.milestone)
                for name in checker.missing(held):
                    self._add(
                        part,
                        1,
                        s.row,
                        "status",
                        f"completing {s.milestone} records {name}; give it in column {name} "
                        f"of case '{case.ref}' in {self.inputs.cases.label}",
                    )
            for column, day in (("started_on", s.started_on), ("finished_on", s.finished_on)):
                if day is None:
                    continue
                if day > case.today:
                    self._add(
                        part, 1, s.row, column, f"{day} is in the future (today is {case.today})"
                    )
                elif day < case.start:
                    self._add(
                        part,
                        1,
                        s.row,
                        column,
                        f"{day} is before case '{case.ref}' started ({case.start})",
                    )
            starts = s.status is not MilestoneStatus.WAIVED or s.started_on is not None
            if not case.kind.strict[s.milestone] or not starts:
                continue  # waiving needs no finished predecessors; nor does a loose milestone
            action = "start" if s.status is MilestoneStatus.IN_PROGRESS else "complete"
            if s.status is MilestoneStatus.WAIVED:
                action = "start"
            first_day = s.started_on or s.finished_on
            first_column = "started_on" if s.started_on is not None else "finished_on"
            for pred in case.kind.preds[s.milestone]:
                done = steps.get(pred)
                if pred in broken:
                    continue  # its own row's problems are reported
                if pred in case.kind.g_keys:
                    self._add(
                        part,
                        1,
                        s.row,
                        "status",
                        f"cannot {action} {s.milestone}: it waits for gate {pred}, which an "
                        "import cannot decide; import the case up to the gate and decide it "
                        "with `bridgebsr gate approve`",
                    )
                elif done is None or done.status is MilestoneStatus.IN_PROGRESS:
                    state = "in_progress" if done else "not in the file"
                    self._add(
                        part,
                        1,
                        s.row,
                        "status",
                        f"cannot {action} {s.milestone}: predecessor {pred} is not done or "
                        f"waived ({state})",
                    )
                elif (
                    done.finished_on is not None
                    and first_day is not None
                    and first_day < done.finished_on
                ):
                    self._add(
                        part,
                        1,
                        s.row,
                        first_column,
                        f"{first_day} is before predecessor {pred} finished ({done.finished_on})",
                    )


def _status(value: str) -> MilestoneStatus:
    found = STATUSES.get(value.strip().lower().replace(" ", "_").replace("-", "_"))
    if found is None:
        raise ValueError(f"'{value}' is not a status ({', '.join(STATUSES)})")
    return found


def _not_a_milestone(kind: Kind, key: str) -> str:
    if key in kind.g_keys:
        return (
            f"'{key}' is a gate of {kind.template.kind}; an import records milestones only "
            "(decide gates with `bridgebsr gate approve`)"
        )
    return f"'{key}' is not a milestone of {kind.template.kind} (it has: {', '.join(kind.m_keys)})"
