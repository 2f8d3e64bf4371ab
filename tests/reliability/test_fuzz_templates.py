"""Hostile template files: the loader returns a Template or raises InvalidInput naming the file
(and, for a problem inside the document, its line), never another exception.

Three sources of files: arbitrary text; the shipped templates with their structure mutated
(keys dropped, renamed or doubled, values replaced by other YAML of any type, list items
copied) and dumped back to YAML; and the same with the text damaged afterwards (lines doubled,
dropped, re-indented, cut, or a known-nasty snippet spliced in). Each file is loaded from disk
with `catalog.load_template`, as `bridgebsr templates validate` and the catalog do.
"""

import copy
import re
import signal
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
import yaml
from hypothesis import Phase, event, example, given, reject, settings
from hypothesis import strategies as st

from bridgebsr.catalog import SHIPPED, load_template
from bridgebsr.errors import InvalidInput
from models import Template
from tests.reliability.conftest import fuzz, scratch

SHIPPED_TEXTS = {p.name: p.read_text(encoding="utf-8") for p in sorted(SHIPPED.glob("*.yaml"))}
SHIPPED_DATA = {name: yaml.safe_load(text) for name, text in SHIPPED_TEXTS.items()}
FIELDS = (
    "kind",
    "version",
    "title",
    "key_prefix",
    "roles",
    "stages",
    "milestones",
    "gates",
    "ladder",
    "key",
    "stage",
    "owner",
    "duration",
    "after",
    "approvers",
    "role",
    "required",
    "deadline",
    "on_timeout",
    "on_reject",
    "rework",
    "cancel",
    "lag",
    "days",
    "strict",
    "offset",
    "notify",
    "urgent",
)
SNIPPETS = (
    "version: " + "9" * 5000,
    "a: " + "{a: " * 1500 + "}" * 1500,
    "roles: &loop [*loop]",
    "title: a\x07b",
    "title: \x00",
    "\ufeffkind: x",
    "\tkind: x",
    "kind: !!python/object/apply:os.system ['true']",
    "kind: !!binary aGVsbG8=",
    "---",
    "...",
    "? [a, b]\n: c",
    "<<: *undefined",
    "key: value: other",
    "after: [request-intake+x]",
    "after: [+3]",
    "duration: 1e400",
    "duration: .nan",
    "version: 0x10",
    "kind: 2026-11-26",
    "stages: {}",
    "%YAML 9.9",
    "milestones: [" + "{}," * 200 + "]",
)

Loaded = Template | InvalidInput | Exception


