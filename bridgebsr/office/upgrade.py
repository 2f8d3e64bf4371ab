"""Upgrading running cases to a newer version of their template (`case migrate`).

One case or every running case of a kind, in one transaction: each case is read and locked
(`store.load_case`), planned (`rules.upgrade.plan_upgrade`), and, unless it is a dry run or
any case refuses, changed (`rules.upgrade.apply`: reforecast through `rules.progress.settle`),
re-pinned (`store.writer.pin_templates`) and written (`store.upgrade.write_shape`, then
`store.save_case`) with its `plan_changes` rows and one `case.migrate` audit event. Queued
notices of removed items and of ladder steps the new version drops are suppressed; those of
renamed items, and their evidence, date requests and plan changes, take the new key.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from bridgebsr.errors import IllegalTransition, InvalidInput, NotFound
from bridgebsr.exchange.catalog import Catalog, checksum
from bridgebsr.office.progress import Actor
from bridgebsr.rules import upgrade as rules
from bridgebsr.rules.people import Directory
from bridgebsr.rules.rows import MilestoneRow
from bridgebsr.store import case_rows as store
from bridgebsr.store import migrate, requests, writer
from bridgebsr.store import upgrade as shape
from bridgebsr.store.db import read_session
from bridgebsr.store.people import load_directory
from bridgebsr.store.team import load_teams
from models import CASE_OWNER, Case, NotificationStatus, Template
from notifications.enqueue import renamed_key, renamed_post_key

MIGRATE = "migrate"  # the `why` of the plan changes an upgrade makes
SHOWN = 20  # refusals a message names (a kind's thousands of cases stay one readable line)


@dataclass(frozen=True)
class Migrated:
    """The plans of the cases upgraded (or that would be, in a dry run)."""

    plans: list[rules.Upgrade]
    dry_run: bool

    def totals(self) -> dict[str, int]:
        """Cases and items added, removed and renamed, over all plans."""
        return {
            "cases": len(self.plans),
            "added": sum(len(p.added) for p in self.plans),
            "removed": sum(len(p.removed) for p in self.plans),
            "renamed": sum(len(p.renamed) for p in self.plans),
        }


def target_template(session: Session, catalog: Catalog, kind: str, version: int) -> Template:
    """Version `version` of a pilot kind: the catalog's, else one pinned in the store."""
    newest = catalog.get(kind)
    if newest.version == version:
        return newest
    pinned = {t.version: t for t in shape.pinned_versions(session, kind)}
    if version in pinned:
        return pinned[version]
    known = sorted({*pinned, newest.version})
    raise NotFound(
        f"no {kind} version {version} (known: {', '.join(map(str, known))}); "
        "put the template file in BRIDGEBSR_TEMPLATE_DIRS"
    )


def migrate_case(
    *,
    session: Session,
    catalog: Catalog,
    case_key: str,
    to_version: int,
    actor: Actor,
    now: datetime,
    dry_run: bool = False,
    expected_version: int | None = None,
) -> Migrated:
    """Upgrade one case to `to_version` of its template (refused with the first reason its
    plan gives); a dry run plans it and writes nothing."""
    loaded = store.load_case(session, case_key)
    store.check_version(loaded.case, expected_version)
    new = target_template(session, catalog, loaded.case.kind, to_version)
    return _run(session, [loaded], new, actor, now, dry_run)


def migrate_kind(
    *,
    session: Session,
    catalog: Catalog,
    kind: str,
    to_version: int,
    actor: Actor,
    now: datetime,
    dry_run: bool = False,
) -> Migrated:
    """Upgrade every running case of `kind` below `to_version`, all or none: refused with
    every case that cannot migrate and why."""
    new = target_template(session, catalog, kind, to_version)
    keys = session.exec(
        select(Case.key)
        .where(
            Case.kind == new.kind,
            col(Case.status).in_(list(rules.RUNNING)),
            Case.template_version < new.version,
        )
        .order_by(col(Case.id))
    ).all()
    loaded = [store.load_case(session, key) for key in keys]
    return _run(session, loaded, new, actor, now, dry_run)


def _run(
    session: Session,
    cases: Sequence[store.Loaded],
    new: Template,
    actor: Actor,
    now: datetime,
    dry_run: bool,
) -> Migrated:
    plans = [rules.plan_upgrade(c.template, new, c.plan) for c in cases]
    for loaded, up in zip(cases, plans, strict=True):
        _waiting_requests(loaded, up)
    refused = [reason for p in plans for reason in p.refusals]
    if refused:
        session.rollback()
        many = f"{len({p.case for p in plans if p.refusals})} case(s) cannot migrate: "
        more = f"; and {len(refused) - SHOWN} more" if len(refused) > SHOWN else ""
        raise IllegalTransition(
            (many if len(cases) > 1 else "") + "; ".join(refused[:SHOWN]) + more
        )
    if dry_run:
        session.rollback()
        return Migrated(plans, True)
    if cases:
        writer.pin_templates(cases[0].conn, [(new, checksum(new))])
    directories: dict[int, Directory] = {}
    for loaded, up in zip(cases, plans, strict=True):
        _apply(loaded, up, new, actor, now, directories)
    session.commit()
    return Migrated(plans, False)


