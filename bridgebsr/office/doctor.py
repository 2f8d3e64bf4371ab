"""Checking a setup: the case store, the channels, the template and notice-text folders, each
as ok or a problem with how to fix it; and one test message to a person on each channel."""

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from sqlalchemy.exc import SQLAlchemyError

from bridgebsr.bootstrap import Runtime
from bridgebsr.errors import BridgeError
from bridgebsr.office.directory import quiet_text
from bridgebsr.settings import SECRET_FILE, Settings, config_file
from bridgebsr.store import migrate
from bridgebsr.store.people import load_directory

if TYPE_CHECKING:  # the post office loads Apprise: only when a check or a test send needs it
    from notifications.post import ChannelResult

SMTP_TIMEOUT = 5.0  # seconds for the whole SMTP login check


@dataclass(frozen=True)
class Check:
    """One part of the setup: its name, whether it is fine, and what was found (with the fix
    when it is not)."""

    name: str
    ok: bool
    detail: str


def checks(rt: Runtime) -> list[Check]:
    """Every check of the setup but Prefect's (the CLI asks Prefect), in order."""
    settings = rt.settings
    return [
        _settings_file(),
        _store(rt),
        _email(settings),
        _apprise(settings),
        _channels(rt),
        *_templates(rt),
        _notice_texts(settings),
        _web_links(settings),
    ]


def _settings_file() -> Check:
    path = config_file()
    if path is None:
        return Check("settings file", True, "none; settings come from the environment and .env")
    return Check("settings file", True, f"{path} (the environment and .env override it)")


def _store(rt: Runtime) -> Check:
    url = rt.engine.url.render_as_string(hide_password=True)
    try:
        at = migrate.current(rt.engine)
    except SQLAlchemyError as exc:
        reason = " ".join(str(getattr(exc, "orig", exc) or exc).split())
        return Check(
            "case store",
            False,
            f"{url}: cannot connect ({reason}); check "
            "BRIDGEBSR_DATABASE_URL and that the database server runs",
        )
    head = migrate.head()
    if at is None:
        return Check("case store", False, f"{url}: empty; run `bridgebsr init`")
    if at != head:
        return Check(
            "case store", False, f"{url}: schema {at}, not {head}; run `bridgebsr db upgrade`"
        )
    return Check("case store", True, f"{url}: schema {at} (current)")


def _email(settings: Settings) -> Check:
    if settings.email_url is None:
        log = settings.home / "notifications.log"
        return Check("email", True, f"BRIDGEBSR_EMAIL_URL not set: notices go to {log}")
    from notifications.probe import smtp_login  # Apprise loads here only

    probe = smtp_login(settings.email_url.get_secret_value(), timeout=SMTP_TIMEOUT)
    return Check("email", probe.ok, probe.detail)


def _apprise(settings: Settings) -> Check:
    path = settings.apprise_config
    if path is None:
        return Check("apprise config", True, "BRIDGEBSR_APPRISE_CONFIG not set: no chat")
    from notifications.post import config_problem
    from notifications.probe import apprise_config

    if problem := config_problem(path):
        return Check("apprise config", False, problem)
    summary = apprise_config(path)
    tags = ", ".join(summary.tags) or "none (no service will be used: tag each one)"
    return Check(
        "apprise config",
        bool(summary.tags),
        f"{path}: {len(summary.services)} service(s); tags: {tags}",
    )


def _channels(rt: Runtime) -> Check:
    """The team channels the Apprise config's services join, and any [channels.NAME] table
    of the settings that no service joins (its settings would apply to nothing)."""
    path = rt.settings.apprise_config
    if path is not None:
        from notifications.post import config_problem  # Apprise loads here only

        if config_problem(path):
            return Check("channels", True, "none (the Apprise config is not usable)")
    joined = rt.channels()
    unused = sorted(set(rt.settings.channels) - set(joined))
    if unused:
        return Check(
            "channels",
            False,
            "; ".join(
                f'[channels."{name}"] in the settings: no service in the Apprise config is '
                f"tagged channel:{name}; tag one or remove the table"
                for name in unused
            ),
        )
    said = [
        f"{c.name} ({c.zone}, quiet {quiet_text(c.quiet)}{', digest' if c.digest else ''})"
        for c in joined.values()
    ] or ["none (tag a chat service channel:NAME to make one)"]
    said += [
        f"a service tagged {tag} gets a copy of each notice per recipient: tag it "
        f"channel:{name} for one post per event"
        for tag, name in _bare_team_tags(rt)
    ]
    return Check("channels", True, "; ".join(said))


