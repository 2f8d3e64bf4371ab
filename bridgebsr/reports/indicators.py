"""Indicators by region (the IP pilot's bench marks): each region's values of the indicators
its case's template declares, benchmarked against the region's baseline and the target.

- `read`: every measurement of the cases in the report, one SELECT (set-based), as a frame:
  case_id, case, indicator, region, measured_on (a day timestamp), value.
- `benchmark`: one row per case, indicator and region: the baseline (the first value of that
  region and indicator, and its day), the latest value (and its day), the change (latest
  minus baseline), the target the template gives, the latest against it (latest minus
  target), whether the target is met, and the trend by the indicator's direction: `better`
  when the change goes the way the indicator improves (up: higher is better; down: lower
  is better), `worse` the other way, `unchanged`, or `baseline only` with one value so far.
- `chart`: one panel per indicator, each region a line over time (a point per value), the
  target a dashed line; the panel's title says the unit and which way is better.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select
from sqlmodel import SQLModel

from bridgebsr.reports.frames import Frames
from models import Case, Direction, IndicatorSpec, Measurement

_M = SQLModel.metadata.tables[str(Measurement.__tablename__)]
_C = SQLModel.metadata.tables[str(Case.__tablename__)]
INK = "#1d2733"
COLUMNS = ["case_id", "case", "indicator", "region", "measured_on", "value"]
LABELS = {
    "indicator": "Indicator",
    "unit": "Unit",
    "region": "Region",
    "baseline_on": "Baseline day",
    "baseline": "Baseline",
    "latest_on": "Latest day",
    "latest": "Latest",
    "change": "Change since baseline",
    "target": "Target",
    "vs_target": "Latest minus target",
    "target_met": "Target met",
    "trend": "Better or worse",
}


def read(engine: Engine, frames: Frames) -> pd.DataFrame:
    """The measurements of the cases in `frames`, oldest first within each region."""
    query = (
        select(_M.c.case_id, _C.c.key, _M.c.indicator, _M.c.region, _M.c.measured_on, _M.c.value)
        .join(_C, _C.c.id == _M.c.case_id)
        .order_by(_C.c.key, _M.c.indicator, _M.c.region, _M.c.measured_on)
    )
    with engine.connect() as conn:
        found = pd.DataFrame(conn.execute(query).all(), columns=COLUMNS)
    found = found[found["case_id"].isin(frames.cases.index)].reset_index(drop=True)
    found["measured_on"] = pd.to_datetime(found["measured_on"])
    found["value"] = found["value"].astype(float)
    return found


def specs(frames: Frames) -> dict[tuple[int, str], IndicatorSpec]:
    """Each case's indicator declarations by (case id, indicator key), from its pinned
    template."""
    out: dict[tuple[int, str], IndicatorSpec] = {}
    cases = frames.cases
    for case_id, kind, version in zip(
        cases.index, cases["pilot"].astype(str), cases["template_version"], strict=True
    ):
        template = frames.templates.get((kind, int(version)))
        for spec in template.indicators if template is not None else ():
            out[(int(case_id), spec.key)] = spec
    return out


def benchmark(found: pd.DataFrame, declared: dict[tuple[int, str], IndicatorSpec]) -> pd.DataFrame:
    """One row per case, indicator and region: baseline, latest, change, target and trend."""
    columns = ["case", "indicator", "unit", "region", "baseline_on", "baseline"]
    columns += ["latest_on", "latest", "change", "target", "vs_target", "target_met", "trend"]
    if found.empty:
        out = pd.DataFrame(columns=columns)
        out.attrs["labels"] = LABELS
        return out
    groups = found.groupby(["case_id", "case", "indicator", "region"], sort=True)
    first = groups.first()
    last = groups.last()
    out = pd.DataFrame(
        {
            "baseline_on": first["measured_on"],
            "baseline": first["value"],
            "latest_on": last["measured_on"],
            "latest": last["value"],
            "n": groups.size(),
        }
    ).reset_index()
    spec = [
        declared.get((int(c), str(i)))
        for c, i in zip(out["case_id"], out["indicator"], strict=True)
    ]
    out["unit"] = [s.unit if s else "" for s in spec]
    up = np.array([s is None or s.direction is Direction.UP for s in spec])
    out["target"] = [s.target if s and s.target is not None else np.nan for s in spec]
    out["change"] = out["latest"] - out["baseline"]
    out["vs_target"] = out["latest"] - out["target"]
    gain = np.where(up, out["change"], -out["change"])
    out["trend"] = np.select(
        [out["n"] < 2, gain > 0, gain < 0], ["baseline only", "better", "worse"], "unchanged"
    )
    met = np.where(up, out["latest"] >= out["target"], out["latest"] <= out["target"])
    out["target_met"] = pd.array(
        [None if np.isnan(t) else bool(m) for t, m in zip(out["target"], met, strict=True)],
        dtype="boolean",
    )
    out["indicator"] = [s.label if s else i for s, i in zip(spec, out["indicator"], strict=True)]
    out = out[columns]
    out.attrs["labels"] = LABELS
    return out


def chart(plt: Any, found: pd.DataFrame, declared: dict[tuple[int, str], IndicatorSpec]) -> Any:
    """One panel per indicator: each region's values over time (a region keeps its colour in
    every panel), the target dashed; one time axis and one legend for all panels."""
    from matplotlib.dates import DateFormatter, MonthLocator
    from matplotlib.lines import Line2D

    keys = list(dict.fromkeys(found["indicator"]))
    several = found["case"].nunique() > 1
    names = [
        f"{c} {r}" if several else str(r)
        for c, r in zip(found["case"], found["region"], strict=True)
    ]
    found = found.assign(line=names)
    palette = plt.get_cmap("tab10")
    colours = {name: palette(i % 10) for i, name in enumerate(sorted(set(names)))}
    first, last = found["measured_on"].min(), found["measured_on"].max()
    margin = max((last - first) * 0.05, pd.Timedelta(days=15))
    every = max(1, (last - first).days // 180)  # about six month ticks
    columns = 2 if len(keys) > 1 else 1
    rows = max(1, -(-len(keys) // columns))
    figure, grid = plt.subplots(rows, columns, figsize=(11, 3.3 * rows + 0.6), squeeze=False)
    for axes, key in zip(grid.flat, keys, strict=False):
        mine = found[found["indicator"] == key]
        spec = next(
            (declared[(int(c), key)] for c in mine["case_id"] if (int(c), key) in declared), None
        )
        for name, line in mine.groupby("line", sort=True):
            axes.plot(line["measured_on"], line["value"], marker="o", color=colours[name])
        if spec is not None and spec.target is not None:
            axes.axhline(spec.target, color=INK, linestyle="--", linewidth=1)
        title = spec.label if spec else key
        unit = f" ({spec.unit})" if spec and spec.unit else ""
        better = ""
        if spec is not None:
            better = "higher is better" if spec.direction is Direction.UP else "lower is better"
        axes.set_title(f"{title}{unit}\n{better}", fontsize=10)
        axes.set_xlim(first - margin, last + margin)
        # One locator and formatter per axis (matplotlib ties each to its axis); untyped upstream.
        axes.xaxis.set_major_locator(MonthLocator(interval=every))  # type: ignore[no-untyped-call]
        axes.xaxis.set_major_formatter(DateFormatter("%b %Y"))  # type: ignore[no-untyped-call]
        axes.tick_params(axis="x", labelsize=8)
        axes.grid(axis="y", alpha=0.3)
    for axes in list(grid.flat)[len(keys) :]:
        axes.set_axis_off()
    handles = [Line2D([], [], color=c, marker="o", label=n) for n, c in colours.items()]
    handles.append(Line2D([], [], color=INK, linestyle="--", label="target"))
    figure.legend(handles=handles, loc="lower center", ncol=min(len(handles), 5), frameon=False)
    figure.tight_layout(rect=(0, 0.6 / (3.3 * rows + 0.6), 1, 1))
    return figure
