"""Calendar subscriptions: a person's own feed (`/feeds/<token>.ics`: the items they own,
the gates they may decide, the cases they own) and their partner's (`/feeds/<token>/partner.ics`:
every case their partner leads), both built by `exchange.ical`. A feed token (purpose `feed`)
opens these and no page; a page token opens no feed (`auth.feed_person`)."""

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bridgebsr.exchange import ical
from bridgebsr.rules.people import Person
from bridgebsr.store.db import read_session
from bridgebsr.web import auth, links

PARTNER = "/partner.ics"


def feed_links(request: Request, person: Person) -> dict[str, str]:
    """The signed-in person's two feed addresses, signed afresh (shown on their own page)."""
    generation = request.session.get(auth.GENERATION)
    assert isinstance(generation, int)  # `auth.viewer` has checked the session
    personal = links.feed_link(
        request.app.state.runtime, person.id, generation, now=request.app.state.clock()
    )
    return {"personal": personal, "partner": personal.removesuffix(".ics") + PARTNER}


def personal_feed(request: Request) -> Response:
    """The person's own calendar."""
    person = auth.feed_person(request, request.path_params["token"])
    return _calendar(request, contact=person.email)


def partner_feed(request: Request) -> Response:
    """The calendar of every case the person's partner leads."""
    person = auth.feed_person(request, request.path_params["token"])
    return _calendar(request, partner=person.partner_code)


def _calendar(request: Request, **whose: str) -> Response:
    with read_session(request.app.state.runtime.engine) as session:
        body = ical.feed(session=session, now=request.app.state.clock(), **whose)
    return Response(body, media_type="text/calendar; charset=utf-8")


routes: list[BaseRoute] = [
    Route("/feeds/{token}.ics", personal_feed, methods=["GET"]),
    Route("/feeds/{token}" + PARTNER, partner_feed, methods=["GET"]),
]
