"""The settings file (`bridgebsr.toml` in the home or at BRIDGEBSR_CONFIG) and `.env`, under
the environment: env > .env > toml. Read through pydantic-settings' own sources, in this
process and through the `bridgebsr` console script."""

import os
from pathlib import Path

import pytest

from bridgebsr.errors import InvalidInput
from bridgebsr.settings import Settings, config_file
from tests.conftest import run
from tests.test_bridgebsr.test_cli import assert_one_error_line


@pytest.fixture
def place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with no BRIDGEBSR_* variable set and a home `h` in it."""
    for name in list(os.environ):
        if name.startswith("BRIDGEBSR_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BRIDGEBSR_HOME", str(tmp_path / "h"))
    (tmp_path / "h").mkdir()
    return tmp_path


def toml(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_the_home_settings_file_is_read_by_the_settings_names(place: Path) -> None:
    toml(
        place / "h" / "bridgebsr.toml",
        'timezone = "Europe/Oslo"\nactor = "lead@example.org"\ntemplate_dirs = ["a", "b"]\n'
        'notice_texts = "texts"\ndispatch_workers = 3\n',
    )
    settings = Settings.load()
    assert (settings.timezone, settings.actor, settings.dispatch_workers) == (
        "Europe/Oslo",
        "lead@example.org",
        3,
    )
    assert settings.template_paths() == [Path("a"), Path("b")]
    assert settings.notice_texts == Path("texts")


def test_env_overrides_dotenv_which_overrides_the_file(
    place: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    toml(place / "h" / "bridgebsr.toml", 'timezone = "Europe/Oslo"\nactor = "file@x.org"\n')
    assert Settings.load().timezone == "Europe/Oslo"
    (place / ".env").write_text("BRIDGEBSR_TIMEZONE=Europe/Riga\n", encoding="utf-8")
    settings = Settings.load()
    assert (settings.timezone, settings.actor) == ("Europe/Riga", "file@x.org")
    monkeypatch.setenv("BRIDGEBSR_TIMEZONE", "UTC")
    assert Settings.load().timezone == "UTC"


def test_bridgebsr_config_names_the_file_in_env_or_dotenv(
    place: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    toml(place / "h" / "bridgebsr.toml", 'timezone = "Europe/Oslo"\n')
    elsewhere = toml(place / "elsewhere.toml", 'timezone = "Europe/Vilnius"\n')
    (place / ".env").write_text(f"BRIDGEBSR_CONFIG={elsewhere}\n", encoding="utf-8")
    assert config_file() == elsewhere
    assert Settings.load().timezone == "Europe/Vilnius"
    monkeypatch.setenv("BRIDGEBSR_CONFIG", str(place / "missing.toml"))
    with pytest.raises(InvalidInput, match="BRIDGEBSR_CONFIG .*missing.toml is not a file"):
        Settings.load()


def test_a_bad_value_in_the_file_names_the_file_and_key(place: Path) -> None:
    path = toml(place / "h" / "bridgebsr.toml", 'timezone = "Mars/Base"\n')
    with pytest.raises(InvalidInput) as bad:
        Settings.load()
    assert str(bad.value) == f"{path}: timezone: unknown IANA time zone 'Mars/Base'"


def test_an_unknown_key_is_one_line_naming_file_and_key(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    toml(home / "bridgebsr.toml", 'timezone = "Europe/Oslo"\nemial_url = "mailto://x"\n')
    done = run(home, "db", "current")
    assert_one_error_line(done, str(home / "bridgebsr.toml"), "'emial_url' is no setting")
    assert "email_url" in done.stderr  # the known names, to pick the right one


def test_a_malformed_file_is_one_line_with_the_line_number(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    toml(home / "bridgebsr.toml", 'timezone = "Europe/Oslo"\nactor = \n')
    done = run(home, "db", "current")
    assert_one_error_line(done, str(home / "bridgebsr.toml"), "not valid TOML", "line 2")


def test_the_console_script_takes_the_file_and_the_environment_over_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    store = tmp_path / "from-file.db"
    toml(home / "bridgebsr.toml", f'database_url = "sqlite:///{store}"\n')
    done = run(home, "init")
    assert done.returncode == 0, done.stderr
    assert str(store) in done.stdout and store.exists()
    other = tmp_path / "from-env.db"
    done = run(home, "init", env={"BRIDGEBSR_DATABASE_URL": f"sqlite:///{other}"})
    assert done.returncode == 0, done.stderr
    assert str(other) in done.stdout and other.exists()
