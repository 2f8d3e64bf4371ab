"""Input the command line must refuse in one line, and what it says back: text options against
their columns, template files, database URLs, terminal escapes in stored text, who made a
change, gate votes, and `--as-of` in every help."""

import json
import os
import resource
import shutil
import subprocess
import sys
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
from sqlalchemy import func, select

from bridgebsr.bootstrap import Runtime
from bridgebsr.cli import _common, app
from bridgebsr.office import cases
from bridgebsr.rules.texts import is_control
from bridgebsr.store.db import read_session, write_session
from models import CaseEvent
from tests.conftest import BRIDGEBSR, DEMO_AS_OF, _env, at, in_process

COUNCIL = [
    "peter.moller-jensen@mva.example",
    "juergen.weiss@bioconvalley.example",
    "malgorzata.zurawska@ippt-pan.example",
]
SME_OWNER = "oskar.lundback@lundback-dx.example"
PILOT_LEAD = "karin.astrom@mva.example"
EVIL = "Evil \x1b[2J\x1b]0;pwned\x07 title\r\u2028end"


@dataclass(frozen=True)
class Done:
    """How one in-process `bridgebsr ARGS` run ended."""

    code: int
    stdout: str
    stderr: str


def cli(env: Mapping[str, str], *args: str) -> Done:
    """Run `bridgebsr ARGS` in-process through the console script's entry point, with only
    the BRIDGEBSR_* variables of `env`; every engine it builds is disposed afterwards."""
    return Done(*in_process(args, {**env, "PREFECT_API_URL": None}))


def store_env(rt: Runtime) -> dict[str, str]:
    """The environment that points the command line at `rt`'s store."""
    return {
        "BRIDGEBSR_HOME": str(rt.settings.home),
        "BRIDGEBSR_DATABASE_URL": rt.settings.resolved_database_url(),
    }


def one_error_line(done: Done, *parts: str) -> str:
    """Exit 1 with exactly one `error:` line on stderr, naming each part; returns the line."""
    assert done.code == 1, done
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done
    for part in parts:
        assert part in lines[0], done
    return lines[0]


def _events(rt: Runtime) -> int:
    with read_session(rt.engine) as session:
        return int(session.execute(select(func.count()).select_from(CaseEvent)).scalar_one())


