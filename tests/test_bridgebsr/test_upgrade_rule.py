"""The upgrade plan (`rules.upgrade`): a case's rows, its template version and a newer one in,
what changes out; pure, no store."""

from datetime import date, datetime
from typing import Any

import pytest
import yaml

from bridgebsr.errors import IllegalTransition, InvalidInput
from bridgebsr.exchange.catalog import checksum, parse_template
from bridgebsr.rules import opening, progress, upgrade
from bridgebsr.rules.calendars import calendar_of
from bridgebsr.rules.planning import Plan
from bridgebsr.rules.rows import CaseRow
from models import CaseStatus, Template

START = date(2026, 3, 2)  # a Monday
V1: dict[str, Any] = {
    "kind": "demo-kind",
    "version": 1,
    "title": "A kind for upgrades",
    "key_prefix": "DK",
    "roles": ["pilot-lead", "expert"],
    "stages": [{"key": "a", "title": "A"}, {"key": "b", "title": "B"}],
    "milestones": [
        {"key": "one", "title": "One", "stage": "a", "duration": 5},
        {"key": "two", "title": "Two", "stage": "a", "duration": 5, "after": ["one"]},
        {"key": "three", "title": "Three", "stage": "b", "duration": 5, "after": ["two"]},
    ],
    "gates": [
        {
            "key": "ok",
            "title": "OK",
            "stage": "b",
            "after": ["three"],
            "approvers": {"role": "pilot-lead"},
        }
    ],
}


def _template(data: dict[str, Any]) -> Template:
    return parse_template(yaml.safe_dump(data), "test")


def _v2(gate_after: str = "three", **edit: Any) -> Template:
    """Version 2: V1 with milestones replaced or changed by key (None removes one)."""
    data = yaml.safe_load(yaml.safe_dump(V1)) | {"version": 2}
    data["gates"][0]["after"] = [gate_after]
    milestones = {m["key"]: m for m in data["milestones"]}
    for key, spec in edit.items():
        if spec is None:
            milestones.pop(key)
        else:
            milestones[key] = {**milestones.get(key, {}), **spec}
    data["milestones"] = list(milestones.values())
    return _template(data)


def _case(template: Template, today: date = START) -> Plan:
    """A case of `template` opened on START, forecast as of `today`."""
    milestones, gates = opening.rows_of(template)
    cals = {None: calendar_of("DK", "DK", None)}
    dated = opening.dated(template, milestones, gates, cals, START, today)
    case = CaseRow(
        1, "DK-2026-0001", template.kind, template.version, "t", 1, 1, "DK", CaseStatus.ACTIVE,
        dated.stage, START, dated.target, dated.forecast, dated.target, {}, datetime(2026, 3, 2),
        None, datetime(2026, 3, 2), 1,
    )  # fmt: skip
    return Plan(case, list(dated.milestones), list(dated.gates), cals)


def _start(plan: Plan, key: str, day: date) -> None:
    m = next(m for m in plan.milestones if m.key == key)
    progress.step(plan, m, "start", day)


def _apply(plan: Plan, old: Template, new: Template) -> upgrade.Upgrade:
    up = upgrade.plan_upgrade(old, new, plan)
    upgrade.apply(up, plan, new, {"case-owner": 1}, START)
    return up


def test_added_milestone_is_planned_after_its_predecessor() -> None:
    old = _template(V1)
    new = _v2(four={"key": "four", "title": "Four", "stage": "b", "duration": 3, "after": ["two"]})
    plan = _case(old)
    up = _apply(plan, old, new)
    assert up.added == {"four": "milestone"} and not up.removed and not up.refusals
    four = next(m for m in plan.milestones if m.key == "four")
    two = next(m for m in plan.milestones if m.key == "two")
    assert four.planned_start == four.baseline_start == two.forecast_due
    assert four.seq == 3 and plan.case.template_version == 2


def test_removes_an_item_not_started_and_refuses_one_started() -> None:
    old = _template(V1)
    new = _v2(three=None, gate_after="two")
    plan = _case(old)
    up = upgrade.plan_upgrade(old, new, plan)
    assert up.removed == {"three": "milestone"} and not up.refusals
    plan = _case(old)
    for key in ("one", "two"):
        _start(plan, key, START)
        m = next(m for m in plan.milestones if m.key == key)
        progress.step(plan, m, "complete", START)
    _start(plan, "three", START)
    up = upgrade.plan_upgrade(old, new, plan)
    assert up.refusals == [
        "DK-2026-0001: milestone three is in_progress and version 2 drops it; "
        "a started item is never removed"
    ]
    with pytest.raises(IllegalTransition, match="milestone three is in_progress"):
        upgrade.apply(up, plan, new, {}, START)


