"""`bridgebsr case import`: open many cases, with their milestone progress, from CSV or XLSX."""

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from bridgebsr.cli._common import AsOf, fail, parse_when, runtime, say
from bridgebsr.errors import BridgeError
from bridgebsr.store.db import write_session

BAR_FROM = 500  # cases from which a progress bar is shown


def import_cases(
    cases: Annotated[
        Path,
        typer.Argument(
            help="The cases: a .csv file (ref, kind, title, owner, start; optional partner, "
            "target), or an .xlsx workbook with sheets `cases` and `progress`."
        ),
    ],
    progress: Annotated[
        Path | None,
        typer.Option(
            "--progress",
            help="Milestone progress: case (a ref), milestone, status (in_progress, done, "
            "waived); optional started_on, finished_on, by.",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and report what would be created.")
    ] = False,
    as_of: AsOf = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar; print the summary only.")
    ] = False,
) -> None:
    """Open cases in bulk from CASES, all rows or none; rows imported before stay unchanged."""
    from bridgebsr.office import bulk  # loads only for this command: every other one starts fast

    try:
        rt = runtime()
        try:
            now = parse_when(as_of, rt)
            with _bar(quiet) as tick, write_session(rt.engine) as session:
                report = bulk.import_cases(
                    session=session,
                    catalog=rt.catalog,
                    cases=cases,
                    progress=progress,
                    now=now,
                    dry_run=dry_run,
                    on_progress=tick,
                )
        finally:
            rt.engine.dispose()
    except BridgeError as exc:  # one clear line, however the command is mounted
        fail(exc)
        return
    say(report.summary())
    if quiet:
        return
    for ref, key in report.created:
        say(f"  + {key}  {ref}")
    for ref, key in report.unchanged:
        say(f"  = {key}  {ref}")


@contextmanager
def _bar(quiet: bool) -> Iterator[Callable[[int, int], None] | None]:
    """On a terminal only: a spinner on stderr while the files are read and checked, then
    for files over BAR_FROM cases a progress bar."""
    err = Console(stderr=True)
    if quiet or not err.is_terminal:
        yield None
        return
    spinner = err.status("importing cases") if sys.stdout.isatty() else None
    if spinner:
        spinner.start()
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    bar = Progress(
        TextColumn("importing cases"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )
    task = None

    def tick(done: int, total: int) -> None:
        nonlocal task
        if total <= BAR_FROM:
            return
        if task is None:
            if spinner:
                spinner.stop()
            bar.start()
            task = bar.add_task("cases", total=total)
        bar.update(task, completed=done)

    try:
        yield tick
    finally:
        if spinner:
            spinner.stop()
        bar.stop()