@pytest.fixture
def home(demo_home: Path, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a private copy of the demo home."""
    copy = tmp_path / "home"
    shutil.copytree(demo_home, copy)
    yield {"BRIDGEBSR_HOME": str(copy)}


# --- text options against their columns --------------------------------------------------------


def test_a_title_or_by_longer_than_its_column_is_refused_and_nothing_is_written(
    consortium: Runtime,
) -> None:
    env = store_env(consortium)
    with write_session(consortium.engine) as session:
        key = cases.open_case(
            session=session,
            catalog=consortium.catalog,
            kind="shared-sme-service",
            title="SME request",
            owner_email=SME_OWNER,
            now=at(DEMO_AS_OF),
        ).key
    before = _events(consortium)
    open_args = ("case", "open", "shared-sme-service", "--owner", SME_OWNER)
    for title in ("t" * 301, "t" * 100_000):
        done = cli(env, *open_args, "--title", title)
        one_error_line(done, f"--title: {len(title)} characters; at most 300 fit here")
    by = "b" * 243 + "@mva.example"  # 255 characters, one more than case_events.actor holds
    done = cli(env, "milestone", "start", key, "request-intake", "--by", by)
    one_error_line(done, "--by: 255 characters; at most 254 fit here")
    assert _events(consortium) == before
    assert cli(env, *open_args, "--title", "t" * 300).code == 0  # the longest that fits


# --- template files ----------------------------------------------------------------------------


def _validate(path: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`bridgebsr templates validate PATH` in a process whose memory is capped (a command
    that reads without a limit fails there instead of filling the machine) and with a short
    timeout (one that waits on a FIFO)."""
    cap = 2 * 1024**3

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    return subprocess.run(
        [str(BRIDGEBSR), "templates", "validate", str(path)],
        env=_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        preexec_fn=limit,
    )


@pytest.mark.parametrize("kind", ["device", "fifo", "folder"])
def test_a_template_path_that_is_no_regular_file_is_refused(tmp_path: Path, kind: str) -> None:
    path = Path("/dev/zero") if kind == "device" else tmp_path / "t.yaml"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    done = _validate(path, tmp_path)
    assert (done.returncode, done.stdout) == (1, ""), done.stderr
    assert done.stderr == f"error: {path}: not a regular file; give a template YAML file\n"


def test_a_template_file_over_a_mebibyte_is_refused_in_a_folder_too(tmp_path: Path) -> None:
    folder = tmp_path / "kinds"
    folder.mkdir()
    huge = folder / "huge.yaml"
    huge.write_bytes(b"kind: " + b"x" * (1024 * 1024))
    expected = f"error: {huge}: larger than 1024 KiB; a template is a short text file"
    done = cli({"BRIDGEBSR_HOME": str(tmp_path / "home")}, "templates", "validate", str(huge))
    assert done.stderr.splitlines() == [expected]
    env = {"BRIDGEBSR_HOME": str(tmp_path / "home"), "BRIDGEBSR_TEMPLATE_DIRS": str(folder)}
    assert cli(env, "templates", "list").stderr.splitlines() == [expected]


# --- the database URL --------------------------------------------------------------------------

STORES = "give sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("not a url", f"not a database URL; {STORES}"),
        ("postgres://", f"'postgres' is not a database the case store runs on; {STORES}"),
        ("mysql+nodriver://u@h/d", "'mysql+nodriver' is not a database the case store runs on"),
        ("postgresql+nodriver://u@h/d", f"'postgresql+nodriver' names no known driver; {STORES}"),
        ("postgresql+asyncpg://u@h/d", f"'postgresql+asyncpg' is an asyncio driver; {STORES}"),
    ],
)
def test_a_mistyped_database_url_is_one_line_naming_the_setting(
    tmp_path: Path, url: str, says: str
) -> None:
    env = {"BRIDGEBSR_HOME": str(tmp_path / "home"), "BRIDGEBSR_DATABASE_URL": url}
    one_error_line(cli(env, "case", "list"), f"error: BRIDGEBSR_DATABASE_URL: {says}")


BLOCKED_DRIVER = """\
import sys
sys.modules["psycopg"] = None  # as if the postgres extra were not installed
from bridgebsr.cli import main
sys.argv = ["bridgebsr", "case", "list"]
main()
"""


