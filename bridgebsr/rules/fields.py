"""Typed case fields: the one rule that parses and checks a value for a field declaration.

Every path that fills a field calls it: `case open --field`, `case set`, `milestone complete
--field`, the extra columns of `case import` (a `FieldSet` built once per template and applied
row by row) and the demo. A set of declarations becomes a pydantic model (`FieldSet`), each
field parsed from what a person typed into its stored form:

- text: the text, one line (no control characters), at most `max_length` characters (2000);
- integer: a whole number (an int), within min/max;
- decimal: a number with a dot for decimals, kept as its exact text ("12500.50": JSON holds no
  decimals, and a float would lose digits), within min/max;
- date: YYYY-MM-DD or DD.MM.YYYY, kept as ISO text, within min/max;
- choice: one of `choices` (any case; kept as declared);
- email: an address in its stored form (`texts.email_address`);
- url: an http or https address with a host;
- bool: yes/no, true/false, 1/0.

Stored values are JSON (cases.fields, milestones.fields) on both databases; `typed` turns one
back into its Python value (Decimal, date) without loss. An empty text clears an optional
value (None). A bad value is an InvalidInput of one line naming the field:
`funds_raised_eur: 'abc' is not a decimal; give a number like 12500.50`.
"""

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from decimal import Decimal, InvalidOperation
from functools import partial
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, create_model
from pydantic_core import PydanticCustomError

from bridgebsr.errors import InvalidInput
from bridgebsr.rules.calendars import out_of_range
from bridgebsr.rules.texts import email_address, is_control
from models import FieldKind, FieldSpec, Template

TEXT_MAX = 2000
URL_MAX = 2000
NUMBER_MAX = Decimal(10) ** 15  # whole and decimal numbers stay below this in size
_INTEGER = re.compile(r"^[+-]?\d+$")
_DECIMAL = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
_TRUE = {"yes", "y", "true", "1", "on"}
_FALSE = {"no", "n", "false", "0", "off"}


def _quoted(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "...")


def parse(spec: FieldSpec, value: Any) -> Any:
    """`value` (text, or a Python value) in the stored form of `spec`'s kind, checked against
    its bounds; None for an empty text. ValueError says why not (without the field's name)."""
    if value is None:
        return None
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, date):
        text = value.isoformat()
    else:
        text = str(value).strip()
    if text == "":
        return None
    return _PARSERS[spec.kind](spec, text)


def _text(spec: FieldSpec, text: str) -> str:
    if found := next((ch for ch in text if is_control(ch)), None):
        raise ValueError(f"contains a control character ({repr(found)[1:-1]}); give one line")
    limit = spec.max_length or TEXT_MAX
    if len(text) > limit:
        raise ValueError(f"{len(text)} characters; at most {limit} fit; shorten it")
    return text


def _number(spec: FieldSpec, text: str) -> Decimal:
    whole = spec.kind is FieldKind.INTEGER
    pattern = _INTEGER if whole else _DECIMAL
    number = None
    if pattern.match(text):
        number = Decimal(text)
    elif whole and _DECIMAL.match(text) and Decimal(text) == Decimal(text).to_integral_value():
        number = Decimal(text).to_integral_value()  # a spreadsheet's 12.0
    if number is None:
        what, like = ("a whole number", "42") if whole else ("a decimal", "12500.50")
        hint = "; use a dot for decimals and no thousands separators" if "," in text else ""
        raise ValueError(f"{_quoted(text)} is not {what}; give a number like {like}{hint}")
    if abs(number) >= NUMBER_MAX:
        raise ValueError(f"{text} is too large; give a number below {NUMBER_MAX:,.0f}")
    _bounds(spec, number, text)
    return number


def _integer(spec: FieldSpec, text: str) -> int:
    return int(_number(spec, text))


def _decimal(spec: FieldSpec, text: str) -> str:
    number = _number(spec, text)
    try:
        return str(number if "e" not in str(number).lower() else number.quantize(Decimal(1)))
    except InvalidOperation:  # pragma: no cover - bounded above
        return str(number)


def _date(spec: FieldSpec, text: str) -> str:
    day = None
    try:
        if len(text) == 10 and text[4] == "-":
            day = date.fromisoformat(text)
        elif text.count(".") == 2:
            d, m, y = text.split(".")
            day = date(int(y), int(m), int(d)) if len(y) == 4 else None
    except ValueError:
        day = None
    if day is None:
        raise ValueError(f"{_quoted(text)} is not a date; give one like 2026-03-31")
    if why := out_of_range(day):
        raise ValueError(why)
    _bounds(spec, day, text)
    return day.isoformat()


def _bounds(spec: FieldSpec, value: Any, text: str) -> None:
    low, high = spec.min, spec.max
    if low is not None and value < low:
        raise ValueError(f"{text} is below the minimum {low}; give {low} or more")
    if high is not None and value > high:
        raise ValueError(f"{text} is above the maximum {high}; give {high} or less")


def _choice(spec: FieldSpec, text: str) -> str:
    wanted = text.casefold()
    for choice in spec.choices:
        if choice.casefold() == wanted:
            return choice
    raise ValueError(f"{_quoted(text)} is not one of: {', '.join(spec.choices)}")


def _email(spec: FieldSpec, text: str) -> str:
    try:
        return email_address(text)
    except ValueError:
        raise ValueError(f"{_quoted(text)} is not an email address (name@example.org)") from None


