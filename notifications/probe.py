"""Checking the channels without delivering a notice: the SMTP login of the sending account,
what an Apprise config holds, and one test message on each channel of one person.

Like `post.py`, it names a URL only in Apprise's privacy form (passwords and tokens masked).
"""

import ipaddress
import smtplib
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apprise

from notifications import smtp_reply
from notifications.post import (
    PERCENT_ENCODE,
    ChannelResult,
    PostOffice,
    email_url_problem,
    shown,
    with_recipient,
)
from notifications.render import Message

EVERYONE = "all"  # the tag of a chat service that hears about everything
_SOMEONE = "probe@example.org"  # a recipient, for Apprise to take the sending account's URL


@dataclass(frozen=True)
class Probe:
    """One check's outcome: what was checked, whether it is fine, and what to do if not."""

    ok: bool
    detail: str


def smtp_login(url: str, timeout: float = 10.0) -> Probe:
    """Connect to the sending account's SMTP server, greet it (EHLO, STARTTLS when the URL
    asks for it) and log in when the URL has a user name and password; no mail is sent."""
    if problem := email_url_problem(url):
        return Probe(False, problem)
    mail: Any = apprise.Apprise.instantiate(with_recipient(url, _SOMEONE))
    if mail is None:  # email_url_problem has said why already; this is its belt and braces
        return Probe(False, "BRIDGEBSR_EMAIL_URL is not an email URL Apprise accepts")
    host, port = str(mail.smtp_host), int(mail.port)
    where = f"{shown(url)} ({host}:{port})"
    try:
        server: smtplib.SMTP
        if mail.secure and mail.secure_mode == "ssl":
            server = smtplib.SMTP_SSL(host, port, timeout=timeout, context=_tls())
        else:
            server = smtplib.SMTP(host, port, timeout=timeout)
        with server:
            server.ehlo()
            if mail.secure and mail.secure_mode == "starttls":
                server.starttls(context=_tls())
                server.ehlo()
            if mail.user and mail.password:
                server.login(str(mail.user), str(mail.password))
                return Probe(True, f"{where}: logged in as {mail.user}")
    except smtplib.SMTPAuthenticationError as exc:
        return Probe(
            False,
            f"{where}: login refused ({_reply(exc)}); check the user name and "
            f"password in BRIDGEBSR_EMAIL_URL, and {PERCENT_ENCODE} in them",
        )
    except smtplib.SMTPNotSupportedError as exc:
        return Probe(False, f"{where}: {exc}; the server wants TLS: use mailtos://")
    except smtplib.SMTPException as exc:
        return Probe(False, f"{where}: {_reply(exc)}")
    except (OSError, ssl.SSLError) as exc:
        fix = _odd_host(host) or "check the host and port"
        return Probe(False, f"{where}: cannot reach the server ({exc}); {fix}")
    return Probe(True, f"{where}: answers; no user name and password in the URL, so no login")


def _reply(exc: smtplib.SMTPException) -> str:
    code, text = getattr(exc, "smtp_code", None), getattr(exc, "smtp_error", b"")
    if code is None:
        return str(exc)
    said = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
    return f"SMTP {code} {' '.join(said.split())}"


def _tls() -> ssl.SSLContext:
    return ssl.create_default_context()


def _odd_host(host: str) -> str | None:
    """Why an unreachable `host` may not be the server meant (a name without a dot: often the
    tail of a password cut at an unescaped '@' or '#'), or None. Asked only when the server
    cannot be reached: a name without a dot may be a mail host on the local network."""
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    if "." in host or host == "localhost":
        return None
    return (
        f"the server name '{host}' has no dot, so it is likely part of a password cut off at "
        f"an unescaped character: {PERCENT_ENCODE}"
    )


@dataclass(frozen=True)
class ConfigSummary:
    """What an Apprise config holds: its services (privacy form) and their tags."""

    services: list[str]
    tags: list[str]


def apprise_config(path: Path) -> ConfigSummary:
    """The services and tags of the Apprise config at `path` (empty when it has none)."""
    config = apprise.AppriseConfig()
    config.add(str(path.resolve()))
    services = config.services()
    tags = sorted({str(t) for s in services for t in s.tags})
    return ConfigSummary([_private(s) for s in services], tags)


def send_test(
    post: PostOffice, *, to: str, message: Message, config: Path | None
) -> list[ChannelResult]:
    """`message` to `to` by email (else the local log) and on each chat service of `config`
    tagged with `to` or `all`, one service at a time, each with its own result."""
    results = post.deliver(to=to, tags=[], message=message, allowed=frozenset({"email"}))
    if config is None:
        return results
    box = apprise.AppriseConfig(asset=apprise.AppriseAsset(async_mode=False))
    box.add(str(config.resolve()))
    wanted = {to.lower(), EVERYONE}
    services = [s for s in box.services() if wanted & {str(t).lower() for t in s.tags}]
    if not services:
        why = f"no service in {config} is tagged {to} or {EVERYONE}; tag one to test it"
        return [*results, ChannelResult("chat", False, why)]
    for service in services:
        service.socket_connect_timeout = min(service.socket_connect_timeout, 10.0)
        service.socket_read_timeout = min(service.socket_read_timeout, 10.0)
        with smtp_reply.listening() as heard:
            ok = service.notify(
                body=message.markdown,
                title=message.title,
                body_format=apprise.NotifyFormat.MARKDOWN,
            )
        why = "" if ok else (smtp_reply.reason(heard) or "the service refused or did not answer")
        results.append(ChannelResult(f"{service.service_name} {_private(service)}", ok, why))
    return results


def _private(service: Any) -> str:
    """A service's URL in Apprise's privacy form."""
    return str(service.url(privacy=True))
