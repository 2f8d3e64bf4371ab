"""Delivery through Apprise 2.0. This module and webhook.py (its JSON webhooks) are the only
ones that import it.

Email goes through one sending account (an Apprise `mailto://` or `mailtos://` URL) to each
contact's address; chat and webhooks come from an Apprise YAML config whose entries are tagged
by contact email, partner code or pilot kind. Where nothing is configured, the `bridgebsr://`
scheme writes the notice to a local log file, so the whole pipeline runs in the demo.
"""

import json
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import apprise
from apprise.decorators import notify

from notifications import webhook
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
    """The configured channels, ready to deliver messages from several threads at once.

    Chat services are looked up by tag once per thread and tag set, then reused: each call
    then runs its service inline, bounded by the service's socket timeouts, instead of going
    through Apprise's tag matching and thread pool every time. JSON webhooks keep their
    connection open from one message to the next, and a tag set whose only service is such a
    webhook calls it without `Apprise.notify`'s bookkeeping (both in webhook.py). Email gets
    a fresh Apprise object per message: its plugin waits 5.5 s between two sends of one
    object, and one person may have several messages in a pass. Threads never share an
    Apprise object (Apprise cannot run one object's services from two threads at once).
    """

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
        self._config = apprise_config
        self._mine = threading.local()
        # Email: a deadline of `timeout` for the whole conversation with the SMTP server.
        self._mail_asset = apprise.AppriseAsset(async_mode=False, service_timeout=timeout)
        # Chat: inline calls; the services' own connect and read timeouts bound them.
        self._chat_asset = apprise.AppriseAsset(async_mode=False, service_timeout=0)
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

    def _chat(self, tags: tuple[str, ...]) -> Any:
        """This thread's Apprise object with the chat services tagged by any of `tags`, or
        the one webhook that is all it would call (`webhook.sole_webhook`); None when no
        service has one of them."""
        boxes: dict[tuple[str, ...], Any] = self._mine.__dict__.setdefault("chat", {})
        if tags not in boxes:
            everything: apprise.Apprise | None = getattr(self._mine, "everything", None)
            if everything is None:
                config = apprise.AppriseConfig(asset=self._chat_asset)
                config.add(str(self._config))
                everything = self._mine.everything = apprise.Apprise(asset=self._chat_asset)
                everything.add(config)
            # JSON webhooks send over this thread's keep-alive connections (webhook.py).
            services = [
                webhook.keep_alive(s) for s in everything.find(tag=list(tags), match_always=False)
            ]
            for service in services:
                service.socket_connect_timeout = min(service.socket_connect_timeout, self._timeout)
                service.socket_read_timeout = min(service.socket_read_timeout, self._timeout)
            box = None
            if services:
                box = apprise.Apprise(asset=self._chat_asset)
                for service in services:
                    box.add(service)
                sole = webhook.sole_webhook(box)
                if sole is not None:
                    box = sole
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
            mail = apprise.Apprise(asset=self._mail_asset)
            if not mail.add(with_recipient(self._email_url, to)):
                results.append(ChannelResult("email", False, "BRIDGEBSR_EMAIL_URL is not valid"))
            else:
                outcome = mail.notify(
                    body=message.html, title=message.title, body_format=apprise.NotifyFormat.HTML
                )
                results.append(ChannelResult("email", bool(outcome), _why(outcome)))
        if self._config is not None and "chat" in allowed and "chat" not in done:
            chat = self._chat(tuple(sorted({t for t in tags if t})))
            if isinstance(chat, apprise.Apprise):
                outcome = chat.notify(
                    body=message.markdown,
                    title=message.title,
                    body_format=apprise.NotifyFormat.MARKDOWN,
                )
                results.append(ChannelResult("chat", bool(outcome), _why(outcome)))
            elif chat is not None:
                why = webhook.notify(
                    chat,
                    body=message.markdown,
                    title=message.title,
                    body_format=apprise.NotifyFormat.MARKDOWN,
                )
                results.append(ChannelResult("chat", not why, why))
        if not results and not done:
            local = apprise.Apprise()
            local.add(with_recipient(self._local, to))
            outcome = local.notify(body=message.text, title=message.title)
            results.append(ChannelResult("local", bool(outcome), _why(outcome)))
        return results


def _why(outcome: Any) -> str:
    """Which services failed and how, by name and status only (never a URL or a token)."""
    if outcome:
        return ""
    failed = [f"{r.name}: {r.status.name.lower()}" for r in outcome.results if not r]
    return "; ".join(failed) or outcome.status.name.lower()
