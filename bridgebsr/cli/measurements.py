"""`bridgebsr case measure` and `case measurements`: a case's indicator values by region."""

from pathlib import Path
from typing import Annotated

import typer

from bridgebsr.cli._common import (
    JSON_OPTION,
    AsOf,
    By,
    emit_json,
    emit_table,
    parse_when,
    runtime,
    say,
    today,
    who,
)
from bridgebsr.errors import InvalidInput
from bridgebsr.exchange.sheets import read_sheet
from bridgebsr.office import measurements
from bridgebsr.store.db import read_session, write_session

_ONE = ("--indicator", "--region", "--value")


def measure(
    key: str,
    indicator: Annotated[
        str | None, typer.Option("--indicator", help="The indicator's key (`templates show`).")
    ] = None,
    region: Annotated[str | None, typer.Option("--region", help="The region measured.")] = None,
    value: Annotated[str | None, typer.Option("--value", help="The value (a number).")] = None,
    on: Annotated[
        str | None, typer.Option("--on", help="The day measured (ISO date; default today).")
    ] = None,
    note: Annotated[str, typer.Option("--note", help="Where the value comes from.")] = "",
    from_: Annotated[
        Path | None,
        typer.Option(
            "--from", help="A .csv or .xlsx sheet: columns indicator, region, on, value, note."
        ),
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Replace a value already recorded for that day.")
    ] = False,
    by: By = None,
    as_of: AsOf = None,
) -> None:
    """Record an indicator value of a case for a region and day, or a sheet of them (all or
    none)."""
    given = {"--indicator": indicator, "--region": region, "--value": value}
    rt = runtime()
    actor = who(rt, by)
    now = parse_when(as_of, rt)
    with write_session(rt.engine) as session:
        if from_ is not None:
            if any(v is not None for v in given.values()) or on is not None or note:
                raise InvalidInput("give either --from FILE or one value's options, not both")
            done = measurements.record_sheet(
                session=session,
                key=key,
                sheet=read_sheet(from_),
                label=from_.name,
                actor=actor.email,
                now=now,
                replace=replace,
            )
        else:
            if missing := [o for o in _ONE if given[o] is None]:
                raise InvalidInput(
                    f"give {', '.join(missing)} (or --from FILE): "
                    "case measure KEY --indicator I --region R --value V --on YYYY-MM-DD"
                )
            one = {"indicator": indicator, "region": region, "value": value, "note": note}
            one["on"] = on if on is not None else today(rt, now).isoformat()
            done = measurements.record(
                session=session,
                key=key,
                given=[{k: str(v) for k, v in one.items()}],
                actor=actor.email,
                now=now,
                replace=replace,
            )
    say(f"{done.key}: {done.added} value(s) recorded, {done.replaced} replaced")
    actor.tell()


def list_measurements(key: str, as_json: bool = JSON_OPTION) -> None:
    """List a case's indicator values by indicator, region and day."""
    rt = runtime()
    with read_session(rt.engine) as session:
        found = measurements.listing(session, key)
    if as_json:
        emit_json(found)
        return
    found = [{**row, "value": f"{row['value']:g}"} for row in found]
    columns = ("indicator", "region", "on", "value", "unit", "note", "recorded_by")
    emit_table(f"{key.strip().upper()}: indicator values", found, columns)
