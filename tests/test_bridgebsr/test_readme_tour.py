"""The README's tour of the CLI runs as written: its commands, read from the README itself, in
order, by the installed console script, on a fresh home beside a copy of examples/."""

import re
import shlex
import shutil
from pathlib import Path

import pytest

from tests.conftest import run

REPO = Path(__file__).resolve().parents[2]
TOUR_HEADING = "## A short tour of the CLI"
# A command whose comment says this starts a server; the tour test does not run it.
UNTIL_STOPPED = "until Ctrl-C"
SETTING = re.compile(r"(BRIDGEBSR_[A-Z_]+)=(.*)")


def tour_lines() -> list[str]:
    """The lines of the tour's code block, continuation lines joined."""
    section = (REPO / "README.md").read_text(encoding="utf-8").split(TOUR_HEADING, 1)[1]
    block = section.split("```\n", 2)[1]
    return block.replace("\\\n", " ").splitlines()


def command(line: str) -> tuple[dict[str, str], list[str]]:
    """The settings a tour line puts before `bridgebsr`, and the arguments after it."""
    words = shlex.split(line, comments=True)
    settings = {}
    while setting := SETTING.fullmatch(words[0]):
        settings[setting[1]] = setting[2]
        words.pop(0)
    assert words[0] == "bridgebsr", line
    return settings, words[1:]


def test_only_the_server_is_marked_as_not_run() -> None:
    marked = [command(line)[1][0] for line in tour_lines() if UNTIL_STOPPED in line]
    assert marked == ["up"]


@pytest.mark.slow
def test_the_readme_tour_runs_top_to_bottom_on_a_fresh_home(tmp_path: Path) -> None:
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    home = tmp_path / ".bridgebsr"  # the default home in the folder the tour runs in
    ran = 0
    for line in tour_lines():
        if UNTIL_STOPPED in line:
            continue
        settings, args = command(line)
        done = run(home, *args, env=settings)
        assert done.returncode == 0, f"{line}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        ran += 1
    assert ran >= 20
    assert (tmp_path / "report.html").exists() and (tmp_path / "mva.ics").exists()
