"""`bridgebsr report`: the portfolio KPIs as CSV, XLSX or one HTML page."""

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from bridgebsr.cli._common import AsOf, one_of, parse_when, runtime, say, working


class Format(StrEnum):
    """The report's formats (bridgebsr.reports.portfolio.FORMATS, which writes them; named
    here too so that `--help` and shell completion list them without loading pandas)."""

    CSV = "csv"
    XLSX = "xlsx"
    HTML = "html"


def report(
    fmt: Annotated[
        Format,
        typer.Option(
            "--format", help="The format; csv writes a folder.", parser=one_of("--format", Format)
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Where to write (a folder for csv).")],
    as_of: AsOf = None,
    partner: Annotated[
        str | None, typer.Option("--partner", help="Only the cases this partner leads.")
    ] = None,
) -> None:
    """Write the portfolio report: case counts, on-time milestones, slips, overdue, stage and
    gate times, SLA breaches, the SME service and the forecast."""
    rt = runtime()
    day = parse_when(as_of, rt).astimezone(rt.settings.zone()).date()
    with working(f"building the {fmt.value} report as of {day}"):
        from bridgebsr.reports import portfolio  # pandas and matplotlib load only here

        built = portfolio.build(rt.engine, as_of=day, partner=partner)
        written = portfolio.write(built, fmt.value, out)
    say(
        f"wrote the {fmt.value} report for {built.scope} as of {day} "
        f"({len(built.views)} views) to {out if fmt is Format.CSV else written[0]}"
    )