def _bare_team_tags(rt: Runtime) -> list[tuple[str, str]]:
    """The Apprise config's tags that name a pilot kind or a partner code without
    `channel:` (a team channel set up before channels existed), each with the channel it
    would be: (tag, channel name)."""
    path = rt.settings.apprise_config
    if path is None:
        return []
    from notifications.channels import PARTNER
    from notifications.probe import apprise_config

    tags = set(apprise_config(path).tags)
    try:
        kinds = {k.lower() for k in rt.catalog.templates}
    except BridgeError:
        kinds = set()
    try:
        with rt.engine.connect() as conn:
            codes = {c.lower() for c in load_directory(conn).orgs_by_code}
    except SQLAlchemyError:  # no store yet: its own check says so
        codes = set()
    found = [(tag, tag) for tag in sorted(tags & kinds)]
    return found + [(tag, PARTNER + tag) for tag in sorted(tags & codes - kinds)]


def _templates(rt: Runtime) -> list[Check]:
    found = []
    for folder in rt.settings.template_paths():
        if not folder.is_dir():
            found.append(
                Check(
                    "template folder",
                    False,
                    f"{folder} is not a folder; fix BRIDGEBSR_TEMPLATE_DIRS",
                )
            )
    if found:
        return found
    try:
        kinds = ", ".join(sorted(rt.catalog.templates))
    except BridgeError as exc:
        return [Check("templates", False, str(exc))]
    folders = ", ".join(str(p) for p in rt.settings.template_paths()) or "shipped only"
    return [Check("templates", True, f"{folders}; pilot kinds: {kinds}")]


def _notice_texts(settings: Settings) -> Check:
    from notifications.render import TEXTS, unknown_fields

    folder = settings.notice_texts
    if folder is None:
        return Check("notice texts", True, "shipped (BRIDGEBSR_NOTICE_TEXTS not set)")
    if not folder.is_dir():
        return Check("notice texts", False, f"{folder} is not a folder; fix BRIDGEBSR_NOTICE_TEXTS")
    own = [name for name in TEXTS if (folder / name).is_file()]
    problems = []
    for name in own:
        try:
            if unknown := unknown_fields(folder / name):
                problems.append(f"{name} uses unknown {', '.join(unknown)}")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{name} cannot be read ({exc})")
    strangers = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name not in TEXTS)
    if strangers:
        problems.append(
            f"not notice texts, never used: {', '.join(strangers)} "
            f"(the names are {', '.join(TEXTS)})"
        )
    if problems:
        return Check("notice texts", False, f"{folder}: {'; '.join(problems)}")
    mine = ", ".join(own) or "none (all shipped)"
    return Check("notice texts", True, f"{folder}: own {mine}")


TEST_NOTE = "a test message from `bridgebsr notifications test`: this channel works"


def send_test(rt: Runtime, *, to: str, day: date) -> list["ChannelResult"]:
    """One test message to `to` on each channel: email (else the local log) and each chat
    service tagged with `to` or `all`. The message is a notice filled from the notice texts in
    use, so it shows how notices look."""
    from bridgebsr.office.delivery import post_office
    from notifications.probe import send_test as send
    from notifications.render import render

    post = post_office(rt)  # also takes BRIDGEBSR_NOTICE_TEXTS
    payload = {
        "case": "TEST",
        "case_title": "bridgebsr setup check",
        "pilot": "setup",
        "country": "-",
        "item": "test",
        "item_kind": "milestone",
        "item_title": "Test message",
        "due": day.isoformat(),
        "days_late": 0,
        "step": "test",
        "offset": 0,
        "round": 1,
        "note": TEST_NOTE,
    }
    return send(post, to=to, message=render(payload), config=rt.settings.apprise_config)


LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def _web_links(settings: Settings) -> Check:
    """Where the links notices carry point, and the key that signs them."""
    url = settings.web_url()
    where = f"links in notices point to {url}"
    if url.startswith("http://") and urlsplit(url).hostname not in LOOPBACK:
        return Check(
            "web links",
            False,
            f"{where}: they would travel unencrypted; serve the web app behind a TLS proxy and "
            "set BRIDGEBSR_PUBLIC_URL=https://...",
        )
    if settings.secret_key is not None:
        return Check("web links", True, f"{where}; signed with BRIDGEBSR_SECRET_KEY")
    path = settings.home / SECRET_FILE
    if not path.is_file():
        return Check("web links", True, f"{where}; the key {path} is made on first use")
    if path.stat().st_mode & 0o077:
        return Check("web links", False, f"{path} is readable by others; run `chmod 600 {path}`")
    shared = settings.resolved_database_url().startswith("sqlite")
    also = "" if shared else "; every machine must sign alike: set BRIDGEBSR_SECRET_KEY on each"
    return Check("web links", True, f"{where}; signed with the key in {path}{also}")
