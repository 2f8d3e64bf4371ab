"""`bridgebsr templates` commands: list, show and validate lifecycle templates."""

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from bridgebsr.cli._common import (
    JSON_OPTION,
    console,
    emit_json,
    emit_table,
    pilot_kinds,
    runtime,
    say,
)
from bridgebsr.exchange.catalog import load_template
from bridgebsr.office import upgrade
from models import GateSpec, MilestoneSpec, Template

templates_app = typer.Typer(
    help="List, show and validate lifecycle templates.", no_args_is_help=True
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
def show_template(
    kind: Annotated[str, typer.Argument(help="The pilot kind.", autocompletion=pilot_kinds)],
    as_json: bool = JSON_OPTION,
) -> None:
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
    where = {f.key: "case" for f in t.fields}
    for m in t.milestones:
        for c in m.capture:
            where[c.key] = ", ".join(filter(None, (where.get(c.key), f"captured at {m.key}")))
    fields = [
        {**f.model_dump(mode="json"), "where": where.get(f.key, ""), "label": f.title(),
         "allowed": ", ".join(f.choices) or _bounds(f.min, f.max)}
        for f in t.field_specs().values()
    ]  # fmt: skip
    if fields:
        emit_table("Fields", fields, ("key", "kind", "label", "required", "allowed", "where"))
    if t.indicators:  # what `case measure --indicator` takes
        rows = [i.model_dump(mode="json") for i in t.indicators]
        emit_table("Indicators", rows, ("key", "label", "unit", "direction", "target"))


def _bounds(low: object, high: object) -> str:
    if low is not None and high is not None:
        return f"{low} to {high}"
    return f"at least {low}" if low is not None else f"at most {high}" if high is not None else ""


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
    """Check a template file; names every problem with its line (and, with a case store,
    that each `was:` names an item of an earlier version)."""
    t = load_template(path)
    renames = any(n.was for n in t.nodes()) and upgrade.check_renames(
        engine=runtime(ready=False).engine, template=t
    )
    say(
        f"{path}: ok ({t.kind} v{t.version}: {len(t.stages)} stages, "
        f"{len(t.milestones)} milestones, {len(t.gates)} gates"
        + ("; renames checked against earlier versions)" if renames else ")")
    )
