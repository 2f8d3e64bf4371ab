"""The addresses notices carry: a person's page link (`/l/<token>`, optionally straight to
`next`, a path on the site) and calendar feed (`/feeds/<token>.ics`), at
BRIDGEBSR_PUBLIC_URL (default the local app). Each call signs a fresh token; none is ever
stored. `NoticeLinks` makes them for a dispatch pass (the key read once)."""

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from bridgebsr.bootstrap import Runtime
from bridgebsr.settings import Settings
from bridgebsr.web import tokens
from models import utcnow
from models.notices import TAKEOVER


def case_path(key: str, item: str | None = None) -> str:
    """A case's page on the site, at one of its items (`/cases/IP-2026-0001#m-3`)."""
    path = f"/cases/{quote(key, safe='')}"
    return f"{path}#{quote(item, safe='')}" if item else path


class NoticeLinks:
    """Signed links for the messages of one dispatch pass (or any batch of links at `now`)."""

    def __init__(self, settings: Settings, now: datetime) -> None:
        self.base = settings.web_url()
        self.secret = settings.signing_key()
        self.days = {"page": settings.link_days, "feed": settings.feed_days}
        self.now = now

    def _token(self, contact_id: int, generation: int, purpose: tokens.Purpose) -> str:
        return tokens.issue(
            secret=self.secret,
            contact_id=contact_id,
            generation=generation,
            purpose=purpose,
            now=self.now,
            days=self.days[purpose],
        )

    def page(self, contact_id: int, generation: int, next_path: str | None = None) -> str:
        """The link that signs the person in and opens their page, or `next_path`."""
        url = f"{self.base}/l/{self._token(contact_id, generation, 'page')}"
        if next_path:
            url += "?" + urlencode({"next": next_path}, quote_via=quote, safe="/")
        return url

    def feed(self, contact_id: int, generation: int) -> str:
        """The person's calendar feed address."""
        return f"{self.base}/feeds/{self._token(contact_id, generation, 'feed')}.ics"

    def item(self, contact_id: int, generation: int, payload: Mapping[str, Any]) -> str | None:
        """The link straight to the item a notice is about; None for a notice about no one
        item (what a successor took over)."""
        case, item = payload.get("case"), payload.get("item")
        step = str(payload.get("step") or "")
        if not case or not item or step.startswith(TAKEOVER):
            return None
        return self.page(contact_id, generation, case_path(str(case), str(item)))


def personal_link(
    runtime: Runtime,
    contact_id: int,
    generation: int,
    *,
    next_path: str | None = None,
    now: datetime | None = None,
) -> str:
    """The link that signs `contact_id` in and opens their page, or `next_path` (a path on
    the site such as `/cases/IP-2026-0001#m-3`)."""
    return NoticeLinks(runtime.settings, now or utcnow()).page(contact_id, generation, next_path)


def feed_link(
    runtime: Runtime, contact_id: int, generation: int, *, now: datetime | None = None
) -> str:
    """The calendar feed address of `contact_id` (calendar apps poll it)."""
    return NoticeLinks(runtime.settings, now or utcnow()).feed(contact_id, generation)
