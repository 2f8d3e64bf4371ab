"""`bridgebsr doctor`: each part of the setup, ok or a problem with how to fix it."""

import os

from bridgebsr.bootstrap import Runtime
from bridgebsr.cli._common import JSON_OPTION, emit_json, runtime, say
from bridgebsr.cli.orchestration import healthy, prefect_api
from bridgebsr.office.doctor import Check, checks

PREFECT_TIMEOUT = 2.0


def doctor(as_json: bool = JSON_OPTION) -> None:
    """Check the setup: the settings file, the case store, Prefect, the SMTP login (no mail
    is sent), the Apprise config, the template and notice-text folders. Prints each part as
    ok or a problem with how to fix it; exits 1 when anything is wrong."""
    rt = runtime(ready=False)
    found = checks(rt)
    found.insert(2, _prefect(rt))
    if as_json:
        emit_json([{"check": c.name, "ok": c.ok, "detail": c.detail} for c in found])
    else:
        for check in found:
            say(f"{'ok' if check.ok else 'PROBLEM':8} {check.name}: {check.detail}")
    if not all(c.ok for c in found):
        if not as_json:
            say(f"{sum(not c.ok for c in found)} problem(s) found", err=True)
        raise SystemExit(1)


def _prefect(rt: Runtime) -> Check:
    url = os.environ.get("PREFECT_API_URL")
    if url:
        if healthy(url, timeout=PREFECT_TIMEOUT):
            return Check("prefect", True, f"PREFECT_API_URL {url} answers")
        return Check(
            "prefect",
            False,
            f"PREFECT_API_URL {url} does not answer; start that server, or unset "
            "PREFECT_API_URL and run `bridgebsr up` (it starts an embedded server)",
        )
    if api := prefect_api(rt):
        return Check("prefect", True, f"`bridgebsr up` serving at {api}")
    return Check(
        "prefect",
        True,
        "PREFECT_API_URL not set and no `bridgebsr up` running: `bridgebsr up` starts the "
        "embedded server",
    )
