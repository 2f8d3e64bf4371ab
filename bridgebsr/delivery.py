"""Running dispatch passes: in this process, or in several worker processes at once.

Delivery through Apprise spends its time in Python (each webhook call opens its own HTTP
connection through `requests`), so one process is bound by one core however many threads it
runs. `workers` > 1 starts that many processes, each a full dispatcher with its own engine,
post office and thread pool; the outbox's claim (one UPDATE per recipient group) keeps them
from taking the same rows, as it does for dispatchers on different machines.
"""

from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from multiprocessing import get_context

from bridgebsr.bootstrap import Runtime, build_runtime
from bridgebsr.settings import Settings
from notifications.outbox import DispatchReport, RunLinks, dispatch

# Messages in flight in one pass, shared by its worker processes: also the most a pass that
# dies can leave delivered but not recorded (sent again, and counted as resent, next time).
CONCURRENCY = 8


def deliver(
    rt: Runtime,
    *,
    now: datetime,
    links: RunLinks | None = None,
    workers: int | None = None,
    concurrency: int = CONCURRENCY,
) -> DispatchReport:
    """One dispatch pass over the outbox as of `now` (`workers` defaults to
    BRIDGEBSR_DISPATCH_WORKERS)."""
    workers = workers or rt.settings.dispatch_workers
    if workers <= 1:
        return dispatch(
            rt.engine, now=now, post=rt.post_office(), links=links, concurrency=concurrency
        )
    report = DispatchReport()
    per_worker = max(concurrency // workers, 1)
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_work, rt.settings, now, links, per_worker) for _ in range(workers)]
        for future in futures:
            report.merge(future.result())
    return report


def _work(
    settings: Settings, now: datetime, links: RunLinks | None, concurrency: int
) -> DispatchReport:
    rt = build_runtime(settings)
    try:
        return dispatch(
            rt.engine, now=now, post=rt.post_office(), links=links, concurrency=concurrency
        )
    finally:
        rt.engine.dispose()
