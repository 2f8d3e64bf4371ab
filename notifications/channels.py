"""Team channels: chat services that hear of events, not of people.

A chat service in the Apprise config joins a channel by a tag `channel:NAME`, where NAME is
what the channel follows:

- `channel:all`: every event;
- `channel:KIND` (a pilot kind, `channel:ip-integration`): the events of that kind's cases;
- `channel:partner:CODE` (`channel:partner:DK-MV`): the events whose notices reach someone
  of that partner.

A channel gets one post per event (an item's ladder step: the same thing five council
members each get a notice of), whoever the recipients are, under its own quiet hours and
time zone, and, if it asks, one digest a day (`Channel`; the operator's settings say them).
Apprise keeps tags in lower case, so channel names are too (`partner:dk-mv`); the settings
name them in any case.

A tag equal to a contact's address is that person's own chat: it keeps getting their
notices, one per notice, under their preferences. So does, as before channels existed, a
service tagged with a bare partner code or pilot kind: a copy of each notice to each
recipient of that partner or kind. A channel's services carry only `channel:` tags, so they
never get those copies; a team channel moves from the bare tag to `channel:`.

This module is the channels' pure part: names, who hears what, and the rule a channel's
posts are planned by (the recipients' `plan`, read for the channel). Writing the posts is
`channel_posts`, sending them `channel_dispatch`.
"""

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import time
from pathlib import Path

from notifications.preferences import QUIET_FROM, QUIET_UNTIL, Recipient

TAG = "channel:"  # an Apprise tag that joins a channel: `channel:` + the channel's name
EVERYTHING = "all"  # the channel of every event
PARTNER = "partner:"  # the name of a partner's channel: `partner:` + its code


@dataclass(frozen=True)
class Channel:
    """A channel and how it wants its posts: its time zone, its quiet hours (None: none),
    a daily digest of what is not urgent, and the country whose public holidays have no
    digest ("" for none)."""

    name: str
    zone: str
    quiet: tuple[time, time] | None = (QUIET_FROM, QUIET_UNTIL)
    digest: bool = False
    country: str = ""

    @property
    def tag(self) -> str:
        """The Apprise tag of the services that take this channel's posts."""
        return TAG + self.name

    def reader(self) -> Recipient:
        """The channel as the recipients' rule (`plan`) reads a reader: its zone, quiet hours
        and digest; no daily cap (a channel gets one post per event)."""
        return Recipient(
            id=0,
            email=self.tag,
            partner="",
            zone=self.zone,
            quiet=self.quiet,
            digest=self.digest,
            country=self.country,
        )


def name_of(tag: str) -> str | None:
    """The channel a tag joins (None for a tag that joins none), in lower case as Apprise
    keeps tags: `channel:partner:DK-MV` joins `partner:dk-mv`."""
    tag = tag.strip().lower()
    return tag[len(TAG) :] or None if tag.startswith(TAG) else None


def hearing(subscribed: Collection[str], *, pilot: str, partners: Iterable[str]) -> list[str]:
    """The channels among `subscribed` that hear of an event of a `pilot` kind case whose
    notices reach people of `partners`, in a stable order."""
    follows = {EVERYTHING, pilot.lower(), *(PARTNER + p.lower() for p in partners)}
    return sorted(name for name in subscribed if name in follows)


def wants_partners(subscribed: Collection[str]) -> bool:
    """Whether any channel follows a partner (only then are recipients' partners read)."""
    return any(name.startswith(PARTNER) for name in subscribed)


def subscribed(config: Path | None) -> frozenset[str]:
    """The channels the chat services of the Apprise config at `config` join (none without
    one). Apprise loads here only when a config is given."""
    if config is None or not config.is_file():
        return frozenset()
    from notifications.probe import apprise_config

    return frozenset(n for t in apprise_config(config).tags if (n := name_of(t)))
