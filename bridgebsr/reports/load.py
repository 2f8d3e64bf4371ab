"""`load`: the case store as `Frames`, with a few set-based SELECTs in one snapshot.

This is the only part of the KPIs that reads the database. Dates travel as day numbers, times
as epoch seconds and statuses as small codes, read straight off the driver (see `readers`)
into numpy arrays, so nothing is parsed or wrapped row by row. Every working calendar is the
one `bridgebsr.rules.calendars` gives (`calendar_of`: a person's country, with their
partner's region only in the same country), asked once per distinct (country, partner).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pandas as pd
from sqlalchemy import Connection, Engine, String, select
from sqlalchemy import cast as sql_cast
from sqlalchemy.orm import Session
from sqlmodel import col

from bridgebsr.reports.added import ADDED_COLUMNS, added_query, name_added, unnamed
from bridgebsr.reports.frames import (
    COUNTRY,
    GATE_EVENTS,
    PARTNER,
    PILOT,
    AddedItem,
    DayArray,
    Frames,
    IntArray,
    categorical,
    codes_of,
    day_array,
    day_stamps,
    decode,
    local_days,
    or_missing,
    rows_of,
    utc_stamps,
    workdays_for,
)
from bridgebsr.reports.plans import PLAN_CHANGE_COLUMNS, plan_change_query, sla_due
from bridgebsr.reports.queries import (
    CASE_COLUMNS,
    EVENT_COLUMNS,
    GATE_COLUMNS,
    MILESTONE_COLUMNS,
    Sql,
    case_query,
    gate_event_query,
    gate_query,
    milestone_query,
)
from bridgebsr.reports.readers import CursorReader, Reader, reader
from bridgebsr.rules.calendars import WorkCalendar, Workdays, calendar_of
from bridgebsr.rules.fields import typed
from models import (
    CaseStatus,
    Contact,
    FieldSpec,
    GateSpec,
    GateStatus,
    Milestone,
    MilestoneSpec,
    MilestoneStatus,
    Partner,
    Template,
    TemplateVersion,
)


def load(source: Session | Connection | Engine, *, as_of: date) -> Frames:
    """Read the columns the KPIs need with a few set-based SELECTs, in one snapshot: the
    cases, partners, contacts and pinned templates; every milestone and gate; the audit
    events of gates sent back for rework. The cases' field values come with the cases.

    Given an engine on a SQLite file or PostgreSQL, the rows come through Arrow (ADBC), column
    by column in C, in one read-only snapshot (`readers.reader`). Given a session or a
    connection, everything comes through it, so the load sees what that transaction sees.
    """
    if isinstance(source, Engine):
        with reader(source) as read:
            return _load(read, as_of)
    conn = source.connection() if isinstance(source, Session) else source
    return _load(CursorReader(conn), as_of)


def _load(read: Reader, as_of: date) -> Frames:
    sql = Sql(read.dialect.name, dates_as_read=read.arrow)
    # The largest fetch first: an Arrow reader makes it beside everything else.
    rows = read.integers_large(milestone_query(sql), MILESTONE_COLUMNS, col(Milestone.id))
    raw_templates = read.records(
        select(
            col(TemplateVersion.kind),
            col(TemplateVersion.version),
            sql_cast(col(TemplateVersion.body), String),
        ).order_by(col(TemplateVersion.kind), col(TemplateVersion.version)),
        ["kind", "version", "body"],
    )
    templates = {
        (str(kind), int(version)): Template.model_validate_json(body)
        for kind, version, body in raw_templates.itertuples(index=False)
    }
    shapes = Shapes(templates)
    partners = read.records(
        select(
            col(Partner.id),
            col(Partner.code),
            col(Partner.country),
            sql.text(col(Partner.region)),
            sql.text(col(Partner.timezone)),
        ),
        ["partner_id", "partner", "partner_country", "region", "timezone"],
    ).set_index("partner_id")
    for column in ("region", "timezone"):
        partners[column] = _optional(partners[column])
    contacts = read.records(
        select(col(Contact.id), col(Contact.country), sql.key(col(Contact.partner_id))),
        ["contact_id", "country", "partner_id"],
    ).set_index("contact_id")
    raw_cases = read.records(case_query(sql), CASE_COLUMNS)
    # Each contact's calendar: their country, and their partner's region if in that country.
    where = partners.reindex(contacts["partner_id"].to_numpy())
    contact_calendars, known = _calendars(
        contacts["country"], where["partner_country"].to_numpy(), where["region"].to_numpy()
    )
    cases, case_calendars = _read_cases(raw_cases, partners, shapes)
    known |= case_calendars
    names = sorted(known)
    dtype = pd.CategoricalDtype(names)
    cases["calendar"] = pd.Categorical(cases["calendar"], dtype=dtype)
    calendars = [known[name] for name in names]
    context = _Context(
        cases=cases,
        shapes=shapes,
        owners=contacts.index,
        owner_calendars=np.asarray(
            pd.Categorical(contact_calendars, dtype=dtype).codes, dtype=np.int64
        ),
    )
    # Asked now, so the first connection reads them while the milestones still come.
    plan_changes = read.records_next(plan_change_query(sql), PLAN_CHANGE_COLUMNS)
    raw_gates = read.integers_next(gate_query(sql), GATE_COLUMNS)
    raw_events = read.integers_next(
        gate_event_query(sql, list(context.shapes.key_type.categories)), EVENT_COLUMNS
    )
    # Every view counts working days: the table is made while the milestones still come.
    work = workdays_for(cases, calendars, as_of)
    work.prepare()
    milestones, milestone_rows, added = _read_milestones(read, rows(), context)
    milestones["sla_due"] = sla_due(milestones, plan_changes())
    gates, gate_rows = _read_gates(raw_gates(), context)
    counts, slips, slip_rows = _counted(milestones, milestone_rows, cases, as_of, work)
    frames = Frames(
        as_of=as_of,
        cases=cases,
        milestone_counts=counts,
        slips=slips,
        templates=templates,
        milestones=milestones,
        gates=gates,
        events=_read_gate_events(raw_events(), context),
        fields=_fields(raw_cases, cases.index, templates.values()),
        calendars=calendars,
        positions={"milestones": milestone_rows, "gates": gate_rows},
        added=added,
    )
    frames.derived("workdays", lambda: work)
    frames.derived("positions.slips", lambda: slip_rows)
    return frames


@dataclass(frozen=True)
class _Context:
    """What the rows of milestones and gates are read against: the first part of a load."""

    cases: pd.DataFrame
    shapes: Shapes
    owners: pd.Index  # contact ids
    owner_calendars: IntArray  # the calendar code of each contact in `owners`

    def calendars(self, owner_ids: Any, positions: IntArray) -> IntArray:
        """The calendar code of each item: its owner's, else (no owner) its case's."""
        case = codes_of(self.cases["calendar"])[positions]
        owner = np.append(self.owner_calendars, -1)[rows_of(self.owners, owner_ids)]
        return np.where(owner >= 0, owner, case)


def _optional(texts: pd.Series[Any]) -> npt.NDArray[np.object_]:
    """Optional text as the SELECT gave it (empty for NULL) back to None for NULL."""
    values = texts.to_numpy(dtype=object, copy=True)
    values[values == ""] = None
    return values


def _picked(values: pd.Series[Any], rows: IntArray, default: str | None = None) -> Any:
    """The values at `rows` (-1: `default`, else missing), as a categorical of those seen."""
    table = pd.Categorical(or_missing(values, default))
    picked = pd.Categorical.from_codes(np.asarray(table.codes)[rows], dtype=table.dtype)
    return picked.remove_unused_categories()


def _pairs(first: Any, second: Any) -> tuple[IntArray, list[tuple[Any, Any]]]:
    """A code per row for its (first, second) pair, and the distinct pairs by code."""
    a, first_values = pd.factorize(np.asarray(first), use_na_sentinel=False)
    b, second_values = pd.factorize(np.asarray(second), use_na_sentinel=False)
    width = max(len(second_values), 1)
    codes, combined = pd.factorize(np.asarray(a, dtype=np.int64) * width + b)
    pairs = [(first_values[c // width], second_values[c % width]) for c in combined]
    return np.asarray(codes, dtype=np.int64), pairs


def _calendars(
    countries: Any, partner_countries: Any, regions: Any
) -> tuple[list[str], dict[str, WorkCalendar]]:
    """The name of each row's working calendar (`calendar_of` its country, its partner's
    country and region), and those calendars by name; each distinct row is asked once."""
    triples = [
        (str(country), _text(partner), _text(region))
        for country, partner, region in zip(countries, partner_countries, regions, strict=True)
    ]
    found = {triple: calendar_of(*triple) for triple in set(triples)}
    return [found[t].name for t in triples], {c.name: c for c in found.values()}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _case_calendars(
    countries: pd.Series[Any], partners: pd.DataFrame, lead: IntArray
) -> tuple[Any, dict[str, WorkCalendar]]:
    """`_calendars` of the cases (their country, `lead` the row of their lead partner in
    `partners`), as a categorical: worked out once per (country, lead partner)."""
    codes, pairs = _pairs(codes_of(countries), lead)
    country = or_missing(countries.cat.categories, np.nan)
    partner_country = or_missing(partners["partner_country"], np.nan)
    region = or_missing(partners["region"])
    found, known = _calendars(
        [country[c] for c, _ in pairs],
        [partner_country[p] for _, p in pairs],
        [region[p] for _, p in pairs],
    )
    unique = sorted(set(found))
    where = np.array([unique.index(name) for name in found], dtype=np.int64)
    return pd.Categorical.from_codes(where[codes], dtype=pd.CategoricalDtype(unique)), known


def _fields(raw: pd.DataFrame, index: pd.Index, templates: Any) -> pd.DataFrame:
    """The field values of the cases (`raw`, as the case query read them, JSON text), in the
    order of `index`: one column per field the templates declare, each distinct text parsed
    once, each value typed by `rules.fields.typed`."""
    specs: dict[str, FieldSpec] = {}
    for template in templates:
        for key, spec in template.field_specs().items():
            specs.setdefault(key, spec)
    texts = raw.set_index("case_id")["fields"].reindex(index)
    codes, uniques = pd.factorize(texts.fillna("{}").astype(str).to_numpy())
    parsed = [json.loads(text) for text in uniques]
    out = pd.DataFrame(index=index)
    for key, spec in specs.items():
        values = or_missing(
            [typed(spec, p.get(key)) if p.get(key) is not None else None for p in parsed]
        )
        out[key] = values[codes] if len(codes) else np.empty(0, dtype=object)
    out.attrs["labels"] = {key: spec.title() for key, spec in specs.items()}
    out.attrs["kinds"] = {key: spec.kind.value for key, spec in specs.items()}
    return out


def _read_cases(
    raw: pd.DataFrame, partners: pd.DataFrame, shapes: Shapes
) -> tuple[pd.DataFrame, dict[str, WorkCalendar]]:
    """The cases frame, and the working calendars of the cases by name."""
    raw = raw.set_index("case_id").sort_index()
    lead = rows_of(partners.index, raw["lead_partner_id"].to_numpy())
    out = pd.DataFrame(index=raw.index)
    out["key"] = raw["key"].astype(object)
    out[PILOT] = raw[PILOT].astype("category")
    out["template_version"] = raw["template_version"].astype("int64")
    out[PARTNER] = _picked(partners["partner"], lead)
    out[COUNTRY] = raw[COUNTRY].astype("category")
    out["status"] = decode(raw["status"].to_numpy(), CaseStatus)
    out["current_stage"] = _optional(raw["current_stage"])
    out["calendar"], calendars = _case_calendars(out[COUNTRY], partners, lead)
    out["timezone"] = _picked(partners["timezone"].fillna("UTC"), lead, "UTC")
    for column in ("start_date", "target_date", "forecast_date"):
        out[column] = day_stamps(raw[column])
    out["closed_at"] = utc_stamps(raw["closed_at"].astype("int64"))
    out["closed_on"] = local_days(out["closed_at"], out["timezone"])
    out["tpl"] = shapes.rows(out[PILOT], out["template_version"])
    return out, calendars


def _slip_frame(
    case_ids: Any, due: DayArray, finish: DayArray, calendars: IntArray, work: Workdays
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "case_id": np.asarray(case_ids, dtype=np.int64),
            "slip_working_days": work.between(due, finish, calendars),
        },
        copy=False,
    )


def _counted(
    m: pd.DataFrame, positions: IntArray, cases: pd.DataFrame, as_of: date, work: Workdays
) -> tuple[pd.DataFrame, pd.DataFrame, IntArray]:
    """`milestone_counts` and `slips` (with the rows of their cases) from the milestone rows
    (`m`, their cases at `positions`)."""
    status = m["status"]
    due, finish = day_array(m["sla_due"]), day_array(m["finished_on"])
    planned, original = day_array(m["planned_due"]), day_array(m["baseline_due"])
    has_finish = ~np.isnat(finish)
    done = (status == MilestoneStatus.DONE.value).to_numpy() & has_finish
    waived = (status == MilestoneStatus.WAIVED.value).to_numpy() & has_finish
    flags = {
        "milestones": np.ones(len(m), dtype=bool),
        "done": done,
        "waived": waived,
        "done_on_time": done & (finish <= due),
        "done_on_time_baseline": done & (finish <= original),
        "due_unfinished": ~(done | waived) & (planned < np.datetime64(as_of, "D")),
    }
    counts = pd.DataFrame(
        {
            name: np.bincount(positions[rows], minlength=len(cases)).astype(np.int64)
            for name, rows in flags.items()
        },
        index=cases.index,
    )
    calendars = codes_of(m["calendar"])[done]
    slips = _slip_frame(m["case_id"].to_numpy()[done], due[done], finish[done], calendars, work)
    return counts, slips, positions[done]


def _read_milestones(
    read: Reader, raw: pd.DataFrame, context: _Context
) -> tuple[pd.DataFrame, IntArray, dict[int, tuple[AddedItem, ...]]]:
    """The milestones frame, the rows of their cases, and the items added to one case only
    (read, and named, only when there are rows past their templates' milestones)."""
    cases, shapes = context.cases, context.shapes
    positions = rows_of(cases.index, raw["case_id"])
    keep = positions >= 0
    if not keep.all():
        raw, positions = raw[keep].reset_index(drop=True), positions[keep]
    calendar = context.calendars(raw["owner_id"].to_numpy(), positions)
    tpl = cases["tpl"].to_numpy()[positions]
    seq = raw["seq"].to_numpy()
    out = pd.DataFrame({"case_id": raw["case_id"], "seq": seq})
    out["key"] = shapes.keys("milestones", tpl, seq)
    out["stage"] = shapes.stages("milestones", tpl, seq)
    out["stage_order"] = shapes.stage_order("milestones", tpl, seq)
    added: dict[int, tuple[AddedItem, ...]] = {}
    rows = unnamed(out["key"].array, tpl)
    if len(rows):
        found = read.records(added_query(), ADDED_COLUMNS)
        added = name_added(out, rows, tpl, shapes.templates, found)
    out["status"] = decode(raw["status"].to_numpy(), MilestoneStatus)
    out["calendar"] = categorical(calendar, cast(pd.CategoricalDtype, cases["calendar"].dtype))
    for column in ("baseline_due", "planned_due", "started_on", "finished_on"):
        out[column] = day_stamps(raw[column].to_numpy())
    out["planned_start"] = day_stamps(raw["planned_start"].to_numpy())
    out["adhoc"] = raw["adhoc"].to_numpy() > 0
    return out, positions, added


def _read_gates(raw: pd.DataFrame, context: _Context) -> tuple[pd.DataFrame, IntArray]:
    """The gates frame (`gate_query`'s rows, `raw`) and the rows of their cases."""
    cases, shapes = context.cases, context.shapes
    positions = rows_of(cases.index, raw["case_id"])
    keep = positions >= 0
    if not keep.all():
        raw, positions = raw[keep].reset_index(drop=True), positions[keep]
    tpl = cases["tpl"].to_numpy()[positions]
    seq = raw["seq"].to_numpy()
    out = pd.DataFrame({"case_id": raw["case_id"], "seq": seq})
    out["key"] = shapes.keys("gates", tpl, seq)
    out["stage"] = shapes.stages("gates", tpl, seq)
    out["stage_order"] = shapes.stage_order("gates", tpl, seq)
    out["status"] = decode(raw["status"].to_numpy(), GateStatus)
    out["round"] = raw["round"].to_numpy()
    for column in ("opened_on", "deadline", "decided_on", "baseline_due", "planned_due"):
        out[column] = day_stamps(raw[column].to_numpy())
    return out, positions


def _of_known_cases(raw: pd.DataFrame, context: _Context) -> pd.DataFrame:
    """The rows of `raw` whose case is one of `context`'s."""
    keep = rows_of(context.cases.index, raw["case_id"]) >= 0
    return raw if keep.all() else raw[keep].reset_index(drop=True)


def _read_gate_events(raw: pd.DataFrame, context: _Context) -> pd.DataFrame:
    """The audit events of gates sent back for rework (`gate_event_query`'s rows, `raw`)."""
    gates = list(context.shapes.key_type.categories)
    raw = raw.sort_values("id", kind="stable", ignore_index=True)  # no scan in id order
    raw = _of_known_cases(raw, context)
    return pd.DataFrame(
        {
            "case_id": raw["case_id"],
            "kind": categorical(raw["kind"], GATE_EVENTS),
            "gate": categorical(raw["gate"], gates),
            "round": raw["round"],
            "at": utc_stamps(raw["at"]),
            "deadline": day_stamps(raw["deadline"]),
        }
    )


class Shapes:
    """Keys, stages and stage order of every template's milestones and gates, by seq.

    Rows are made from their pinned template in order (seq is the position in it), so the
    load reads seq instead of a key and a stage string per row; a milestone added to one case
    comes after them and is named from its own row (`added`).
    """

    def __init__(self, templates: Mapping[tuple[str, int], Template]) -> None:
        self.order = {key: i for i, key in enumerate(templates)}
        self.templates = list(templates.values())  # by template row
        keys = sorted({n.key for t in templates.values() for n in t.nodes()})
        stages = sorted({s.key for t in templates.values() for s in t.stages})
        self.key_type = pd.CategoricalDtype(keys)
        self.stage_type = pd.CategoricalDtype(stages)
        self._tables: dict[tuple[str, str], IntArray] = {}
        for part in ("milestones", "gates"):
            nodes: list[Sequence[MilestoneSpec | GateSpec]] = [
                t.milestones if part == "milestones" else t.gates for t in templates.values()
            ]
            # One row per template plus a last row of -1 for cases whose template is unknown.
            shape = (len(nodes) + 1, max((len(n) for n in nodes), default=0) + 1)
            key, stage, order = (np.full(shape, -1, dtype=np.int64) for _ in range(3))
            for row, (template, specs) in enumerate(zip(templates.values(), nodes, strict=True)):
                for seq, spec in enumerate(specs):
                    key[row, seq] = keys.index(spec.key)
                    stage[row, seq] = stages.index(spec.stage)
                    order[row, seq] = template.stage_index(spec.stage)
            self._tables |= {(part, "key"): key, (part, "stage"): stage, (part, "order"): order}

    def rows(self, kinds: pd.Series[Any], versions: pd.Series[Any]) -> IntArray:
        """Each case's template row (-1 when its template is not in the store)."""
        codes, pairs = _pairs(codes_of(kinds), versions)
        names = [str(k) for k in kinds.cat.categories] + [str(np.nan)]
        found = [self.order.get((names[k], int(v)), -1) for k, v in pairs]
        return np.array(found + [-1], dtype=np.int64)[codes]

    def _take(self, part: str, what: str, tpl: IntArray, seq: IntArray) -> IntArray:
        table = self._tables[(part, what)]
        row = np.where(tpl < 0, table.shape[0] - 1, tpl)
        column = np.where((seq < 0) | (seq >= table.shape[1]), table.shape[1] - 1, seq)
        return table[row, column]

    def keys(self, part: str, tpl: IntArray, seq: IntArray) -> pd.Categorical:
        """Item keys by template row and seq."""
        codes = self._take(part, "key", tpl, seq)
        return pd.Categorical.from_codes(codes, dtype=self.key_type)

    def stages(self, part: str, tpl: IntArray, seq: IntArray) -> pd.Categorical:
        """Item stages by template row and seq."""
        codes = self._take(part, "stage", tpl, seq)
        return pd.Categorical.from_codes(codes, dtype=self.stage_type)

    def stage_order(self, part: str, tpl: IntArray, seq: IntArray) -> IntArray:
        """Position of each item's stage in its template (-1 when unknown)."""
        return self._take(part, "order", tpl, seq)
