"""Partners and contacts: validated, all-or-nothing imports from CSV or XLSX, and listings.
An import records a directory event per partner or contact it adds or changes (the fields the
file changed, before (None: added) and after), in its transaction; none when nothing changes.
"""

import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, time
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pycountry
import pytz
from sqlmodel import Session, col, select

from bridgebsr.errors import InvalidInput
from bridgebsr.exchange.sheets import Sheet, column_letter, read_sheet
from bridgebsr.office.directory_audit import IMPORTER, OPERATOR, record
from bridgebsr.office.progress import Actor
from bridgebsr.rules.roles import leads_text
from bridgebsr.rules.texts import email_address, fitting, name_text
from bridgebsr.store.directory_events import Entry
from models import Contact, Partner, PartnerKind

PARTNER_COLUMNS = (("code", "name", "kind", "country"), ("region", "timezone"))
CONTACT_COLUMNS = (
    ("email", "name", "partner", "role", "country"),
    ("timezone", "channels", "delivery", "quiet_hours", "daily_cap", "leads"),
)
CHANNELS = ("email", "chat")
DAILY_CAP_MAX = 2**31 - 1  # the largest INTEGER every supported database stores
_KINDS = {re.sub(r"[\s_-]", "", k.value): k for k in PartnerKind}


@dataclass
class ImportReport:
    """What an import created, updated and left as it was."""

    what: str
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    dry_run: bool = False

    def summary(self) -> str:
        """One line for the CLI."""
        verb = "would create" if self.dry_run else "created"
        upd = "would update" if self.dry_run else "updated"
        return (
            f"{self.what}: {verb} {len(self.created)}, {upd} {len(self.updated)}, "
            f"unchanged {len(self.unchanged)}"
        )


class _Problems:
    def __init__(self, sheet: Sheet) -> None:
        self.sheet, self.lines = sheet, list[str]()

    def add(self, row: int, column: str, message: str) -> None:
        letter = (
            column_letter(self.sheet.columns.index(column)) if column in self.sheet.columns else "?"
        )
        self.lines.append(
            f"{self.sheet.path.name}: row {row}, column {letter} ({column}): {message}"
        )

    def raise_if_any(self, what: str) -> None:
        if self.lines:
            raise InvalidInput(
                f"{self.sheet.path.name}: {len(self.lines)} problem(s), nothing imported; "
                f"first: {self.lines[0]}",
                self.lines,
            )


def _check_columns(sheet: Sheet, spec: tuple[tuple[str, ...], tuple[str, ...]]) -> None:
    required, optional = spec
    missing = [c for c in required if c not in sheet.columns]
    unknown = [c for c in sheet.columns if c and c not in (*required, *optional)]
    if missing or unknown:
        parts = [f"missing column(s) {', '.join(missing)}"] if missing else []
        parts += [f"unknown column(s) {', '.join(unknown)}"] if unknown else []
        raise InvalidInput(
            f"{sheet.path.name}: row 1: {'; '.join(parts)}; the header must name "
            f"{', '.join(required)} (optional: {', '.join(optional)})"
        )


def country_code(value: str) -> str:
    """An ISO 3166-1 alpha-2 code, upper-cased, or ValueError."""
    code = value.strip().upper()
    if len(code) != 2 or pycountry.countries.get(alpha_2=code) is None:
        raise ValueError(f"'{value}' is not an ISO 3166-1 alpha-2 country code (DK, SE, DE, ...)")
    return code


def _country_name(code: str) -> str:
    country = pycountry.countries.get(alpha_2=code)
    return str(country.name) if country is not None else code


def zone_for(value: str, country: str) -> str:
    """The IANA zone given, or the country's main zone when blank."""
    if not value:
        zones = pytz.country_timezones.get(country.lower()) or ["UTC"]
        return str(zones[0])
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # OSError: a name of a folder of the tz database (Europe), or longer than a file name
        raise ValueError(f"'{value}' is not an IANA time zone (Europe/Riga, ...)") from None
    return value


def _check_lengths(
    problems: _Problems, row: int, model: type[Any], rec: dict[str, Any], columns: dict[str, str]
) -> None:
    """Name every text of `rec` longer than its column of `model` holds (on PostgreSQL the
    database would refuse it; SQLite would store it whole). `columns`: field -> sheet column."""
    for name, column in columns.items():
        if isinstance(value := rec.get(name), str):
            _cell(problems, row, column, fitting, value, model, name)


def _cell(problems: _Problems, row: int, column: str, check: Callable[..., Any], *args: Any) -> Any:
    try:
        return check(*args)
    except ValueError as exc:
        problems.add(row, column, str(exc))
        return None


