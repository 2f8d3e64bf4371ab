"""`case migrate`: upgrade running cases to a newer version of their template."""

from typing import Annotated, Any

import typer

from bridgebsr.cli._common import (
    JSON_OPTION,
    AsOf,
    By,
    IfVersion,
    bounded,
    emit_json,
    expected_version,
    parse_when,
    runtime,
    say,
    who,
)
from bridgebsr.cli.orchestration import sync_case_runs
from bridgebsr.errors import InvalidInput
from bridgebsr.office import upgrade
from bridgebsr.office.progress import Actor
from bridgebsr.rules.upgrade import Upgrade
from bridgebsr.store.db import write_session


def migrate(
    to_version: Annotated[
        int, typer.Option("--to-version", help="The template version to upgrade to.")
    ],
    key: Annotated[str | None, typer.Argument(help="The case (or --kind K --all).")] = None,
    kind: Annotated[
        str | None, typer.Option("--kind", help="Every running case of a kind.")
    ] = None,
    every: Annotated[bool, typer.Option("--all", help="With --kind: all or none.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan; write nothing.")
    ] = False,
    by: By = None,
    as_of: AsOf = None,
    if_version: IfVersion = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Upgrade a running case (or every running case of a kind) to a newer template version:
    items added, removed, renamed, moved, retimed; all or nothing, with an audit event."""
    if (key is None) == (kind is None) or (kind is not None and not every):
        raise InvalidInput("give a case KEY, or --kind KIND --all for every running case of it")
    if kind is not None and if_version is not None:
        raise InvalidInput("--if-version is one case's version; give it with a case KEY")
    version = bounded(to_version, "--to-version", 1)
    rt = runtime()
    actor = who(rt, by)
    now = parse_when(as_of, rt)
    with write_session(rt.engine) as session:
        common: dict[str, Any] = {
            "session": session,
            "catalog": rt.catalog,
            "to_version": version,
            "actor": Actor(actor.email),
            "now": now,
            "dry_run": dry_run,
        }
        if kind is not None:
            done = upgrade.migrate_kind(kind=kind, **common)
        else:
            assert key is not None
            common["expected_version"] = expected_version(if_version)
            done = upgrade.migrate_case(case_key=key, **common)
    if not dry_run:
        for plan in done.plans:  # gate runs of renamed or added gates, the case pages
            sync_case_runs(rt, plan.case)
    if as_json:
        emit_json({"dry_run": dry_run, **done.totals(), "plans": [p.summary() for p in done.plans]})
        return
    for plan in done.plans:
        for line in plan_lines(plan):
            say(line)
    t = done.totals()
    verb = "would migrate" if dry_run else "migrated"
    say(
        f"{verb} {t['cases']} case(s) to version {version}: {t['added']} item(s) added, "
        f"{t['removed']} removed, {t['renamed']} renamed"
    )
    if not dry_run:
        actor.tell()


def plan_lines(plan: Upgrade) -> list[str]:
    """A plan as lines a person reads."""
    lines = [f"{plan.case}: version {plan.old} -> {plan.new}"]
    lines += [f"  add {what} {key}" for key, what in plan.added.items()]
    lines += [f"  remove {what} {key} (not started)" for key, what in plan.removed.items()]
    lines += [f"  rename {old} -> {new}" for old, new in plan.renamed.items()]
    lines += [f"  move {key}: stage {a} -> {b}" for key, (a, b) in plan.moved.items()]
    for key, diff in plan.retimed.items():
        said = ", ".join(f"{name} {a} -> {b}" for name, (a, b) in diff.items())
        lines.append(f"  change {key} (not started): {said}")
    lines += [f"  new field {name} (no value yet)" for name in plan.fields]
    lines += [f"  field {name}: value kept, no longer declared" for name in plan.kept_fields]
    steps = plan.ladder
    if steps.get("added") or steps.get("removed"):
        lines.append(
            f"  ladder from now on: +{', +'.join(steps['added']) or '-'} "
            f"-{', -'.join(steps['removed']) or '-'}"
        )
    return lines
