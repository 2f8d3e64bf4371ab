"""Running dispatch passes: in this process, or in several worker processes at once. Each
message carries its reader's signed links into the partners' door (`web.links`), made as it
is delivered.

Delivery through Apprise spends its time in Python (each webhook call opens its own HTTP
connection through `requests`), so one process is bound by one core however many threads it
runs. `workers` > 1 starts that many processes, each a full dispatcher with its own engine,
post office and thread pool; the outbox's claim (one UPDATE per recipient group) keeps them
from taking the same rows, as it does for dispatchers on different machines.
"""

from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from functools import partial
from multiprocessing import get_context
from typing import Any

from sqlmodel import Session

from bridgebsr.bootstrap import Runtime, build_runtime
from bridgebsr.errors import DiskFull, InvalidInput
from bridgebsr.office.people import deputies, working_days
from bridgebsr.office.stale import obsolete_notices
from bridgebsr.office.stale_posts import obsolete_posts
from bridgebsr.settings import Settings
from bridgebsr.store import case_rows as store
from bridgebsr.web.links import NoticeLinks
from models import CaseEvent, Source
from notifications.channel_dispatch import dispatch_channels
from notifications.outbox import (
    DispatchReport,
    DoorLinks,
    Recipient,
    RunLinks,
    dispatch,
    requeue_failed,
)
from notifications.post import BadChannel, PostOffice

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
    post = post_office(rt)  # a channel that can never deliver is refused before a row is taken
    if workers <= 1:
        report = _dispatch(rt, now, links, concurrency, post)
    else:
        report = DispatchReport()
        per_worker = max(concurrency // workers, 1)
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            futures = [
                pool.submit(_work, rt.settings, now, links, per_worker) for _ in range(workers)
            ]
            for future in futures:
                report.merge(future.result())
    if not report.disk_full:
        # The team channels' posts, one per event, in this process (they are few).
        report.channels = dispatch_channels(
            rt.engine,
            now=now,
            post=post,
            channels=rt.channels(),
            links=links,
            obsolete=partial(obsolete_posts, rt.engine),
        )
    return _whole(report)


def post_office(rt: Runtime) -> PostOffice:
    """The configured channels; a setting that can never deliver is refused as bad input."""
    try:
        return rt.post_office()
    except BadChannel as exc:
        raise InvalidInput(str(exc)) from None


def _whole(report: DispatchReport) -> DispatchReport:
    """The pass's report, or, when the local log ran out of room, the one-line error."""
    if report.disk_full:
        raise DiskFull(report.disk_full, "dispatch")
    return report


def _work(
    settings: Settings, now: datetime, links: RunLinks | None, concurrency: int
) -> DispatchReport:
    rt = build_runtime(settings)
    try:
        return _dispatch(rt, now, links, concurrency)
    finally:
        rt.engine.dispose()


def _dispatch(
    rt: Runtime,
    now: datetime,
    links: RunLinks | None,
    concurrency: int,
    post: PostOffice | None = None,
) -> DispatchReport:
    """One pass in this process; notices the case office no longer wants are dropped."""
    post = post or rt.post_office()
    report = dispatch(
        rt.engine,
        now=now,
        post=post,
        links=links,
        concurrency=concurrency,
        obsolete=partial(obsolete_notices, rt.engine),
        deputies=partial(deputies, rt.engine),
        working_days=working_days,
        door=door_links(rt.settings, now),
    )
    if post.full is not None:
        report.disk_full = str(post.local_log)
    return report


def door_links(settings: Settings, now: datetime) -> DoorLinks:
    """The links a message carries, signed at `now` for its reader (their own generation):
    their page, and the item a notice is about."""
    links = NoticeLinks(settings, now)

    def door(reader: Recipient, payload: dict[str, Any] | None) -> str | None:
        if payload is None:
            return links.page(reader.id, reader.link_generation)
        return links.item(reader.id, reader.link_generation, payload)

    return door


def retry_failed(
    *,
    session: Session,
    now: datetime,
    actor: str,
    since: datetime | None = None,
    recipient: str | None = None,
) -> list[int]:
    """Put failed notices (last tried at or after `since`, to `recipient`, if given) back in
    the queue, due at `now` with their attempts reset, and say in each case's audit trail who
    did; one transaction. The notices' ids."""
    conn = session.connection()
    to = store.contact_by_email(conn, recipient).id if recipient else None
    requeued = requeue_failed(conn, now=now, since=since, recipient=to, by=actor)
    by_case: dict[int, list[int]] = defaultdict(list)
    for nid, case_id in requeued:
        by_case[case_id].append(nid)
    session.add_all(
        CaseEvent(
            case_id=case_id,
            at=now,
            actor=actor,
            kind="notices.retried",
            after={"notices": sorted(ids)},
            source=Source.CLI,
        )
        for case_id, ids in by_case.items()
    )
    session.commit()
    return sorted(nid for nid, _ in requeued)