def _text(value: str) -> str:
    if not value:
        raise ValueError("empty; every row needs a value here")
    return value


def _code(value: str) -> str:
    return _text(value).upper()


def _partner_kind(value: str) -> PartnerKind:
    kind = _KINDS.get(re.sub(r"[\s_-]", "", value.lower()))
    if kind is None:
        raise ValueError(
            f"'{value}' is not a partner kind ({', '.join(k.value for k in PartnerKind)})"
        )
    return kind


def _name(value: str) -> str:
    return name_text(_text(value))


def _unique(problems: _Problems, rows: Iterable[tuple[int, dict[str, Any]]], key: str) -> None:
    seen: dict[Any, int] = {}
    for number, values in rows:
        if values[key] is None:
            continue  # already reported as invalid
        if values[key] in seen:
            problems.add(number, key, f"'{values[key]}' also appears in row {seen[values[key]]}")
        seen.setdefault(values[key], number)


# Text fields of each record (as on the model) and the sheet column they come from.
_PARTNER_TEXTS = {"code": "code", "name": "name", "region": "region", "timezone": "timezone"}
_CONTACT_TEXTS = {
    "email": "email",
    "name": "name",
    "role": "role",
    "timezone": "timezone",
    "leads": "leads",
}


def parse_partners(sheet: Sheet) -> list[dict[str, Any]]:
    """Validated partner records from a sheet, or every problem at once."""
    _check_columns(sheet, PARTNER_COLUMNS)
    problems, out = _Problems(sheet), []
    for n, raw in sheet.rows:
        country = _cell(problems, n, "country", country_code, raw["country"])
        rec = {
            "code": _cell(problems, n, "code", _code, raw["code"]),
            "name": _cell(problems, n, "name", _name, raw["name"]),
            "kind": _cell(problems, n, "kind", _partner_kind, raw["kind"]),
            "country": country,
        }
        if country:
            rec["region"] = raw.get("region") or _country_name(country)
            rec["timezone"] = _cell(
                problems, n, "timezone", zone_for, raw.get("timezone", ""), country
            )
        _check_lengths(problems, n, Partner, rec, _PARTNER_TEXTS)
        out.append((n, rec))
    _unique(problems, out, "code")
    problems.raise_if_any("partners")
    return [rec for _, rec in out]


def parse_contacts(
    sheet: Sheet, partners: dict[str, int], roles: set[str], kinds: Collection[str] = ()
) -> list[dict[str, Any]]:
    """Validated contact records; partner codes, roles and the pilot kinds led must exist."""
    _check_columns(sheet, CONTACT_COLUMNS)
    problems, out = _Problems(sheet), []
    for n, raw in sheet.rows:
        # A file without the `leads` column leaves what each one leads.
        given = raw if "leads" in sheet.columns else {k: v for k, v in raw.items() if k != "leads"}
        rec = contact_record(given, partners, roles, kinds, partial(_cell, problems, n))
        rec |= _preference_cells(problems, n, raw)
        out.append((n, rec))
    _unique(problems, out, "email")
    problems.raise_if_any("contacts")
    return [rec for _, rec in out]


# Runs one check of a field (column, check, its arguments): the value, or None once the
# problem is told (a sheet gathers every problem; a command refuses the first).
Check = Callable[..., Any]


def contact_record(
    raw: Mapping[str, str],
    partners: dict[str, int],
    roles: set[str],
    kinds: Collection[str],
    cell: Check,
) -> dict[str, Any]:
    """One contact's fields (as on `Contact`) from text as a person gives it (a file's row, or
    a command's options): email, name, partner, role, country, and timezone (blank: the
    country's main zone) and leads when given; each checked through `cell`, which also says
    when a text is longer than its column holds."""
    country = cell("country", country_code, raw["country"])
    rec = {
        "email": cell("email", email_address, raw["email"]),
        "name": cell("name", _name, raw["name"]),
        "partner_id": cell("partner", partner_ref, raw["partner"], partners),
        "role": cell("role", _role, raw["role"], roles),
        "country": country,
    }
    if country:
        rec["timezone"] = cell("timezone", zone_for, raw.get("timezone", ""), country)
    if "leads" in raw:
        rec["leads"] = cell("leads", parse_leads, raw["leads"], kinds)
    for name, column in _CONTACT_TEXTS.items():
        if isinstance(value := rec.get(name), str):
            cell(column, fitting, value, Contact, name)
    return rec


