"""What every CLI command shares: the runtime, the clock, output in tables or JSON."""

import getpass
import json
import sys
import unicodedata
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.table import Table

from bridgebsr import migrate
from bridgebsr.bootstrap import Runtime, build_runtime
from bridgebsr.calendars import out_of_range
from bridgebsr.errors import BridgeError, InvalidInput

JSON_OPTION = typer.Option(False, "--json", help="Print JSON instead of a table.")
AS_OF_HELP = "Act as if it were this time (ISO date or datetime; default now)."
INTEGER_MAX = 2**31 - 1  # the largest INTEGER every supported database stores

# Pipes and logs get wide tables rather than 80 columns of wrapped text.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)


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


def parse_when(value: str | None, rt: Runtime) -> datetime:
    """`--as-of` as an aware datetime; dates mean noon, naive times the configured zone."""
    if not value:
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput(
            f"--as-of '{value}' is not an ISO date or datetime (2026-05-01T09:00)"
        ) from None
    if why := out_of_range(parsed.date()):
        raise InvalidInput(f"--as-of: {why}")
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


def bounded(value: int, option: str, low: int = 0, high: int = INTEGER_MAX) -> int:
    """An integer option within low..high (by default what a database INTEGER holds)."""
    if not low <= value <= high:
        raise InvalidInput(f"{option} {value} is out of range; give a whole number {low}-{high}")
    return value


def today(rt: Runtime, now: datetime) -> date:
    """The date of `now` in the configured zone."""
    return now.astimezone(rt.settings.zone()).date()


def default_actor() -> str:
    """Who acts when no --by is given: the operating system user."""
    try:
        return f"{getpass.getuser()}@cli"
    except (KeyError, OSError):
        return "unknown@cli"


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
    return "".join(
        repr(ch)[1:-1] if unicodedata.category(ch) in {"Cc", "Zl", "Zp"} else ch for ch in text
    )


def fail(exc: BridgeError) -> None:
    """One clear line on stderr (plus each problem of an invalid file), exit 1."""
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    problems = exc.problems if isinstance(exc, InvalidInput) else []
    if len(problems) > 1:
        for line in problems:
            err.print(f"  {one_line(line)}", markup=False)
    err.print(f"error: {one_line(str(exc))}", markup=False)
    raise SystemExit(1)
