"""Team channels: a chat service tagged `channel:NAME` gets one post per event, under the
channel's own quiet hours and digest, while a service tagged with a person's address keeps
getting that person's notices (real monitor pass, real Apprise json:// to a loopback
receiver, on SQLite and PostgreSQL)."""

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import apprise
import pytest
from sqlmodel import col, select

from bridgebsr.bootstrap import Runtime
from bridgebsr.errors import InvalidInput
from bridgebsr.monitor.sweep import run_monitor
from bridgebsr.office.delivery import deliver
from bridgebsr.office.doctor import checks
from bridgebsr.settings import ChannelSettings, Settings
from bridgebsr.store.db import read_session
from models import ChannelPost, NotificationStatus
from notifications.channels import hearing, name_of
from tests.conftest import at
from tests.test_bridgebsr.test_monitor import (
    COUNCIL,
    COUNCIL_VOTER,
    IP_KEY,
    LEAD,
    SECOND_VOTER,
    ZONE,
    _deadline,
    _decide,
    ip_at_council,
)
from tests.test_notifications.conftest import HttpReceiver

__all__ = ["ip_at_council"]  # the fixture, shared with the monitor's tests

NEW_YORK = ZoneInfo("America/New_York")
EXAMPLE = Path(__file__).parents[2] / "docs" / "examples" / "apprise.yml"
COUNCIL_MEMBERS = (
    "peter.moller-jensen@mva.example",
    "juergen.weiss@bioconvalley.example",
    "malgorzata.zurawska@ippt-pan.example",
    "paivi.kaariainen@bioforum-oulu.example",
    "ilze.klavina@biotech-lv.example",
    "kristjan.poder@biotech-ee.example",
)
PEOPLE = (*COUNCIL_MEMBERS, LEAD)


# --- the rules (no database) -----------------------------------------------------------------


def test_a_channel_hears_its_kind_its_partners_and_everything() -> None:
    joined = {"all", "ip-integration", "partner:mva", "partner:bcv", "shared-sme-service"}
    assert hearing(joined, pilot="ip-integration", partners=["MVA"]) == [
        "all",
        "ip-integration",
        "partner:mva",
    ]
    assert hearing(joined, pilot="shared-sme-service", partners=[]) == [
        "all",
        "shared-sme-service",
    ]
    assert hearing({"partner:mva"}, pilot="ip-integration", partners=["BCV"]) == []
    assert name_of("channel:partner:DK-MV") == "partner:dk-mv"
    assert name_of("soren.ostergaard@scanbalt.example") is None
    assert name_of("channel:") is None


def test_channel_settings_are_checked_with_one_line_each(tmp_path: Path) -> None:
    good = Settings(home=tmp_path, channels={"Partner:MVA": {"quiet_hours": "none"}})
    assert set(good.channels) == {"partner:mva"}
    with pytest.raises(ValueError, match="FROM-UNTIL"):
        ChannelSettings(quiet_hours="9pm to 7am")
    config = tmp_path / "bridgebsr.toml"
    config.write_text('[channels.all]\nquiet_hours = "late"\n', encoding="utf-8")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("BRIDGEBSR_CONFIG", str(config))
        with pytest.raises(InvalidInput, match=r"bridgebsr.toml: channels: .*FROM-UNTIL"):
            Settings.load()


