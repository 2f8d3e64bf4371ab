"""The cases' typed fields in the report: cases per value of a choice field, numeric fields
summed per pilot, partner and country, and every case with its values.

The values come with the cases (`Frames.fields`, one column per field, typed by
`rules.fields.typed`): integers as int, decimals as Decimal, so sums keep every digit.
Column headers people read are the labels the templates give (`frame.attrs["labels"]`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from bridgebsr.reports.frames import (
    CASE_DIMENSIONS,
    COUNTRY,
    PARTNER,
    PILOT,
    UNSPECIFIED,
    Frames,
    dims_of,
    is_open,
)
from models import CaseStatus, FieldKind

NUMBERS = (FieldKind.INTEGER.value, FieldKind.DECIMAL.value)


def _kinds(frames: Frames) -> dict[str, str]:
    kinds: dict[str, str] = frames.fields.attrs.get("kinds", {})
    return kinds


def _labels(frames: Frames) -> dict[str, str]:
    labels: dict[str, str] = frames.fields.attrs.get("labels", {})
    return labels


def choice_fields(frames: Frames) -> list[str]:
    """The choice fields any pinned template declares."""
    return [k for k, kind in _kinds(frames).items() if kind == FieldKind.CHOICE.value]


def number_fields(frames: Frames) -> list[str]:
    """The integer and decimal fields any pinned template declares."""
    return [k for k, kind in _kinds(frames).items() if kind in NUMBERS]


def _declaring(frames: Frames, name: str) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """Which cases' templates declare field `name`."""
    kinds = {kind for (kind, _), t in frames.templates.items() if name in t.field_specs()}
    return frames.cases[PILOT].astype(str).isin(kinds).to_numpy()


def build_field_counts(frames: Frames, name: str) -> pd.DataFrame:
    """Cases per pilot and value of the choice field `name` (`unspecified`: none given), of
    the pilots whose template declares it.

    Columns: pilot, the field, `cases`, `open`, `completed`, `cancelled`.
    """
    if name not in choice_fields(frames):
        known = ", ".join(choice_fields(frames)) or "none"
        raise ValueError(f"no choice field '{name}' (choice fields: {known})")
    rows = _declaring(frames, name)
    cases = frames.cases[rows]
    values = frames.fields[name].to_numpy(dtype=object)[rows]
    status = cases["status"]
    table = pd.DataFrame(
        {
            PILOT: cases[PILOT].astype(str).to_numpy(),
            name: np.where(pd.isna(values), UNSPECIFIED, values),
            "cases": 1,
            "open": is_open(status).astype(int),
            "completed": (status == CaseStatus.COMPLETED.value).to_numpy().astype(int),
            "cancelled": (status == CaseStatus.CANCELLED.value).to_numpy().astype(int),
        }
    )
    out = table.groupby([PILOT, name], sort=True).sum().reset_index()
    out.attrs["labels"] = {name: _labels(frames).get(name, name)}
    return out


def build_field_totals(frames: Frames, by: Sequence[str] = (PILOT,)) -> pd.DataFrame:
    """The integer and decimal fields summed per group of `by` (pilot, partner, country):
    for each, `NAME` (the sum, exact) and `NAME_cases` (cases with a value); groups of the
    cases whose template declares at least one of them."""
    dims = dims_of(by, CASE_DIMENSIONS)
    names = number_fields(frames)
    rows = np.zeros(len(frames.cases), dtype=bool)
    for name in names:
        rows |= _declaring(frames, name)
    cases = frames.cases[rows]
    table = pd.DataFrame({d: cases[d].astype(str).to_numpy() for d in dims})
    labels = _labels(frames)
    shown: dict[str, str] = {}
    for name in names:
        values = frames.fields[name].to_numpy(dtype=object)[rows]
        given = ~pd.isna(values)
        table[name] = np.where(given, values, 0).astype(object)
        table[f"{name}_cases"] = given.astype(int)
        shown[name] = f"{labels.get(name, name)}: total"
        shown[f"{name}_cases"] = f"{labels.get(name, name)}: cases"
    grouped = table.groupby(dims, sort=True)
    out = grouped.agg({c: "sum" for c in table.columns if c not in dims}).reset_index()
    for name in names:
        out[name] = list(out[name])  # sums stay int or Decimal objects
    out.attrs["labels"] = shown
    return out


def build_case_fields(frames: Frames) -> pd.DataFrame:
    """Every case that holds a field value, with its pilot, lead partner, country, status
    and one column per field (headers: the templates' labels)."""
    fields = frames.fields
    held = (
        fields.notna().any(axis=1).to_numpy()
        if len(fields.columns)
        else np.zeros(len(frames.cases), dtype=bool)
    )
    cases = frames.cases[held]
    out = pd.DataFrame(
        {
            "case": cases["key"].to_numpy(),
            PILOT: cases[PILOT].astype(str).to_numpy(),
            PARTNER: cases[PARTNER].astype(str).to_numpy(),
            COUNTRY: cases[COUNTRY].astype(str).to_numpy(),
            "status": cases["status"].astype(str).to_numpy(),
        }
    )
    kinds = _kinds(frames)
    for name in fields.columns:
        values = fields[name].to_numpy(dtype=object)[held]
        whole = kinds.get(name) == FieldKind.INTEGER.value
        out[name] = pd.array(values, dtype="Int64") if whole else values  # 5, not 5.0
    out.attrs["labels"] = dict(_labels(frames))
    return out
