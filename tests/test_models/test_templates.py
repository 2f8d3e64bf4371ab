"""Lifecycle templates: the shipped pilots, the schema, every problem with its line, folders."""

from pathlib import Path

import pytest

from bridgebsr.errors import InvalidInput, NotFound
from bridgebsr.exchange.catalog import (
    SHIPPED,
    checksum,
    load_catalog,
    load_template,
    parse_template,
)
from models import DayKind, Template, template_problems
from models.templates import Dependency

SHIPPED_KINDS = {
    "cluster-mentoring": "MENT",
    "cluster-strategy-analysis": "CSA",
    "council-review-round": "ICR",
    "innovation-action-plan": "IAP",
    "ip-bottleneck-analysis": "IPA",
    "ip-integration": "IP",
    "life-science-foundation": "LSF",
    "shared-sme-service": "SME",
    "sme-financing-analysis": "FIN",
}
PILOTS = ("ip-integration", "life-science-foundation", "shared-sme-service")
KNOWN = ", ".join(sorted(SHIPPED_KINDS))

# A small valid fourth kind; line numbers matter to the tests that break it.
MENTORING = """\
kind: mentoring-exchange
version: 1
title: Mentoring exchange between clusters
key_prefix: MEX
roles: [coordinator, mentor]
stages:
  - key: match
    title: Matching
  - key: visit
    title: Visit
milestones:
  - key: pairing
    title: Mentor and mentee paired
    stage: match
    owner: coordinator
    duration: 5
  - key: exchange-visit
    title: Exchange visit
    stage: visit
    owner: mentor
    duration: 10
    days: calendar
    after: [pairing+3]
  - key: report
    title: Visit report
    stage: visit
    duration: 5
    after:
      - exchange-visit
      - {key: pairing, lag: 2, days: calendar}
gates:
  - key: report-accepted
    title: Report accepted
    stage: visit
    after: [report]
    approvers: {role: coordinator}
ladder:
  - {key: due, offset: 0, notify: [owner]}
"""


def _problems(text: str) -> list[str]:
    with pytest.raises(InvalidInput) as refused:
        parse_template(text, "t.yaml")
    return refused.value.problems


# The shipped templates


def test_the_shipped_templates_load_without_problems() -> None:
    catalog = load_catalog()
    assert {k: t.key_prefix for k, t in catalog.templates.items()} == SHIPPED_KINDS
    for kind, template in catalog.templates.items():
        assert catalog.paths[kind] == SHIPPED / f"{kind}.yaml"
        # The pilots' 2 is the version that declares fields; the other activities start there.
        assert template.version == (2 if kind in PILOTS else 1)
        assert template.field_specs(), kind  # each records typed values
        assert template_problems(template) == []
        assert template.days is DayKind.WORKING


def test_each_shipped_file_loads_on_its_own() -> None:
    files = sorted(p.name for p in SHIPPED.glob("*.yaml"))
    assert files == [f"{kind}.yaml" for kind in sorted(SHIPPED_KINDS)]
    for name in files:
        assert load_template(SHIPPED / name).kind == name.removesuffix(".yaml")


def test_shipped_sme_template_reads_its_dependency_forms() -> None:
    sme = load_catalog().get("shared-sme-service")
    by_key = {node.key: node for node in sme.nodes()}
    assert by_key["nda"].after == [Dependency(key="triage-decision", lag=1)]
    assert by_key["follow-up-call"].after == [
        Dependency(key="service-delivery", lag=10, days=DayKind.CALENDAR)
    ]
    assert by_key["sme-acceptance"].after == [
        Dependency(key="match-proposal"),
        Dependency(key="nda"),
    ]


def test_an_unknown_kind_names_the_known_ones() -> None:
    with pytest.raises(NotFound) as refused:
        load_catalog().get("council-review")
    assert str(refused.value) == (f"unknown pilot kind 'council-review' (known: {KNOWN})")


def test_roles_include_the_case_owner_and_each_templates_roles() -> None:
    roles = load_catalog().roles()
    assert {"case-owner", "coordinator", "pilot-lead", "sme-advisor", "legal-advisor"} <= roles
    assert "ip-expert" in roles  # only the IP pilot and the IP analysis name it