def url(text: str) -> str:
    """An http or https address with a host, one line, at most URL_MAX characters; else
    ValueError (the evidence links of completions and votes follow the same rule)."""
    text = text.strip()
    parts = urlsplit(text) if not any(is_control(ch) or ch == " " for ch in text) else None
    if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{_quoted(text)} is not an http or https link (https://example.org/a)")
    if len(text) > URL_MAX:
        raise ValueError(f"a link of {len(text)} characters; at most {URL_MAX} fit")
    return text


def _url(spec: FieldSpec, text: str) -> str:
    return url(text)


def _bool(spec: FieldSpec, text: str) -> bool:
    word = text.casefold()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"{_quoted(text)} is not yes or no (yes, no, true, false, 1, 0)")


_PARSERS = {
    FieldKind.TEXT: _text,
    FieldKind.INTEGER: _integer,
    FieldKind.DECIMAL: _decimal,
    FieldKind.DATE: _date,
    FieldKind.CHOICE: _choice,
    FieldKind.EMAIL: _email,
    FieldKind.URL: _url,
    FieldKind.BOOL: _bool,
}


def typed(spec: FieldSpec, stored: Any) -> Any:
    """A stored value as its Python value: a Decimal, a date, or as stored."""
    if stored is None:
        return None
    if spec.kind is FieldKind.DECIMAL:
        return Decimal(str(stored))
    if spec.kind is FieldKind.DATE:
        return date.fromisoformat(str(stored))
    return stored


def _checked(spec: FieldSpec, value: Any) -> Any:
    try:
        return parse(spec, value)
    except ValueError as exc:
        raise PydanticCustomError("field_value", str(exc)) from None


class FieldSet:
    """A set of declarations as one pydantic model: built once (per template, or per
    milestone's captures), then applied to each set of values given, row after row."""

    def __init__(self, specs: Iterable[FieldSpec], owner: str) -> None:
        self.specs = {s.key: s for s in specs}
        self.owner = owner  # how a refusal names the set: "shared-sme-service", "milestone x"
        definitions: dict[str, Any] = {
            key: (Annotated[Any, BeforeValidator(partial(_checked, spec))], None)
            for key, spec in self.specs.items()
        }
        self.model: type[BaseModel] = create_model(
            "Fields",
            __config__=ConfigDict(extra="forbid", frozen=True),
            **definitions,
        )

    def check(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The given values (field name -> text) in their stored form (None: cleared), or
        ValueError naming the first bad field: `name: why`."""
        for key in given:
            if key not in self.specs:
                known = ", ".join(self.specs) or "none"
                raise ValueError(f"{key}: {self.owner} has no such field (it has: {known})")
        try:
            parsed = self.model.model_validate(dict(given))
        except ValidationError as exc:
            error = exc.errors(include_url=False)[0]
            raise ValueError(f"{error['loc'][0]}: {error['msg']}") from None
        return {key: getattr(parsed, key) for key in given}

    def values(self, given: Mapping[str, Any], where: str = "") -> dict[str, Any]:
        """`check`, refusing with InvalidInput (prefixed by `where`, e.g. `--field `)."""
        try:
            return self.check(given)
        except ValueError as exc:
            raise InvalidInput(f"{where}{exc}") from None

    def missing(self, held: Mapping[str, Any]) -> list[str]:
        """The required fields without a value in `held`."""
        return [k for k, s in self.specs.items() if s.required and held.get(k) is None]


def merged(held: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The values held with the new ones applied (None removes a value)."""
    out = {k: v for k, v in held.items() if k not in new}
    out.update((k, v) for k, v in new.items() if v is not None)
    return out


def changed(held: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[dict[str, Any], ...]:
    """(before, after) of the values `new` changes: what a `case.fields` event records."""
    keys = [k for k, v in new.items() if held.get(k) != v]
    return {k: held.get(k) for k in keys}, {k: new[k] for k in keys}


def parse_pairs(values: Sequence[str], where: str) -> dict[str, str]:
    """`NAME=VALUE` pairs (`--field`, `case set`) as a name -> text mapping; a name given
    twice is refused."""
    found: dict[str, str] = {}
    for value in values:
        name, sep, text = value.partition("=")
        name = name.strip()
        if not sep or not name:
            raise InvalidInput(f"{where} '{value}' is not NAME=VALUE (sector=biotech)")
        if name in found:
            raise InvalidInput(f"{where}: field '{name}' is given twice; give it once")
        found[name] = text
    return found


def for_template(template: Template) -> FieldSet:
    """Every field a case of this template may hold, as one checker, built once per template
    object (templates are parsed once per process: the catalog, the pinned versions)."""
    return _cached(template, "", lambda: FieldSet(template.field_specs().values(), template.kind))


def missing_at_open(template: Template, held: Mapping[str, Any]) -> list[str]:
    """The template's required case fields without a value in `held` (what a case must
    open with)."""
    return [f.key for f in template.fields if f.required and held.get(f.key) is None]


def captures(template: Template, milestone: str) -> FieldSet:
    """The fields completing `milestone` records, as one checker (`Template.captured`)."""
    return _cached(
        template,
        milestone,
        lambda: FieldSet(template.captured(milestone), f"milestone {milestone}"),
    )


def _cached(template: Template, part: str, build: Any) -> FieldSet:
    found = _SETS.get((id(template), part))
    if found is None or found[0] is not template:
        found = _SETS[(id(template), part)] = (template, build())
    return found[1]


# Keyed by the template object's id, which the entry keeps alive (so the id is not reused).
_SETS: dict[tuple[int, str], tuple[Template, FieldSet]] = {}
