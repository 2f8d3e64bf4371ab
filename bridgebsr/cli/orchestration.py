"""The CLI's door to Prefect: `bridgebsr up`, and telling waiting gate runs about CLI changes.

The only CLI module that imports `flows` (and through it Prefect), and only inside the
functions that need it, so every other command starts without loading Prefect.
"""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from bridgebsr.bootstrap import Runtime
from bridgebsr.cli._common import (
    AsOf,
    bounded,
    console,
    parse_when,
    runtime,
    say,
    shown_url,
    today,
)
from bridgebsr.store import migrate

UP_FILE = "up.json"
DEFAULT_PORT = 4200


def healthy(api_url: str, timeout: float = 2.0) -> bool:
    """Whether a Prefect API answers its health check at `api_url`."""
    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=timeout) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


class LocalServer:
    """A `prefect server start` child process with its database under a folder of ours."""

    def __init__(
        self, home: Path, host: str = "127.0.0.1", port: int = 4200, *, ui: bool = True
    ) -> None:
        self.home = home
        self.ui = ui
        self.api_url = f"http://{host}:{port}/api"
        self.ui_url = f"http://{host}:{port}"
        self._host, self._port = host, port
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, wait: float = 90.0) -> None:
        """Start the server and wait until it is healthy; one clear error if it is not."""
        self.home.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "PREFECT_HOME": str(self.home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_API_URL": self.api_url,
        }
        prefect = Path(sys.executable).parent / "prefect"
        command = [str(prefect), "server", "start", "--host", self._host]
        if not self.ui:
            command.append("--no-ui")
        with (self.home / "server.log").open("ab") as log:
            self._process = subprocess.Popen(
                [*command, "--port", str(self._port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=interruptible,
            )
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"the Prefect server stopped at start; see {self.home / 'server.log'}"
                )
            if healthy(self.api_url, timeout=1.0):
                return
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"the Prefect server did not answer within {wait:.0f} s")

    def stop(self, wait: float = 15.0) -> None:
        """Ask the server to stop, then insist."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(wait)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def interruptible() -> None:
    """In a child process: take SIGINT again (a shell that started us in the background
    ignores it), so SIGTERM, which Prefect turns into SIGINT, stops the child at once."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _marker(rt: Runtime) -> Path:
    return rt.settings.home / UP_FILE


def prefect_api(rt: Runtime) -> str | None:
    """The Prefect API this case store is orchestrated by: PREFECT_API_URL, else a running
    `bridgebsr up` on the same BRIDGEBSR_HOME; None when neither answers."""
    url = os.environ.get("PREFECT_API_URL")
    if not url:
        try:
            url = json.loads(_marker(rt).read_text())["api_url"]
        except (OSError, ValueError, KeyError):
            return None
    return url if url and healthy(url, timeout=1.0) else None


def sync_case_runs(rt: Runtime, case_key: str) -> None:
    """After a CLI change, close gate runs that no longer wait, start the ones now needed and
    publish the case's page (`case-<key>`) again, when a Prefect API is configured."""
    if not (os.environ.get("PREFECT_API_URL") or _marker(rt).exists()):
        return
    api = prefect_api(rt)
    if api is None:
        return
    os.environ["PREFECT_API_URL"] = api
    try:
        from flows.case_page import publish_case_page
        from flows.gates import reconcile_gates

        counts = reconcile_gates(case_key)
        publish_case_page(case_key)
    except Exception as exc:  # the change is recorded; the next monitor pass reconciles
        say(f"warning: could not update the case in Prefect ({type(exc).__name__})")
        return
    if counts["closed"] or counts["started"]:
        say(f"Prefect: closed {counts['closed']} waiting gate run(s), started {counts['started']}")


