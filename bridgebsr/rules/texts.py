"""Rules every text a person gives follows, from a file cell, a command-line option or a form.

- A control character is one of Unicode's control characters (Cc: a line break, a tab, an
  escape that drives a terminal) or a line or paragraph separator.
- A text fits its column: the length the model declares for it (on PostgreSQL the database
  would refuse a longer one; SQLite would store it whole).
- A person's or an organisation's name holds no control character.
- An email address has one stored form (`email_key`): what the contacts import keeps, and
  what every look-up by address asks for, so one person is one address however it is typed.
"""

import unicodedata
from functools import lru_cache
from typing import Any

from email_validator import EmailNotValidError, validate_email

CONTROL = frozenset({"Cc", "Zl", "Zp"})


def is_control(ch: str) -> bool:
    """Whether the character is a control character or a line or paragraph separator."""
    return unicodedata.category(ch) in CONTROL


def column_length(model: type[Any], field: str) -> int | None:
    """The characters `model`'s column for `field` holds (None: no limit)."""
    length = getattr(model.__table__.columns[field].type, "length", None)
    return int(length) if length is not None else None


def fitting(value: str, model: type[Any], field: str) -> str:
    """`value` when it fits `model`'s column for `field`, else ValueError saying so."""
    limit = column_length(model, field)
    if limit is not None and len(value) > limit:
        raise ValueError(f"{len(value)} characters; at most {limit} fit here")
    return value


def name_text(value: str) -> str:
    """`value` as a name, or ValueError when it holds a control character."""
    if found := next((ch for ch in value if is_control(ch)), None):
        raise ValueError(
            f"contains a control character ({repr(found)[1:-1]}); a name is one line of text"
        )
    return value


def email_address(value: str) -> str:
    """A valid address in its stored form (as email_validator normalises it: NFC, the domain
    lower-cased; then all lower-cased), or ValueError saying why it is none."""
    try:
        return validate_email(value.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise ValueError(f"'{value}' is not an email address: {exc}") from None


@lru_cache(maxsize=4096)  # an import looks up the same few owners row after row
def email_key(value: str) -> str:
    """What a look-up by address asks for: the stored form of a valid address; other text
    normalised the same way (NFC, lower-cased), so that it simply finds no one."""
    try:
        return email_address(value)
    except ValueError:
        return unicodedata.normalize("NFC", value.strip()).lower()
