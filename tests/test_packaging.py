"""The wheel a real install gets (`pip install .`, a worker machine): built without setuptools
warnings, holding every file of the four packages, and sending HTML email from a fresh venv."""

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.test_notifications.conftest import SmtpSink
from tests.test_notifications.conftest import smtp as smtp  # the SMTP server fixture

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "notifications", "bridgebsr", "flows")
# What a checkout holds besides the project: venvs, caches, build output, homes.
NOT_SOURCE = shutil.ignore_patterns(".*", "build", "dist", "*.egg-info", "__pycache__")


@dataclass
class Built:
    """The wheel and what its build printed."""

    wheel: Path
    log: str


def _call(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, f"{args}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The project's wheel, built from a copy of the checkout by this venv's setuptools (no
    download, and no build folder left in the checkout)."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"
    shutil.copytree(REPO, source, ignore=NOT_SOURCE)
    pip = (sys.executable, "-m", "pip", "--verbose")
    log = _call(
        *pip, "wheel", str(source), "--no-deps", "--no-build-isolation", "-w", "dist", cwd=base
    )
    (wheel,) = (base / "dist").glob("bridgebsr-*.whl")
    return Built(wheel, log)


def test_the_wheel_builds_without_setuptools_warnings(built: Built) -> None:
    # Warnings such as "Package would be ignored" announce files missing from an install.
    assert not re.findall(r".*\w+Warning\b.*", built.log)


def test_the_wheel_holds_every_file_of_the_packages(built: Built) -> None:
    names = set(zipfile.ZipFile(built.wheel).namelist())
    files = {
        path.relative_to(REPO).as_posix()
        for package in PACKAGES
        for path in (REPO / package).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert {"notifications/templates/notice.html", "notifications/templates/bundle.html"} <= files
    assert files - names == set()


def _fresh_venv(built: Built, base: Path) -> Path:
    """A new venv holding only the wheel; the dependencies come from this venv through a
    path line (a plain path: this venv's editable install of the checkout stays out)."""
    venv = base / "venv"
    _call(sys.executable, "-m", "venv", "--without-pip", str(venv), cwd=base)
    python = venv / "bin" / "python"
    pip = (sys.executable, "-m", "pip", "--python", str(python))
    _call(*pip, "install", "--no-deps", str(built.wheel), cwd=base)
    site = _call(
        str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=base
    )
    Path(site.strip(), "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return venv


def test_an_installed_wheel_sends_an_html_email(
    built: Built, smtp: SmtpSink, tmp_path: Path
) -> None:
    venv = _fresh_venv(built, tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BRIDGEBSR_", "PYTHON"))}
    env |= {"BRIDGEBSR_HOME": str(tmp_path / "home"), "BRIDGEBSR_EMAIL_URL": smtp.url()}
    imported = "import bridgebsr.cli, notifications as n; print(bridgebsr.cli.__file__, n.__file__)"
    where = _call(str(venv / "bin" / "python"), "-c", imported, cwd=tmp_path, env=env)
    assert all(Path(line).is_relative_to(venv) for line in where.split()), where
    (tmp_path / "partners.csv").write_text(
        "code,name,kind,country\nMVA,Medicon Valley,cluster,DK\n"
    )
    (tmp_path / "contacts.csv").write_text(
        "email,name,partner,role,country\nkarin.astrom@mva.example,Karin Åström,MVA,pilot-lead,SE\n"
    )
    for args in (
        ["init"],
        ["partners", "import", "partners.csv"],
        ["contacts", "import", "contacts.csv"],
        ["case", "open", "ip-integration", "--title", "IP model", "--start", "2026-03-02",
         "--owner", "karin.astrom@mva.example", "--partner", "MVA"],
        ["monitor", "--as-of", "2026-03-20T10:00"],  # kickoff, due on 03-16, is late
        ["notifications", "dispatch", "--as-of", "2026-03-20T10:05"],
    ):  # fmt: skip
        said = _call(str(venv / "bin" / "bridgebsr"), *args, cwd=tmp_path, env=env)
    assert len(smtp.received()) == 1, said
    (mail,) = smtp.received()
    assert mail.rcpt_tos == ["karin.astrom@mva.example"]
    assert "Case: <b>IP-2026-0001</b>" in mail.html  # notifications/templates/notice.html
