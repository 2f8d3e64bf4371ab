"""`make bench`: every benchmark in one run, each against its floor or peer, as ratios.

Prints one table and writes `benchmarks/results/latest.json`: a list of objects with `name`,
`size`, `ours_s`, `floor_s` (the floor's or the peer's time for the same work), `ratio`
(ours_s / floor_s), `target` (the largest ratio allowed) and `peak_rss_mb`. This machine is
shared and absolute times drift, so every figure is a ratio measured in the same run.

    python -m benchmarks.run            # full sizes
    python -m benchmarks.run --quick    # small sizes, under two minutes
    python -m benchmarks.run --only dispatch-http cli-start
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console

from benchmarks.common import (
    BACKENDS,
    Result,
    in_child,
    peak_rss_mb,
    result,
    results_table,
    write_json,
)

RESULTS = Path(__file__).parent / "results"
out = Console(width=150)
ADDED_SECONDS = 5.0  # what "the flow adds at most a few seconds over the bare sweep" allows
err = Console(stderr=True)


def _best(command: Sequence[str], repeat: int, env: dict[str, str] | None = None) -> float:
    """The fastest of `repeat` wall times of a command (start-up is noisy; the best is the
    least disturbed)."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - started)
    return min(times)


def cli_start(quick: bool) -> list[Result]:
    """`bridgebsr case list --json` on the demo store against `python -c "import sqlmodel"`;
    the command must not import Prefect (checked with -X importtime)."""
    python = sys.executable
    bridgebsr = str(Path(python).with_name("bridgebsr"))
    with tempfile.TemporaryDirectory(prefix="bridgebsr-cli-") as home:
        env = {**os.environ, "BRIDGEBSR_HOME": home}
        subprocess.run([bridgebsr, "demo"], check=True, capture_output=True, env=env)
        command = [bridgebsr, "case", "list", "--json"]
        imports = subprocess.run(
            [python, "-X", "importtime", *command], check=True, capture_output=True, env=env
        ).stderr.decode()
        loaded = {line.split("|")[-1].strip().split(".")[0] for line in imports.splitlines()}
        if "prefect" in loaded:
            raise RuntimeError("`bridgebsr case list` imported prefect")
        repeat = 3 if quick else 7
        ours = _best(command, repeat, env)
        floor = _best([python, "-c", "import sqlmodel"], repeat)
    return [result("cli-start (case list --json)", 1, ours, floor, 3.0, peak_rss_mb())]


def dispatch_http(quick: bool) -> list[Result]:
    """Dispatching notices to a loopback webhook against the same POSTs with httpx."""
    from benchmarks import dispatch_http as bench

    if quick:
        return [_standard(bench.run(1000, 8))]
    return [_standard(bench.run(10_000, 8)), _standard(bench.run(10_000, 8, workers=2))]


def _standard(result: dict[str, object]) -> Result:
    keys = ("name", "size", "ours_s", "floor_s", "ratio", "target", "peak_rss_mb")
    return {k: result[k] for k in keys}


def monitor_flow(quick: bool) -> list[Result]:
    """The monitor flow end to end against the same pass without Prefect (first pass over
    the backlog, then the next day), with the same task runs at 10 cases and at N."""
    from benchmarks import monitor_scale

    cases = 2_000 if quick else 100_000
    with tempfile.TemporaryDirectory(prefix="bridgebsr-monitor-") as tmp:
        output = Path(tmp) / "monitor.json"
        code = monitor_scale.main(["--cases", str(cases), "--next-day", "--output", str(output)])
        data = json.loads(output.read_text(encoding="utf-8"))
    if code != 0:
        err.print(f"[red]monitor_scale reported a failed check (exit {code})[/red]")
    results = []
    for label, day in zip(("first pass", "next day"), data["days"], strict=False):
        if not day["task_runs_equal"] or not day["floor_and_flow_did_the_same"]:
            raise RuntimeError(f"monitor flow ({label}): task runs or effects differ")
        floor_s = day["floor"]["seconds"]
        # The target is a few seconds on top of the bare pass, written as a ratio.
        target = round((floor_s + ADDED_SECONDS) / floor_s, 2)
        results.append(
            result(
                f"monitor-flow vs bare pass ({label})",
                cases,
                day["big"]["seconds"],
                floor_s,
                target,
                peak_rss_mb(),
            )
        )
    return results


def bulk_open(quick: bool) -> list[Result]:
    """Opening cases in bulk from a CSV file against Core executemany of the same rows, on
    SQLite and, when the server answers, PostgreSQL."""
    from benchmarks import bulk_open as bench

    sizes = {"sqlite": 2_000, "postgresql": 1_000} if quick else dict.fromkeys(BACKENDS, 10_000)
    return [_standard(r) for r in bench.run_backends(sizes)]


def kpi_scale(quick: bool) -> list[Result]:
    """KPIs over about 1,000,000 milestones against SQL GROUP BY for the same figures, on
    SQLite and, when the server answers, PostgreSQL."""
    from benchmarks import kpi_scale as bench

    sizes = {"sqlite": 5_000, "postgresql": 2_000} if quick else dict.fromkeys(BACKENDS, 100_000)
    return bench.run(sizes)


def peer_spiff(quick: bool) -> list[Result]:
    """The SME lifecycle, a transaction a step, against SpiffWorkflow running it as BPMN."""
    from benchmarks import peer_spiff as bench

    return [_standard(bench.run(100 if quick else 1_000))]


def monitor_sweep(quick: bool) -> list[Result]:
    """The monitor pass over about 1,000,000 milestones (first sweep, then again at the same
    date) against one INSERT ... SELECT writing the same outbox rows, on SQLite and, when the
    server answers, PostgreSQL; with the sweep's peak RSS against its budget."""
    from benchmarks import monitor_sweep as bench

    return bench.run(3_000 if quick else 100_000)


def door_pages(quick: bool) -> list[Result]:
    """The partners' door's My items and case page over 100,000 cases against the same
    pages' SQL replayed alone, with a p95 budget."""
    from benchmarks import door_pages as bench

    return bench.run(5_000 if quick else 100_000, repeat=30 if quick else 60)


BENCHMARKS: dict[str, Callable[[bool], list[Result]]] = {
    "cli-start": cli_start,
    "dispatch-http": dispatch_http,
    "monitor-flow": monitor_flow,
    "monitor-sweep": monitor_sweep,
    "kpis": kpi_scale,
    "bulk-open": bulk_open,
    "peer-spiff": peer_spiff,
    "door-pages": door_pages,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run")
    parser.add_argument("--quick", action="store_true", help="small sizes, under two minutes")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), help="run just these")
    parser.add_argument("--output", type=Path, default=RESULTS / "latest.json")
    args = parser.parse_args(argv)
    results: list[Result] = []
    for name in args.only or list(BENCHMARKS):
        err.log(f"benchmark {name} ({'quick' if args.quick else 'full'})")
        # Each in a fresh process of its own: its peak RSS is its own, not what an earlier
        # benchmark left this process holding.
        results += in_child(BENCHMARKS[name], args.quick)
    title = "bridgebsr benchmarks (ratios measured in one run)"
    out.print(results_table(title, results, floor_label="floor/peer, s"))
    write_json(args.output, results)
    err.log(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
