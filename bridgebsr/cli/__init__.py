"""The `bridgebsr` command line: typer commands over the use cases, one clear line on errors."""

import logging
from typing import Annotated

import typer
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from bridgebsr.cli._common import (
    DAILY,
    REPORTS,
    SERVER,
    SETUP,
    AsOf,
    fail,
    parse_when,
    runtime,
    say,
    shown_url,
    today,
)
from bridgebsr.cli.bulk import import_cases
from bridgebsr.cli.cases import LIST_COLUMNS, case_app, gate_app, milestone_app
from bridgebsr.cli.directory import contacts_app, partners_app
from bridgebsr.cli.doctor import doctor
from bridgebsr.cli.exchange import ical
from bridgebsr.cli.items import add_milestone, agenda, remove_milestone
from bridgebsr.cli.measurements import list_measurements, measure
from bridgebsr.cli.monitor import monitor
from bridgebsr.cli.notices import notifications_app
from bridgebsr.cli.orchestration import automations_app, up
from bridgebsr.cli.plan import edit, rebaseline, reschedule
from bridgebsr.cli.report import report
from bridgebsr.cli.requests import ask_date, requests_app
from bridgebsr.cli.stored import reports_app
from bridgebsr.cli.team import case_reassign, case_team, contacts_retire, milestone_reassign
from bridgebsr.cli.templates import templates_app
from bridgebsr.cli.upgrade import migrate as migrate_cases
from bridgebsr.cli.web import web
from bridgebsr.errors import BridgeError, DiskFull, means_disk_full
from bridgebsr.settings import SECRET_FILE, Settings
from bridgebsr.store import migrate

app = typer.Typer(
    help="bridgebsr: the Bridge-BSR pilots as tracked cases.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Case store schema.", no_args_is_help=True)


def _version(shown: bool) -> None:
    """`--version`: the installed package's version, then stop."""
    if shown:
        from importlib.metadata import version

        say(f"bridgebsr {version('bridgebsr')}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Show the version and exit.", callback=_version, is_eager=True
        ),
    ] = False,
) -> None:
    """bridgebsr: the Bridge-BSR pilots as tracked cases."""


@app.command(rich_help_panel=SETUP)
def init() -> None:
    """Create the case store or bring it to the current schema (safe to repeat)."""
    rt = runtime(ready=False)
    rev = migrate.upgrade(rt.engine)
    say(f"case store ready at schema {rev}: {shown_url(rt.settings.resolved_database_url())}")
    if rt.settings.secret_key is None:
        rt.settings.signing_key()  # made once, mode 0600, never replaced
        say(f"link signing key: {rt.settings.home.resolve() / SECRET_FILE}")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply pending schema migrations."""
    rt = runtime(ready=False)
    say(f"schema now at {migrate.upgrade(rt.engine)}")


@db_app.command("current")
def db_current() -> None:
    """Show the schema revision of the case store and the newest this code knows."""
    rt = runtime(ready=False)
    say(f"current {migrate.current(rt.engine) or 'none'}, head {migrate.head()}")


@app.command(rich_help_panel=SETUP)
def demo(as_of: AsOf = None) -> None:
    """Load the consortium and a demo portfolio, run one monitor pass, print the portfolio."""
    from bridgebsr import demo as demo_data
    from bridgebsr.cli._common import emit_table
    from bridgebsr.cli.monitor import print_report
    from bridgebsr.monitor.sweep import run_monitor
    from bridgebsr.office import queries
    from bridgebsr.store.db import read_session

    rt = runtime(ready=False)
    migrate.upgrade(rt.engine)
    now = parse_when(as_of, rt)
    day = today(rt, now)
    keys = demo_data.load_demo(rt, day)
    say(f"demo: opened {len(keys)} case(s)" if keys else "demo: cases already loaded")
    print_report(run_monitor(rt.engine, now=now, zone=rt.settings.timezone, channels=rt.channels()))
    with read_session(rt.engine) as session:
        rows = queries.list_cases(session=session, today=day)
        late = {r["key"] for r in queries.list_cases(session=session, today=day, overdue=True)}
    for row in rows:
        row["late"] = "LATE" if row["key"] in late else ""
    emit_table(f"Portfolio as of {day}", rows, (*LIST_COLUMNS[:-1], "late", "title"))


# Every top-level command sits in one panel of `bridgebsr --help`: SETUP (store, directory,
# templates, checks), DAILY, REPORTS or SERVER; the panels show in the order first used here.
case_app.command("import")(import_cases)
case_app.command("rebaseline")(rebaseline)
case_app.command("edit")(edit)
case_app.command("migrate")(migrate_cases)
milestone_app.command("reschedule")(reschedule)
case_app.command("team")(case_team)
case_app.command("reassign")(case_reassign)
case_app.command("measure")(measure)
case_app.command("measurements")(list_measurements)
milestone_app.command("reassign")(milestone_reassign)
contacts_app.command("retire")(contacts_retire)
milestone_app.command("add")(add_milestone)
milestone_app.command("remove")(remove_milestone)
milestone_app.command("ask-date")(ask_date)
app.add_typer(db_app, name="db", rich_help_panel=SETUP)
app.add_typer(templates_app, name="templates", rich_help_panel=SETUP)
app.add_typer(partners_app, name="partners", rich_help_panel=SETUP)
app.add_typer(contacts_app, name="contacts", rich_help_panel=SETUP)
app.command(rich_help_panel=SETUP)(doctor)
app.add_typer(case_app, name="case", rich_help_panel=DAILY)
app.add_typer(milestone_app, name="milestone", rich_help_panel=DAILY)
app.add_typer(gate_app, name="gate", rich_help_panel=DAILY)
app.add_typer(requests_app, name="requests", rich_help_panel=DAILY)
app.command(rich_help_panel=DAILY)(agenda)
app.command(rich_help_panel=DAILY)(monitor)
app.add_typer(notifications_app, name="notifications", rich_help_panel=DAILY)
app.command(rich_help_panel=REPORTS)(report)
app.add_typer(reports_app, name="reports", rich_help_panel=REPORTS)
app.command(rich_help_panel=REPORTS)(ical)
app.command(rich_help_panel=SERVER)(up)
app.command(rich_help_panel=SERVER)(web)
app.add_typer(automations_app, name="automations", rich_help_panel=SERVER)


def main() -> None:
    """Entry point: run the app; user errors become one line on stderr and exit 1."""
    # A lost connection is told as our own one line (`store_trouble`); the PostgreSQL driver's
    # warning that it ignored the same error while ending its pipeline would come before it.
    logging.getLogger("psycopg").addHandler(logging.NullHandler())
    try:
        app()
    except BridgeError as exc:
        fail(exc)
    except OperationalError as exc:
        fail(store_trouble(exc))


def store_trouble(exc: OperationalError) -> BridgeError:
    """What a database error tells the user: the disk is full, or the store is unusable."""
    reason = " ".join(str(exc.orig).split())  # drivers may explain over several lines
    if means_disk_full(reason):
        return DiskFull(_store_location())
    return BridgeError(f"cannot use the case store: {reason}; check BRIDGEBSR_DATABASE_URL")


def _store_location() -> str:
    """Where the case store keeps its data: the SQLite file, or the server's URL."""
    url = Settings().resolved_database_url()
    return (url.startswith("sqlite") and make_url(url).database) or shown_url(url)
