"""Personal signed links: who a token stands for, which of their link generations, what it
opens (a page or a calendar feed) and until when. itsdangerous signs the claims (HMAC with a
key derived from the secret key and this module's salt); nothing here is our own crypto.

A token is never stored: a notice gets a fresh one when it is delivered, and revoking a
person's links raises their `contacts.link_generation`, which every token names.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args

from itsdangerous import BadSignature, URLSafeSerializer

Purpose = Literal["page", "feed"]
PURPOSES: tuple[str, ...] = get_args(Purpose)
SALT = "bridgebsr.link"  # keeps link signatures apart from the session cookie's
DEFAULT_DAYS: dict[str, int] = {"page": 30, "feed": 365}


class TokenRefused(Exception):
    """A token that opens nothing; `reason` (short, for the denials table) says why."""

    reason = "refused"


class Forged(TokenRefused):
    """Not signed by this installation's key, or not a token at all."""

    reason = "forged"


class Expired(TokenRefused):
    """Signed, but past its expiry."""

    reason = "expired"


class WrongPurpose(TokenRefused):
    """Signed and current, but for the other door (a feed token used for a page, say)."""

    reason = "wrong-purpose"


@dataclass(frozen=True, slots=True)
class Claims:
    """What a valid token says: the contact, their link generation, the purpose, the expiry."""

    contact_id: int
    generation: int
    purpose: Purpose
    expires: datetime


def _serializer(secret: str) -> URLSafeSerializer:
    return URLSafeSerializer(secret, salt=SALT)


def issue(
    *,
    secret: str,
    contact_id: int,
    generation: int,
    purpose: Purpose,
    now: datetime,
    days: int | None = None,
) -> str:
    """A token for `contact_id` at `generation`, opening `purpose`, valid `days` from `now`
    (default 30 for a page, 365 for a feed)."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown link purpose {purpose!r}")
    expires = now + timedelta(days=days or DEFAULT_DAYS[purpose])
    claims = {"c": contact_id, "g": generation, "p": purpose, "e": int(expires.timestamp())}
    return str(_serializer(secret).dumps(claims))


def read(token: str, *, secret: str, purpose: Purpose, now: datetime) -> Claims:
    """The claims of `token` if it is ours, current and for `purpose`; else Forged, Expired
    or WrongPurpose. Whether the person and generation still hold is the caller's check."""
    try:
        data: Any = _serializer(secret).loads(token)
    except BadSignature:
        raise Forged() from None
    try:
        claims = Claims(
            int(data["c"]),
            int(data["g"]),
            data["p"],
            datetime.fromtimestamp(int(data["e"]), tz=UTC),
        )
    except (KeyError, TypeError, ValueError):
        raise Forged() from None  # signed by us, yet not a link: never a token to honour
    if claims.purpose not in PURPOSES:
        raise Forged()
    if now >= claims.expires:
        raise Expired()
    if claims.purpose != purpose:
        raise WrongPurpose()
    return claims
