"""The plots of the HTML report, drawn with matplotlib on the figure module it is given.

- `trend`: milestones done on time, per pilot, on a continuous month axis from the first
  month with a finish to the last (a month with none is on the axis, with no point and no
  line across it), each point labelled with how many milestones it measures (`n`).
- `overdue`: milestones overdue now, by lead partner.
- `gantt`: one open case, every milestone and gate in plan order: the agreed plan as a light
  bar, the forecast as a blue bar (red when it ends past the agreed due date), finished work
  as a grey hatched bar from its agreed start to its finish, gates as diamonds at their
  forecast (hollow once decided), the original due date as a black tick and today as a
  dashed line, all in a legend; titles wrapped, never cut.
"""

from __future__ import annotations

import base64
import io
import textwrap
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from bridgebsr.reports.portfolio import Report

AGREED = "#d5dbe0"
ON_TIME = "#2e86c1"
LATE = "#c0392b"
DONE = "#7f8c8d"
INK = "#1d2733"
FINISHED = ("done", "waived", "approved", "rejected")
LABEL_WIDTH = 34  # characters per line of an item's title


def monthly_on_time(facts: pd.DataFrame) -> tuple[pd.PeriodIndex, pd.DataFrame, pd.DataFrame]:
    """Every month from the first finish to the last, and per pilot the % done on time and
    the number done in each (NaN and 0 where none was done)."""
    done = facts[facts["done"]] if "done" in facts else facts.head(0)
    if done.empty:
        empty = pd.PeriodIndex([], freq="M")
        return empty, pd.DataFrame(index=empty), pd.DataFrame(index=empty)
    month = pd.to_datetime(done["finished_on"]).dt.to_period("M")
    months = pd.period_range(month.min(), month.max(), freq="M")
    pilot = done["pilot"].astype(str)
    grouped = done["on_time"].astype(float).groupby([month, pilot])
    pct = (grouped.mean() * 100).unstack().reindex(months)
    count = grouped.size().unstack().reindex(months).fillna(0).astype(int)
    return months, pct, count


def trend(plt: Any, report: Report) -> Any:
    months, pct, count = monthly_on_time(report.facts)
    figure, axes = plt.subplots(figsize=(11, 4))
    if len(months) == 0:
        axes.text(0.5, 0.5, "no milestone done yet", ha="center", va="center")
        axes.set_axis_off()
    else:
        x = np.arange(len(months))
        for pilot in pct.columns:
            values = pct[pilot].to_numpy(dtype=float)  # NaN: no point, the line breaks
            (line,) = axes.plot(x, values, marker="o", label=pilot)
            for xi, value, n in zip(x, values, count[pilot].to_numpy(), strict=True):
                if n:
                    axes.annotate(
                        f"n={n}",
                        (xi, value),
                        textcoords="offset points",
                        xytext=(0, 7),
                        ha="center",
                        fontsize=7,
                        color=line.get_color(),
                    )
        axes.set_xticks(x)
        axes.set_xticklabels([f"{m:%b %Y}" for m in months], rotation=45, ha="right")
        axes.set_xlim(-0.5, len(months) - 0.5)
        axes.set_ylim(0, 112)
        axes.set_ylabel("% done on time")
        axes.set_xlabel("month of finish (n = milestones done that month)")
        axes.legend(
            title="pilot", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False
        )
        axes.grid(axis="y", color="#eef2f5")
    axes.set_title("Milestones done on time, by month")
    return figure


def overdue(plt: Any, report: Report) -> Any:
    facts = report.facts
    counts = facts[facts["overdue_now"]].groupby("partner", observed=True).size()
    counts = counts[counts > 0].sort_values()
    figure, axes = plt.subplots(figsize=(8, max(2.0, 0.35 * len(counts) + 1)))
    if counts.empty:
        axes.text(0.5, 0.5, "nothing overdue", ha="center", va="center")
        axes.set_axis_off()
    else:
        axes.barh([str(i) for i in counts.index], counts.to_numpy(), color=LATE)
        axes.set_xlabel("milestones overdue")
        for y, n in enumerate(counts.to_numpy()):
            axes.annotate(str(n), (n, y), xytext=(3, 0), textcoords="offset points", va="center")
    axes.set_title(f"Milestones overdue on {report.as_of:%d %B %Y}, by lead partner")
    return figure


