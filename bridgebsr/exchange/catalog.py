"""Lifecycle templates: the shipped pilot kinds plus any folder in BRIDGEBSR_TEMPLATE_DIRS."""

import hashlib
import json
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from bridgebsr.errors import InvalidInput, NotFound
from models import Template, template_problems
from models.templates import Loc

SHIPPED = Path(__file__).parent.parent / "templates"


@dataclass(frozen=True)
class Catalog:
    """Every known template by kind (newest version of each) and where it came from."""

    templates: dict[str, Template]
    paths: dict[str, Path]

    def get(self, kind: str) -> Template:
        """The newest template of `kind`."""
        try:
            return self.templates[kind]
        except KeyError:
            known = ", ".join(sorted(self.templates)) or "none"
            raise NotFound(f"unknown pilot kind '{kind}' (known: {known})") from None

    def roles(self) -> set[str]:
        """Every role any template names."""
        return {role for t in self.templates.values() for role in (*t.roles, "case-owner")}


def checksum(template: Template) -> str:
    """A stable fingerprint of a template's content. Empty field declarations (`fields`,
    a milestone's `capture`), an empty `indicators` list and unset renames (`was`) are left
    out, so a template that declares none keeps the fingerprint it had before templates could
    declare them (its pins stay valid)."""
    content = template.model_dump(mode="json")
    if not content["fields"]:
        del content["fields"]
    if not content["indicators"]:
        del content["indicators"]
    for milestone in content["milestones"]:
        if not milestone["capture"]:
            del milestone["capture"]
    for node in (*content["milestones"], *content["gates"]):
        if node["was"] is None:  # no rename: the fingerprint it had before renames existed
            del node["was"]
    body = json.dumps(content, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()


def load_catalog(extra_dirs: Iterable[Path] = ()) -> Catalog:
    """Load the shipped templates and every *.yaml/*.yml in the extra folders."""
    templates: dict[str, Template] = {}
    paths: dict[str, Path] = {}
    for folder in (SHIPPED, *extra_dirs):
        if not folder.is_dir():
            raise InvalidInput(
                f"template folder {folder} does not exist; fix BRIDGEBSR_TEMPLATE_DIRS"
            )
        for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
            template = load_template(path)
            older = templates.get(template.kind)
            if older is not None and older.version == template.version and older != template:
                raise InvalidInput(
                    f"{path}: {template.kind} version {template.version} is also defined in "
                    f"{paths[template.kind]} with different content; give one a new version"
                )
            if older is None or template.version >= older.version:
                templates[template.kind], paths[template.kind] = template, path
    return Catalog(templates, paths)


def load_template(path: Path) -> Template:
    """Parse and check one template file; every problem is reported with its line."""
    try:
        text = _read_file(path).decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path}: cannot read template: {exc}") from None
    return parse_template(text, str(path))