# Parsing


def test_a_valid_template_parses_with_short_and_long_dependency_forms() -> None:
    t = parse_template(MENTORING, "mentoring.yaml")
    assert (t.kind, t.version, t.key_prefix, t.roles) == (
        "mentoring-exchange",
        1,
        "MEX",
        ["coordinator", "mentor"],
    )
    visit, report = t.milestones[1], t.milestones[2]
    assert visit.after == [Dependency(key="pairing", lag=3)]
    assert report.after == [
        Dependency(key="exchange-visit", lag=0),
        Dependency(key="pairing", lag=2, days=DayKind.CALENDAR),
    ]
    assert report.owner == "case-owner"  # the default owner
    assert t.day_kind(visit) is DayKind.CALENDAR
    assert t.day_kind(report) is DayKind.WORKING  # from the template
    assert t.day_kind(report.after[0]) is DayKind.WORKING
    assert t.gates[0].deadline == 10
    assert [n.key for n in t.nodes()] == ["pairing", "exchange-visit", "report", "report-accepted"]
    assert t.stage_index("visit") == 1
    assert t.is_strict(report) is True


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("x", {"key": "x", "lag": 0}),
        ("x+3", {"key": "x", "lag": "3"}),
        ("x + 3", {"key": "x", "lag": "3"}),
        ({"key": "x", "lag": 2}, {"key": "x", "lag": 2}),
    ],
)
def test_dependency_short_forms(value: object, expected: object) -> None:
    assert Dependency.parse(value) == expected


def test_short_form_lag_becomes_an_int() -> None:
    t = parse_template(MENTORING.replace("[pairing+3]", "[pairing + 12]"), "m.yaml")
    assert t.milestones[1].after == [Dependency(key="pairing", lag=12)]


def test_cross_reference_problems_are_each_named_with_file_and_line() -> None:
    text = """\
kind: broken
version: 1
title: Broken
key_prefix: BRK
roles: [coordinator]
stages:
  - key: one
    title: One
milestones:
  - key: a
    title: A
    stage: nowhere
    duration: 1
  - key: b
    title: B
    stage: one
    owner: wizard
    duration: 1
    after: [ghost]
  - key: a
    title: A again
    stage: one
    duration: 1
gates:
  - key: go
    title: Go
    stage: one
    after: [b]
    approvers: {role: council}
    on_reject: {rework: later}
ladder:
  - {key: due, offset: 0, notify: [owner, auditor]}
"""
    assert _problems(text) == [
        "t.yaml:12: milestones[0].stage: unknown stage 'nowhere'",
        "t.yaml:20: milestones[2].key: key 'a' is used twice",
        "t.yaml:19: milestones[1].after[0].key: unknown predecessor 'ghost'",
        "t.yaml:17: milestones[1].owner: unknown role 'wizard'; "
        "declare it under roles (coordinator)",
        "t.yaml:29: gates[0].approvers.role: unknown role 'council'; "
        "declare it under roles (coordinator)",
        "t.yaml:30: gates[0].on_reject.rework: unknown stage 'later'",
        "t.yaml:32: ladder[0].notify[1]: unknown role 'auditor'; "
        "declare it under roles (coordinator)",
    ]


def test_the_summary_counts_the_problems_and_shows_the_first() -> None:
    text = MENTORING.replace("stage: match\n", "stage: nowhere\n", 1)
    with pytest.raises(InvalidInput) as refused:
        parse_template(text, "mentoring.yaml")
    assert str(refused.value) == (
        "mentoring.yaml: 1 problem(s) in template; first: "
        "mentoring.yaml:14: milestones[0].stage: unknown stage 'nowhere'"
    )
    assert refused.value.problems == [
        "mentoring.yaml:14: milestones[0].stage: unknown stage 'nowhere'"
    ]


def test_schema_problems_are_each_named_with_file_and_line() -> None:
    text = """\
kind: broken
version: 1
title: Broken
key_prefix: BRK
colour: teal
roles: [coordinator]
stages:
  - key: one
    title: One
milestones:
  - key: a
    title: A
    stage: one
    duration: -2
    priority: high
"""
    assert sorted(_problems(text)) == [
        "t.yaml:14: milestones[0].duration: Input should be greater than or equal to 0",
        "t.yaml:15: milestones[0].priority: Extra inputs are not permitted",
        "t.yaml:5: colour: Extra inputs are not permitted",
    ]


