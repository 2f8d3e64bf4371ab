"""The `bridgebsr` console script against a SQLite home (the session's `demo_home`,
tests/conftest.py, or a private copy of it): in this process through its entry point
(`run_here`) for what the commands say, and as the installed script in a subprocess (`run`)
for what only a process shows: exit codes, one error line and no traceback on stderr, the
version, help, completion, the spinner on a terminal, and what the start-up imports."""

import json
import os
import pty
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from bridgebsr.store import migrate
from tests.conftest import BRIDGEBSR, _env, run, run_here
from tests.conftest import DEMO_AS_OF as AS_OF

SHIPPED = Path(__file__).parents[2] / "bridgebsr"
COUNCIL_MEMBER = "peter.moller-jensen@mva.example"
PILOT_LEAD = "soren.ostergaard@scanbalt.example"
BAD_TEMPLATE = """\
kind: broken-kind
version: 1
title: Broken
key_prefix: BR
roles: [coordinator]
stages:
  - key: only
    title: Only stage
milestones:
  - key: first
    title: First
    stage: nowhere
    owner: coordinator
    duration: 5
  - key: second
    title: Second
    stage: only
    owner: ghost
    duration: 3
    after: [first]
"""


def run_json(home: Path, *args: str) -> Any:
    """Run a command with --json that must succeed and return its parsed output."""
    done = run_here(home, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def assert_one_error_line(done: subprocess.CompletedProcess[str], *parts: str) -> None:
    """Exit 1, no traceback, and stderr is exactly one `error:` line naming each part."""
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    for part in parts:
        assert part in lines[0]


@pytest.fixture(scope="module")
def ip_key(demo_home: Path) -> str:
    """The key of the demo's one IP case."""
    rows = run_json(demo_home, "case", "list", "--pilot", "ip-integration", "--as-of", AS_OF)
    assert len(rows) == 1
    return str(rows[0]["key"])


@pytest.fixture
def home(demo_home: Path, tmp_path: Path) -> Iterator[Path]:
    """A private copy of the demo home, for commands that write or might."""
    copy = tmp_path / "home"
    shutil.copytree(demo_home, copy)
    yield copy


def test_the_console_script_is_installed() -> None:
    assert BRIDGEBSR.is_file()


# --- reading ---------------------------------------------------------------------------------


def test_case_list_json_has_the_twenty_demo_cases(demo_home: Path) -> None:
    rows = run_json(demo_home, "case", "list", "--as-of", AS_OF)
    assert len(rows) == 20
    assert Counter(r["kind"] for r in rows) == {
        "cluster-mentoring": 1,
        "cluster-strategy-analysis": 1,
        "council-review-round": 1,
        "innovation-action-plan": 1,
        "ip-bottleneck-analysis": 1,
        "sme-financing-analysis": 1,
        "ip-integration": 1,
        "life-science-foundation": 1,
        "shared-sme-service": 12,
    }
    assert [r["key"] for r in rows] == sorted(r["key"] for r in rows)
    assert {r["status"] for r in rows} == {"active"}
    assert all(
        re.fullmatch(r"(IP|LSF|SME|CSA|IPA|FIN|IAP|ICR|MENT)-\d{4}-\d{4}", r["key"]) for r in rows
    )
    sme = [r["key"] for r in rows if r["kind"] == "shared-sme-service"]
    assert sme == [f"SME-2026-{n:04d}" for n in range(1, 13)]


def test_case_list_overdue_json(demo_home: Path, ip_key: str) -> None:
    late = run_json(demo_home, "case", "list", "--overdue", "--as-of", AS_OF)
    keys = {r["key"] for r in late}
    assert 0 < len(keys) == len(late) < 20
    # The newest request is late with its intake; the IP case waits at its gate with
    # nothing late; the request that went through kpi-record has nothing open.
    assert "SME-2026-0001" in keys
    assert ip_key not in keys
    assert "SME-2026-0012" not in keys
    # A year earlier, before any demo case started, nothing can be late.
    assert run_json(demo_home, "case", "list", "--overdue", "--as-of", "2025-11-26") == []


def test_case_show_json(demo_home: Path, ip_key: str) -> None:
    shown = run_json(demo_home, "case", "show", ip_key.lower(), "--as-of", AS_OF)
    assert shown["key"] == ip_key
    assert re.fullmatch(r"IP-\d{4}-0001", ip_key)
    assert len(shown["milestones"]) == 14
    for m in shown["milestones"]:
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", m["planned_due"])
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", m["forecast_due"])
    gates = {g["key"]: g for g in shown["gates"]}
    council = gates["council-approval"]
    assert (council["status"], council["round"], council["decisions"]) == ("open", 1, [])
    assert council["approvers"] == "3 of role council-member"
    assert council["deadline"] > AS_OF
    assert "council-approval" in shown["critical_path"]
    assert shown["critical_path"][-1] == "action-plan-integration"
    assert shown["events"][0]["kind"] == "case.open"


def test_case_show_unknown_key(demo_home: Path) -> None:
    assert_one_error_line(run(demo_home, "case", "show", "IP-1999-0001"), "no case IP-1999-0001")


def test_templates_list_json(demo_home: Path) -> None:
    rows = {r["kind"]: r for r in run_json(demo_home, "templates", "list")}
    assert set(rows) == {
        "cluster-mentoring",
        "cluster-strategy-analysis",
        "council-review-round",
        "innovation-action-plan",
        "ip-bottleneck-analysis",
        "ip-integration",
        "life-science-foundation",
        "shared-sme-service",
        "sme-financing-analysis",
    }
    ip, sme = rows["ip-integration"], rows["shared-sme-service"]
    assert (ip["prefix"], ip["stages"], ip["milestones"], ip["gates"]) == ("IP", 8, 14, 2)
    assert (sme["prefix"], sme["stages"], sme["milestones"], sme["gates"]) == ("SME", 6, 11, 1)
    assert rows["life-science-foundation"]["prefix"] == "LSF"
    plan = rows["innovation-action-plan"]
    assert (plan["prefix"], plan["stages"], plan["milestones"], plan["gates"]) == ("IAP", 5, 8, 2)


def test_templates_show(demo_home: Path) -> None:
    done = run_here(demo_home, "templates", "show", "ip-integration")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "ip-integration v2 (IP)" in out
    assert re.search(r"council-approval\s*│\s*gate\s*│\s*28 calendar", out)
    assert re.search(r"regional-workshops\s*│\s*milestone\s*│\s*35 working\s*│\s*kickoff\+10", out)
    assert "3x council-member" in out


def test_templates_validate_accepts_a_shipped_template(demo_home: Path) -> None:
    path = SHIPPED / "templates" / "ip-integration.yaml"
    done = run_here(demo_home, "templates", "validate", str(path))
    assert done.returncode == 0, done.stderr
    assert "ok (ip-integration v2: 8 stages, 14 milestones, 2 gates)" in done.stdout


def test_templates_validate_names_each_problem_with_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_TEMPLATE, encoding="utf-8")
    done = run(tmp_path / "home", "templates", "validate", str(bad))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert f"{bad}:12: milestones[0].stage: unknown stage 'nowhere'" in lines[0]
    assert f"{bad}:18: milestones[1].owner: unknown role 'ghost'" in lines[1]
    assert lines[2].startswith(f"error: {bad}: 2 problem(s)")
    assert len(lines) == 3


