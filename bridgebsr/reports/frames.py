"""The KPIs' input: `Frames`, the case store as DataFrames (see `load`), and the helpers the
views share to read it (dates as numpy days, case columns by row, categories by code)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Any, Final, TypeVar, cast

import numpy as np
import numpy.typing as npt
import pandas as pd

from bridgebsr.errors import InvalidInput
from bridgebsr.rules.calendars import WorkCalendar, Workdays
from bridgebsr.rules.schedule import Step
from models import CaseStatus, MilestoneStatus, Template

PILOT: Final = "pilot"
PARTNER: Final = "partner"
COUNTRY: Final = "country"
CASE_DIMENSIONS: Final = (PILOT, PARTNER, COUNTRY)
SERVICE_TYPE: Final = "service_type"

SME_KIND: Final = "shared-sme-service"
TRIAGE_MILESTONE: Final = "triage-decision"
UNTRIAGED: Final = "untriaged"
UNSPECIFIED: Final = "unspecified"

OPEN_CASE: Final = (CaseStatus.DRAFT, CaseStatus.ACTIVE, CaseStatus.ON_HOLD)
FINISHED: Final = (MilestoneStatus.DONE, MilestoneStatus.WAIVED)
GATE_EVENTS: Final = ("gate.open", "gate.approve", "gate.reject")
OUTCOMES: Final = ("approved", "rejected", "waiting", "closed")
BREACH_STATES: Final = ("finished late", "open", "open when case closed")

DayArray = npt.NDArray[np.datetime64]
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
_E = TypeVar("_E", bound=StrEnum)
_T = TypeVar("_T")
NAT: Final = np.datetime64("NaT", "D")
# Stands for NULL in integer columns: no id, day (1969-12-31) or second in the store is -1,
# and small integers cost the driver no allocation (None would not fit an int64 array).
NULL: Final = -1


class _Memo(dict[str, Any]):
    """What the views derive from one `Frames`, once: not carried along when pickled."""

    def __reduce__(self) -> tuple[type[_Memo], tuple[()]]:
        return (_Memo, ())


@dataclass(frozen=True, slots=True)
class AddedItem:
    """A milestone added to one case only (`milestone add`): its position among the case's
    milestones (`seq`), and the step the planner makes of it."""

    seq: int
    step: Step


@dataclass(frozen=True)
class Frames:
    """The case store as DataFrames, as `load` reads it, in one snapshot. Days are naive day
    timestamps.

    - `cases`, indexed by case id: key, pilot, template_version, partner (lead partner code),
      country, status, current_stage, calendar (the case's working calendar: "DK", "DE-MV",
      see `calendars`), timezone (the lead partner's), start_date, target_date,
      forecast_date (as stored), closed_at (UTC), closed_on (its day in the lead partner's
      time zone), tpl (position of the case's template in `templates`).
    - `milestone_counts`: the milestones of each case, in the rows of `cases` (same index,
      same order): `milestones`, `done` and `waived` (with a finish date), `done_on_time`
      (against `sla_due`), `done_on_time_baseline` (against the original), `due_unfinished`
      (not finished, agreed due before `as_of`: overdue now while the case is open).
    - `slips`: one row per done milestone (with a finish date), in no particular order:
      case_id, slip_working_days (planned due date to the finish, in the milestone's own
      calendar, signed).
    - `templates`: the pinned template of every (kind, version) in the store.
    - `milestones`: case_id, seq, key, stage, stage_order, status, calendar (the owner's, else
      the case's; the same categories as the cases'), baseline_due (the original plan),
      planned_due (the agreed plan in force now), started_on, finished_on, sla_due (the
      agreed due date in force when it fell due: what it is measured against),
      planned_start (agreed), adhoc (added to its case only).
    - `gates`: case_id, seq, key, stage, stage_order, status, round, opened_on, deadline,
      decided_on (all of the current round), baseline_due, planned_due.
    - `events`: the audit trail of the gates sent back for rework (round above 1), for their
      earlier rounds: one row per `gate.open`, `gate.approve` and `gate.reject` in the order
      written: case_id, kind, gate, round, at (UTC), deadline (set on opening).
    - `fields`: the cases' field values (`cases.fields`), indexed like `cases` (same rows,
      same order), one column per field any pinned template declares, each value as
      `rules.fields.typed` gives it (decimals as Decimal, dates as date), None where unset.
    - `positions`: the row in `cases` of each row of `milestones` and of `gates`.
    - `added`: the milestones added to one case only, by case id (only cases with some), in
      seq order; they are in `milestones` like the template's own.
    - `calendars`: the working calendar of each category of the `calendar` columns.
    """

    as_of: date
    cases: pd.DataFrame
    milestone_counts: pd.DataFrame
    slips: pd.DataFrame
    templates: Mapping[tuple[str, int], Template]
    milestones: pd.DataFrame
    gates: pd.DataFrame
    events: pd.DataFrame
    fields: pd.DataFrame
    calendars: Sequence[WorkCalendar]
    positions: Mapping[str, IntArray] = field(repr=False, compare=False)
    added: Mapping[int, tuple[AddedItem, ...]] = field(default_factory=dict)
    _memo: dict[str, Any] = field(default_factory=_Memo, repr=False, compare=False)

    def derived(self, name: str, build: Callable[[], _T]) -> _T:
        """Data that several views derive from these frames, built once."""
        if name not in self._memo:
            self._memo[name] = build()
        return cast(_T, self._memo[name])


def only_cases(frames: Frames, rows: Any) -> Frames:
    """The frames of the cases at `rows` (a mask over `frames.cases`), and nothing of the
    others."""
    keep = np.asarray(rows, dtype=bool)
    cases = frames.cases[keep]
    ids = cases.index

    def kept(frame: pd.DataFrame) -> pd.DataFrame:
        return frame[rows_of(ids, frame["case_id"]) >= 0].reset_index(drop=True)

    milestones, gates = kept(frames.milestones), kept(frames.gates)
    return Frames(
        as_of=frames.as_of,
        cases=cases,
        milestone_counts=frames.milestone_counts[keep],
        slips=kept(frames.slips),
        templates=frames.templates,
        milestones=milestones,
        gates=gates,
        events=kept(frames.events),
        fields=frames.fields[keep],
        calendars=frames.calendars,
        positions={
            "milestones": rows_of(ids, milestones["case_id"]),
            "gates": rows_of(ids, gates["case_id"]),
        },
        added={case: items for case, items in frames.added.items() if case in ids},
    )


def day_stamps(values: pd.Series[Any] | IntArray) -> pd.Series[Any]:
    """Day numbers (with NULL) as naive day timestamps (NaT)."""
    numbers = np.asarray(values, dtype=np.int64)
    out = np.where(numbers == NULL, NAT, numbers.astype("datetime64[D]"))
    index = values.index if isinstance(values, pd.Series) else None
    return pd.Series(out.astype("datetime64[s]"), index=index)


def utc_stamps(values: pd.Series[Any]) -> pd.Series[Any]:
    """Epoch seconds (with NULL) as UTC timestamps (NaT)."""
    seconds = values.where(values != NULL)
    return pd.to_datetime(seconds, unit="s", utc=True)


def categorical(codes: Any, categories: Sequence[str] | pd.CategoricalDtype) -> pd.Categorical:
    """Values from their codes (-1: missing)."""
    dtype = (
        categories
        if isinstance(categories, pd.CategoricalDtype)
        else pd.CategoricalDtype(list(categories))
    )
    return pd.Categorical.from_codes(np.asarray(codes, dtype=np.int64), dtype=dtype)


def decode(codes: pd.Series[Any] | IntArray, enum: type[_E]) -> pd.Categorical:
    return categorical(codes, [m.value for m in enum])


def rows_of(index: pd.Index, ids: Any) -> IntArray:
    """Position of each id in `index` (-1 when absent)."""
    values = np.asarray(ids)
    keys = index.to_numpy()
    if values.dtype.kind in "iu" and keys.dtype.kind in "iu" and len(keys):
        low, high = int(keys.min()), int(keys.max())
        if low >= 0 and high < 4 * len(keys) + 1024:  # ids as a store hands them out: a table
            table = np.full(high + 2, -1, dtype=np.int64)  # the last: any id out of range
            table[keys] = np.arange(len(keys))
            if np.count_nonzero(table >= 0) == len(keys):  # no id twice
                if not len(values) or (values.min() >= 0 and values.max() <= high):
                    return cast(IntArray, table[values])
                return table[np.where((values >= 0) & (values <= high), values, high + 1)]
    return np.asarray(index.get_indexer(pd.Index(values)), dtype=np.int64)


def or_missing(values: Any, missing: Any = None) -> npt.NDArray[np.object_]:
    """The values, then `missing`: where position -1 (not found) points."""
    out = np.empty(len(values) + 1, dtype=object)
    out[:-1] = np.asarray(values, dtype=object)
    out[-1] = missing
    return out


def calendar_days(start: DayArray, end: DayArray) -> FloatArray:
    """Calendar days from start to end (NaN if either is missing)."""
    days = (end - start).astype("timedelta64[D]")
    return np.where(np.isnat(days), np.nan, days.astype(np.int64)).astype(np.float64)


def day_array(values: Any) -> DayArray:
    if isinstance(values, pd.Series | pd.Index):
        return cast(DayArray, values.to_numpy(dtype="datetime64[D]"))
    return np.asarray(values, dtype="datetime64[D]")


def codes_of(values: pd.Series[Any]) -> IntArray:
    return np.asarray(values.cat.codes, dtype=np.int64)


def workdays(frames: Frames) -> Workdays:
    """Working days in the frames' calendars (by the codes of the `calendar` columns)."""
    return frames.derived(
        "workdays", lambda: workdays_for(frames.cases, frames.calendars, frames.as_of)
    )


def workdays_for(cases: pd.DataFrame, calendars: Sequence[WorkCalendar], as_of: date) -> Workdays:
    """Working days in `calendars` (those of `cases` and of their milestones' owners), over
    the years the cases span."""
    today = pd.Timestamp(as_of)
    first = min(cases["start_date"].min(), today) if len(cases) else today
    last = max(cases["target_date"].max(), today) if len(cases) else today
    return Workdays(calendars, first.date(), last.date())


def local_days(stamps: pd.Series[Any], zones: pd.Series[Any]) -> pd.Series[Any]:
    """The day of each UTC time in its row's time zone (naive day timestamps)."""
    out = np.full(len(stamps), NAT)
    zone = pd.Categorical(zones)
    codes, names = np.asarray(zone.codes, dtype=np.int64), zone.categories
    known = stamps.notna().to_numpy()
    for code in np.unique(codes[known]):
        rows = known & (codes == code)
        name = names[code] if code >= 0 else np.nan
        local = stamps[rows].dt.tz_convert(str(name)).dt.tz_localize(None)
        out[rows] = local.to_numpy(dtype="datetime64[D]")
    return pd.Series(out.astype("datetime64[s]"), index=stamps.index)


def dims_of(by: Iterable[str], allowed: Sequence[str] = CASE_DIMENSIONS) -> list[str]:
    dims = [by] if isinstance(by, str) else list(by)
    if not dims or len(set(dims)) != len(dims) or any(d not in allowed for d in dims):
        raise InvalidInput(
            f"cannot group KPIs by {', '.join(dims) or 'nothing'}: "
            f"choose one or more of {', '.join(allowed)}"
        )
    return dims


def as_of_day(frames: Frames) -> np.datetime64:
    return np.datetime64(frames.as_of, "D")


def is_open(status: pd.Series[Any]) -> BoolArray:
    return status.isin([s.value for s in OPEN_CASE]).to_numpy()


def positions_of(frames: Frames, part: str) -> IntArray:
    """Row of each milestone's (or gate's, or slip's) case in `frames.cases`."""

    def make() -> IntArray:
        if part == "slips":
            return rows_of(frames.cases.index, frames.slips["case_id"])
        return frames.positions[part]

    return frames.derived(f"positions.{part}", make)


def case_columns(frames: Frames, positions: IntArray, columns: Sequence[str]) -> pd.DataFrame:
    """Columns of the cases at `positions`, categories kept."""
    out: dict[str, Any] = {}
    for column in columns:
        values = frames.cases[column]
        if isinstance(values.dtype, pd.CategoricalDtype):
            out[column] = categorical(codes_of(values)[positions], values.dtype)
        else:
            out[column] = values.to_numpy()[positions]
    return pd.DataFrame(out, copy=False)  # fresh arrays: no copy into one block
