"""Who is at the door: the signed-in person (read fresh on every request), the tokens of
links and feeds checked against the directory, CSRF tokens, and every refusal recorded in
`access_denials` and answered with the same plain 403 page.

A session holds a contact id, the link generation it was opened with, and a CSRF token; it
counts only while the contact has not retired and their generation has not moved on, so
`contacts revoke-links` and `contacts retire` end open sessions as well as links.
"""

import hmac
import re
import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, NoReturn

from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request

from bridgebsr.bootstrap import Runtime
from bridgebsr.rules.people import Person
from bridgebsr.rules.roles import is_coordinator as _coordinator_role
from bridgebsr.store import denials
from bridgebsr.store.people import link_holder
from bridgebsr.web import tokens
from bridgebsr.web.tokens import Purpose, TokenRefused

# Keys of the session cookie.
CONTACT = "contact"
GENERATION = "generation"
CSRF = "csrf"
CSRF_FIELD = "csrf_token"  # the hidden field every form posts

# More than LIMIT refusals from one address within WINDOW: 429 until the window passes.
LIMIT = 20
WINDOW = timedelta(minutes=10)

_TOKEN_IN_PATH = re.compile(r"^/(l|feeds)/[^/]+")


def masked(path: str) -> str:
    """`path` with the token of a link (`/l/...`) or feed (`/feeds/...`) left out: what logs
    and the denials table may keep."""
    return _TOKEN_IN_PATH.sub(r"/\1/***", path)


def client_address(conn: HTTPConnection) -> str:
    """The address a request came from (the proxy's client when `bridgebsr web --proxy`
    trusts it: uvicorn rewrites the client from X-Forwarded-For)."""
    return conn.client.host if conn.client else "unknown"


def _runtime(conn: HTTPConnection) -> Runtime:
    runtime: Runtime = conn.app.state.runtime
    return runtime


def _now(conn: HTTPConnection) -> datetime:
    now: datetime = conn.app.state.clock()
    return now


def deny(conn: HTTPConnection, reason: str, *, contact_id: int | None = None) -> NoReturn:
    """Refuse the request: one `access_denials` row (when, address, `reason`, the path without
    a token, who when known), then the plain 403 page."""
    with _runtime(conn).engine.begin() as db:
        denials.record(
            db,
            at=_now(conn),
            address=client_address(conn),
            reason=reason,
            path=masked(conn.url.path),
            contact_id=contact_id,
        )
    raise HTTPException(403)


def too_many_denials(conn: HTTPConnection) -> bool:
    """Whether this address was refused more than LIMIT times within WINDOW."""
    with _runtime(conn).engine.connect() as db:
        seen = denials.count_since(db, client_address(conn), _now(conn) - WINDOW)
    return seen > LIMIT


def _holder(conn: HTTPConnection, contact_id: int, generation: int) -> Person:
    """The contact `contact_id` if they exist, have not retired and their links are at
    `generation`; else a refusal."""
    with _runtime(conn).engine.connect() as db:
        found = link_holder(db, contact_id)
    if found is None:
        deny(conn, "unknown-contact")
    person, current, retired = found
    if retired:
        deny(conn, "retired", contact_id=contact_id)
    if generation != current:
        deny(conn, "revoked", contact_id=contact_id)
    return person


def token_person(conn: HTTPConnection, token: str, purpose: Purpose) -> tuple[Person, int]:
    """The person a `purpose` token stands for and its generation, or a refusal (forged,
    expired, wrong purpose, unknown contact, retired, revoked)."""
    try:
        claims = tokens.read(token, secret=conn.app.state.secret, purpose=purpose, now=_now(conn))
    except TokenRefused as refused:
        deny(conn, refused.reason)
    return _holder(conn, claims.contact_id, claims.generation), claims.generation


def feed_person(request: Request, token: str) -> Person:
    """The person a calendar feed token stands for, or the 403 (a page token opens no feed)."""
    return token_person(request, token, "feed")[0]


def sign_in(request: Request, person: Person, generation: int) -> None:
    """Start a fresh session for `person` (nothing of an earlier one kept, a new CSRF
    token)."""
    request.session.clear()
    request.session.update(
        {CONTACT: person.id, GENERATION: generation, CSRF: secrets.token_urlsafe(32)}
    )


def sign_out(request: Request) -> None:
    """End the session."""
    request.session.clear()


def viewer(request: Request) -> Person:
    """The signed-in person, read fresh from the directory; the 403 when there is no session,
    or the person has retired or their links were revoked since."""
    session = request.session
    contact, generation = session.get(CONTACT), session.get(GENERATION)
    if not isinstance(contact, int) or not isinstance(generation, int):
        deny(request, "no-session")
    return _holder(request, contact, generation)


def signed_in(request: Request) -> bool:
    """Whether the request carries a session (not checked against the directory)."""
    return isinstance(request.session.get(CONTACT), int)


def is_coordinator(person: Person) -> bool:
    """Whether `person` is the consortium's coordinator (sees every case)."""
    return _coordinator_role(person.role)


def csrf_token(request: Request) -> str:
    """The session's CSRF token (for the hidden `csrf_token` field of every form)."""
    token = request.session.get(CSRF)
    if not isinstance(token, str):
        token = request.session[CSRF] = secrets.token_urlsafe(32)
    return token


def check_csrf(request: Request, form: Mapping[str, Any]) -> None:
    """Refuse (403, recorded) a form without the session's CSRF token."""
    expected = request.session.get(CSRF)
    given = form.get(CSRF_FIELD)
    if not (
        isinstance(expected, str)
        and isinstance(given, str)
        and hmac.compare_digest(expected.encode(), given.encode())
    ):
        contact = request.session.get(CONTACT)
        deny(request, "csrf", contact_id=contact if isinstance(contact, int) else None)