def _preference_cells(problems: _Problems, n: int, raw: dict[str, str]) -> dict[str, Any]:
    """The notification preferences a row gives; a blank cell leaves the preference as it is
    (the default for a new contact)."""
    rec: dict[str, Any] = {}
    if raw.get("channels"):
        rec["channels"] = _cell(problems, n, "channels", parse_channels, raw["channels"])
    if raw.get("delivery"):
        rec["digest"] = _cell(problems, n, "delivery", parse_delivery, raw["delivery"])
    if raw.get("quiet_hours"):
        quiet = _cell(problems, n, "quiet_hours", parse_quiet_hours, raw["quiet_hours"])
        rec["quiet_from"], rec["quiet_until"] = quiet or (None, None)
    if raw.get("daily_cap"):
        rec["daily_cap"] = _cell(problems, n, "daily_cap", parse_daily_cap, raw["daily_cap"])
    return rec


def parse_channels(value: str) -> str:
    """'email', 'chat' or both (comma or space separated), as stored: 'email,chat'."""
    given = {v for v in re.split(r"[\s,;]+", value.strip().lower()) if v}
    unknown = given - set(CHANNELS)
    if unknown or not given:
        raise ValueError(f"'{value}' is not a list of channels (email, chat or 'email,chat')")
    return ",".join(c for c in CHANNELS if c in given)


def parse_delivery(value: str) -> bool:
    """'immediate' or 'digest' (what is not urgent waits for one message a day): True for
    digest."""
    choice = value.strip().lower()
    if choice not in {"immediate", "digest"}:
        raise ValueError(f"'{value}' is not a delivery mode (immediate or digest)")
    return choice == "digest"


def parse_quiet_hours(value: str) -> tuple[time, time] | None:
    """'HH:MM-HH:MM' in the contact's own time zone (21:00-07:00), or 'none'."""
    text = value.strip().lower()
    if text in {"none", "off", "-"}:
        return None
    match = re.fullmatch(r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})", text)
    try:
        if match is None:
            raise ValueError
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        start, end = time(h1, m1), time(h2, m2)
    except ValueError:
        raise ValueError(
            f"'{value}' is not quiet hours (HH:MM-HH:MM, e.g. 21:00-07:00, or none)"
        ) from None
    if start == end:
        raise ValueError(f"'{value}' starts and ends at the same time; use 'none' for no quiet")
    return start, end


def parse_daily_cap(value: str) -> int:
    """Messages a day at most, a whole number up to DAILY_CAP_MAX; 0 for no cap."""
    try:
        cap = int(value.strip())
    except ValueError:
        cap = -1
    if not 0 <= cap <= DAILY_CAP_MAX:
        raise ValueError(
            f"'{value}' is not a daily cap (a whole number 0-{DAILY_CAP_MAX}, 0 for no cap)"
        )
    return cap


def quiet_text(quiet: tuple[time, time] | None) -> str:
    """Quiet hours as people read and write them: `21:00-07:00`, or `none`."""
    return f"{quiet[0]:%H:%M}-{quiet[1]:%H:%M}" if quiet else "none"


def preferences(contact: Contact) -> dict[str, Any]:
    """A contact's notification preferences as shown to people."""
    quiet = quiet_text(contact.quiet)
    return {
        "email": contact.email,
        "channels": contact.channels,
        "delivery": "digest" if contact.digest else "immediate",
        "quiet_hours": quiet,
        "timezone": contact.timezone,
        "daily_cap": contact.daily_cap or "none",
    }


def set_preferences(
    *,
    session: Session,
    email: str,
    changes: dict[str, Any],
    now: datetime | None = None,
    actor: Actor = OPERATOR,
) -> dict[str, Any]:
    """Change one contact's preferences (keys as on Contact), in one transaction; those that
    moved are recorded as `contact.preferences` at `now` (default: the current time)."""
    try:
        address = email_address(email)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    contact = session.exec(select(Contact).where(col(Contact.email) == address)).first()
    if contact is None:
        raise InvalidInput(f"no contact '{email}'; see `bridgebsr contacts list`")
    moved = {name: value for name, value in changes.items() if getattr(contact, name) != value}
    entry = Entry(
        "contact.preferences", contact.email, {n: getattr(contact, n) for n in moved}, moved
    )
    for name, value in moved.items():
        setattr(contact, name, value)
    record(session, [entry] if moved else [], actor, now)
    session.commit()
    return preferences(contact)


