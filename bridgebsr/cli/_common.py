"""What every CLI command shares: the runtime, the clock, output in tables or JSON."""

import getpass
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import Enum
from typing import Annotated, Any, TypeVar
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy.engine import make_url

from bridgebsr.bootstrap import Runtime, build_runtime
from bridgebsr.errors import BridgeError, InvalidInput
from bridgebsr.rules.calendars import out_of_range
from bridgebsr.rules.texts import email_key, fitting, is_control
from bridgebsr.store import migrate
from models import CaseEvent

JSON_OPTION = typer.Option(False, "--json", help="Print JSON instead of a table.")
AS_OF_HELP = (
    "Act as if it were this time: an ISO datetime (2026-05-01T09:00, in BRIDGEBSR_TIMEZONE "
    "unless it gives its zone) or an ISO date, which means noon that day in "
    "BRIDGEBSR_TIMEZONE (default Europe/Copenhagen); default now."
)
AsOf = Annotated[str | None, typer.Option("--as-of", help=AS_OF_HELP)]
By = Annotated[str | None, typer.Option("--by", help="Who (default: you)")]
IfVersion = Annotated[
    int | None, typer.Option("--if-version", help="Refuse unless the case is at this version.")
]
INTEGER_MAX = 2**31 - 1  # the largest INTEGER every supported database stores
# The panels `bridgebsr --help` groups its commands in.
SETUP, DAILY, REPORTS, SERVER = "Setup", "Daily work", "Reports", "Server"
E = TypeVar("E", bound=Enum)


class _Terminal(Console):
    """A console that shows every control character of the text it prints escaped (an
    escape sequence in a stored title reaches no terminal, piped or not); line breaks come
    from separate prints, never from inside a text."""

    def render_str(self, text: str, **kwargs: Any) -> Text:
        """`text` with its control characters escaped, then rendered as rich does."""
        return super().render_str(one_line(text), **kwargs)


# Pipes and logs get wide tables rather than 80 columns of wrapped text. No markup or emoji
# codes unless a print asks for markup: stored text is shown as it is.
console = _Terminal(
    highlight=False, markup=False, emoji=False, width=None if sys.stdout.isatty() else 200
)
err_console = _Terminal(stderr=True, highlight=False, markup=False, emoji=False)


def say(text: str, *, err: bool = False) -> None:
    """Print one line for people (stdout, or stderr with `err`), never wrapped."""
    (err_console if err else console).print(text, soft_wrap=True)


def runtime(*, ready: bool = True) -> Runtime:
    """The runtime; with `ready`, refuse a store that is not at the current schema."""
    rt = build_runtime()
    if ready:
        at, head = migrate.current(rt.engine), migrate.head()
        if at != head:
            hint = "bridgebsr init" if at is None else "bridgebsr db upgrade"
            raise BridgeError(
                f"the case store is at schema {at or 'none'}, not {head}: run `{hint}`"
            )
    return rt


def parse_when(value: str | None, rt: Runtime, option: str = "--as-of") -> datetime:
    """`--as-of` (or another time `option`) as an aware datetime; dates mean noon, naive
    times the configured zone."""
    if not value:
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput(
            f"{option} '{value}' is not an ISO date or datetime (2026-05-01T09:00)"
        ) from None
    if why := out_of_range(parsed.date()):
        raise InvalidInput(f"{option}: {why}")
    if len(value.strip()) == 10:
        parsed = parsed.replace(hour=12)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=ZoneInfo(rt.settings.timezone))
    return parsed.astimezone(UTC)


def parse_day(value: str | None, option: str) -> date | None:
    """A `--on`/`--start` date, or None when not given."""
    if not value:
        return None
    try:
        day = date.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput(f"{option} '{value}' is not an ISO date (2026-05-01)") from None
    if why := out_of_range(day):
        raise InvalidInput(f"{option}: {why}")
    return day


def one_of(option: str, words: type[E]) -> Callable[[Any], E]:
    """How an option typed as a choice of `words` reads its value: the word in any case,
    without surrounding blanks. A wrong value is bad input like any other (one error line
    naming the option and the choices, exit 1), whichever command has the option. Used as
    `typer.Option(..., parser=one_of("--status", CaseStatus))` on an option annotated with
    the enum, so help and shell completion list the choices."""

    def parse(value: Any) -> E:
        if isinstance(value, words):
            return value
        text = str(value).strip().casefold()
        for word in words:
            if str(word.value).casefold() == text:
                return word
        allowed = ", ".join(str(w.value) for w in words)
        raise InvalidInput(f"{option} '{value}' is not one of: {allowed}")

    return parse


def pilot_kinds(incomplete: str) -> list[str]:
    """Shell completion of a pilot kind: the kinds of the catalog (shipped templates and
    those in BRIDGEBSR_TEMPLATE_DIRS) starting with what is typed so far."""
    try:
        kinds = build_runtime().catalog.templates
    except Exception:  # a broken setup completes nothing; the command itself will say why
        return []
    return sorted(k for k in kinds if k.startswith(incomplete))


