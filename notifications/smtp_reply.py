"""Why an email failed: the SMTP server's reply, which Apprise logs but does not return.

Apprise's email plugin catches smtplib's exceptions and logs each as `Socket Exception: ...` at
DEBUG; its result says no more than "E-Mail: failure", so a refused login (535), a connection
closed during DATA and a rejected message (554) would read the same. This module is the one
adapter that reads those lines: a filter on the `apprise` logger keeps them for the email send
that `listening()` wraps. The logger is turned to DEBUG so that the lines exist at all, and the
filter drops every record below the level the logger had before (or inherits), so no other
handler sees anything more than it did: Apprise's debug lines can hold webhook tokens.
"""

import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_APPRISE = logging.getLogger("apprise")
_SOCKET = "Socket Exception: "  # how Apprise's email plugin logs what smtplib raised
_REPLY = re.compile(r"^\((\d{3}), b?(['\"])(.*?)\2")  # smtplib's "(535, b'5.7.8 ...')"
_LONGEST = 160  # characters of a server's text kept

_heard: ContextVar[list[str] | None] = ContextVar("bridgebsr_smtp_heard", default=None)
_installed = threading.Lock()


class _Listener(logging.Filter):
    """Keeps the SMTP failure lines of the send being listened to; passes on only records
    at or above the logger's own level from before, so its DEBUG setting shows nowhere."""

    def __init__(self, floor: int) -> None:
        super().__init__()
        self.floor = floor  # NOTSET: follow the parent loggers, as before

    def filter(self, record: logging.LogRecord) -> bool:
        heard = _heard.get()
        if heard is not None and record.levelno == logging.DEBUG:
            text = record.getMessage()
            if text.startswith(_SOCKET):
                heard.append(text.removeprefix(_SOCKET))
        floor = self.floor or (_APPRISE.parent or _APPRISE).getEffectiveLevel()
        return record.levelno >= floor


def _install() -> None:
    with _installed:
        if any(isinstance(f, _Listener) for f in _APPRISE.filters):
            return
        _APPRISE.addFilter(_Listener(_APPRISE.level))
        _APPRISE.setLevel(logging.DEBUG)


@contextmanager
def listening() -> Iterator[list[str]]:
    """Collect, while the block runs, the SMTP failures Apprise logs for it (raw lines)."""
    _install()
    heard: list[str] = []
    token = _heard.set(heard)
    try:
        yield heard
    finally:
        _heard.reset(token)


def reason(lines: list[str]) -> str:
    """The last SMTP failure heard, as `SMTP <code> <text>` or smtplib's own words ("" when
    none was heard); never a URL or a credential, which smtplib's messages do not carry."""
    if not lines:
        return ""
    line = lines[-1]
    if reply := _REPLY.match(line):
        code, text = reply.group(1), reply.group(3)
        return f"SMTP {code} {' '.join(text.split())[:_LONGEST]}".rstrip()
    return " ".join(line.split())[:_LONGEST]
