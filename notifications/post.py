"""Delivery through Apprise 2, the only module that imports it.

Email goes through one sending account (an Apprise `mailto://` or `mailtos://` URL) to each
contact's address; chat and webhooks come from an Apprise YAML config whose entries are tagged
by contact email, partner code or pilot kind. Where nothing is configured, the `bridgebsr://`
scheme writes the notice to a local log file, so the whole pipeline runs in the demo.
"""

import errno
import json
import logging
import os
import threading
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import apprise
from apprise.attachment.memory import AttachMemory
from apprise.decorators import notify

from notifications import smtp_reply
from notifications.render import Message

logger = logging.getLogger("bridgebsr.notifications")
# What a write that ran out of room raises: no space, over quota, over the file size limit.
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
PERCENT_ENCODE = "percent-encode @ as %40, # as %23, / as %2F and ? as %3F"
_PROBE = "probe@example.org"  # a recipient, to see whether Apprise takes the sending account
# The local log's write errors, for the delivery that wrapped them (Apprise swallows them).
_local_trouble: ContextVar[list[OSError] | None] = ContextVar("bridgebsr_local", default=None)


class BadChannel(ValueError):
    """A channel setting that can never deliver; the message names the setting, never its
    value (which may hold a password)."""


@dataclass(frozen=True)
class ChannelResult:
    """How one channel did for one notice: sent, or failed with a reason free of secrets."""

    channel: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class Attachment:
    """A file sent with an email: its name, media type and bytes."""

    filename: str
    media_type: str
    content: bytes = b""


@notify(on="bridgebsr", name="bridgebsr local log")  # type: ignore[untyped-decorator,no-untyped-call]
def _write_local(body: str, title: str, *args: Any, **kwargs: Any) -> bool:
    query = (kwargs.get("meta") or {}).get("qsd") or {}
    to, log = query.get("to", ""), query.get("log")
    if not log:
        return False
    record = {"at": datetime.now(UTC).isoformat(), "to": to, "title": title, "body": body}
    try:
        append_whole(Path(log), (json.dumps(record, ensure_ascii=False) + "\n").encode())
    except OSError as exc:
        if (trouble := _local_trouble.get()) is not None:
            trouble.append(exc)
        raise
    logger.info("notice for %s: %s", to, title)
    return True


def append_whole(path: Path, record: bytes) -> None:
    """Append `record` to `path` whole or not at all: one write in append mode, so writers in
    other threads and processes never interleave with it, and the part of a short write (the
    disk or a file size limit ran out mid-record) cut off again."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        written = os.write(fd, record)
        if written < len(record):
            os.ftruncate(fd, os.lseek(fd, 0, os.SEEK_CUR) - written)
            raise OSError(errno.ENOSPC, "no room for a whole record", str(path))
    finally:
        os.close(fd)


def with_recipient(url: str, email: str) -> str:
    """The sending account's URL with `to=` set to one recipient."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "to"]
    query.append(("to", email))
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


def email_url_problem(url: str) -> str | None:
    """Why BRIDGEBSR_EMAIL_URL can never send (None when Apprise takes it), without the URL."""
    parts = urlsplit(url)
    if parts.scheme not in {"mailto", "mailtos"}:
        return "BRIDGEBSR_EMAIL_URL is not a mailto:// or mailtos:// URL"
    if "#" in url or parts.netloc.count("@") > 1:
        # The rest would be read as another host or a fragment: the password leaks into both.
        return (
            "BRIDGEBSR_EMAIL_URL has an unescaped '@' or '#' in its user name or password: "
            + PERCENT_ENCODE
        )
    if apprise.Apprise.instantiate(with_recipient(url, _PROBE)) is None:
        return (
            "BRIDGEBSR_EMAIL_URL is not an email URL Apprise accepts: check the host, the port "
            f"and from= (an address), and {PERCENT_ENCODE} in the user name and password"
        )
    return None


