"""`bridgebsr web`: the partners' door served alone (for a server behind a TLS proxy). The web
app, Starlette and uvicorn load inside the command only, so other commands start fast."""

from typing import Annotated

import typer

from bridgebsr.cli._common import bounded, runtime, say


def web(
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (a TLS proxy's upstream).")
    ] = "127.0.0.1",
    port: Annotated[
        int | None,
        typer.Option("--port", help="Port to listen on [default: BRIDGEBSR_WEB_PORT, 4280]."),
    ] = None,
    proxy: Annotated[
        list[str] | None,
        typer.Option(
            "--proxy",
            help="Address of a trusted TLS proxy: its X-Forwarded-For and -Proto are "
            "believed (repeat).",
        ),
    ] = None,
) -> None:
    """Serve the partners' web app (the links notices carry lead there) until Ctrl-C."""
    from bridgebsr.web.serve import problems, serve

    rt = runtime()
    port = bounded(port or rt.settings.web_port, "--port", 1, 65535)
    for problem in problems(rt, host):
        say(f"warning: {problem}", err=True)
    say(f"partners' web app on http://{host}:{port}; links point to {rt.settings.web_url()}")
    serve(rt, host=host, port=port, proxies=proxy or ())