def test_the_documented_apprise_config_parses_with_apprise() -> None:
    config = apprise.AppriseConfig()
    assert config.add(str(EXAMPLE))
    services = config.services()
    kinds = {type(s).__name__ for s in services}
    assert kinds == {"NotifyEmail", "NotifyWorkflows", "NotifySlack", "NotifyMatrix"}
    tags = {str(t) for s in services for t in s.tags}
    assert {"channel:ip-integration", "channel:partner:mva", "channel:all"} <= tags
    # The SMTP password with @ and # came through whole: Apprise reads it back as written.
    (mail,) = [s for s in services if s.url().startswith("mailtos")]
    assert mail.password == "p@ss#word"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_doctor_lists_the_channels_and_names_a_table_no_service_joins(
    rt: Runtime, receiver: HttpReceiver, tmp_path: Path
) -> None:
    sound = _with_channels(rt, receiver, {"ip-integration": {"digest": True}}, tmp_path)
    (ok,) = [c for c in checks(sound) if c.name == "channels"]
    assert ok.ok and ok.detail == "ip-integration (Europe/Copenhagen, quiet 21:00-07:00, digest)"

    chosen = {**sound.settings.channels, "partner:bcv": ChannelSettings()}
    stray = Runtime(sound.settings.model_copy(update={"channels": chosen}), rt.engine)
    (problem,) = [c for c in checks(stray) if c.name == "channels"]
    assert not problem.ok
    assert "no service in the Apprise config is tagged channel:partner:bcv" in problem.detail


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the check reads no rows twice
def test_doctor_says_how_to_make_a_bare_kind_or_partner_tag_a_channel(
    consortium: Runtime, tmp_path: Path
) -> None:
    """A service tagged with a pilot kind or a partner code (a team channel set up before
    channels existed) still gets one copy per recipient: the doctor names the tag to use."""
    config = tmp_path / "apprise.yml"
    config.write_text(
        "version: 1\nurls:\n  - json://127.0.0.1:9/team:\n"
        "      - tag: ip-integration, MVA, someone@example.org\n",
        encoding="utf-8",
    )
    update = {"apprise_config": config, "home": tmp_path / "home"}
    rt = Runtime(consortium.settings.model_copy(update=update), consortium.engine)
    (check,) = [c for c in checks(rt) if c.name == "channels"]
    assert check.ok
    assert check.detail.split("; ") == [
        "none (tag a chat service channel:NAME to make one)",
        "a service tagged ip-integration gets a copy of each notice per recipient: "
        "tag it channel:ip-integration for one post per event",
        "a service tagged mva gets a copy of each notice per recipient: "
        "tag it channel:partner:mva for one post per event",
    ]


# --- end to end ------------------------------------------------------------------------------


def _with_channels(
    rt: Runtime, receiver: HttpReceiver, channels: dict[str, Any], tmp_path: Path
) -> Runtime:
    """`rt` with an Apprise config: one personal webhook (/personal) tagged with each council
    member's and the pilot lead's address, and one webhook per channel (/NAME)."""
    base = f"json://127.0.0.1:{receiver.port}"
    lines = ["version: 1", "urls:", f"  - {base}/personal:", f"      - tag: {', '.join(PEOPLE)}"]
    for name in channels:
        path = name.replace(":", "-")
        lines += [f"  - {base}/{path}:", f"      - tag: channel:{name}"]
    config = tmp_path / "apprise.yml"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    chosen = {name: ChannelSettings(**v) for name, v in channels.items()}
    update = {"apprise_config": config, "channels": chosen, "home": tmp_path / "home"}
    return Runtime(settings=rt.settings.model_copy(update=update), engine=rt.engine)


def _council_due(rt: Runtime) -> date:
    """Two of six council members vote; the gate's deadline comes: its `due` step reaches the
    four who have not voted and the pilot lead. The deadline."""
    deadline = _deadline(rt.engine, IP_KEY, COUNCIL)
    for voter in (COUNCIL_VOTER, SECOND_VOTER):
        _decide(rt, IP_KEY, COUNCIL, voter, deadline - timedelta(days=3))
    run_monitor(rt.engine, now=at(deadline.isoformat(), 7), zone=ZONE, channels=rt.channels())
    return deadline


def _posts(rt: Runtime, item: str | None = None) -> list[ChannelPost]:
    with read_session(rt.engine) as session:
        rows = session.exec(select(ChannelPost).order_by(col(ChannelPost.id))).all()
    return [p for p in rows if item is None or p.payload.get("item") == item]


def _about(receiver: HttpReceiver, path: str, item: str) -> list[dict[str, Any]]:
    return [h.data for h in receiver.received(path) if item in h.data["title"]]