def _apply(
    loaded: store.Loaded,
    up: rules.Upgrade,
    new: Template,
    actor: Actor,
    now: datetime,
    directories: dict[int, Directory],
) -> None:
    case, conn = loaded.case, loaded.conn
    today = store.local_date(now, loaded.timezone)
    gates_before = list(loaded.plan.gates)
    owners = _owners(loaded, rules.owner_roles(up, new), directories)
    changes, moved = rules.apply(up, loaded.plan, new, owners, today)
    shape.write_shape(loaded, gates_before)
    store.save_case(loaded, now=now, expected_version=None)
    by_key = {n.key: n for n in loaded.plan.nodes()}
    added = [by_key[k] for k in up.added]
    store.record_plan_changes(
        conn,
        [
            {
                "case_id": case.id,
                "item_kind": "milestone" if isinstance(n, MilestoneRow) else "gate",
                "item_key": n.key,
                "at": now,
                "start": n.planned_start,
                "due": n.planned_due,
                "why": MIGRATE,
                "baseline": None,
            }
            for n in [*added, *(m.node for m in moved)]
        ],
    )
    for key in up.removed:
        store.suppress_notices(
            conn, case.id, key, f"{key} was removed by template version {new.version}"
        )
    steps = up.ladder.get("removed", [])
    shape.suppress_steps(conn, case.id, steps, f"ladder step gone in version {new.version}")
    _rename(conn, case.id, case.key, up.renamed)
    store.record(
        conn,
        case.id,
        changes,
        actor=actor.email,
        now=now,
        source=actor.source,
        source_ref=actor.source_ref,
        comment=actor.comment,
    )


def _waiting_requests(loaded: store.Loaded, up: rules.Upgrade) -> None:
    """A removed item's date request still waiting for an answer refuses the plan."""
    for key, what in up.removed.items():
        if what == "milestone" and requests.waiting_for_item(loaded.conn, loaded.case.id, key):
            up.refusals.append(
                f"{up.case}: milestone {key} has a date request waiting and version {up.new} "
                "drops it; answer the request first"
            )


def _owners(
    loaded: store.Loaded, roles: set[str], directories: dict[int, Directory]
) -> dict[str, int | None]:
    """Who holds each role for this case (its team first, as a case opens), with their
    calendars added to the case's plan; the directory is read once per run."""
    case = loaded.case
    found: dict[str, int | None] = {CASE_OWNER: case.owner_id}
    wanted = roles - {CASE_OWNER}
    if not wanted:
        return found
    if not directories:
        directories[0] = load_directory(loaded.conn)
    directory = directories[0]
    team = load_teams(loaded.conn, [case.id]).get(case.id)
    for role in sorted(wanted):
        holders = directory.role_holders(role, case.lead_partner_id, case.kind, team)
        found[role] = holders[0].id if holders else None
        if holders:
            loaded.plan.calendars.setdefault(holders[0].id, holders[0].calendar)
    return found


_WAITING = {NotificationStatus.PENDING, NotificationStatus.HELD}


def _rename(conn: Any, case_id: int, case_key: str, renamed: dict[str, str]) -> None:
    """Renamed items' outbox rows and team channel posts take the new key (their dedupe key
    too, so a step sent or posted is not sent again; the payload of one still waiting names
    the item as it is now), and so do their evidence, date requests and plan changes."""
    if not renamed:
        return
    changes = []
    for old, new in renamed.items():
        for row_id, key, status, payload in shape.item_notices(conn, case_id, old):
            text = dict(payload)
            if NotificationStatus(status) in _WAITING and text.get("item") == old:
                text["item"] = new
            changes.append(
                {
                    "row_id": row_id,
                    "subject": new,
                    "dedupe_key": renamed_key(key, case_key, old, new),
                    "payload": text,
                }
            )
    shape.rekey_notices(conn, changes)
    posts = []
    for row_id, key, status, payload in shape.case_posts(conn, case_id):
        for old, new in renamed.items():
            if (moved := renamed_post_key(key, case_key, old, new)) == key:
                continue
            text = dict(payload)
            if NotificationStatus(status) in _WAITING and text.get("item") == old:
                text["item"] = new
            posts.append({"row_id": row_id, "dedupe_key": moved, "payload": text})
            break
    shape.rekey_posts(conn, posts)
    shape.rekey_facts(conn, case_id, renamed)


def check_renames(*, engine: Engine, template: Template) -> bool:
    """Refuse a template whose `was:` names no item of an earlier version pinned in the case
    store (`rules.upgrade.rename_problems`); False when there is no store to ask (nothing
    checked), or nothing to check."""
    if not any(n.was for n in template.nodes()) or migrate.current(engine) != migrate.head():
        return False
    with read_session(engine) as session:
        problems = rules.rename_problems(template, shape.pinned_versions(session, template.kind))
    if problems:
        raise InvalidInput(f"{len(problems)} problem(s); first: {problems[0]}", problems)
    return True
