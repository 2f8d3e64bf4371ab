"""The partners' door as one Starlette app: `create_app(runtime)` mounts the door's own routes
(link login `/l/{token}`, logout, health, the stylesheet) and the pages of `web.pages`, inside
the session cookie and the `guard` (rate limit, security headers, masked request log).

Handlers read `request.app.state.runtime` (settings and store) and `request.app.state.clock`
(the time now, UTC-aware; tests give their own)."""

from collections.abc import Callable
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from bridgebsr.bootstrap import Runtime
from bridgebsr.web import auth
from bridgebsr.web.guard import Guard
from bridgebsr.web.render import STATIC, render
from models import utcnow

HOME = "/me"
SESSION_COOKIE = "bridgebsr_session"
SESSION_AGE = timedelta(days=7)

_MESSAGES = {
    403: (
        "This link does not open anything",
        "The link may be old, replaced by a newer one, or not meant for this page. "
        "Open the link in your latest notice, or ask the pilot lead for a new one.",
    ),
    404: ("Not found", "There is nothing at this address."),
    405: ("Not allowed", "This page cannot be used that way."),
}


def local_path(target: str | None) -> str | None:
    """`target` when it is a path on this site (so a link can never send someone elsewhere),
    else None."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or any(ord(c) < 32 for c in target):
        return None
    return target


def login(request: Request) -> Response:
    """`GET /l/{token}`: a page token of a current person opens a fresh session, then their
    page (or `next`, a path on this site); anything else is the 403."""
    person, generation = auth.token_person(request, request.path_params["token"], "page")
    auth.sign_in(request, person, generation)
    target = local_path(request.query_params.get("next")) or HOME
    return RedirectResponse(target, status_code=303)


async def logout(request: Request) -> Response:
    """`POST /logout` (with the CSRF token): end the session."""
    auth.check_csrf(request, await request.form())
    auth.sign_out(request)
    context = {
        "heading": "Signed out",
        "text": "Open the link in any of your notices to come back.",
    }
    return render(request, "message.html", context)


def health(request: Request) -> Response:
    """`GET /health`: the app answers."""
    return PlainTextResponse("ok\n")


def _error(request: Request, exc: Exception) -> Response:
    """Every refusal and missing page as the same plain page: no detail, no echo of the
    address asked for. The exception's own headers stay (a 405 says which methods are
    allowed in `Allow`)."""
    http = exc if isinstance(exc, HTTPException) else None
    status = http.status_code if http else 500
    heading, text = _MESSAGES.get(status, ("Not possible", "This request cannot be served."))
    context = {"heading": heading, "text": text}
    headers = http.headers if http else None
    return render(request, "message.html", context, status=status, headers=headers)


def door_routes() -> list[BaseRoute]:
    """The door's own routes: link login, logout, health, the stylesheet."""
    return [
        Route("/l/{token}", login, methods=["GET"], name="login"),
        Route("/logout", logout, methods=["POST"], name="logout"),
        Route("/health", health, methods=["GET"], name="health"),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]


def create_app(runtime: Runtime, *, clock: Callable[[], datetime] | None = None) -> Starlette:
    """The web app over `runtime`'s store, signing with its secret key; `clock` gives the
    time now (default the real one)."""
    from bridgebsr.web.pages import routes as pages

    settings = runtime.settings
    secret = settings.signing_key()
    app = Starlette(
        routes=[*door_routes(), *pages],
        middleware=[
            Middleware(Guard),
            Middleware(
                SessionMiddleware,
                secret_key=secret,
                session_cookie=SESSION_COOKIE,
                max_age=int(SESSION_AGE.total_seconds()),
                same_site="lax",
                https_only=settings.web_url().startswith("https://"),
            ),
        ],
        exception_handlers={HTTPException: _error},
    )
    app.state.runtime = runtime
    app.state.clock = clock or utcnow
    app.state.secret = secret
    return app
