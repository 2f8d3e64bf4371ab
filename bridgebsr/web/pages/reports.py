"""Stored reports (`/reports/{id}/{filename}`): the weekly report's files that its emails and
the `portfolio-report` artifact link to, served to a signed-in person who may read that
version (`office.weekly.readable`, the rule `rules.weekly.may_read`); anyone else, and an
address that names no stored file, gets the door's 403."""

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bridgebsr.office import weekly
from bridgebsr.web import auth

# A stored HTML report carries its own style and charts (inline, as data: images); it runs no
# script and may not be framed: a sandboxed page.
REPORT_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'; "
    "frame-ancestors 'none'; base-uri 'none'; sandbox"
)


async def report(request: Request) -> Response:
    """`GET /reports/{id}/{filename}`: one stored report file, to whom may read it."""
    person = await run_in_threadpool(auth.viewer, request)
    raw, name = request.path_params["id"], request.path_params["filename"]
    found = None
    if raw.isdigit():
        found = await run_in_threadpool(
            weekly.readable, request.app.state.runtime, int(raw), person.id
        )
    if found is None or found[0].filename != name:
        auth.deny(request, "report-out-of-scope", contact_id=person.id)
    meta, content = found
    disposition = "inline" if meta.media_type.startswith("text/html") else "attachment"
    headers = {
        "content-disposition": f'{disposition}; filename="{meta.filename}"',
        "content-security-policy": REPORT_CSP,
    }
    return Response(content, media_type=meta.media_type, headers=headers)


routes: list[BaseRoute] = [Route("/reports/{id}/{filename}", report, methods=["GET"])]