def test_missing_fields_point_at_the_top_of_the_file() -> None:
    assert _problems("kind: broken\nversion: 1\ntitle: B\nkey_prefix: BRK\n") == [
        "t.yaml:1: roles: Field required",
        "t.yaml:1: stages: Field required",
        "t.yaml:1: milestones: Field required",
    ]


def test_a_dependency_cycle_is_named_with_its_path() -> None:
    text = """\
kind: loop
version: 1
title: Loop
key_prefix: LOOP
roles: [coordinator]
stages:
  - key: one
    title: One
milestones:
  - key: a
    title: A
    stage: one
    duration: 1
  - key: b
    title: B
    stage: one
    duration: 1
    after: [c]
  - key: c
    title: C
    stage: one
    duration: 1
    after: [b+2]
"""
    assert _problems(text) == ["t.yaml:18: milestones[1].after: dependency cycle: b <- c <- b"]


def test_an_item_cannot_follow_itself() -> None:
    text = MENTORING.replace("after: [pairing+3]", "after: [exchange-visit]")
    assert _problems(text) == [
        "t.yaml:23: milestones[1].after[0].key: an item cannot follow itself"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Line 5 indents `title` deeper than `key`: a mapping value where none may be.
        (
            "kind: broken\nversion: 1\nstages:\n  - key: one\n     title: One\n",
            "t.yaml:5: not valid YAML: mapping values are not allowed here",
        ),
        # Line 3 opens a flow list that line 4 never closes.
        (
            "kind: broken\nversion: 1\ntitle: [unclosed\nkey_prefix: BRK\n",
            "t.yaml:4: not valid YAML: expected ',' or ']', but got ':'",
        ),
    ],
)
def test_invalid_yaml_names_its_line(text: str, expected: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_template(text, "t.yaml")
    assert str(refused.value) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "kind: x\nroles: &r [a]\nstages: *r\n",
            "t.yaml:2: anchors and aliases (&name, *name) are not supported in templates; "
            "write the repeated part out in full",
        ),
        (
            "kind: x\nstages: " + "[" * 40 + "]" * 40 + "\n",
            "t.yaml:2: nested more than 32 levels deep; a template needs only a few levels",
        ),
        (
            "kind: x\nversion: " + "9" * 5000 + "\n",
            "t.yaml:2: the number '999999999999999999999999...' is out of range; use a whole "
            "number between -9223372036854775808 and 9223372036854775807",
        ),
        (
            "kind: x\nversion: 1\ntitle: a\x07b\n",
            "t.yaml:3: not valid YAML: unacceptable character #x0007 (special characters are "
            "not allowed); remove it",
        ),
        (
            "kind: x\nversion: 1\nstarted: 2026-02-30\n",
            "t.yaml:3: '2026-02-30' is not a valid date; correct it, or quote it as text",
        ),
    ],
)
def test_yaml_a_template_cannot_use_is_refused_with_its_line(text: str, expected: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_template(text, "t.yaml")
    assert str(refused.value) == expected
    assert refused.value.problems == [expected]


def test_invalid_yaml_is_listed_in_problems() -> None:
    text = "kind: broken\nversion: 1\nstages:\n  - key: one\n     title: One\n"
    assert _problems(text) == ["t.yaml:5: not valid YAML: mapping values are not allowed here"]


def test_a_key_given_twice_in_one_mapping_is_a_problem() -> None:
    text = MENTORING.replace("    duration: 5\n", "    duration: 5\n    duration: 50\n", 1)
    with pytest.raises(InvalidInput, match=r"t\.yaml:17"):
        parse_template(text, "t.yaml")


@pytest.mark.parametrize("text", ["- a\n- list\n", "just text\n", ""])
def test_a_template_must_be_a_mapping(text: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_template(text, "t.yaml")
    assert str(refused.value).startswith("t.yaml: a template is a YAML mapping")


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "latin.yaml"
    path.write_bytes(MENTORING.replace("Visit report", "Bes\xf8g").encode("latin-1"))
    with pytest.raises(InvalidInput, match=r"latin\.yaml: cannot read template"):
        load_template(path)


# Folders of extra templates


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_fourth_kind_is_a_yaml_file_in_an_extra_folder(tmp_path: Path) -> None:
    path = _write(tmp_path / "extra", "mentoring.yaml", MENTORING)
    catalog = load_catalog([tmp_path / "extra"])
    assert sorted(catalog.templates) == sorted([*SHIPPED_KINDS, "mentoring-exchange"])
    assert catalog.get("mentoring-exchange").key_prefix == "MEX"
    assert catalog.paths["mentoring-exchange"] == path
    assert "mentor" in catalog.roles()


def test_yml_files_count_too(tmp_path: Path) -> None:
    _write(tmp_path, "mentoring.yml", MENTORING)
    assert "mentoring-exchange" in load_catalog([tmp_path]).templates


def test_a_newer_version_of_a_kind_wins(tmp_path: Path) -> None:
    _write(tmp_path / "a", "m1.yaml", MENTORING)
    _write(tmp_path / "b", "m2.yaml", MENTORING.replace("version: 1", "version: 2", 1))
    for folders in ([tmp_path / "a", tmp_path / "b"], [tmp_path / "b", tmp_path / "a"]):
        catalog = load_catalog(folders)
        assert catalog.get("mentoring-exchange").version == 2
        assert catalog.paths["mentoring-exchange"] == tmp_path / "b" / "m2.yaml"


def test_the_same_version_with_the_same_content_is_accepted(tmp_path: Path) -> None:
    _write(tmp_path / "a", "m.yaml", MENTORING)
    _write(tmp_path / "b", "m.yaml", "# a copy\n" + MENTORING)
    assert load_catalog([tmp_path / "a", tmp_path / "b"]).get("mentoring-exchange").version == 1


def test_the_same_version_with_different_content_is_refused(tmp_path: Path) -> None:
    first = _write(tmp_path / "a", "m.yaml", MENTORING)
    second = _write(tmp_path / "b", "m.yaml", MENTORING.replace("Visit report", "Report"))
    with pytest.raises(InvalidInput) as refused:
        load_catalog([tmp_path / "a", tmp_path / "b"])
    assert str(refused.value) == (
        f"{second}: mentoring-exchange version 1 is also defined in {first} "
        "with different content; give one a new version"
    )


def test_a_shipped_kind_changed_without_a_new_version_is_refused(tmp_path: Path) -> None:
    text = (SHIPPED / "shared-sme-service.yaml").read_text(encoding="utf-8")
    _write(tmp_path, "sme.yaml", text.replace("Shared SME support service request", "SME"))
    with pytest.raises(InvalidInput, match="shared-sme-service version 2 is also defined in"):
        load_catalog([tmp_path])


def test_a_broken_file_in_an_extra_folder_stops_the_load(tmp_path: Path) -> None:
    _write(tmp_path, "broken.yaml", MENTORING.replace("owner: mentor", "owner: wizard"))
    with pytest.raises(InvalidInput) as refused:
        load_catalog([tmp_path])
    assert refused.value.problems == [
        f"{tmp_path / 'broken.yaml'}:20: milestones[1].owner: unknown role 'wizard'; "
        "declare it under roles (coordinator, mentor)"
    ]


def test_a_missing_folder_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(InvalidInput) as refused:
        load_catalog([missing])
    assert str(refused.value) == (
        f"template folder {missing} does not exist; fix BRIDGEBSR_TEMPLATE_DIRS"
    )


def test_checksum_follows_content_not_formatting() -> None:
    a = parse_template(MENTORING, "a.yaml")
    b = parse_template(
        "# comment\n" + MENTORING.replace("[coordinator, mentor]", "\n  - coordinator\n  - mentor"),
        "b.yaml",
    )
    c = parse_template(MENTORING.replace("Visit report", "Report"), "c.yaml")
    assert isinstance(a, Template)
    assert checksum(a) == checksum(b)
    assert checksum(a) != checksum(c)
    assert len(checksum(a)) == 64
