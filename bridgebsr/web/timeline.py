"""A case's plan against its forecast as a picture: one row per milestone and gate, the
agreed dates as a thin bar, the forecast as a thick one over it, and a line for today. The
page draws it as an inline SVG (no script, no inline style: the stylesheet colours it by
class), so this module only does the arithmetic."""

from dataclasses import dataclass
from datetime import date
from typing import Any

WIDTH = 960  # the drawing's width in SVG units; it scales to the page
LABEL = 300  # the left column holding the item names
ROW = 22
TOP = 26  # room for the month ticks


@dataclass(frozen=True)
class Bar:
    """One item's row: its name, agreed span and forecast span (x and width), its state."""

    y: int
    label: str
    key: str
    plan_x: float
    plan_w: float
    fore_x: float
    fore_w: float
    kind: str  # milestone | gate
    state: str  # done | late | critical | open | ...


@dataclass(frozen=True)
class Tick:
    x: float
    label: str


@dataclass(frozen=True)
class Timeline:
    width: int
    height: int
    label: int
    bars: list[Bar]
    ticks: list[Tick]
    today: float | None


def timeline(items: list[dict[str, Any]], today: date) -> Timeline:
    """The drawing of `items` (rows of `office.queries.show_case`: `planned_*`,
    `forecast_*`, `status`, `critical`, optionally `overdue`), in forecast order."""
    spans = [(_day(i["planned_start"]), _day(i["planned_due"])) for i in items]
    spans += [(_day(i["forecast_start"]), _day(i["forecast_due"])) for i in items]
    first = min([s for s, _ in spans] + [today])
    last = max([d for _, d in spans] + [today])
    days = max((last - first).days + 1, 1)
    scale = (WIDTH - LABEL - 10) / days

    def x(day: date) -> float:
        return round(LABEL + (day - first).days * scale, 1)

    def w(start: date, due: date) -> float:
        return round(max((due - start).days + 1, 1) * scale, 1)

    bars = []
    ordered = sorted(items, key=lambda i: (i["forecast_due"], i["key"]))
    for n, item in enumerate(ordered):
        ps, pd = _day(item["planned_start"]), _day(item["planned_due"])
        fs, fd = _day(item["forecast_start"]), _day(item["forecast_due"])
        kind = "gate" if "approvers" in item else "milestone"
        bars.append(
            Bar(
                y=TOP + n * ROW,
                label=_short(item["title"]),
                key=item["key"],
                plan_x=x(ps),
                plan_w=w(ps, pd),
                fore_x=x(fs),
                fore_w=w(fs, fd),
                kind=kind,
                state=_state(item),
            )
        )
    ticks = [] if first.day == 1 else [Tick(x(first), f"{first.day} {first:%b}")]
    month = date(first.year, first.month, 1)
    step = max(1, round(days / 30 / 12))  # at most about twelve ticks
    while month <= last:
        if month >= first:
            ticks.append(Tick(x(month), month.strftime("%b %Y" if month.month == 1 else "%b")))
        for _ in range(step):
            month = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    height = TOP + len(bars) * ROW + 6
    return Timeline(WIDTH, height, LABEL, bars, ticks, x(today))


def _day(text: str) -> date:
    return date.fromisoformat(text)


def _short(title: str, most: int = 40) -> str:
    return title if len(title) <= most else title[: most - 1] + "…"


def _state(item: dict[str, Any]) -> str:
    status = item["status"]
    if status in ("done", "approved", "waived"):
        return "done"
    if item.get("overdue"):
        return "late"
    if item.get("critical"):
        return "critical"
    return "open"