def config_problem(path: Path) -> str | None:
    """Why BRIDGEBSR_APPRISE_CONFIG can never deliver (None when Apprise loads a service)."""
    if not path.is_file():
        return f"BRIDGEBSR_APPRISE_CONFIG {path} is not a file"
    config = apprise.AppriseConfig()
    if not config.add(str(path.resolve())) or not config.services():
        return (
            f"BRIDGEBSR_APPRISE_CONFIG {path} holds no service Apprise can use: check its "
            f"YAML and {PERCENT_ENCODE} in passwords"
        )
    return None


def shown(url: str) -> str:
    """An Apprise URL in its privacy form (passwords and tokens masked), for messages."""
    instance = apprise.Apprise.instantiate(url)
    return str(instance.url(privacy=True)) if instance else "<unparseable URL>"  # type: ignore[no-untyped-call]


class PostOffice:
    """The configured channels, ready to deliver messages from several threads at once.

    Chat services are looked up by tag once per thread and tag set, then reused: each call
    then runs its service inline, bounded by the service's socket timeouts, instead of going
    through Apprise's tag matching and thread pool every time. Email gets a fresh Apprise
    object per message: its plugin waits 5.5 s between two sends of one object, and one
    person may have several messages in a pass. Threads never share an Apprise object
    (Apprise cannot run one object's services from two threads at once).
    """

    def __init__(
        self,
        *,
        email_url: str | None,
        apprise_config: Path | None,
        local_log: Path,
        timeout: float = 15.0,
    ) -> None:
        problem = (email_url and email_url_problem(email_url)) or (
            apprise_config and config_problem(apprise_config)
        )
        if problem:
            raise BadChannel(problem)
        self._email_url = email_url
        self._timeout = timeout
        self._config = apprise_config
        self._mine = threading.local()
        # Email: a deadline of `timeout` for the whole conversation with the SMTP server.
        self._mail_asset = apprise.AppriseAsset(async_mode=False, service_timeout=timeout)
        # Chat: inline calls; the services' own connect and read timeouts bound them.
        self._chat_asset = apprise.AppriseAsset(async_mode=False, service_timeout=0)
        local_log.parent.mkdir(parents=True, exist_ok=True)
        self.local_log = Path(os.path.abspath(local_log))  # as configured, links and all
        self._local = f"bridgebsr://local?log={quote(str(self.local_log), safe='')}"
        # Set once the local log ran out of room: later notices fail at once instead of trying.
        self.full: OSError | None = None

    def channels(self) -> list[str]:
        """What is configured, in privacy form."""
        out = []
        if self._email_url:
            out.append(f"email via {shown(self._email_url)}")
        if self._config is not None:
            out.append("chat/webhooks from the Apprise config")
        return out or ["local log (bridgebsr://)"]

    def _chat(self, tags: tuple[str, ...]) -> apprise.Apprise | None:
        """This thread's Apprise object with the chat services tagged by any of `tags`
        (None when no service has one of them)."""
        boxes: dict[tuple[str, ...], apprise.Apprise | None] = self._mine.__dict__.setdefault(
            "chat", {}
        )
        if tags not in boxes:
            everything: apprise.Apprise | None = getattr(self._mine, "everything", None)
            if everything is None:
                config = apprise.AppriseConfig(asset=self._chat_asset)
                config.add(str(self._config))
                everything = self._mine.everything = apprise.Apprise(asset=self._chat_asset)
                everything.add(config)
            services = list(everything.find(tag=list(tags), match_always=False))
            for service in services:
                service.socket_connect_timeout = min(service.socket_connect_timeout, self._timeout)
                service.socket_read_timeout = min(service.socket_read_timeout, self._timeout)
            box = None
            if services:
                box = apprise.Apprise(asset=self._chat_asset)
                for service in services:
                    box.add(service)
            boxes[tags] = box
        return boxes[tags]

    def deliver(
        self,
        *,
        to: str,
        tags: list[str],
        message: Message,
        done: frozenset[str] = frozenset(),
        allowed: frozenset[str] = frozenset({"email", "chat"}),
    ) -> list[ChannelResult]:
        """Send one message to one recipient on every channel configured for them and
        `allowed` by their preferences, except the channels in `done` (delivered on an
        earlier attempt). With no channel for them, the message goes to the local log."""
        results = []
        if self._email_url and "email" in allowed and "email" not in done:
            results.append(self._email(self._email_url, to, message))
        if self._config is not None and "chat" in allowed and "chat" not in done:
            chat = self._chat(tuple(sorted({t for t in tags if t})))
            if chat is not None:
                outcome = chat.notify(
                    body=message.markdown,
                    title=message.title,
                    body_format=apprise.NotifyFormat.MARKDOWN,
                )
                results.append(ChannelResult("chat", bool(outcome), _why(outcome)))
        if not results and not done:
            results.append(self._to_local_log(to, message))
        return results

    def to_channel(self, tag: str, message: Message) -> ChannelResult:
        """One post on every chat service tagged `tag` (a channel's: `channel:NAME`)."""
        chat = self._chat((tag,)) if self._config is not None else None
        if chat is None:
            return ChannelResult(tag, False, f"no chat service is tagged {tag}")
        outcome = chat.notify(
            body=message.markdown, title=message.title, body_format=apprise.NotifyFormat.MARKDOWN
        )
        return ChannelResult(tag, bool(outcome), _why(outcome))

    def mail(
        self, *, to: str, message: Message, attach: Sequence[Attachment] = ()
    ) -> ChannelResult:
        """One email with files attached to one person, by email only (a report, not a
        notice); with no sending account, its text and the files' names go to the local log."""
        if self._email_url:
            return self._email(self._email_url, to, message, attach)
        if not attach:
            return self._to_local_log(to, message)
        names = ", ".join(a.filename for a in attach)
        listed = Message(message.title, lambda suffix: f"{message.text}\n\nAttached: {names}")
        return self._to_local_log(to, listed)

    def _email(
        self, url: str, to: str, message: Message, attach: Sequence[Attachment] = ()
    ) -> ChannelResult:
        """One email through the sending account; a failure says what the server replied."""
        mail = apprise.Apprise(asset=self._mail_asset)
        if not mail.add(with_recipient(url, to)):
            return ChannelResult("email", False, "BRIDGEBSR_EMAIL_URL is not valid")
        files = None
        if attach:  # Apprise's in-memory attachments: nothing is written to disk
            files = apprise.AppriseAttachment(asset=self._mail_asset)
            for a in attach:
                memory = AttachMemory(content=a.content, name=a.filename, mimetype=a.media_type)  # type: ignore[no-untyped-call]
                files.add(memory)
        with smtp_reply.listening() as heard:
            outcome = mail.notify(
                body=message.html,
                title=message.title,
                body_format=apprise.NotifyFormat.HTML,
                attach=files,
            )
        why = _why(outcome)
        if not outcome and (reply := smtp_reply.reason(heard)):
            why = f"{why} ({reply})"
        return ChannelResult("email", bool(outcome), why)

    def _to_local_log(self, to: str, message: Message) -> ChannelResult:
        """The notice appended to the local log; once the log is out of room, a failure."""
        if self.full is None:
            trouble: list[OSError] = []
            token = _local_trouble.set(trouble)
            try:
                local = apprise.Apprise()
                local.add(with_recipient(self._local, to))
                outcome = local.notify(body=message.text, title=message.title)
            finally:
                _local_trouble.reset(token)
            full = next((e for e in trouble if e.errno in DISK_FULL), None)
            if full is None:
                return ChannelResult("local", bool(outcome), _why(outcome))
            self.full = full
        return ChannelResult("local", False, f"disk full at {self.local_log}")


def _why(outcome: Any) -> str:
    """Which services failed and how, by name and status only (never a URL or a token)."""
    if outcome:
        return ""
    failed = [f"{r.name}: {r.status.name.lower()}" for r in outcome.results if not r]
    return "; ".join(failed) or outcome.status.name.lower()