def up(
    demo: Annotated[
        bool, typer.Option("--demo", help="Load the demo portfolio first (idempotent).")
    ] = False,
    port: Annotated[int, typer.Option("--port", help="Port of the local Prefect server.")] = (
        DEFAULT_PORT
    ),
    web_port: Annotated[
        int | None,
        typer.Option(
            "--web-port", help="Port of the partners' web app [default: BRIDGEBSR_WEB_PORT, 4280]."
        ),
    ] = None,
    as_of: AsOf = None,
) -> None:
    """Start Prefect locally (or use PREFECT_API_URL) and serve every pilot flow on schedule,
    with the partners' web app beside it on 127.0.0.1."""
    port = bounded(port, "--port", 1, 65535)
    rt = runtime(ready=False)
    web_port = bounded(web_port or rt.settings.web_port, "--web-port", 1, 65535)
    migrate.upgrade(rt.engine)
    if demo:
        from bridgebsr import demo as demo_data

        keys = demo_data.load_demo(rt, today(rt, parse_when(as_of, rt)))
        say(f"demo: opened {len(keys)} case(s)" if keys else "demo: cases already loaded")
    home = rt.settings.home.resolve()
    os.environ.setdefault("PREFECT_HOME", str(home / "prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    server = None
    api = os.environ.get("PREFECT_API_URL") or f"http://127.0.0.1:{port}/api"
    if healthy(api):
        say(f"using the Prefect server at {api}")
    else:
        server = LocalServer(home / "prefect", port=port)
        say(f"starting a Prefect server on 127.0.0.1:{port} (log: {server.home}/server.log)")
        try:
            server.start()
        except RuntimeError as exc:
            raise typer.Exit(_fail_line(str(exc))) from None
        api = server.api_url
    os.environ["PREFECT_API_URL"] = api
    # The flows served here sign the links notices carry: to this app, unless a public
    # address is set.
    os.environ["BRIDGEBSR_WEB_PORT"] = str(web_port)
    from bridgebsr.web.serve import Background

    door = Background(rt, port=web_port, log_file=home / "web.log")
    try:
        door.start()
    except RuntimeError as exc:
        if server is not None:
            server.stop()
        raise typer.Exit(_fail_line(str(exc))) from None
    _marker(rt).write_text(json.dumps({"api_url": api, "pid": os.getpid()}))
    try:
        _serve(rt, api, door.url)
    except KeyboardInterrupt:
        pass
    finally:
        _marker(rt).unlink(missing_ok=True)
        door.stop()
        if server is not None:
            say("stopping the Prefect server")
            server.stop()
    say("bridgebsr stopped; schedules stay active for the next `bridgebsr up`")


def _fail_line(message: str) -> int:
    say(f"error: {message}", err=True)
    return 1


def _serve(rt: Runtime, api: str, web: str) -> None:
    import asyncio

    from flows.deployments import DEPLOYMENTS, serve_all

    ui = api.removesuffix("/api")

    def ready(first_run: str) -> None:
        say("")
        console.print(f"[bold]bridgebsr is up[/bold]: Prefect UI {escape(ui)}", markup=True)
        links = rt.settings.public_url or web
        say(f"  partners' web app: {web} (links in notices: {links})")
        say(f"  case store: {shown_url(rt.settings.resolved_database_url())}")
        say(f"  deployments: {', '.join(DEPLOYMENTS)}")
        if first_run:
            say(f"  first monitor run: {ui}/runs/flow-run/{first_run}")
        say(
            "  late items: artifact `late-items`; gates waiting: runs of `stage-gate` "
            "(Paused, with a decision form)"
        )
        say("  Ctrl-C stops.")

    asyncio.run(serve_all(ready))


automations_app = typer.Typer(
    help="The Prefect automations: alerts to the operators, dispatch after the monitor, "
    "escalated cases brought up to date.",
    no_args_is_help=True,
)


@automations_app.command("apply")
def automations_apply(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only print what applying would change.")
    ] = False,
    monitor_silence: Annotated[
        int,
        typer.Option(
            "--monitor-silence",
            help="Seconds without a completed monitor run before the operators are told.",
        ),
    ] = 7200,
) -> None:
    """Create or update the automations on the Prefect server (safe to repeat; `bridgebsr up`
    applies them itself). Run after `prefect deploy --all`."""
    from datetime import timedelta

    rt = runtime(ready=False)
    seconds = bounded(monitor_silence, "--monitor-silence", 10, 30 * 86400)
    api = prefect_api(rt)
    if api is None:
        raise typer.Exit(_fail_line("no Prefect server answers: set PREFECT_API_URL"))
    os.environ["PREFECT_API_URL"] = api
    from flows.automations import apply

    changes = apply(timedelta(seconds=seconds), dry_run=dry_run)
    verb = {"create": "would create", "update": "would update", "delete": "would delete"}
    for change in changes:
        action = verb.get(change.action, change.action) if dry_run else change.action
        say(f"{action:<13} {change.name}")