# --- user and usage errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nope", "--owner", PILOT_LEAD), "unknown pilot kind 'nope'"),
        (("ip-integration", "--owner", "nobody@nowhere.example"), "no contact nobody@"),
        (
            ("ip-integration", "--owner", PILOT_LEAD, "--start", "2026-13-01"),
            "--start '2026-13-01' is not an ISO date",
        ),
        (
            ("ip-integration", "--owner", PILOT_LEAD, "--start", "9999-12-20"),
            "--start: 9999-12-20 is outside the years 1900-2999",
        ),
        (
            ("ip-integration", "--owner", PILOT_LEAD, "--as-of", "0001-01-01T00:00"),
            "--as-of: 0001-01-01 is outside the years 1900-2999",
        ),
    ],
    ids=["unknown-kind", "unknown-owner", "bad-start", "start-9999", "as-of-year-1"],
)
def test_case_open_user_errors(home: Path, args: tuple[str, ...], message: str) -> None:
    assert_one_error_line(run_here(home, "case", "open", *args, "--title", "T"), message)


def test_an_error_quoting_a_line_break_stays_one_line(demo_home: Path) -> None:
    done = run(demo_home, "case", "show", "IP-1999-0001\nIP-1999-0002\u2028x")
    assert_one_error_line(done, "no case IP-1999-0001\\nIP-1999-0002\\u2028x")


