"""The portfolio report: the KPI tables of `bridgebsr.reports.kpis` as CSV files, one XLSX
workbook or one self-contained HTML page with plots, for the whole portfolio or one
partner's cases.

- CSV: a folder with one file per view (UTF-8 with BOM, so spreadsheet programs read the
  accents right), RFC 4180: CRLF between records and any cell holding a quote, comma, CR or LF
  quoted, so a line break inside a cell never starts a new record.
- XLSX: one sheet per view, dates as dates and numbers as numbers, frozen header rows, columns
  sized to their content. Characters XML cannot hold (control characters other than tab, LF
  and CR; U+FFFE, U+FFFF) are written as OOXML's `_xHHHH_` escape, which Excel and LibreOffice
  show as the character, and text that already reads `_xHHHH_` has its underscore escaped
  (`_x005F_xHHHH_`) so it shows as written.
- HTML: one file that opens in any browser with no network: the tables, a Gantt chart per open
  case (agreed plan against forecast, the original due date marked), the on-time trend per
  pilot by month and the milestones overdue by partner, as embedded PNG images.

Every report carries the three plans of each open case's milestones (the `plans` view): the
original (`baseline_*`, set at open), the agreed plan in force (`planned_*`, moved by a
reschedule or rebaseline) and the forecast (`forecast_*`). The milestone KPIs say which they
measure: `on_time_pct` against the agreed due date in force when the item fell due,
`on_time_baseline_pct` against the original.

Text that came from people (case titles, notes) never runs: a cell starting with `=`, `+`,
`-`, `@`, a tab or a carriage return gets a leading apostrophe in CSV and XLSX, and HTML
escapes everything. Files are written to a temporary name and renamed, so a reader never sees
half a report.
"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Engine, select
from sqlmodel import col

from bridgebsr.errors import InvalidInput
from bridgebsr.exchange.files import replacing
from bridgebsr.reports import kpis
from models import CLOSED_CASE, Case, Milestone, Partner

FORMATS = ("csv", "xlsx", "html")
GANTT_CASES = 40  # open cases drawn as Gantt charts in the HTML, at risk first
_RISKY = ("=", "+", "-", "@", "\t", "\r")
# Characters XML 1.0 cannot carry, and text that would read as an OOXML escape (ST_Xstring).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_LOOKS_ESCAPED = re.compile("_(?=x[0-9A-Fa-f]{4}_)")


@dataclass(frozen=True)
class Report:
    """The views of one report, by sheet name, and what its plots need."""

    as_of: date
    scope: str
    views: dict[str, pd.DataFrame]
    gantt: pd.DataFrame  # milestones of the open cases drawn: original, agreed, forecast
    facts: pd.DataFrame  # one row per milestone (kpis.milestone_facts)


def build(engine: Engine, *, as_of: date, partner: str | None = None) -> Report:
    """Every KPI view as of `as_of`, for the portfolio or for the cases `partner` leads."""
    frames = kpis.load(engine, as_of=as_of)
    scope = "the whole portfolio"
    if partner:
        code = partner.strip().upper()
        with engine.connect() as conn:
            name = conn.execute(
                select(col(Partner.name)).where(col(Partner.code) == code)
            ).scalar_one_or_none()
        if name is None:
            raise InvalidInput(f"no partner '{partner}'; see `bridgebsr partners list`")
        frames = scoped(frames, code)
        scope = f"{code} ({name})"
    views = kpis.build_all(frames)
    facts = kpis.milestone_facts(frames)
    keys = [str(k) for k in views["forecast"]["case"]]  # at risk, most slipped first
    plans = _plan_rows(engine, keys)
    views["plans"] = plans.drop(columns=["seq"])
    return Report(
        as_of=as_of,
        scope=scope,
        views=views,
        gantt=plans[plans["case"].isin(keys[:GANTT_CASES])].reset_index(drop=True),
        facts=facts,
    )


def scoped(frames: kpis.Frames, partner: str) -> kpis.Frames:
    """The frames of the cases whose lead partner is `partner`, and nothing of the others."""
    return kpis.only_cases(frames, frames.cases["partner"].astype(str) == partner)


def _plan_rows(engine: Engine, keys: list[str]) -> pd.DataFrame:
    """The milestones of the open cases `keys` (in that order), each with its original,
    agreed and forecast dates."""
    columns = ["case", "seq", "milestone", "title", "status"]
    columns += ["baseline_start", "baseline_due", "planned_start", "planned_due"]
    columns += ["forecast_start", "forecast_due"]
    if not keys:
        return pd.DataFrame(columns=columns)
    query = (
        select(
            col(Case.key),
            col(Milestone.seq),
            col(Milestone.key),
            col(Milestone.title),
            col(Milestone.status),
            col(Milestone.baseline_start),
            col(Milestone.baseline_due),
            col(Milestone.planned_start),
            col(Milestone.planned_due),
            col(Milestone.forecast_start),
            col(Milestone.forecast_due),
        )
        .join(Case, col(Case.id) == Milestone.case_id)
        .where(col(Case.status).not_in(list(CLOSED_CASE)))
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    frame = pd.DataFrame([tuple(r) for r in rows], columns=columns)
    frame["status"] = frame["status"].map(lambda s: getattr(s, "value", s))
    rank = {key: i for i, key in enumerate(keys)}
    frame = frame[frame["case"].isin(rank)]
    order = frame["case"].map(rank).to_numpy() * 100_000 + frame["seq"].to_numpy()
    ordered: pd.DataFrame = frame.iloc[order.argsort(kind="stable")]
    return ordered.reset_index(drop=True)


# --- safe cells ------------------------------------------------------------------------------


def neutralised(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy whose text cells cannot run as spreadsheet formulas."""
    return _map_text(frame, _safe_cell)