def gantt(plt: Any, report: Report, case: str) -> Any:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    rows = report.gantt[report.gantt["case"] == case].reset_index(drop=True)
    labels = [_label(row) for _, row in rows.iterrows()]
    lines = sum(label.count("\n") + 1 for label in labels)
    figure, axes = plt.subplots(figsize=(13, 0.3 * lines + 0.25 * len(rows) + 2.2))
    for i, row in rows.iterrows():
        y = -int(str(i))
        kind = str(row.get("kind", "milestone"))
        finished = str(row["status"]) in FINISHED
        planned = _day(row["planned_start"]), _day(row["planned_due"])
        forecast = _day(row["forecast_start"]), _day(row["forecast_due"])
        original = _day(row["baseline_due"])
        axes.plot([original, original], [y - 0.4, y + 0.4], color=INK, linewidth=1.2)
        if kind == "gate":
            marker = "none" if finished else (LATE if forecast[1] > planned[1] else ON_TIME)
            axes.scatter(
                [forecast[1]],
                [y],
                marker="D",
                s=60,
                facecolors=marker if marker != "none" else "white",
                edgecolors=DONE if finished else marker,
                zorder=3,
            )
            continue
        axes.barh(y + 0.17, _span(planned), left=planned[0], height=0.3, color=AGREED)
        if finished:  # from the agreed start (or its actual start, if earlier) to its finish
            worked = min(planned[0], forecast[0]), forecast[1]
            axes.barh(
                y - 0.17,
                _span(worked),
                left=worked[0],
                height=0.3,
                color="#e5e8e8",
                edgecolor=DONE,
                hatch="////",
            )
        else:
            late = forecast[1] > planned[1]
            axes.barh(
                y - 0.17,
                _span(forecast),
                left=forecast[0],
                height=0.3,
                color=LATE if late else ON_TIME,
            )
    axes.set_yticks([-i for i in range(len(rows))])
    axes.set_yticklabels(labels, fontsize=8)
    axes.set_ylim(-len(rows) + 0.4, 0.6)
    axes.axvline(pd.Timestamp(report.as_of), color=INK, linestyle="--", linewidth=1)
    legend = [
        Patch(color=AGREED, label="agreed plan"),
        Patch(color=ON_TIME, label="forecast, on time"),
        Patch(color=LATE, label="forecast, past agreed due"),
        Patch(
            facecolor="#e5e8e8", edgecolor=DONE, hatch="////", label="done / waived (to its finish)"
        ),
        Line2D([], [], marker="D", color=ON_TIME, linestyle="none", label="gate (forecast)"),
        Line2D(
            [],
            [],
            marker="D",
            markerfacecolor="white",
            markeredgecolor=DONE,
            linestyle="none",
            label="gate decided",
        ),
        Line2D([], [], color=INK, linewidth=1.2, label="original due (baseline)"),
        Line2D([], [], color=INK, linestyle="--", linewidth=1, label="today"),
    ]
    axes.legend(
        handles=legend, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False
    )
    axes.grid(axis="x", color="#eef2f5")
    axes.set_axisbelow(True)
    figure.autofmt_xdate()
    return figure


def _label(row: pd.Series[Any]) -> str:
    kind = "gate: " if str(row.get("kind", "milestone")) == "gate" else ""
    return textwrap.fill(f"{kind}{row['title']}", LABEL_WIDTH)


def _day(value: Any) -> pd.Timestamp:
    return pd.Timestamp(value)


def _span(dates: tuple[pd.Timestamp, pd.Timestamp]) -> int:
    return max((dates[1] - dates[0]).days + 1, 1)


def indicators(plt: Any, report: Report) -> Any:
    """The regions' indicator values against their baseline and target (`reports.indicators`)."""
    from bridgebsr.reports import indicators as measured

    return measured.chart(plt, report.measured, report.indicator_specs)


def png(draw: Callable[..., Any], report: Report, *args: Any) -> str:
    """`draw(plt, report, *args)` as a PNG, base64-encoded for a page or a workbook."""
    import matplotlib

    matplotlib.use("Agg")  # no display; files only
    import matplotlib.pyplot as plt

    figure = draw(plt, report, *args)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
