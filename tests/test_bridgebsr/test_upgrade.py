"""`case migrate` on a SQLite file and on PostgreSQL: a case opened at version 1 of a shipped
template upgraded to version 2; renames, additions and new durations of a version in a
template folder; all or none for a kind; dry runs write nothing; refusals are one line."""

from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func, insert, select

from bridgebsr.bootstrap import Runtime
from bridgebsr.errors import IllegalTransition
from bridgebsr.exchange.catalog import Catalog
from bridgebsr.office import cases, upgrade
from bridgebsr.office.progress import Actor
from bridgebsr.store.db import read_session, write_session
from models import (
    Case,
    CaseEvent,
    ChannelPost,
    Contact,
    Milestone,
    Notification,
    NotificationStatus,
    PlanChange,
    Template,
    TemplateVersion,
)
from tests.conftest import at
from tests.test_bridgebsr.test_cli_input import cli, one_error_line, store_env

LEAD = "soren.ostergaard@scanbalt.example"
START = date(2026, 3, 2)


def _v1(t: Template) -> Template:
    """The shipped template as version 1 was: the same items, no typed fields."""
    bare = [m.model_copy(update={"capture": []}) for m in t.milestones]
    return t.model_copy(update={"version": 1, "fields": [], "milestones": bare})


def _open(rt: Runtime, template: Template, title: str = "A case") -> str:
    with write_session(rt.engine) as session:
        return cases.open_case(
            session=session,
            catalog=Catalog({template.kind: template}, {}),
            kind=template.kind,
            title=title,
            owner_email=LEAD,
            start=START,
            now=at(START.isoformat()),
        ).key


def _count(rt: Runtime, table: Any, *where: Any) -> int:
    with read_session(rt.engine) as session:
        return int(
            session.execute(select(func.count()).select_from(table).where(*where)).scalar_one()
        )


def _case(rt: Runtime, key: str) -> Case:
    with read_session(rt.engine) as session:
        return session.exec(select(Case).where(Case.key == key)).one()[0]


def test_v1_case_of_a_shipped_template_upgrades_to_v2(consortium: Runtime) -> None:
    rt = consortium
    shipped = rt.catalog.get("shared-sme-service")
    key = _open(rt, _v1(shipped))
    events = _count(rt, CaseEvent)
    with write_session(rt.engine) as session:
        dry = upgrade.migrate_case(
            session=session, catalog=rt.catalog, case_key=key, to_version=2,
            actor=Actor(LEAD), now=at("2026-03-10"), dry_run=True,
        )  # fmt: skip
    assert dry.plans[0].fields == ["sme_name", "sector", "service_type", "employees"]
    assert _case(rt, key).template_version == 1 and _count(rt, CaseEvent) == events
    assert _count(rt, TemplateVersion, TemplateVersion.version == 2) == 0
    with write_session(rt.engine) as session:
        done = upgrade.migrate_case(
            session=session, catalog=rt.catalog, case_key=key, to_version=2,
            actor=Actor(LEAD), now=at("2026-03-10"), expected_version=1,
        )  # fmt: skip
    assert done.totals() == {"cases": 1, "added": 0, "removed": 0, "renamed": 0}
    case = _case(rt, key)
    assert (case.template_version, case.version) == (2, 2)
    assert _count(rt, TemplateVersion, TemplateVersion.version == 2) == 1
    assert _count(rt, CaseEvent, CaseEvent.kind == "case.migrate") == 1
    other = _open(rt, _v1(shipped), "Another")
    with write_session(rt.engine) as session:
        rest = upgrade.migrate_kind(
            session=session, catalog=rt.catalog, kind=shipped.kind, to_version=2,
            actor=Actor(LEAD), now=at("2026-03-10"),
        )  # fmt: skip
    assert [p.case for p in rest.plans] == [other] and _case(rt, other).template_version == 2
    with pytest.raises(IllegalTransition, match="give a newer --to-version"):
        with write_session(rt.engine) as session:
            upgrade.migrate_case(
                session=session, catalog=rt.catalog, case_key=key, to_version=2,
                actor=Actor(LEAD), now=at("2026-03-10"),
            )  # fmt: skip


def _v3(v2: Template) -> dict[str, Any]:
    """Version 3 of ip-integration: bottleneck-report renamed, an IP survey added after the
    kick-off, the draft model given ten more days, regional workshops and the ladder's
    remind-10 step dropped."""
    data = v2.model_dump(mode="json", exclude_none=True) | {"version": 3}
    milestones = []
    for m in data["milestones"]:
        if m["key"] == "regional-workshops":
            continue
        if m["key"] == "bottleneck-report":
            m |= {"key": "ip-bottleneck-report", "was": "bottleneck-report"}
            m["after"] = [{"key": "bottleneck-desk-study", "lag": 0}]
        if m["key"] == "model-draft":
            m["duration"] = 60
        for d in m["after"]:
            if d["key"] == "bottleneck-report":
                d["key"] = "ip-bottleneck-report"
        milestones.append(m)
        if m["key"] == "kickoff":
            milestones.append(
                {"key": "ip-survey", "title": "IP survey of the regions", "stage": "scoping",
                 "owner": "ip-expert", "duration": 15, "after": ["kickoff"]}
            )  # fmt: skip
    ladder = [step for step in data["ladder"] if step["key"] != "remind-10"]
    return data | {"milestones": milestones, "ladder": ladder}