def known_kind(rt: Runtime, value: str, option: str = "--pilot") -> str:
    """A pilot kind the catalog knows (shipped templates and BRIDGEBSR_TEMPLATE_DIRS); any
    other value is bad input naming the option and the kinds there are."""
    kinds = rt.catalog.templates
    kind = value.strip()
    if kind not in kinds:
        raise InvalidInput(
            f"{option} '{value}' is not one of: {', '.join(sorted(kinds))} "
            "(the pilot kinds of `bridgebsr templates list`)"
        )
    return kind


def bounded(value: int, option: str, low: int = 0, high: int = INTEGER_MAX) -> int:
    """An integer option within low..high (by default what a database INTEGER holds)."""
    if not low <= value <= high:
        raise InvalidInput(f"{option} {value} is out of range; give a whole number {low}-{high}")
    return value


def shown_url(url: str) -> str:
    """A database URL as it may be shown: its password hidden."""
    return make_url(url).render_as_string(hide_password=True)


def today(rt: Runtime, now: datetime) -> date:
    """The date of `now` in the configured zone."""
    return now.astimezone(rt.settings.zone()).date()


def checked_text(option: str, value: str, model: type[Any], field: str) -> str:
    """An option's text when it fits the column it is stored in, else InvalidInput."""
    try:
        return fitting(value, model, field)
    except ValueError as exc:
        raise InvalidInput(f"{option}: {exc}; shorten it") from None


@dataclass(frozen=True)
class Who:
    """Who makes a change from the command line, and whether that was only guessed."""

    email: str
    guessed: bool = False

    def tell(self) -> None:
        """After a change recorded under a guessed name: say so once, and how to fix it."""
        if self.guessed:
            say(
                f"note: recorded as made by {self.email}, which is no contact; give --by EMAIL "
                "or set BRIDGEBSR_ACTOR=you@example.org to record who you are",
                err=True,
            )


def who(rt: Runtime, by: str | None) -> Who:
    """`--by`, else BRIDGEBSR_ACTOR, else the operating-system user (guessed)."""
    if by and by.strip():
        return Who(checked_text("--by", email_key(by), CaseEvent, "actor"))
    if rt.settings.actor and rt.settings.actor.strip():
        actor = email_key(rt.settings.actor)
        return Who(checked_text("BRIDGEBSR_ACTOR", actor, CaseEvent, "actor"))
    try:
        return Who(f"{getpass.getuser()}@cli", guessed=True)
    except (KeyError, OSError):
        return Who("unknown@cli", guessed=True)


@contextmanager
def working(what: str, *, quiet: bool = False) -> Iterator[None]:
    """A spinner on stderr saying `what` while slow work runs; only when both stdout and
    stderr are a terminal and the output is not JSON (`quiet`), so pipes, logs and scripts
    see nothing of it. It leaves no trace once the work is done."""
    if quiet or not (sys.stdout.isatty() and sys.stderr.isatty()):
        yield
        return
    with err_console.status(what):
        yield


def emit_json(data: Any) -> None:
    """Print data as JSON."""
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")


def emit_table(title: str, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """Print rows as a table with the given columns."""
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*[_cell(row.get(c)) for c in columns])
    console.print(table)


def change_text(before: dict[str, Any] | None, after: dict[str, Any] | None) -> str:
    """Each changed field, `name: old -> new`; of something added or removed whole, its
    fields `name=value` ('-' for none)."""

    def text(value: Any) -> str:
        return "-" if value in (None, "") else str(value)

    old, new = before or {}, after or {}
    if not old or not new:
        return ", ".join(f"{k}={text(v)}" for k, v in (new or old).items())
    keys = dict.fromkeys([*old, *new])
    return "; ".join(f"{k}: {text(old.get(k))} -> {text(new.get(k))}" for k in keys)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else ""
    return str(value)


def one_line(text: str) -> str:
    """`text` with line breaks and other control characters escaped as in a Python string
    literal (a newline becomes \\n), so a message quoting any input stays on one line and
    cannot drive the terminal."""
    return "".join(repr(ch)[1:-1] if is_control(ch) else ch for ch in text)


def fail(exc: BridgeError) -> None:
    """One clear line on stderr (plus each problem of an invalid file), exit 1."""
    problems = exc.problems if isinstance(exc, InvalidInput) else []
    if len(problems) > 1:
        for line in problems:
            say(f"  {line}", err=True)
    say(f"error: {exc}", err=True)
    raise SystemExit(1)


def expected_version(if_version: int | None) -> int | None:
    """The case version `--if-version` asks for, checked to fit the store (None: any)."""
    return None if if_version is None else bounded(if_version, "--if-version")
