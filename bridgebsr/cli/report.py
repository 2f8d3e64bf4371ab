"""`bridgebsr report`: the portfolio KPIs as CSV, XLSX or one HTML page."""

from pathlib import Path
from typing import Annotated

import typer

from bridgebsr.cli._common import AsOf, parse_when, runtime, say
from bridgebsr.errors import InvalidInput


def report(
    fmt: Annotated[str, typer.Option("--format", help="csv (a folder), xlsx or html.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write (a folder for csv).")],
    as_of: AsOf = None,
    partner: Annotated[
        str | None, typer.Option("--partner", help="Only the cases this partner leads.")
    ] = None,
) -> None:
    """Write the portfolio report: case counts, on-time milestones, slips, overdue, stage and
    gate times, SLA breaches, the SME service and the forecast."""
    from bridgebsr.reports import portfolio as portfolio  # pandas and matplotlib load only here

    kind = fmt.strip().lower()
    if kind not in portfolio.FORMATS:
        raise InvalidInput(f"--format '{fmt}' is not one of: {', '.join(portfolio.FORMATS)}")
    rt = runtime()
    day = parse_when(as_of, rt).astimezone(rt.settings.zone()).date()
    built = portfolio.build(rt.engine, as_of=day, partner=partner)
    written = portfolio.write(built, kind, out)
    say(
        f"wrote the {kind} report for {built.scope} as of {day} "
        f"({len(built.views)} views) to {out if kind == 'csv' else written[0]}"
    )