def _notice(rt: Runtime, case_key: str, item: str, rule: str = "due") -> None:
    with write_session(rt.engine) as session:
        case_id = session.exec(select(Case.id).where(Case.key == case_key)).one()[0]
        reader = session.exec(select(Contact.id).where(Contact.email == LEAD)).one()[0]
        session.execute(
            insert(Notification).values(
                dedupe_key=f"m:{case_key}/{item}/{rule}/{LEAD}", case_id=case_id, subject=item,
                rule=rule, recipient_id=reader, fire_on=START, created_at=at("2026-03-03"),
                payload={"item": item, "item_kind": "milestone"},
            )
        )  # fmt: skip
        session.commit()


def _post(rt: Runtime, case_key: str, item: str, rule: str = "due") -> None:
    """A team channel's post of the item's `rule` step, waiting."""
    with write_session(rt.engine) as session:
        case_id = session.exec(select(Case.id).where(Case.key == case_key)).one()[0]
        session.execute(
            insert(ChannelPost).values(
                dedupe_key=f"ip-integration|m:{case_key}/{item}/{rule}", channel="ip-integration",
                case_id=case_id, rule=rule, fire_on=START, created_at=at("2026-03-03"),
                payload={"item": item, "item_kind": "milestone"},
            )
        )  # fmt: skip
        session.commit()


def test_kind_all_upgrades_every_running_case_or_none(consortium: Runtime, tmp_path: Path) -> None:
    rt = consortium
    shipped = rt.catalog.get("ip-integration")
    first, second = _open(rt, _v1(shipped), "First"), _open(rt, _v1(shipped), "Second")
    _notice(rt, first, "bottleneck-report")
    _notice(rt, first, "model-draft", "remind-10")
    _post(rt, first, "bottleneck-report")
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "ip-v3.yaml").write_text(yaml.safe_dump(_v3(shipped), sort_keys=False))
    env = store_env(rt) | {"BRIDGEBSR_TEMPLATE_DIRS": str(folder)}
    for key in (first, second):
        done = cli(env, "milestone", "complete", key, "kickoff", "--by", LEAD, "--on", "2026-03-13")
        assert done.code == 0, done
    done = cli(env, "milestone", "start", second, "regional-workshops", "--by", LEAD,
               "--on", "2026-03-30")  # fmt: skip
    assert done.code == 0, done
    events = _count(rt, CaseEvent)
    args = ("case", "migrate", "--kind", "ip-integration", "--all", "--to-version", "3")
    refused = cli(env, *args, "--by", LEAD, "--as-of", "2026-04-01")
    one_error_line(refused, "1 case(s) cannot migrate", second, "regional-workshops")
    assert _count(rt, CaseEvent) == events and _case(rt, first).template_version == 1
    dry = cli(env, "case", "migrate", first, "--to-version", "3", "--dry-run", "--by", LEAD)
    assert dry.code == 0, dry
    assert "rename bottleneck-report -> ip-bottleneck-report" in dry.stdout
    assert "add milestone ip-survey" in dry.stdout and "duration 50 -> 60" in dry.stdout
    assert "new field ip_cases_handled (no value yet)" in dry.stdout
    assert _count(rt, CaseEvent) == events
    done = cli(env, "case", "migrate", first, "--to-version", "3", "--by", LEAD,
               "--as-of", "2026-04-01", "--if-version", "2")  # fmt: skip
    assert done.code == 0, done
    assert "migrated 1 case(s) to version 3: 1 item(s) added, 1 removed, 1 renamed" in done.stdout
    with read_session(rt.engine) as session:
        case_id = session.exec(select(Case.id).where(Case.key == first)).one()[0]
        owners = dict(
            session.exec(
                select(Milestone.key, Contact.email)
                .outerjoin(Contact, Contact.id == Milestone.owner_id)
                .where(Milestone.case_id == case_id)
            ).all()
        )
        keys = set(owners)
        notice, step = session.exec(
            select(Notification).where(Notification.case_id == case_id).order_by(Notification.id)
        ).scalars()
        why = set(
            session.exec(select(PlanChange.item_key).where(PlanChange.why == "migrate")).scalars()
        )
        (post,) = session.exec(select(ChannelPost).where(ChannelPost.case_id == case_id)).scalars()
    assert "ip-bottleneck-report" in keys
    assert owners["ip-survey"] == "karin.astrom@mva.example"  # the case's ip-expert
    assert "regional-workshops" not in keys and "bottleneck-report" not in keys
    assert notice.subject == "ip-bottleneck-report"
    assert notice.dedupe_key == f"m:{first}/ip-bottleneck-report/due/{LEAD}"
    assert notice.status is NotificationStatus.PENDING
    assert step.status is NotificationStatus.SUPPRESSED  # remind-10 is no step of version 3
    # The team channel's post of the renamed item: the same event, so it is not posted again.
    assert post.dedupe_key == f"ip-integration|m:{first}/ip-bottleneck-report/due"
    assert post.payload["item"] == "ip-bottleneck-report"
    assert {"ip-survey", "model-draft"} <= why
    checked = cli(env, "templates", "validate", str(folder / "ip-v3.yaml"))
    assert checked.code == 0 and "renames checked against earlier versions" in checked.stdout
    (tmp_path / "bad.yaml").write_text(
        (folder / "ip-v3.yaml").read_text().replace("was: bottleneck-report", "was: no-such")
    )
    bad = cli(env, "templates", "validate", str(tmp_path / "bad.yaml"))
    assert bad.code == 1 and "was: 'no-such' names no item of an earlier version" in bad.stderr
    stale = cli(env, "case", "migrate", first, "--to-version", "3", "--by", LEAD)
    one_error_line(stale, first, "give a newer --to-version")