def _read_file(path: Path) -> bytes:
    """A template file's bytes; anything but a regular file of at most MAX_BYTES is refused
    before it is read (a FIFO would wait for a writer, a device or a huge file fill the
    memory)."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise InvalidInput(f"{path}: not a regular file; give a template YAML file")
    with path.open("rb") as file:
        data = file.read(MAX_BYTES + 1)  # not more, even if the file grew since the check
    if len(data) > MAX_BYTES:
        raise InvalidInput(
            f"{path}: larger than {MAX_BYTES // 1024} KiB; a template is a short text file"
        )
    return data


def parse_template(text: str, where: str) -> Template:
    """Parse a template from YAML text; `where` names it in error messages."""
    try:
        root, data = _read_yaml(text)
    except yaml.YAMLError as exc:
        message = f"{where}{_yaml_problem(exc, text)}"
        raise InvalidInput(message, [message]) from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{where}: a template is a YAML mapping with kind, version, stages, ...")
    if doubled := _doubled_keys(root):
        lines = [f"{where}:{line}: {_dotted(loc)}: {msg}" for loc, line, msg in doubled]
        raise InvalidInput(
            f"{where}: {len(lines)} problem(s) in template; first: {lines[0]}", lines
        )
    try:
        template = Template.model_validate(data)
    except ValidationError as exc:
        problems = [(tuple(e["loc"]), e["msg"]) for e in exc.errors()]
        raise _invalid(where, root, problems) from None
    if problems := template_problems(template):
        raise _invalid(where, root, problems)
    return template


# --- reading YAML ----------------------------------------------------------------------------

MAX_BYTES = 1024 * 1024  # a template file at most; the shipped ones are under 10 KiB
MAX_DEPTH = 32  # nested nodes, scalars included, a template may use; the shipped ones reach 6
_INT_RANGE = range(-(2**63), 2**63)  # what the store can hold
_KINDS = {
    "int": "whole number",
    "float": "number",
    "bool": "true/false value",
    "timestamp": "date",
    "binary": "base64 value",
}


class _Refused(yaml.MarkedYAMLError):
    """YAML a template may not use (or a value it cannot hold), with where it is."""

    def __init__(self, mark: yaml.Mark | None, problem: str) -> None:
        super().__init__(problem=problem, problem_mark=mark)


class _TemplateLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing anchors, aliases and deep nesting as it composes, and
    turning a scalar it cannot convert into a located error.

    Templates are short and written out in full: with no aliases no node is reached twice,
    so nothing is expanded, and with bounded depth nothing recurses far."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]  # untyped in PyYAML's stubs
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _Refused(
                event.start_mark,
                "anchors and aliases (&name, *name) are not supported in templates; "
                "write the repeated part out in full",
            )
        if self._depth >= MAX_DEPTH:
            raise _Refused(
                event.start_mark,
                f"nested more than {MAX_DEPTH} levels deep; a template needs only a few levels",
            )
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, KeyError, AttributeError, OverflowError, TypeError):
            kind = _KINDS.get(str(node.tag).rsplit(":", 1)[-1], str(node.tag))
            raise _Refused(
                node.start_mark,
                f"{_clip(node.value)} is not a valid {kind}; correct it, or quote it as text",
            ) from None

    def construct_yaml_int(self, node: Any) -> int:
        """A whole number, refused before conversion when it cannot fit the store."""
        if len(str(node.value)) <= 32:
            number = super().construct_yaml_int(node)
            if number in _INT_RANGE:
                return number
        raise _Refused(
            node.start_mark,
            f"the number {_clip(node.value)} is out of range; "
            f"use a whole number between {_INT_RANGE.start} and {_INT_RANGE.stop - 1}",
        )


_TemplateLoader.add_constructor("tag:yaml.org,2002:int", _TemplateLoader.construct_yaml_int)


def _read_yaml(text: str) -> tuple[yaml.Node | None, Any]:
    """The document's node tree (for lines) and its data."""
    loader = _TemplateLoader(text)
    try:
        root = loader.get_single_node()
        return root, (loader.construct_document(root) if root is not None else None)
    finally:
        loader.dispose()


def _yaml_problem(exc: yaml.YAMLError, text: str) -> str:
    """`:LINE: problem` for a YAML error, the line left out only when PyYAML gives none."""
    if isinstance(exc, yaml.reader.ReaderError):
        number = text.count("\n", 0, max(exc.position, 0)) + 1
        char = exc.character if isinstance(exc.character, int) else ord(exc.character)
        return (
            f":{number}: not valid YAML: unacceptable character #x{char:04x} "
            f"({exc.reason}); remove it"
        )
    mark = getattr(exc, "problem_mark", None)
    line = f":{mark.line + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if isinstance(exc, _Refused):
        return f"{line}: {problem}"
    return f"{line}: not valid YAML: {problem}"


def _clip(value: Any, size: int = 24) -> str:
    """A scalar's text for a one-line message: quoted, escaped and cut short."""
    text = str(value)
    return repr(text if len(text) <= size else text[:size] + "...")


def _invalid(where: str, root: yaml.Node | None, problems: list[tuple[Loc, str]]) -> InvalidInput:
    lines = [f"{where}:{_line(root, loc)}: {_dotted(loc)}: {msg}" for loc, msg in problems]
    summary = f"{where}: {len(lines)} problem(s) in template; first: {lines[0]}"
    return InvalidInput(summary, lines)


def _doubled_keys(node: Any, loc: Loc = ()) -> list[tuple[Loc, int, str]]:
    """Keys given twice in one mapping (YAML would silently keep the last), with their line."""
    found: list[tuple[Loc, int, str]] = []
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if key.value in seen:
                line = key.start_mark.line + 1
                found.append(((*loc, key.value), line, f"'{key.value}' is given twice here"))
            seen.add(key.value)
            found += _doubled_keys(value, (*loc, key.value))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            found += _doubled_keys(item, (*loc, i))
    return found


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out or "(top)"


def _line(node: Any, loc: Loc) -> int:
    """The line of the deepest YAML node the location reaches (1-based)."""
    line = node.start_mark.line if node is not None else 0
    for part in loc:
        child = _child(node, part)
        if child is None:
            break
        node, line = child, child.start_mark.line
    return line + 1


def _child(node: Any, part: str | int) -> Any:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == part:
                return value
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        return node.value[part]
    return None
