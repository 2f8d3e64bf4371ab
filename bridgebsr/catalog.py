"""Lifecycle templates: the shipped pilot kinds plus any folder in BRIDGEBSR_TEMPLATE_DIRS."""

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from bridgebsr.errors import InvalidInput, NotFound
from models import Template, template_problems
from models.templates import Loc

SHIPPED = Path(__file__).parent / "templates"


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
    """A stable fingerprint of a template's content."""
    body = json.dumps(template.model_dump(mode="json"), sort_keys=True)
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
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path}: cannot read template: {exc}") from None
    return parse_template(text, str(path))


def parse_template(text: str, where: str) -> Template:
    """Parse a template from YAML text; `where` names it in error messages."""
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        message = f"{where}{line}: not valid YAML: {problem}"
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
