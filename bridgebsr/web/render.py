"""Pages from the package's Jinja2 templates (`web/templates/`, autoescaped): `render` gives
each template the request, the session's CSRF token and the signed-in person (when the page
names them), so `base.html` can show who is signed in and a logout form."""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from bridgebsr.web.auth import CSRF_FIELD, csrf_token, signed_in

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"

_environment = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
templates = Jinja2Templates(env=_environment)


def render(
    request: Request,
    template_name: str,
    context: dict[str, Any],
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """`template_name` rendered with `context` plus `request`, `csrf_field`, `csrf_token`
    (when signed in) and `person` (None unless given), with `headers` added."""
    shared: dict[str, Any] = {"person": None, "csrf_field": CSRF_FIELD, "csrf_token": None}
    if "session" in request.scope and signed_in(request):
        shared["csrf_token"] = csrf_token(request)
    return templates.TemplateResponse(
        request, template_name, {**shared, **context}, status_code=status, headers=headers
    )
