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
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
import yaml
from hypothesis import Phase, event, example, given, settings
from hypothesis import strategies as st

from bridgebsr.errors import InvalidInput
from bridgebsr.exchange.catalog import SHIPPED, load_template
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


def _judge(root: Path, text: str) -> Loaded:
    """Load `text` as a template file: a Template, or InvalidInput naming file and line."""
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
            return outcome
        if not isinstance(outcome, InvalidInput):
            raise outcome
        event("refused")
        _problems_located(outcome, path)
        return outcome


@fuzz(quick=60)
@given(text=template_texts)
def test_a_template_file_loads_or_is_refused_with_its_file_and_line(
    scratch_root: Path, text: str
) -> None:
    _judge(scratch_root, text)


# The smallest files that once escaped as another exception or without a line.


@settings(phases=[Phase.explicit], database=None, deadline=None)
@example(text="roles: &loop [*loop]\n")
@given(text=st.just(""))
def test_a_self_referencing_alias_is_refused(scratch_root: Path, text: str) -> None:
    """An alias that contains itself (20 bytes) is refused, not recursed into."""
    assert isinstance(_judge(scratch_root, text), InvalidInput)


@settings(phases=[Phase.explicit], database=None, deadline=None)
@example(text="a: " + "{a: " * 1500 + "}" * 1500)
@given(text=st.just(""))
def test_deeply_nested_yaml_is_refused(scratch_root: Path, text: str) -> None:
    """YAML nested far deeper than any template is refused at the level where it goes too
    deep, before anything recurses over it."""
    assert isinstance(_judge(scratch_root, text), InvalidInput)


@settings(phases=[Phase.explicit], database=None, deadline=None)
@example(text="kind: x\nversion: " + "9" * 5000 + "\n")
@example(text="kind: x\nversion: 0x" + "f" * 5000 + "\n")
@given(text=st.just(""))
def test_an_integer_of_thousands_of_digits_is_refused(scratch_root: Path, text: str) -> None:
    """A number beyond Python's integer string conversion limit (or the store's 64 bits) is
    refused with its line."""
    assert isinstance(_judge(scratch_root, text), InvalidInput)


@settings(phases=[Phase.explicit], database=None, deadline=None)
@example(text=SHIPPED_TEXTS["ip-integration.yaml"].replace("title:", "title: a\x07", 1))
@given(text=st.just(""))
def test_a_control_character_is_reported_with_its_line(scratch_root: Path, text: str) -> None:
    """PyYAML's reader reports a control character by position only; the line is added."""
    assert isinstance(_judge(scratch_root, text), InvalidInput)


@settings(phases=[Phase.explicit], database=None, deadline=None)
@example(text="kind: x\nversion: 1\nstarted: 2026-02-30\n")
@example(text="kind: !!int nine\n")
@example(text="kind: !!bool maybe\n")
@example(text="kind: !!timestamp soon\n")
@given(text=st.just(""))
def test_a_scalar_yaml_cannot_convert_is_refused_with_its_line(
    scratch_root: Path, text: str
) -> None:
    """A date that does not exist, or a value tagged as a type it is not, is refused with its
    line rather than escaping as ValueError, KeyError or AttributeError."""
    assert isinstance(_judge(scratch_root, text), InvalidInput)


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


def test_a_small_file_of_nested_aliases_is_refused_quickly(tmp_path: Path) -> None:
    """A billion-laughs shape (7 levels of 10 references, under 600 bytes) is refused at its
    first anchor, without expanding anything."""
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
