"""The outbox as the rest of the project uses it: notices go in (`enqueue`, the one writer of
new rows), are delivered as each recipient's preferences say (`dispatch`), and failed ones
can be queued again (`requeue_failed`). The work is done in:

- `enqueue`: dedupe keys and the set-based insert of new notices;
- `claim`: taking due rows under a lease, and reading what planning them needs;
- `preferences`: the pure rule of what goes to a recipient now (quiet hours, digest, cap);
- `dispatch`: the pass, delivering in a thread pool and recording as outcomes arrive;
- `record`: receipts, outcomes, holds and marks in the outbox; `report`: the pass's counts.
"""

from notifications.claim import LEASE
from notifications.dispatch import DoorLinks, Links, Obsolete, RunLinks, dispatch
from notifications.enqueue import dedupe_key, enqueue
from notifications.preferences import (
    CAP,
    DIGEST,
    QUIET,
    Outgoing,
    Plan,
    Recipient,
    Row,
    backoff,
    digest_time,
    local_midnight,
    plan,
    quiet_until,
)
from notifications.record import requeue_failed
from notifications.report import DispatchReport

__all__ = [
    "CAP",
    "DIGEST",
    "LEASE",
    "QUIET",
    "DispatchReport",
    "DoorLinks",
    "Links",
    "Obsolete",
    "Outgoing",
    "Plan",
    "Recipient",
    "Row",
    "RunLinks",
    "backoff",
    "dedupe_key",
    "digest_time",
    "dispatch",
    "enqueue",
    "local_midnight",
    "plan",
    "quiet_until",
    "requeue_failed",
]