def _paths(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path to a value inside a parsed template."""
    yield path
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, (*path, i))


def _at(root: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        root = root[part]
    return root


yaml_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=20)
    | st.dates()
    | st.sampled_from(["ghost-role", "nowhere", "request-intake+3", "a+b", "", "-1", "Ω"]),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def structured(draw: st.DrawFn) -> str:
    """A shipped template with its structure changed, dumped as YAML."""
    data = copy.deepcopy(SHIPPED_DATA[draw(st.sampled_from(sorted(SHIPPED_DATA)))])
    for _ in range(draw(st.integers(0, 4))):
        paths = [p for p in _paths(data) if p]
        path = draw(st.sampled_from(paths))
        parent, last = _at(data, path[:-1]), path[-1]
        op = draw(st.sampled_from(["drop", "replace", "replace", "copy", "rename", "swap"]))
        if op == "drop":
            del parent[last]
        elif op == "replace":
            parent[last] = draw(yaml_values)
        elif op == "copy" and isinstance(parent, list):
            parent.insert(last, copy.deepcopy(parent[last]))
        elif op == "rename" and isinstance(parent, dict):
            parent[draw(st.sampled_from(FIELDS) | st.text(max_size=8))] = parent.pop(last)
        elif op == "swap":
            other = draw(st.sampled_from(paths))
            if other[: len(path)] != path and path[: len(other)] != other:
                parent[last] = copy.deepcopy(_at(data, other))
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


@st.composite
def damaged(draw: st.DrawFn, text: str) -> str:
    """The text with lines doubled, dropped, re-indented or cut, or a snippet spliced in."""
    lines = text.split("\n")
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, max(len(lines) - 1, 0)))
        op = draw(st.sampled_from(["double", "drop", "indent", "snippet", "snippet", "cut"]))
        if op == "double":
            lines.insert(i, lines[i])
        elif op == "drop" and lines:
            del lines[i]
        elif op == "indent":
            lines[i] = draw(st.sampled_from([" ", "\t", "  - "])) + lines[i]
        elif op == "snippet":
            indent = re.match(r"\s*", lines[i]) if lines else None
            lead = indent.group(0) if indent else ""
            lines.insert(i, lead + draw(st.sampled_from(SNIPPETS) | st.text(max_size=30)))
        elif op == "cut":
            lines = lines[:i]
        lines = lines or [""]
    return "\n".join(lines)


template_texts = st.one_of(
    st.text(max_size=200),
    st.sampled_from(SNIPPETS),
    structured(),
    structured().flatmap(damaged),
    st.sampled_from(list(SHIPPED_TEXTS.values())).flatmap(damaged),
)

# Bugs these tests found, classified so the fuzz target keeps searching past them; each has
# its own test below (xfail, strict) with the smallest file that shows it.
DEEP = (
    "bug: YAML nested a thousand levels deep ('{a: {a: {a: ...') or an alias that contains "
    "itself ('roles: &a [*a]', 20 bytes) raises RecursionError from the loader "
    "(catalog._doubled_keys, PyYAML, pydantic): a traceback, not a located problem"
)
DIGITS = (
    "bug: an integer of more than 4300 digits ('version: 999...') makes PyYAML's int() raise "
    "ValueError (Python's integer string conversion limit), which parse_template does not "
    "catch: a traceback, not a located problem"
)
NO_LINE = (
    "bug: a control character in a template ('title: a\\x07b', from a paste) is reported as "
    "'FILE: not valid YAML: unacceptable character #x0007' with no line: PyYAML's ReaderError "
    "has no problem_mark (it has .position), so parse_template drops the location"
)
ALIASES = (
    "bug: a 500-byte template of nested aliases (a billion-laughs shape: 7 levels of 10 "
    "references) takes minutes, and 9 levels hours, before it is refused: catalog._doubled_keys "
    "walks the composed node graph without remembering visited nodes, so each alias is walked "
    "again every time it is referenced (each level multiplies the time by 10)"
)


def known_bug(exc: BaseException) -> str | None:
    """The reason of a known bug `exc` is an instance of, else None."""
    if isinstance(exc, RecursionError):
        return DEEP
    frames = {f.name for f in traceback.extract_tb(exc.__traceback__)}
    if isinstance(exc, ValueError) and "integer string conversion" in str(exc):
        return DIGITS if "parse_template" in frames else None
    if isinstance(exc, AssertionError) and "no line" in str(exc):
        return NO_LINE
    return None


def _problems_located(exc: InvalidInput, path: Path) -> None:
    """The message names the file; a problem inside the document names its line."""
    where = str(path)
    message = str(exc)
    assert message.startswith(where), message
    for line in exc.problems:
        assert line.startswith(where), line
    document_level = "a template is a YAML mapping" in message or "cannot read template" in message
    if document_level:
        return
    lines = exc.problems or [message]
    unlocated = [p for p in lines if not re.match(rf"{re.escape(where)}:\d+: ", p)]
    assert not unlocated, f"a problem with no line: {unlocated[0]}"


def _judge(root: Path, text: str, set_aside_known: bool = True) -> None:
    with scratch(root) as folder:
        path = folder / "pilot.yaml"
        path.write_text(text, encoding="utf-8")
        outcome: Loaded
        try:
            outcome = load_template(path)
        except Exception as exc:
            outcome = exc
        if isinstance(outcome, Template):
            event("a template")
            return
        try:
            if not isinstance(outcome, InvalidInput):
                raise outcome
            event("refused")
            _problems_located(outcome, path)
        except Exception as exc:
            if set_aside_known and known_bug(exc):
                event(f"known bug: {type(exc).__name__}")
                reject()
            raise


@fuzz(quick=60)
@given(text=template_texts)
def test_a_template_file_loads_or_is_refused_with_its_file_and_line(
    scratch_root: Path, text: str
) -> None:
    _judge(scratch_root, text)


@pytest.mark.xfail(strict=True, raises=RecursionError, reason=DEEP)
@settings(phases=[Phase.explicit], database=None)
@example(text="roles: &loop [*loop]\n")
@given(text=st.just(""))
def test_a_self_referencing_alias_is_refused(scratch_root: Path, text: str) -> None:
    _judge(scratch_root, text, set_aside_known=False)


@pytest.mark.xfail(strict=True, raises=RecursionError, reason=DEEP)
@settings(phases=[Phase.explicit], database=None)
@example(text="a: " + "{a: " * 1500 + "}" * 1500)
@given(text=st.just(""))
def test_deeply_nested_yaml_is_refused(scratch_root: Path, text: str) -> None:
    _judge(scratch_root, text, set_aside_known=False)


@pytest.mark.xfail(strict=True, raises=ValueError, reason=DIGITS)
@settings(phases=[Phase.explicit], database=None)
@example(text="kind: x\nversion: " + "9" * 5000 + "\n")
@given(text=st.just(""))
def test_an_integer_of_thousands_of_digits_is_refused(scratch_root: Path, text: str) -> None:
    _judge(scratch_root, text, set_aside_known=False)


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=NO_LINE)
@settings(phases=[Phase.explicit], database=None)
@example(text=SHIPPED_TEXTS["ip-integration.yaml"].replace("title:", "title: a\x07", 1))
@given(text=st.just(""))
def test_a_control_character_is_reported_with_its_line(scratch_root: Path, text: str) -> None:
    _judge(scratch_root, text, set_aside_known=False)


class _TooSlow(Exception):
    pass


def _within(seconds: float, work: Callable[[], object]) -> object:
    """Run `work`, interrupting it with _TooSlow after `seconds` (SIGALRM, main thread)."""

    def stop(_signum: int, _frame: FrameType | None) -> None:
        raise _TooSlow(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return work()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.xfail(strict=True, raises=_TooSlow, reason=ALIASES)
def test_a_small_file_of_nested_aliases_is_refused_quickly(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines), encoding="utf-8")
    assert path.stat().st_size < 600

    def load() -> object:
        with pytest.raises(InvalidInput):
            load_template(path)
        return None

    _within(1.0, load)
