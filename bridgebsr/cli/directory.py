"""`bridgebsr partners`, `contacts` and `templates` commands."""

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from bridgebsr.cli._common import JSON_OPTION, console, emit_json, emit_table, runtime, say
from bridgebsr.errors import InvalidInput
from bridgebsr.exchange.catalog import load_template
from bridgebsr.office import directory
from bridgebsr.store.db import read_session, write_session
from models import GateSpec, MilestoneSpec, Template

partners_app = typer.Typer(help="Import and list partner organisations.", no_args_is_help=True)
contacts_app = typer.Typer(help="Import and list contacts.", no_args_is_help=True)
templates_app = typer.Typer(
    help="List, show and validate lifecycle templates.", no_args_is_help=True
)

DryRun = Annotated[bool, typer.Option("--dry-run", help="Report what would change; write nothing.")]
FileArg = Annotated[Path, typer.Argument(help="A .csv (comma or semicolon) or .xlsx file.")]


@partners_app.command("import")
def import_partners(file: FileArg, dry_run: DryRun = False) -> None:
    """Create or update partners from FILE (code, name, kind, country, region, timezone)."""
    rt = runtime()
    with write_session(rt.engine) as session:
        report = directory.import_partners(session=session, path=file, dry_run=dry_run)
    _print_report(report)


@contacts_app.command("import")
def import_contacts(file: FileArg, dry_run: DryRun = False) -> None:
    """Create or update contacts from FILE (email, name, partner, role, country; optional
    timezone, channels, delivery, quiet_hours, daily_cap, leads: the pilot kinds they lead)."""
    rt = runtime()
    with write_session(rt.engine) as session:
        report = directory.import_contacts(
            session=session,
            path=file,
            roles=rt.catalog.roles(),
            kinds=set(rt.catalog.templates),
            dry_run=dry_run,
        )
    _print_report(report)


def _print_report(report: directory.ImportReport) -> None:
    say(report.summary())
    for key in report.created:
        say(f"  + {key}")
    for key in report.updated:
        say(f"  ~ {key}")


@partners_app.command("list")
def list_partners(as_json: bool = JSON_OPTION) -> None:
    """List partners."""
    rt = runtime()
    with read_session(rt.engine) as session:
        rows = directory.list_partners(session=session)
    if as_json:
        emit_json(rows)
    else:
        emit_table(
            f"{len(rows)} partner(s)",
            rows,
            ("code", "name", "kind", "country", "region", "timezone"),
        )


@contacts_app.command("list")
def list_contacts(as_json: bool = JSON_OPTION) -> None:
    """List contacts."""
    rt = runtime()
    with read_session(rt.engine) as session:
        rows = directory.list_contacts(session=session)
    if as_json:
        emit_json(rows)
    else:
        emit_table(
            f"{len(rows)} contact(s)",
            rows,
            ("email", "name", "partner", "role", "country", "timezone"),
        )


@templates_app.command("list")
def list_templates(as_json: bool = JSON_OPTION) -> None:
    """List the pilot kinds: shipped ones and those in BRIDGEBSR_TEMPLATE_DIRS."""
    rt = runtime(ready=False)
    cat = rt.catalog
    rows = [
        {
            "kind": t.kind,
            "version": t.version,
            "title": t.title,
            "prefix": t.key_prefix,
            "stages": len(t.stages),
            "milestones": len(t.milestones),
            "gates": len(t.gates),
            "path": str(cat.paths[t.kind]),
        }
        for t in sorted(cat.templates.values(), key=lambda t: t.kind)
    ]
    if as_json:
        emit_json(rows)
    else:
        emit_table(
            "Pilot kinds",
            rows,
            ("kind", "version", "prefix", "stages", "milestones", "gates", "title"),
        )


@templates_app.command("show")
def show_template(kind: str, as_json: bool = JSON_OPTION) -> None:
    """Show a pilot kind's stages, milestones, gates, durations and dependencies."""
    t = runtime(ready=False).catalog.get(kind)
    if as_json:
        emit_json(t.model_dump(mode="json"))
        return
    console.print(
        f"[bold]{t.kind}[/bold] v{t.version} ({t.key_prefix}) {escape(t.title)}", markup=True
    )
    rows = [_node_row(t, n) for n in sorted(t.nodes(), key=lambda n: t.stage_index(n.stage))]
    emit_table(
        "Stages, milestones and gates",
        rows,
        ("stage", "key", "what", "days", "after", "who", "title"),
    )


def _node_row(t: Template, n: MilestoneSpec | GateSpec) -> dict[str, str]:
    if isinstance(n, GateSpec):
        what, length, who = "gate", n.deadline, f"{n.approvers.required}x {n.approvers.role}"
    else:
        what, length, who = "milestone", n.duration, n.owner
    return {
        "stage": n.stage,
        "key": n.key,
        "what": what,
        "days": f"{length} {t.day_kind(n).value}",
        "after": ", ".join(f"{d.key}+{d.lag}" if d.lag else d.key for d in n.after),
        "who": who,
        "title": n.title,
    }


@templates_app.command("validate")
def validate(path: Annotated[Path, typer.Argument(help="A template YAML file.")]) -> None:
    """Check a template file; names every problem with its line."""
    t = load_template(path)
    say(
        f"{path}: ok ({t.kind} v{t.version}: {len(t.stages)} stages, "
        f"{len(t.milestones)} milestones, {len(t.gates)} gates)"
    )


def _option(flag: str, parse: Callable[[str], Any], value: str) -> Any:
    try:
        return parse(value)
    except ValueError as exc:
        raise InvalidInput(f"{flag}: {exc}") from None


@contacts_app.command("prefs")
def contact_preferences(
    email: Annotated[str, typer.Argument(help="The contact's email address.")],
    channels: Annotated[
        str | None, typer.Option(help="Where notices may go: email, chat or 'email,chat'.")
    ] = None,
    digest: Annotated[
        bool | None,
        typer.Option(
            "--digest/--immediate",
            help="Gather what is not urgent into one message a day, or send each at once.",
        ),
    ] = None,
    quiet: Annotated[
        str | None, typer.Option(help="Quiet hours in the contact's zone: 21:00-07:00 or none.")
    ] = None,
    cap: Annotated[
        str | None, typer.Option(help="Messages a day at most, then one summary (0: no cap).")
    ] = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Show a contact's notification preferences, or change them with the options."""
    changes: dict[str, Any] = {}
    if channels is not None:
        changes["channels"] = _option("--channels", directory.parse_channels, channels)
    if digest is not None:
        changes["digest"] = digest
    if quiet is not None:
        hours = _option("--quiet", directory.parse_quiet_hours, quiet)
        changes["quiet_from"], changes["quiet_until"] = hours or (None, None)
    if cap is not None:
        changes["daily_cap"] = _option("--cap", directory.parse_daily_cap, cap)
    rt = runtime()
    with write_session(rt.engine) as session:
        prefs = directory.set_preferences(session=session, email=email, changes=changes)
    if as_json:
        emit_json(prefs)
    else:
        for name, value in prefs.items():
            say(f"{name:12} {value}")
