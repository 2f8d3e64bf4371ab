"""What the benchmarks share: the peak RSS, a result row, the results table and the backends.

A result row is a mapping with at least `name`, `size`, `ours_s`, `floor_s`, `ratio`
(ours_s / floor_s), `target` (the largest ratio allowed, or None) and `peak_rss_mb`.
"""

from __future__ import annotations

import json
import pstats
import resource
import sys
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from rich.table import Table
from sqlalchemy.engine import make_url

from benchmarks import scratch_pg

Result = dict[str, Any]
BACKENDS = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}  # name: label in a result's name
_STATUS = "/proc/self/status"
_CLEAR_REFS = "/proc/self/clear_refs"


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB.

    On Linux the high-water mark of its own memory map (`VmHWM`): the `ru_maxrss` of a
    spawned child starts from its parent's size at the fork before the exec, so it can
    report the parent's peak. Elsewhere `ru_maxrss` (KB, or bytes on macOS).
    """
    try:
        with open(_STATUS, encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)


def in_child(function: Callable[..., Any], *args: Any) -> Any:
    """`function(*args)` in a fresh (spawned) process of its own; its result."""
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def reset_peak_rss() -> None:
    """Start `peak_rss_mb` again from the current size (Linux 4.0+: writing 5 to
    `clear_refs`), so that a benchmark run after another in one process reports its own
    peak; elsewhere the peak stays the process's."""
    try:
        with open(_CLEAR_REFS, "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
    except OSError:
        pass


def result(
    name: str, size: int, ours_s: float, floor_s: float, target: float | None, rss: float
) -> Result:
    """A result row (times in seconds, rounded for the table and the JSON)."""
    return {
        "name": name,
        "size": size,
        "ours_s": round(ours_s, 3),
        "floor_s": round(floor_s, 3),
        "ratio": round(ours_s / floor_s, 2) if floor_s else None,
        "target": target,
        "peak_rss_mb": round(rss, 1),
    }


def within_target(row: Mapping[str, Any]) -> bool:
    """Whether a row meets its target (a row without one always does)."""
    target, ratio = row["target"], row["ratio"]
    return target is None or (ratio is not None and ratio <= target)


Column = tuple[str, Callable[[Mapping[str, Any]], str]]  # a table column: label, cell


def results_table(
    title: str,
    results: Sequence[Mapping[str, Any]],
    *,
    size_label: str = "size",
    extra: Sequence[Column] = (),
    floor_label: str = "floor, s",
) -> Table:
    """One row per result: name, size, the `extra` columns, then the times, the ratio
    against its target and the peak RSS."""
    columns: list[Column] = [
        ("name", lambda r: str(r["name"])),
        (size_label, lambda r: f"{r['size']:,}"),
        *extra,
        ("ours, s", lambda r: f"{r['ours_s']:.2f}"),
        (floor_label, lambda r: f"{r['floor_s']:.2f}"),
        ("ratio", lambda r: "-" if r["ratio"] is None else f"{r['ratio']:.2f}x"),
        ("target", _verdict),
        ("peak RSS, MB", lambda r: f"{r['peak_rss_mb']:.0f}"),
    ]
    grid = Table(title=title)
    for label, _cell in columns:
        grid.add_column(label, justify="left" if label == "name" else "right")
    for row in results:
        grid.add_row(*(cell(row) for _label, cell in columns))
    return grid


def _verdict(row: Mapping[str, Any]) -> str:
    if row["target"] is None:
        return "-"
    return f"≤{row['target']}x {'ok' if within_target(row) else '[red]MISSED[/red]'}"


def backends(benchmark: str, wanted: Sequence[str] = tuple(BACKENDS)) -> list[str]:
    """The `wanted` backends this run can use: PostgreSQL only when the server answers;
    when it does not, one line on stderr says that its rows are skipped."""
    if "postgresql" not in wanted or scratch_pg.reachable():
        return list(wanted)
    server = make_url(scratch_pg.ADMIN_URL)
    sys.stderr.write(
        f"{benchmark}: PostgreSQL at {server.host}:{server.port} does not answer; "
        "its rows are skipped\n"
    )
    return [db for db in wanted if db != "postgresql"]


def write_json(path: Path, data: Any) -> None:
    """Results as indented JSON in `path` (its folder made if need be)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def print_profile(path: Path, top: int = 30) -> None:
    """A cProfile dump's `top` functions by cumulative time, then by their own time."""
    stats = pstats.Stats(str(path), stream=sys.stdout).strip_dirs()
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(30)
