"""Use cases on a case's indicator measurements (the IP pilot's bench marks): record one
value or a sheet of them, list them.

Every value is checked by `rules.indicators` against the case's pinned template. A value for
an indicator, region and day that already has one replaces it only when asked (`replace`);
the write is one transaction with one `measure` audit event per value (the value before, if
any, and after). A sheet is all or nothing: every row is checked first, each problem named by
its row and column, and nothing is written unless all are good.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session

from bridgebsr.errors import InvalidInput
from bridgebsr.exchange.sheets import Sheet, column_letter
from bridgebsr.rules import indicators as rule
from bridgebsr.rules.indicators import Reading
from bridgebsr.rules.lifecycle import Change
from bridgebsr.store import case_rows as store
from bridgebsr.store import measurements as rows
from models import Source, Template

SHEET_COLUMNS = ("indicator", "region", "on", "value", "note")


@dataclass(frozen=True)
class Recorded:
    """What a write did: values added and replaced."""

    key: str
    added: int
    replaced: int


def record(
    *,
    session: Session,
    key: str,
    given: Sequence[dict[str, str]],
    actor: str,
    now: datetime,
    replace: bool = False,
    source: Source = Source.CLI,
    source_ref: str | None = None,
    where: Sequence[dict[str, str]] | None = None,
) -> Recorded:
    """Record measurements of case `key`: each of `given` has indicator, region, value, on and
    optionally note, as typed; `where` names each one's fields in messages (the options by
    default). All are checked before anything is written."""
    loaded = store.load_case(session, key)
    case = loaded.case
    assert case.id is not None
    today = store.local_date(now, loaded.timezone)
    existing = rows.measurements_of(loaded.conn, case.id)
    spelled = {r["region"].casefold(): r["region"] for r in existing}
    readings: list[tuple[int, Reading]] = []
    for i, values in enumerate(given):
        r = _checked(loaded.template, values, today, where[i] if where else None)
        readings.append((i, _same_spelling(r, spelled)))
    if found := rule.doubled(readings):
        first, again, r = found
        labels = [(w or {}).get("row", "") for w in (where or [])] or [""] * len(readings)
        earlier = labels[first].split(": ")[-2] if labels[first] else "another value"
        raise InvalidInput(
            f"{labels[again]}{r.indicator} for {r.region} on {r.on} is also given on "
            f"{earlier}; keep one"
        )
    held = {(r["indicator"], r["region"], r["measured_on"]): r for r in existing}
    added: list[dict[str, Any]] = []
    replaced: list[dict[str, Any]] = []
    changes: list[Change] = []
    for i, r in readings:
        old = held.get((r.indicator, r.region, r.on))
        row = _row(case.id, r, actor, now, source)
        if old is None:
            added.append(row)
            changes.append(Change("measure", r.indicator, {}, r.values()))
            continue
        if not replace:
            label = (where[i] if where else {}).get("row", "")
            raise InvalidInput(
                f"{label}{case.key} already has {r.indicator} = {old['value']:g} for {r.region} "
                f"on {r.on}; give --replace to replace it"
            )
        replaced.append({**row, "row_id": old["id"]})
        before = {**r.values(), "value": old["value"], "note": old["note"]}
        changes.append(Change("measure", r.indicator, before, r.values()))
    rows.add_measurements(loaded.conn, added)
    rows.replace_measurements(loaded.conn, replaced)
    store.record(
        loaded.conn,
        case.id,
        changes,
        actor=actor,
        now=now,
        source=source,
        source_ref=source_ref,
    )
    session.commit()
    return Recorded(case.key, len(added), len(replaced))


def record_sheet(
    *,
    session: Session,
    key: str,
    sheet: Sheet,
    label: str,
    actor: str,
    now: datetime,
    replace: bool = False,
    source: Source = Source.IMPORT,
) -> Recorded:
    """Record every row of a sheet (columns indicator, region, on, value, note), all or none;
    a bad cell is one line naming the file, row and column."""
    missing = [c for c in SHEET_COLUMNS[:4] if c not in sheet.columns]
    if missing:
        raise InvalidInput(
            f"{label}: no column {', '.join(missing)}; the first row must name the columns "
            f"{', '.join(SHEET_COLUMNS)} (note is optional)"
        )
    if not sheet.rows:
        raise InvalidInput(f"{label}: no rows below the header; nothing to record")
    given, where = [], []
    for number, cells in sheet.rows:
        given.append({c: cells.get(c, "") for c in SHEET_COLUMNS})
        where.append(
            {
                "row": f"{label}: row {number}: ",
                **{
                    c: f"{label}: row {number}, column {_letter(sheet, c)} ({c}): "
                    for c in SHEET_COLUMNS
                },
            }
        )
    return record(
        session=session,
        key=key,
        given=given,
        actor=actor,
        now=now,
        replace=replace,
        source=source,
        source_ref=label,
        where=where,
    )


def listing(session: Session, key: str) -> list[dict[str, Any]]:
    """A case's measurements with the indicator's label, unit and direction from its
    template, by indicator, region and day."""
    loaded = store.load_case(session, key, for_update=False)
    assert loaded.case.id is not None
    specs = {i.key: i for i in loaded.template.indicators}
    out = []
    for r in rows.measurements_of(loaded.conn, loaded.case.id):
        spec = specs.get(r["indicator"])
        out.append(
            {
                "indicator": r["indicator"],
                "label": spec.label if spec else r["indicator"],
                "unit": spec.unit if spec else "",
                "region": r["region"],
                "on": r["measured_on"],
                "value": r["value"],
                "note": r["note"],
                "recorded_by": r["recorded_by"],
            }
        )
    session.rollback()
    return out


def _checked(
    template: Template, values: dict[str, str], today: Any, where: dict[str, str] | None
) -> Reading:
    return rule.reading(
        template,
        indicator=values.get("indicator", ""),
        region_name=values.get("region", ""),
        value=values.get("value", ""),
        on=values.get("on", ""),
        today=today,
        note_text=values.get("note", ""),
        where=where,
    )


def _same_spelling(r: Reading, spelled: dict[str, str]) -> Reading:
    """A reading whose region is written as the case already writes it (Skåne, not SKÅNE)."""
    region = spelled.get(r.region.casefold(), r.region)
    if region == r.region:
        return r
    return Reading(r.indicator, region, r.on, r.value, r.note)


def _row(case_id: int, r: Reading, actor: str, now: datetime, source: Source) -> dict[str, Any]:
    return {
        "case_id": case_id,
        "indicator": r.indicator,
        "region": r.region,
        "measured_on": r.on,
        "value": r.value,
        "note": r.note,
        "recorded_by": actor,
        "at": now,
        "source": source,
    }


def _letter(sheet: Sheet, column: str) -> str:
    return column_letter(sheet.columns.index(column)) if column in sheet.columns else "?"