def test_postgresql_without_its_driver_says_to_install_the_postgres_extra(tmp_path: Path) -> None:
    env = _env(tmp_path / "home") | {
        "BRIDGEBSR_DATABASE_URL": "postgresql+psycopg://user:secret@db.example.org/cases"
    }
    done = subprocess.run(
        [sys.executable, "-c", BLOCKED_DRIVER],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines() == [
        "error: BRIDGEBSR_DATABASE_URL: the driver of 'postgresql+psycopg' is not installed "
        "(no module psycopg); for PostgreSQL install the postgres extra "
        "(pip install -e '.[postgres]') and use postgresql+psycopg://USER@HOST/DB"
    ]


# --- stored text on a terminal -----------------------------------------------------------------


def test_control_characters_of_stored_text_never_reach_the_terminal(
    home: dict[str, str],
) -> None:
    opened = cli(home, "case", "open", "shared-sme-service", "--title", EVIL, "--owner", SME_OWNER)
    assert opened.code == 0, opened
    key = opened.stdout.strip()
    for args in (("case", "list"), ("case", "show", key), ("contacts", "list")):
        shown = cli(home, *args, "--as-of", DEMO_AS_OF) if args[0] == "case" else cli(home, *args)
        assert shown.code == 0, shown
        assert not [ch for ch in shown.stdout if is_control(ch) and ch != "\n"], args
    table = cli(home, "case", "show", key).stdout
    assert "Evil \\x1b[2J\\x1b]0;pwned\\x07 title\\r\\u2028end" in table
    exact = json.loads(cli(home, "case", "show", key, "--json").stdout)
    assert exact["title"] == EVIL  # JSON carries the stored text exactly


# --- who made a change -------------------------------------------------------------------------


def _last_actor(env: dict[str, str], key: str) -> str:
    events = json.loads(cli(env, "case", "show", key, "--json").stdout)["events"]
    return str(events[-1]["actor"])


def test_a_change_without_by_is_recorded_as_bridgebsr_actor_or_says_how_to_set_it(
    home: dict[str, str],
) -> None:
    step = ("milestone", "start", "SME-2026-0001", "request-intake", "--as-of", DEMO_AS_OF)
    me = unicodedata.normalize("NFD", "Søren.Østergaard@ScanBalt.example")
    named = cli(home | {"BRIDGEBSR_ACTOR": me}, *step)
    assert (named.code, named.stderr) == (0, "")
    assert _last_actor(home, "SME-2026-0001") == "søren.østergaard@scanbalt.example"
    guessed = cli(home, "milestone", "complete", *step[2:])
    assert guessed.code == 0, guessed
    recorded = _last_actor(home, "SME-2026-0001")
    assert recorded.endswith("@cli")
    assert guessed.stderr.splitlines() == [
        f"note: recorded as made by {recorded}, which is no contact; give --by EMAIL or set "
        "BRIDGEBSR_ACTOR=you@example.org to record who you are"
    ]


# --- gate votes --------------------------------------------------------------------------------


def _vote(env: dict[str, str], decision: str, by: str) -> str:
    done = cli(
        env, "gate", decision, "IP-2025-0001", "council-approval", "--by", by, "--as-of", DEMO_AS_OF
    )
    assert done.code == 0, done
    return done.stdout.strip()


def test_gate_votes_say_how_many_are_recorded_and_needed(home: dict[str, str]) -> None:
    gate = "IP-2025-0001 gate council-approval"
    nfd = unicodedata.normalize("NFD", COUNCIL[0].upper())  # the same person, however typed
    assert _vote(home, "approve", nfd) == (
        f"{gate}: vote 1 of 3 recorded; waiting for 2 more council members"
    )
    assert _vote(home, "approve", COUNCIL[1]) == (
        f"{gate}: vote 2 of 3 recorded; waiting for 1 more council member"
    )
    assert _vote(home, "reject", COUNCIL[2]) == (
        f"{gate}: rejected in round 1; the case goes back to stage draft-model for rework, "
        "and the gate opens again for round 2 when that work is done"
    )


def test_the_final_approval_says_the_gate_passed(home: dict[str, str]) -> None:
    for by in COUNCIL[:2]:
        _vote(home, "approve", by)
    assert _vote(home, "approve", COUNCIL[2]) == (
        "IP-2025-0001 gate council-approval: passed with 3 of 3 approvals"
    )


# --- --as-of in every help ---------------------------------------------------------------------


def _commands(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    """Every command under a typer group, by its full name."""
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from _commands(command, (*path, name))
        else:
            yield " ".join((*path, name)), command


def test_every_as_of_option_says_a_date_means_noon_in_the_configured_zone() -> None:
    commands = dict(_commands(typer.main.get_group(app)))
    with_as_of = {
        name: param.help
        for name, command in commands.items()
        for param in command.params
        if "--as-of" in getattr(param, "opts", ())
    }
    assert {"case list", "monitor", "report", "ical", "notifications dispatch", "up"} <= set(
        with_as_of
    )
    for name, text in with_as_of.items():
        assert text == _common.AS_OF_HELP, name
    assert "noon that day in BRIDGEBSR_TIMEZONE" in _common.AS_OF_HELP