def partner_ref(value: str, partners: dict[str, int]) -> int:
    """The id of the partner a code names (`partners`: id by code), or ValueError."""
    code = value.strip().upper()
    if code not in partners:
        raise ValueError(f"no partner '{value}'; import partners first")
    return partners[code]


def _role(value: str, roles: set[str]) -> str:
    role = value.strip().lower()
    if role not in roles:
        raise ValueError(f"'{value}' is not a role the templates name ({', '.join(sorted(roles))})")
    return role


def parse_leads(value: str, kinds: Collection[str]) -> str:
    """The pilot kinds a contact leads (comma or space separated; blank: none), as stored."""
    given = {v for v in re.split(r"[\s,;]+", value.strip().lower()) if v}
    unknown = sorted(given - set(kinds))
    if unknown:
        known = ", ".join(sorted(kinds)) or "none"
        raise ValueError(f"'{unknown[0]}' is not a pilot kind of the catalog ({known})")
    return leads_text(given)


def _upsert(
    session: Session,
    model: type[Any],
    key: str,
    records: list[dict[str, Any]],
    report: ImportReport,
    kind: str,
    named: Callable[[dict[str, Any]], dict[str, Any]] = dict,
) -> list[Entry]:
    """Add or change the rows of `records`; the event of each one added or changed (`named`:
    the fields as the event shows them)."""
    existing = {getattr(r, key): r for r in session.exec(select(model))}
    entries: list[Entry] = []
    for rec in records:
        row = existing.get(rec[key])
        if row is None:
            session.add(model(**rec))
            report.created.append(rec[key])
            entries.append(Entry(kind, rec[key], None, named(rec)))
            continue
        changed = {f: v for f, v in rec.items() if getattr(row, f) != v}
        if changed:
            before = {f: getattr(row, f) for f in changed}
            entries.append(Entry(kind, rec[key], named(before), named(changed)))
        for f, v in changed.items():
            setattr(row, f, v)
        (report.updated if changed else report.unchanged).append(rec[key])
    return entries


def import_partners(
    *,
    session: Session,
    path: Path,
    dry_run: bool = False,
    now: datetime | None = None,
    actor: Actor = IMPORTER,
) -> ImportReport:
    """Create or update partners from a file, all rows or none; each partner added or changed
    is recorded as `partner.import` at `now` (default: the current time), the file's name as
    the reference unless `actor` gives one."""
    records = parse_partners(read_sheet(path))
    report = ImportReport("partners", dry_run=dry_run)
    entries = _upsert(session, Partner, "code", records, report, "partner.import")
    if not dry_run:
        record(session, entries, actor, now, path.name)
    _finish(session, dry_run)
    return report


def import_contacts(
    *,
    session: Session,
    path: Path,
    roles: set[str],
    kinds: Collection[str] = (),
    dry_run: bool = False,
    now: datetime | None = None,
    actor: Actor = IMPORTER,
) -> ImportReport:
    """Create or update contacts from a file, all rows or none; `kinds`: the pilot kinds a
    `leads` cell may name. Each contact added or changed is recorded as `contact.import`
    (partners named by code), as `import_partners` records partners."""
    partners = {p.code: p.id for p in session.exec(select(Partner))}
    records = parse_contacts(read_sheet(path), partners, roles, kinds)  # type: ignore[arg-type]
    report = ImportReport("contacts", dry_run=dry_run)
    codes = {pid: code for code, pid in partners.items()}

    def named(fields: dict[str, Any]) -> dict[str, Any]:
        return {
            ("partner" if f == "partner_id" else f): codes.get(v) if f == "partner_id" else v
            for f, v in fields.items()
        }

    entries = _upsert(session, Contact, "email", records, report, "contact.import", named)
    if not dry_run:
        record(session, entries, actor, now, path.name)
    _finish(session, dry_run)
    return report


def _finish(session: Session, dry_run: bool) -> None:
    if dry_run:
        session.rollback()
    else:
        session.commit()


def list_partners(*, session: Session) -> list[dict[str, Any]]:
    """Every partner, by code."""
    rows = session.exec(select(Partner).order_by(col(Partner.code)))
    return [p.model_dump(exclude={"id"}, mode="json") for p in rows]


def list_contacts(*, session: Session) -> list[dict[str, Any]]:
    """Every contact with the partner code, by email."""
    rows = session.exec(
        select(Contact, Partner.code)
        .join(Partner, col(Partner.id) == Contact.partner_id)
        .order_by(col(Contact.email))
    )
    return [
        {
            **c.model_dump(include={"email", "name", "role", "country", "timezone", "leads"}),
            "partner": code,
            **preferences(c),
        }
        for c, code in rows
    ]
