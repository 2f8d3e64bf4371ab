"""The door's outer layer, around every request: the rate limit (429 with `Retry-After` for
an address refused more than `auth.LIMIT` times within `auth.WINDOW`, counted in the store so
every worker agrees; the 429s themselves are logged, not counted, so waiting ends it), the
security headers on every response, and one log line per request with the token of a link or
feed masked (uvicorn's own access log stays off)."""

import logging
import time

from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bridgebsr.web.auth import WINDOW, client_address, masked, too_many_denials

log = logging.getLogger("bridgebsr.web")

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
HEADERS: dict[bytes, bytes] = {
    b"content-security-policy": CSP.encode(),
    b"x-frame-options": b"DENY",
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"no-referrer",
    b"cross-origin-opener-policy": b"same-origin",
}
STATIC = "/static/"
LIMITED = b"Too many refused requests from this address; try again later.\n"
FAILED = b"Something went wrong on our side; try again later.\n"


class Guard:
    """ASGI middleware: rate limit, headers, masked request log."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path: str = scope["path"]
        conn = HTTPConnection(scope)
        status = 0

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                own = {k.lower() for k, _ in message.get("headers", [])}
                headers = list(message.get("headers", []))
                headers += [(k, v) for k, v in HEADERS.items() if k not in own]
                if not path.startswith(STATIC):
                    headers = [(k, v) for k, v in headers if k.lower() != b"cache-control"]
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        try:
            if not path.startswith(STATIC) and await run_in_threadpool(too_many_denials, conn):
                # At most one window until the oldest counted refusal ages out.
                wait = str(int(WINDOW.total_seconds())).encode()
                await _plain(send_with_headers, 429, LIMITED, [(b"retry-after", wait)])
            else:
                await self.app(scope, receive, send_with_headers)
        except Exception:
            if not status:
                await _plain(send_with_headers, 500, FAILED)
            raise
        finally:
            log.info(
                "%s %s %s %s %.0fms",
                client_address(conn),
                scope.get("method", ""),
                masked(path),
                status,
                (time.perf_counter() - started) * 1000,
            )


async def _plain(
    send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
