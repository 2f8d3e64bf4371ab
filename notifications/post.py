"""Delivery through Apprise 2.0, the only module that imports it.

Email goes through one sending account (an Apprise `mailto://` or `mailtos://` URL) to each
contact's address; chat and webhooks come from an Apprise YAML config whose entries are tagged
by contact email, partner code or pilot kind. Where nothing is configured, the `bridgebsr://`
scheme writes the notice to a local log file, so the whole pipeline runs in the demo.
"""

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import apprise
from apprise.decorators import notify

from notifications.render import Message

logger = logging.getLogger("bridgebsr.notifications")


@dataclass(frozen=True)
class ChannelResult:
    """How one channel did for one notice: sent, or failed with a reason free of secrets."""

    channel: str
    ok: bool
    detail: str = ""


@notify(on="bridgebsr", name="bridgebsr local log")  # type: ignore[untyped-decorator,no-untyped-call]
def _write_local(body: str, title: str, *args: Any, **kwargs: Any) -> bool:
    query = (kwargs.get("meta") or {}).get("qsd") or {}
    to, log = query.get("to", ""), query.get("log")
    if not log:
        return False
    path = Path(log)
    record = {"at": datetime.now(UTC).isoformat(), "to": to, "title": title, "body": body}
    with path.open("a", encoding="utf-8") as out:
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
    logger.info("notice for %s: %s", to, title)
    return True


def with_recipient(url: str, email: str) -> str:
    """The sending account's URL with `to=` set to one recipient."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "to"]
    query.append(("to", email))
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


def shown(url: str) -> str:
    """An Apprise URL in its privacy form (passwords and tokens masked), for messages."""
    instance = apprise.Apprise.instantiate(url)
    return str(instance.url(privacy=True)) if instance else "<unparseable URL>"  # type: ignore[no-untyped-call]


class PostOffice:
    """The configured channels, ready to deliver notices."""

    def __init__(
        self,
        *,
        email_url: str | None,
        apprise_config: Path | None,
        local_log: Path,
        timeout: float = 15.0,
    ) -> None:
        self._email_url = email_url
        self._timeout = timeout
        self._config: apprise.AppriseConfig | None = None
        if apprise_config is not None:
            self._config = apprise.AppriseConfig()
            self._config.add(str(apprise_config))
        local_log.parent.mkdir(parents=True, exist_ok=True)
        self._local = f"bridgebsr://local?log={quote(str(local_log.resolve()), safe='')}"

    def channels(self) -> list[str]:
        """What is configured, in privacy form."""
        out = []
        if self._email_url:
            out.append(f"email via {shown(self._email_url)}")
        if self._config is not None:
            out.append("chat/webhooks from the Apprise config")
        return out or ["local log (bridgebsr://)"]

    def deliver(
        self, *, to: str, tags: list[str], message: Message, done: frozenset[str] = frozenset()
    ) -> list[ChannelResult]:
        """Send one notice to one recipient on every channel configured for them, except the
        channels in `done` (delivered on an earlier attempt)."""
        results = []
        if self._email_url and "email" not in done:
            box = apprise.Apprise()
            if not box.add(with_recipient(self._email_url, to)):
                results.append(ChannelResult("email", False, "BRIDGEBSR_EMAIL_URL is not valid"))
            else:
                outcome = box.notify(
                    body=message.text,
                    title=message.title,
                    body_format=apprise.NotifyFormat.TEXT,
                    timeout=self._timeout,
                )
                results.append(ChannelResult("email", bool(outcome), _why(outcome)))
        if self._config is not None and "chat" not in done:
            box = apprise.Apprise()
            box.add(self._config)
            outcome = box.notify(
                body=message.markdown,
                title=message.title,
                body_format=apprise.NotifyFormat.MARKDOWN,
                tag=[t for t in tags if t],
                timeout=self._timeout,
            )
            if outcome.status is not apprise.AppriseResultStatus.NOMATCH:
                results.append(ChannelResult("chat", bool(outcome), _why(outcome)))
        if not results and not done:
            box = apprise.Apprise()
            box.add(with_recipient(self._local, to))
            outcome = box.notify(body=message.text, title=message.title)
            results.append(ChannelResult("local", bool(outcome), _why(outcome)))
        return results


def _why(outcome: Any) -> str:
    """Which services failed and how, by name and status only (never a URL or a token)."""
    if outcome:
        return ""
    failed = [f"{r.name}: {r.status.name.lower()}" for r in outcome.results if not r]
    return "; ".join(failed) or outcome.status.name.lower()
