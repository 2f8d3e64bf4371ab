"""What a dispatch pass did, in outbox rows and in messages."""

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from notifications.preferences import Plan

if TYPE_CHECKING:
    from notifications.channel_dispatch import ChannelReport


@dataclass
class DispatchReport:
    """What one dispatch pass did, in outbox rows (and in messages)."""

    sent: int = 0
    held: int = 0
    retrying: int = 0
    failed: int = 0
    messages: int = 0
    digests: int = 0
    summaries: int = 0
    resent: int = 0  # rows sent again after an attempt whose outcome was never recorded
    obsolete: int = 0  # rows dropped unsent: the case office no longer wants them
    errors: list[str] = field(default_factory=list)
    bundles: list[dict[str, Any]] = field(default_factory=list)  # digests and summaries
    # Held rows by why (QUIET, DIGEST, CAP): how many, and the earliest and latest they wait for.
    waiting: dict[str, tuple[int, datetime, datetime]] = field(default_factory=dict)
    disk_full: str = ""  # where the local log ran out of room, if it did
    # What the pass did with the team channels' posts (`channel_dispatch`), if it got to them.
    channels: "ChannelReport | None" = None

    def merge(self, other: "DispatchReport") -> None:
        """Add another pass's counts (another worker's, say) to these."""
        for name in _COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors += other.errors
        self.bundles += other.bundles
        for why, (count, earliest, latest) in other.waiting.items():
            self._wait(why, count, earliest, latest)
        self.disk_full = self.disk_full or other.disk_full

    def note_holds(self, plan: Plan) -> None:
        """Count a plan's held rows by why, with the times they wait until."""
        for nid, why in plan.why.items():
            self._wait(why, 1, plan.holds[nid], plan.holds[nid])

    def _wait(self, why: str, count: int, earliest: datetime, latest: datetime) -> None:
        had = self.waiting.get(why)
        if had is not None:
            count, earliest, latest = had[0] + count, min(had[1], earliest), max(had[2], latest)
        self.waiting[why] = (count, earliest, latest)

    def held_for(self) -> dict[str, dict[str, Any]]:
        """Held rows by why (quiet_hours, digest, cap): count, earliest and latest until."""
        return {
            why: {"count": n, "earliest": first.isoformat(), "latest": last.isoformat()}
            for why, (n, first, last) in sorted(self.waiting.items())
        }

    def summary(self) -> dict[str, Any]:
        """Counts for the CLI and the flow (the channels' as `posts_sent`, ... when the pass
        got to them)."""
        counts = {name: getattr(self, name) for name in _COUNTS}
        if self.channels is not None:
            counts |= {f"posts_{k}": v for k, v in self.channels.summary().items()}
        return counts


_COUNTS = (
    *("sent", "held", "retrying", "failed", "messages", "digests", "summaries", "resent"),
    "obsolete",
)