@pytest.mark.parametrize(
    "args",
    [
        ("notifications", "list", "--limit", "99999999999999999999"),
        ("notifications", "receipts", "--limit", "-1"),
        ("contacts", "prefs", PILOT_LEAD, "--cap", "2147483648"),
    ],
    ids=["limit-huge", "limit-negative", "cap-over-integer"],
)
def test_an_integer_the_database_cannot_hold_is_refused(demo_home: Path, args: list[str]) -> None:
    assert_one_error_line(run_here(demo_home, *args), args[-2], "0-2147483647")


def test_a_usage_error_exits_2(home: Path) -> None:
    done = run(home, "case", "open", "ip-integration", "--owner", PILOT_LEAD)
    assert done.returncode == 2
    assert "Missing option '--title'" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_commands_before_init_say_to_run_init_and_init_is_idempotent(tmp_path: Path) -> None:
    home = tmp_path / "fresh"
    assert_one_error_line(run(home, "case", "list"), "run `bridgebsr init`")
    for _ in range(2):
        done = run_here(home, "init")
        assert done.returncode == 0, done.stderr
        assert f"case store ready at schema {migrate.head()}" in done.stdout
    assert run_json(home, "case", "list") == []


# --- writing ---------------------------------------------------------------------------------


def test_milestone_complete_shows_in_case_show(home: Path) -> None:
    before = run_json(home, "case", "show", "SME-2026-0001", "--as-of", AS_OF)
    by = "oskar.lundback@lundback-dx.example"
    done = run_here(
        home,
        *("milestone", "complete", "SME-2026-0001", "request-intake"),
        *("--by", by, "--note", "profile complete", "--as-of", AS_OF),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("SME-2026-0001 request-intake is done")
    after = run_json(home, "case", "show", "SME-2026-0001", "--as-of", AS_OF)
    intake = {m["key"]: m for m in after["milestones"]}["request-intake"]
    assert (intake["status"], intake["finished_on"], intake["overdue"]) == (
        "done",
        AS_OF,
        False,
    )
    assert after["version"] == before["version"] + 1
    event = after["events"][len(before["events"])]
    assert (event["kind"], event["subject"], event["actor"]) == (
        "milestone.complete",
        "request-intake",
        by,
    )
    assert (event["source"], event["comment"]) == ("cli", "profile complete")


def test_milestone_complete_in_the_future_is_refused(home: Path) -> None:
    done = run_here(
        home,
        *("milestone", "complete", "SME-2026-0001", "request-intake"),
        *("--on", "2026-11-27", "--as-of", AS_OF),
    )
    assert_one_error_line(done, "--on 2026-11-27 is in the future")


def test_gate_approve_by_the_wrong_person_exits_1(home: Path, ip_key: str) -> None:
    gate = ("gate", "approve", ip_key, "council-approval")
    wrong = run_here(home, *gate, "--by", PILOT_LEAD, "--as-of", AS_OF)
    assert_one_error_line(wrong, "it needs a council-member", "is pilot-lead")
    right = run_here(home, *gate, "--by", COUNCIL_MEMBER, "--as-of", AS_OF)
    assert right.returncode == 0, right.stderr
    assert right.stdout.strip() == (
        f"{ip_key} gate council-approval: vote 1 of 3 recorded; waiting for 2 more council members"
    )
    shown = run_json(home, "case", "show", ip_key, "--as-of", AS_OF)
    votes = {g["key"]: g for g in shown["gates"]}["council-approval"]["decisions"]
    # Only the council member's vote: the refused one left nothing behind.
    assert [(v["by"], v["decision"]) for v in votes] == [(COUNCIL_MEMBER, "approve")]


def test_partners_import_dry_run_writes_nothing(home: Path, tmp_path: Path) -> None:
    shipped = (SHIPPED / "data" / "partners.csv").read_text(encoding="utf-8").splitlines()
    sheet = tmp_path / "partners.csv"
    sheet.write_text(
        "\n".join(
            [
                shipped[0],
                shipped[1],  # SCANBALT, as stored
                "NEWCO,New Co,sme,DK,Hovedstaden,Europe/Copenhagen",
                "OTHERCO,Other Co,investor,SE,,",
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    done = run_here(home, "partners", "import", str(sheet), "--dry-run")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "partners: would create 2, would update 0, unchanged 1"
    assert lines[1:] == ["  + NEWCO", "  + OTHERCO"]
    codes = [p["code"] for p in run_json(home, "partners", "list")]
    assert len(codes) == len(shipped) - 1 == 13
    assert "NEWCO" not in codes and "OTHERCO" not in codes


# --- start-up cost ---------------------------------------------------------------------------

PROBE = """\
import sys
from bridgebsr.cli import main

if sys.argv[1:] == ["pretend"]:
    sys.modules["prefect"] = type(sys)("prefect")  # to show the probe can see it
for argv in (
    ["bridgebsr", "case", "list", "--json"],
    ["bridgebsr", "case", "show", "SME-2026-0001"],
    ["bridgebsr", "templates", "list"],
):
    sys.argv = argv
    try:
        main()
    except SystemExit as exc:
        assert not exc.code, (argv, exc.code)
# The orchestrator, the post office and the web server load on demand only.
heavy = ("prefect", "apprise", "starlette", "uvicorn")
loaded = sorted(m for m in sys.modules if m.split(".")[0] in heavy)
sys.stderr.write("PREFECT-MODULES " + ",".join(loaded) + "\\n")
"""


def _prefect_modules(home: Path, *extra: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *extra],
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (line,) = [ln for ln in done.stderr.splitlines() if ln.startswith("PREFECT-MODULES")]
    assert "SME-2026-0001" in done.stdout
    return [m for m in line.removeprefix("PREFECT-MODULES ").split(",") if m]


def test_read_only_commands_do_not_import_prefect_apprise_or_the_web_server(
    demo_home: Path,
) -> None:
    assert _prefect_modules(demo_home) == []


def test_the_prefect_probe_sees_prefect_when_it_is_there(demo_home: Path) -> None:
    assert _prefect_modules(demo_home, "pretend") == ["prefect"]


# --- polish: version, choices, help panels, completion, history ------------------------------


def test_version_is_the_installed_package_version(demo_home: Path) -> None:
    done = run(demo_home, "--version")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"bridgebsr {version('bridgebsr')}\n"


@pytest.mark.parametrize(
    ("args", "wrong", "choices"),
    [
        (("case", "list", "--status", "open"), "--status 'open'", "draft, active, on_hold"),
        (
            ("case", "list", "--pilot", "nope"),
            "--pilot 'nope'",
            "cluster-mentoring, cluster-strategy-analysis, council-review-round, "
            "innovation-action-plan, ip-bottleneck-analysis, ip-integration, "
            "life-science-foundation, shared-sme-service, sme-financing-analysis",
        ),
        (("notifications", "list", "--status", "lost"), "--status 'lost'", "pending, held, sent"),
        (("report", "--out", "x", "--format", "pdf"), "--format 'pdf'", "csv, xlsx, html"),
        (
            ("milestone", "add", "SME-2026-0001", "extra", "--title", "Extra", "--owner", "x")
            + ("--duration", "1", "--after", "request-intake", "--days", "weekdays"),
            "--days 'weekdays'",
            "working, calendar",
        ),
    ],
    ids=["case-status", "pilot-kind", "notice-status", "report-format", "days-kind"],
)
def test_a_wrong_choice_is_one_error_line_in_every_command(
    home: Path, args: tuple[str, ...], wrong: str, choices: str
) -> None:
    before = run_json(home, "case", "show", "SME-2026-0001")
    assert_one_error_line(run_here(home, *args), wrong, f"is not one of: {choices}")
    assert run_json(home, "case", "show", "SME-2026-0001") == before
    assert not (home.parent / "x").exists()


def test_a_choice_may_be_given_in_any_case(demo_home: Path) -> None:
    active = run_json(demo_home, "case", "list", "--status", "active", "--as-of", AS_OF)
    assert active
    assert run_json(demo_home, "case", "list", "--status", " ACTIVE ", "--as-of", AS_OF) == active


def test_the_report_formats_offered_are_those_the_report_writes() -> None:
    from bridgebsr.cli.report import Format
    from bridgebsr.reports.portfolio import FORMATS

    assert tuple(f.value for f in Format) == FORMATS


def _panels(help_text: str) -> dict[str, list[str]]:
    """The commands in each panel of a rich help page, by panel title."""
    panels: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in help_text.splitlines():
        if title := re.match(r"╭─ (.+?) ─", line):
            current = panels.setdefault(title.group(1), [])
        elif line.startswith("╰"):
            current = None
        elif current is not None and (name := re.match(r"│ ([a-z][a-z-]*) ", line)):
            current.append(name.group(1))
    return panels


def test_help_groups_the_commands_in_panels(demo_home: Path) -> None:
    done = run(demo_home, "--help")
    assert done.returncode == 0, done.stderr
    panels = _panels(done.stdout)
    assert list(panels)[1:] == ["Setup", "Daily work", "Reports", "Server"]
    setup = ["contacts", "db", "demo", "init", "partners", "templates"]
    if "doctor" in done.stdout:  # the setup check, where it is installed, is setup too
        setup = sorted([*setup, "doctor"])
    assert {k: sorted(v) for k, v in panels.items() if k != "Options"} == {
        "Setup": setup,
        "Daily work": [
            "agenda",
            "case",
            "gate",
            "milestone",
            "monitor",
            "notifications",
            "requests",
        ],
        "Reports": ["ical", "report", "reports"],
        "Server": ["automations", "up", "web"],
    }
    assert "--version" in done.stdout and "--install-completion" in done.stdout


def test_shell_completion_offers_the_choices_and_the_pilot_kinds(demo_home: Path) -> None:
    # `--show-completion` takes no value: it names the shell it is asked from, so ask from
    # bash (a second command keeps bash from replacing itself with bridgebsr).
    shown = subprocess.run(
        ["bash", "-c", f"{BRIDGEBSR} --show-completion; exit $?"],
        env=_env(demo_home),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert "_BRIDGEBSR_COMPLETE=complete_bash" in shown.stdout
    words = "bridgebsr notifications list --status f"
    done = run(
        demo_home,
        env={"_BRIDGEBSR_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": "4"},
    )
    assert (done.returncode, done.stdout.split()) == (0, ["failed"])
    kinds = {"_BRIDGEBSR_COMPLETE": "complete_bash", "COMP_WORDS": "bridgebsr case open s"}
    done = run(demo_home, env=kinds | {"COMP_CWORD": "3"})
    assert (done.returncode, done.stdout.split()) == (
        0,
        ["shared-sme-service", "sme-financing-analysis"],
    )


def test_case_show_prints_the_history(home: Path) -> None:
    by = "oskar.lundback@lundback-dx.example"
    done = run_here(
        home,
        *("milestone", "complete", "SME-2026-0001", "request-intake"),
        *("--by", by, "--note", "profile complete", "--as-of", AS_OF),
    )
    assert done.returncode == 0, done.stderr
    events = run_json(home, "case", "show", "SME-2026-0001", "--as-of", AS_OF)["events"]
    shown = run_here(home, "case", "show", "SME-2026-0001", "--as-of", AS_OF)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout.split("critical path: ", 1)[1]
    assert f"History: {len(events)} change(s), oldest first; times in UTC" in text
    rows = [line for line in text.splitlines() if re.match(r"│ \d{4}-\d\d-\d\d \d\d:\d\d ", line)]
    assert [row.split("│")[2].strip() for row in rows] == [e["kind"] for e in events]
    (last,) = [row for row in rows if "milestone.complete" in row]
    assert "request-intake" in last and by in last and "profile complete" in last
    assert "status: planned -> done" in last


def _on_a_terminal(home: Path, *args: str) -> str:
    """What `bridgebsr ARGS` shows when its stdout and stderr are a terminal (a pseudo one)."""
    leader, follower = pty.openpty()
    with subprocess.Popen(
        [str(BRIDGEBSR), *args],
        env=_env(home) | {"COLUMNS": "200"},
        cwd=home.parent,
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
    ) as child:
        os.close(follower)
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        assert child.wait(timeout=120) == 0, shown
    os.close(leader)
    return shown.decode(errors="replace")


def test_a_spinner_shows_on_a_terminal_only_and_not_with_json(demo_home: Path) -> None:
    spinner = "monitor pass: finding what is due"
    assert spinner in _on_a_terminal(demo_home, "monitor", "--dry-run", "--as-of", AS_OF)
    assert spinner not in _on_a_terminal(
        demo_home, "monitor", "--dry-run", "--as-of", AS_OF, "--json"
    )
    piped = run(demo_home, "monitor", "--dry-run", "--as-of", AS_OF)
    assert piped.returncode == 0 and spinner not in piped.stdout + piped.stderr