def _safe_cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_RISKY):
        return "'" + value
    return value


def ooxml_escaped(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy whose text cells and column names an XLSX file can hold exactly."""
    out = _map_text(frame, _ooxml_text)
    out.columns = [_ooxml_text(c) for c in out.columns]
    return out


def _ooxml_text(value: Any) -> Any:
    """`value` in OOXML's escaped form: `_xHHHH_` for a character XML cannot hold, and
    `_x005F_` for the underscore of text that would otherwise read as such an escape."""
    if not isinstance(value, str) or ("_" not in value and not _NOT_XML.search(value)):
        return value
    value = _LOOKS_ESCAPED.sub("_x005F_", value)
    return _NOT_XML.sub(lambda m: f"_x{ord(m.group(0)):04X}_", value)


def _map_text(frame: pd.DataFrame, change: Callable[[Any], Any]) -> pd.DataFrame:
    """A copy with `change` applied to every cell of its text (and categorical) columns."""
    out = frame.copy()
    for name in out.columns:
        dtype = out[name].dtype
        if isinstance(dtype, pd.CategoricalDtype):
            out[name] = out[name].astype(object).map(change)
        elif pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype):
            out[name] = out[name].map(change)
    return out


def flat(frame: pd.DataFrame) -> pd.DataFrame:
    """Index as columns, periods as text: the shape a file keeps."""
    out = frame.reset_index() if not isinstance(frame.index, pd.RangeIndex) else frame.copy()
    for name in out.columns:
        if isinstance(out[name].dtype, pd.PeriodDtype):
            out[name] = out[name].astype(str)
    out.columns = [str(c) for c in out.columns]
    return out


# --- writing ---------------------------------------------------------------------------------


def write(report: Report, fmt: str, out: Path) -> list[Path]:
    """Write the report as `fmt` at `out` (a folder for CSV); the files written."""
    writers: dict[str, Callable[[Report, Path], list[Path]]] = {
        "csv": write_csv,
        "xlsx": write_xlsx,
        "html": write_html,
    }
    if fmt not in writers:
        raise InvalidInput(f"--format '{fmt}' is not one of: {', '.join(FORMATS)}")
    return writers[fmt](report, out)


def write_csv(report: Report, folder: Path) -> list[Path]:
    """One CSV file per view in `folder`."""
    if folder.suffix.lower() == ".csv":
        raise InvalidInput(f"{folder}: CSV reports are a folder of files; give a folder path")
    written = []
    for name, frame in report.views.items():
        path = folder / f"{name}.csv"
        with replacing(path, make_folder=True) as tmp:
            neutralised(flat(frame)).to_csv(
                tmp, index=False, encoding="utf-8-sig", lineterminator="\r\n"
            )
        written.append(path)
    return written


def write_xlsx(report: Report, path: Path) -> list[Path]:
    """One workbook, one sheet per view, frozen headers, typed columns."""
    from openpyxl.utils import get_column_letter

    with replacing(path, make_folder=True) as tmp:
        with pd.ExcelWriter(tmp, engine="openpyxl") as book:
            about = ooxml_escaped(neutralised(_about(report)))
            about.to_excel(book, sheet_name="about", index=False)
            for name, frame in report.views.items():
                table = ooxml_escaped(neutralised(flat(frame)))
                sheet = name[:31]
                table.to_excel(book, sheet_name=sheet, index=False)
                ws = book.sheets[sheet]
                ws.freeze_panes = "A2"
                for i, column in enumerate(table.columns, start=1):
                    width = max([len(str(column)), *(len(str(v)) for v in table[column].head(200))])
                    ws.column_dimensions[get_column_letter(i)].width = min(width + 2, 60)
                    if pd.api.types.is_datetime64_any_dtype(table[column]):
                        for cell in ws[get_column_letter(i)][1:]:
                            cell.number_format = "yyyy-mm-dd"
    return [path]


def _about(report: Report) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "field": ["report", "scope", "as of", "views"],
            "value": [
                "Bridge-BSR portfolio report (bridgebsr)",
                report.scope,
                report.as_of.isoformat(),
                ", ".join(report.views),
            ],
        }
    )


def write_html(report: Report, path: Path) -> list[Path]:
    """One self-contained page: plots as embedded PNG images, then every table."""
    plots = [
        ("On time by pilot, by month of finish", _png(_trend_plot, report)),
        ("Milestones overdue now, by lead partner", _png(_overdue_plot, report)),
    ]
    plots += [
        (f"{case}: agreed plan against forecast", _png(_gantt_plot, report, case))
        for case in dict.fromkeys(report.gantt["case"])
    ]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Bridge-BSR portfolio report, {report.as_of:%d %B %Y}</title>",
        "<style>body{font-family:sans-serif;margin:2em;color:#1d2733}"
        "table{border-collapse:collapse;margin:1em 0;font-size:13px}"
        "th,td{border:1px solid #cbd2d9;padding:3px 6px;text-align:right}"
        "th{background:#eef2f5}td:first-child,th:first-child{text-align:left}"
        "img{max-width:100%;display:block;margin:1em 0}</style></head><body>",
        f"<h1>Bridge-BSR portfolio report: {escape(report.scope)}</h1>",
        f"<p>As of {report.as_of:%A %d %B %Y}. Produced by bridgebsr from the case store and "
        "its audit trail.</p>",
        "<h2>Plots</h2>",
    ]
    for title, png in plots:
        alt = escape(title, quote=True)
        parts.append(f"<h3>{escape(title)}</h3>")
        parts.append(f"<img alt='{alt}' src='data:image/png;base64,{png}'>")
    for name, frame in report.views.items():
        parts.append(f"<h2 id='{escape(name, quote=True)}'>{escape(name.replace('_', ' '))}</h2>")
        parts.append(flat(frame).to_html(index=False, escape=True, na_rep="", border=0))
    parts.append("</body></html>")
    with replacing(path, make_folder=True) as tmp:
        tmp.write_text("\n".join(parts), encoding="utf-8")
    return [path]


# --- plots -----------------------------------------------------------------------------------


def _png(draw: Callable[..., Any], report: Report, *args: Any) -> str:
    import matplotlib

    matplotlib.use("Agg")  # no display; files only
    import matplotlib.pyplot as plt

    figure = draw(plt, report, *args)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _trend_plot(plt: Any, report: Report) -> Any:
    facts = report.facts
    done = facts[facts["done"]].copy()
    figure, axes = plt.subplots(figsize=(8, 3.5))
    if done.empty:
        axes.text(0.5, 0.5, "no milestone done yet", ha="center", va="center")
    else:
        done["month"] = pd.to_datetime(done["finished_on"]).dt.to_period("M").astype(str)
        trend = done.groupby(["month", "pilot"], observed=True)["on_time"].mean().unstack()
        (trend * 100).plot(ax=axes, marker="o")
        axes.set_ylim(0, 105)
        axes.set_ylabel("% on time")
        axes.set_xlabel("month of finish")
        axes.legend(title="pilot", fontsize=8)
    axes.set_title("Milestones done on time")
    return figure


def _overdue_plot(plt: Any, report: Report) -> Any:
    facts = report.facts
    counts = facts[facts["overdue_now"]].groupby("partner", observed=True).size()
    counts = counts[counts > 0].sort_values()
    figure, axes = plt.subplots(figsize=(8, max(2.0, 0.35 * len(counts) + 1)))
    if counts.empty:
        axes.text(0.5, 0.5, "nothing overdue", ha="center", va="center")
    else:
        axes.barh([str(i) for i in counts.index], counts.to_numpy(), color="#c0392b")
        axes.set_xlabel("milestones overdue")
    axes.set_title(f"Overdue as of {report.as_of}")
    return figure


def _gantt_plot(plt: Any, report: Report, case: str) -> Any:
    rows = report.gantt[report.gantt["case"] == case].reset_index(drop=True)
    figure, axes = plt.subplots(figsize=(9, 0.32 * len(rows) + 1.2))
    for i, row in rows.iterrows():
        y = -int(str(i))
        planned = pd.Timestamp(row["planned_start"]), pd.Timestamp(row["planned_due"])
        forecast = pd.Timestamp(row["forecast_start"]), pd.Timestamp(row["forecast_due"])
        axes.barh(
            y + 0.18,
            (planned[1] - planned[0]).days + 1,
            left=planned[0],
            height=0.3,
            color="#95a5a6",
            label="agreed" if i == 0 else None,
        )
        original = pd.Timestamp(row["baseline_due"])
        axes.plot(
            [original, original],
            [y - 0.4, y + 0.4],
            color="#1d2733",
            linewidth=1,
            label="original due" if i == 0 else None,
        )
        late = forecast[1] > planned[1]
        axes.barh(
            y - 0.18,
            (forecast[1] - forecast[0]).days + 1,
            left=forecast[0],
            height=0.3,
            color="#c0392b" if late else "#2e86c1",
            label="forecast" if i == 0 else None,
        )
    axes.set_yticks([-i for i in range(len(rows))])
    axes.set_yticklabels([str(t)[:40] for t in rows["title"]], fontsize=7)
    axes.axvline(pd.Timestamp(report.as_of), color="#1d2733", linestyle="--", linewidth=1)
    axes.legend(fontsize=7, loc="lower left")
    axes.set_title(case)
    figure.autofmt_xdate()
    return figure
