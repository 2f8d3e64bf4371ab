"""The addresses notices carry: a person's page link (`/l/<token>`, optionally straight to
`next`, a path on the site) and calendar feed (`/feeds/<token>.ics`), at
BRIDGEBSR_PUBLIC_URL (default the local app). Each call signs a fresh token; none is ever
stored."""

from datetime import datetime
from urllib.parse import quote, urlencode

from bridgebsr.bootstrap import Runtime
from bridgebsr.web import tokens
from models import utcnow


def _token(
    runtime: Runtime, contact_id: int, generation: int, purpose: tokens.Purpose, now: datetime
) -> str:
    settings = runtime.settings
    return tokens.issue(
        secret=settings.signing_key(),
        contact_id=contact_id,
        generation=generation,
        purpose=purpose,
        now=now,
        days=settings.link_days if purpose == "page" else settings.feed_days,
    )


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
    token = _token(runtime, contact_id, generation, "page", now or utcnow())
    url = f"{runtime.settings.web_url()}/l/{token}"
    if next_path:
        url += "?" + urlencode({"next": next_path}, quote_via=quote, safe="/")
    return url


def feed_link(
    runtime: Runtime, contact_id: int, generation: int, *, now: datetime | None = None
) -> str:
    """The calendar feed address of `contact_id` (calendar apps poll it)."""
    token = _token(runtime, contact_id, generation, "feed", now or utcnow())
    return f"{runtime.settings.web_url()}/feeds/{token}.ics"