def test_five_recipients_of_one_event_make_one_channel_post_and_five_personal_messages(
    ip_at_council: Runtime, receiver: HttpReceiver, tmp_path: Path
) -> None:
    channels = {"ip-integration": {}, "partner:ippt-pan": {}, "partner:bcv": {}}
    rt = _with_channels(ip_at_council, receiver, channels, tmp_path)
    deadline = _council_due(rt)
    # The second voter's partner heard of nothing: BCV's only council member voted.
    posts = _posts(rt, COUNCIL)
    assert sorted(p.channel for p in posts) == ["ip-integration", "partner:ippt-pan"]
    assert {p.rule for p in posts} == {"due"}
    run_monitor(rt.engine, now=at(deadline.isoformat(), 8), zone=ZONE, channels=rt.channels())
    assert len(_posts(rt, COUNCIL)) == 2  # a second pass writes no post again

    report = deliver(rt, now=at(deadline.isoformat(), 10))

    assert report.channels is not None and report.channels.failed == 0
    (post,) = _about(receiver, "/ip-integration", COUNCIL)
    assert post["title"] == f"{IP_KEY}: {COUNCIL} is due {deadline.isoformat()}"
    assert len(_about(receiver, "/partner-ippt-pan", COUNCIL)) == 1
    assert receiver.received("/partner-bcv") == []
    assert len(_about(receiver, "/personal", COUNCIL)) == 5
    assert {p.status for p in _posts(rt)} == {NotificationStatus.SENT}
    # Nothing is posted twice.
    hits = len(receiver.received())
    deliver(rt, now=at(deadline.isoformat(), 11))
    assert len(receiver.received()) == hits


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_post_whose_gate_was_decided_meanwhile_is_not_posted(
    ip_at_council: Runtime, receiver: HttpReceiver, tmp_path: Path
) -> None:
    rt = _with_channels(ip_at_council, receiver, {"ip-integration": {}}, tmp_path)
    deadline = _council_due(rt)
    third = next(m for m in COUNCIL_MEMBERS if m not in {COUNCIL_VOTER, SECOND_VOTER})
    _decide(rt, IP_KEY, COUNCIL, third, deadline)  # the third approval decides the gate

    report = deliver(rt, now=at(deadline.isoformat(), 10))

    assert report.channels is not None and report.channels.obsolete == 1
    assert receiver.received("/ip-integration") == []
    (post,) = _posts(rt, COUNCIL)
    assert post.status is NotificationStatus.OBSOLETE
    assert post.last_error == f"gate {IP_KEY} {COUNCIL} is approved"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_channel_keeps_its_own_quiet_hours_and_its_daily_digest(
    ip_at_council: Runtime, receiver: HttpReceiver, tmp_path: Path
) -> None:
    channels = {
        # 05:00 in New York at 10:00 UTC, when the posts are first due.
        "ip-integration": {"timezone": "America/New_York", "quiet_hours": "21:00-07:00"},
        "all": {"digest": True, "quiet_hours": "none"},
    }
    rt = _with_channels(ip_at_council, receiver, channels, tmp_path)
    deadline = _deadline(rt.engine, IP_KEY, COUNCIL)
    for day in (deadline - timedelta(days=2), deadline):  # two reminders, two events
        run_monitor(rt.engine, now=at(day.isoformat(), 12), zone=ZONE, channels=rt.channels())
    for_all = [p for p in _posts(rt) if p.channel == "all"]
    calm = [p for p in for_all if not p.urgent]
    assert len(calm) >= 2

    after = deadline + timedelta(days=4)  # past the next working day's 08:00
    first = deliver(rt, now=at(after.isoformat(), 10))
    assert first.channels is not None and first.channels.digests == 1
    assert len(_about(receiver, "/personal", COUNCIL)) > 0  # people are not held
    # The IP channel's night: nothing yet, held until 07:00 in New York.
    assert receiver.received("/ip-integration") == []
    held = [p for p in _posts(rt) if p.channel == "ip-integration"]
    morning = datetime.combine(after, time(7), tzinfo=NEW_YORK)
    assert held and {p.status for p in held} == {NotificationStatus.HELD}
    assert {_utc(p.next_attempt_at) for p in held} == {morning.astimezone(UTC)}
    # The digest channel: one message for the calm posts, each urgent one on its own.
    digests = [h.data for h in receiver.received("/all") if "Daily digest" in h.data["title"]]
    assert len(digests) == 1 and f"{len(calm)} notice(s)" in digests[0]["title"]
    assert len(receiver.received("/all")) == len(for_all) - len(calm) + 1

    second = deliver(rt, now=morning)
    assert second.channels is not None and second.channels.sent == len(held)
    assert len(receiver.received("/ip-integration")) == len(held)
    assert len(receiver.received("/all")) == len(for_all) - len(calm) + 1


def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value
