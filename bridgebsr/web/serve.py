"""Serving the partners' door with uvicorn: in the foreground (`bridgebsr web`), or in a
thread beside the Prefect server (`bridgebsr up`). uvicorn's access log stays off (it would
write each link's token); the app logs each request itself with the token masked
(`guard`). Proxy headers (X-Forwarded-For, X-Forwarded-Proto) are honoured only from the
addresses given as trusted proxies."""

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import uvicorn

from bridgebsr.bootstrap import Runtime
from bridgebsr.web.app import create_app
from bridgebsr.web.guard import log

LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def _config(
    runtime: Runtime, host: str, port: int, proxies: Sequence[str], *, own_logging: bool
) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(runtime),
        host=host,
        port=port,
        access_log=False,
        # Beside Prefect, logging stays as Prefect set it; alone, uvicorn's own lines.
        log_config=uvicorn.config.LOGGING_CONFIG if own_logging else None,
        proxy_headers=bool(proxies),
        forwarded_allow_ips=list(proxies) or None,
        server_header=False,
    )


def problems(runtime: Runtime, host: str) -> list[str]:
    """What is unsafe about serving on `host` with these settings: links that would travel
    unencrypted to a public address."""
    url = runtime.settings.web_url()
    if host not in LOOPBACK and not url.startswith("https://"):
        return [
            f"BRIDGEBSR_PUBLIC_URL is {url}: links would travel unencrypted; serve behind a "
            "TLS proxy and set BRIDGEBSR_PUBLIC_URL=https://..."
        ]
    return []


def serve(runtime: Runtime, *, host: str, port: int, proxies: Sequence[str] = ()) -> None:
    """Serve the app in the foreground until interrupted; one log line per request on
    standard error."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    uvicorn.Server(_config(runtime, host, port, proxies, own_logging=True)).run()


class Background:
    """The app served in a thread of this process (beside `bridgebsr up`'s flows), its
    request log in `log_file`."""

    def __init__(self, runtime: Runtime, *, port: int, log_file: Path, host: str = "127.0.0.1"):
        self.url = f"http://{host}:{port}"
        self._server = uvicorn.Server(_config(runtime, host, port, (), own_logging=False))
        self._thread = threading.Thread(target=self._server.run, name="bridgebsr-web", daemon=True)
        self._handler = logging.FileHandler(log_file, encoding="utf-8")
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))

    def start(self, wait: float = 15.0) -> None:
        """Start serving; RuntimeError when it does not start (the port taken, say)."""
        log.addHandler(self._handler)
        log.setLevel(logging.INFO)
        self._thread.start()
        deadline = time.monotonic() + wait
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the web app did not start at {self.url} (is the port free?)")
            time.sleep(0.05)

    def stop(self, wait: float = 10.0) -> None:
        """Stop serving and wait for the thread."""
        self._server.should_exit = True
        self._thread.join(wait)
        log.removeHandler(self._handler)
        self._handler.close()