def test_rename_through_was_keeps_the_row_and_its_facts() -> None:
    old = _template(V1)
    new = _v2(two={"key": "second", "was": "two"}, three={"after": ["second"]})
    plan = _case(old)
    _start(plan, "one", START)
    row = next(m for m in plan.milestones if m.key == "two")
    up = _apply(plan, old, new)
    assert up.renamed == {"two": "second"} and not up.added and not up.removed
    assert row.key == "second" and row in plan.milestones
    assert next(m for m in plan.milestones if m.key == "three").depends_on[0]["key"] == "second"


def test_stage_move_is_planned_and_sets_the_current_stage() -> None:
    old = _template(V1)
    new = _v2(one={"stage": "b"}, two={"stage": "b"})
    plan = _case(old)
    up = _apply(plan, old, new)
    assert up.moved == {"one": ["a", "b"], "two": ["a", "b"]}
    assert plan.case.current_stage == "b"


def test_new_duration_only_for_items_not_started() -> None:
    old = _template(V1)
    new = _v2(one={"duration": 9}, two={"duration": 8})
    plan = _case(old)
    _start(plan, "one", START)
    one = next(m for m in plan.milestones if m.key == "one")
    two = next(m for m in plan.milestones if m.key == "two")
    one_dates = (one.planned_start, one.planned_due)
    due_before = two.planned_due
    up = _apply(plan, old, new)
    assert list(up.retimed) == ["two"] and up.retimed["two"]["duration"] == [5, 8]
    assert one.duration == 5 and (one.planned_start, one.planned_due) == one_dates
    assert two.duration == 8 and two.planned_due > due_before
    assert two.baseline_due == due_before  # the original plan is kept


def test_field_values_are_checked_against_the_new_version() -> None:
    old = _template({**V1, "fields": [{"key": "size", "kind": "integer"}]})
    new = _template({**V1, "version": 2, "fields": [{"key": "size", "kind": "integer", "max": 9}]})
    plan = _case(old)
    plan.case.fields = {"size": 12}
    assert (
        "field size: 12 is above the maximum 9" in upgrade.plan_upgrade(old, new, plan).refusals[0]
    )
    plan.case.fields = {"size": 3, "gone": "x"}
    up = upgrade.plan_upgrade(old, _template({**V1, "version": 2}), plan)
    assert up.kept_fields == ["size", "gone"] and not up.refusals


def test_a_closed_case_or_an_older_version_is_refused() -> None:
    old = _template(V1)
    plan = _case(old)
    plan.case.status = CaseStatus.COMPLETED
    assert "only running cases migrate" in upgrade.plan_upgrade(old, _v2(), plan).refusals[0]
    assert "give a newer --to-version" in upgrade.plan_upgrade(old, old, _case(old)).refusals[0]


def test_was_must_not_clash_and_keeps_old_fingerprints() -> None:
    with pytest.raises(InvalidInput, match="still an item of this version"):
        _v2(two={"was": "one"})
    with pytest.raises(InvalidInput, match="claimed by two items"):
        _v2(
            four={"key": "four", "title": "4", "stage": "b", "duration": 1, "was": "x"},
            five={"key": "five", "title": "5", "stage": "b", "duration": 1, "was": "x"},
        )
    # The fingerprint V1 had before templates could say `was` (its pins stay valid).
    assert checksum(_template(V1)) == (
        "e90d286d56dea2aaafbc5d42733263be597f4d5ce11d6be618baa2ecf6a2b84e"
    )


def test_gate_renamed_and_given_a_new_deadline_while_pending() -> None:
    old = _template(V1)
    data = yaml.safe_load(yaml.safe_dump(V1)) | {"version": 2}
    data["gates"][0] |= {"key": "approval", "was": "ok", "deadline": 20}
    new = _template(data)
    plan = _case(old)
    gate = plan.gates[0]
    up = _apply(plan, old, new)
    assert up.renamed == {"ok": "approval"}
    assert up.retimed == {"approval": {"deadline_days": [10, 20]}}
    assert (gate.key, gate.deadline_days) == ("approval", 20) and plan.gates == [gate]
