"""Typed case fields and evidence: the field rule per kind, template declarations, and every
path that fills them (open, set, complete with captures and evidence, import)."""

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bridgebsr.bootstrap import Runtime
from bridgebsr.errors import InvalidInput
from bridgebsr.exchange.catalog import parse_template
from bridgebsr.office import bulk, progress, queries
from bridgebsr.office import cases as case_uc
from bridgebsr.rules.fields import FieldSet, parse, typed
from bridgebsr.store.db import read_session, write_session
from models import CaseEvent, Decision, FieldKind, FieldSpec
from tests.conftest import BEFORE_ACCEPTANCE
from tests.test_bridgebsr.test_cli_input import cli, one_error_line, store_env

OWNER = "mette.sorensen@scanbalt.example"
LSF_OWNER = "katrin.schaefer@bioconvalley.example"
SME_ADVISOR = "elin.sjoberg@mva.example"
OPS = "ops@bridgebsr"


def spec(kind: str, **more: object) -> FieldSpec:
    return FieldSpec.model_validate({"key": "f", "kind": kind, **more})


@pytest.mark.parametrize(
    ("kind", "more", "given", "stored"),
    [
        ("text", {}, "  Acme Bio  ", "Acme Bio"),
        ("integer", {"min": 0}, "12", 12),
        ("integer", {}, "12.0", 12),  # a spreadsheet's whole number
        ("decimal", {}, "12500.50", "12500.50"),  # the exact text: no float on the way
        ("date", {}, "31.03.2026", "2026-03-31"),
        ("choice", {"choices": ["ip", "financing"]}, "IP", "ip"),
        ("email", {}, "Anna@Example.ORG", "anna@example.org"),
        ("url", {}, "https://example.org/a?b=1", "https://example.org/a?b=1"),
        ("bool", {}, "Yes", True),
        ("text", {}, "", None),  # empty clears
    ],
)
def test_each_kind_parses_to_its_stored_form(
    kind: str, more: dict[str, object], given: str, stored: object
) -> None:
    assert parse(spec(kind, **more), given) == stored


@pytest.mark.parametrize(
    ("kind", "more", "given", "why"),
    [
        ("text", {"max_length": 3}, "abcd", "at most 3"),
        ("text", {}, "a\nb", "control character"),
        ("integer", {}, "1.5", "not a whole number"),
        ("integer", {"max": 10}, "11", "above the maximum 10"),
        ("decimal", {}, "abc", "'abc' is not a decimal; give a number like 12500.50"),
        ("decimal", {}, "12,5", "use a dot for decimals"),
        ("decimal", {"min": 0}, "-0.01", "below the minimum 0"),
        ("date", {}, "2026-02-30", "not a date"),
        ("date", {"max": "2026-12-31"}, "2027-01-01", "above the maximum 2026-12-31"),
        ("choice", {"choices": ["ip"]}, "loans", "not one of: ip"),
        ("email", {}, "nobody", "not an email address"),
        ("url", {}, "ftp://example.org/x", "not an http or https link"),
        ("bool", {}, "maybe", "not yes or no"),
    ],
)
def test_bad_values_say_why(kind: str, more: dict[str, object], given: str, why: str) -> None:
    with pytest.raises(ValueError, match=why.replace("(", r"\(").replace(".", r"\.")):
        parse(spec(kind, **more), given)


def test_a_field_set_names_the_field_and_knows_what_is_required() -> None:
    fields = FieldSet(
        [
            FieldSpec(key="funds_raised_eur", kind=FieldKind.DECIMAL, required=True),
            FieldSpec(key="sector", kind=FieldKind.CHOICE, choices=["biotech"]),
        ],
        "life-science-foundation",
    )
    with pytest.raises(InvalidInput) as bad:
        fields.values({"funds_raised_eur": "abc"}, "--field ")
    assert str(bad.value) == (
        "--field funds_raised_eur: 'abc' is not a decimal; give a number like 12500.50"
    )
    with pytest.raises(InvalidInput, match="no such field"):
        fields.values({"size": "1"})
    assert fields.missing({"sector": "biotech"}) == ["funds_raised_eur"]
    assert fields.missing({"funds_raised_eur": "1"}) == []
    assert typed(fields.specs["funds_raised_eur"], "0.10") == Decimal("0.10")


BASE = """
kind: probe
version: 1
title: Probe
key_prefix: PRB
roles: [coordinator]
stages: [{key: one, title: One}]
milestones:
  - {key: a, title: A, stage: one, duration: 1, capture: CAPTURE}
fields: FIELDS
"""


@pytest.mark.parametrize(
    ("fields", "capture", "problem"),
    [
        ("[{key: s, kind: choice}]", "[]", "a choice field needs `choices"),
        ("[{key: n, kind: integer, min: 5, max: 1}]", "[]", "max 1 is below min 5"),
        ("[{key: n, kind: text, min: 1}]", "[]", "a text field has no min"),
        ("[]", "[nowhere]", "'nowhere' is no case field"),
        ("[{key: n, kind: integer}]", "[{key: n, kind: integer}]", "declared twice"),
    ],
)
def test_templates_validate_checks_field_declarations(
    fields: str, capture: str, problem: str
) -> None:
    text = BASE.replace("FIELDS", fields).replace("CAPTURE", capture)
    with pytest.raises(InvalidInput) as bad:
        parse_template(text, "probe.yaml")
    assert problem in str(bad.value)


def _at(day: str) -> datetime:
    return datetime.fromisoformat(f"{day}T10:00").replace(tzinfo=UTC)


def _open(rt: Runtime, kind: str, owner: str) -> str:
    with write_session(rt.engine) as session:
        return case_uc.open_case(
            session=session,
            catalog=rt.catalog,
            kind=kind,
            title="Probe",
            owner_email=owner,
            now=_at("2026-01-05"),
        ).key


def _complete(rt: Runtime, key: str, item: str, **more: object) -> None:
    with write_session(rt.engine) as session:
        progress.progress_milestone(
            session=session,
            case_key=key,
            milestone_key=item,
            action="complete",
            actor=progress.Actor(OPS),
            now=_at("2026-01-06"),
            **more,  # type: ignore[arg-type]
        )


def test_a_completion_captures_fields_and_evidence(consortium: Runtime) -> None:
    """On SQLite and PostgreSQL: a required capture is refused when missing (the
    foundation's funds raised); triage records the service type on the milestone and the
    case, audited, with its evidence links, and a gate vote keeps its link too."""
    rt = consortium
    lsf = _open(rt, "life-science-foundation", LSF_OWNER)
    with pytest.raises(InvalidInput, match="give --field funds_raised_eur=VALUE"):
        _complete(rt, lsf, "capital-commitments")
    key = _open(rt, "shared-sme-service", OWNER)
    for item in BEFORE_ACCEPTANCE:
        more = {}
        if item == "triage-decision":
            more = {
                "fields": {"service_type": "Financing"},
                "evidence": ["https://example.org/triage", "http://example.org/notes"],
            }
        _complete(rt, key, item, **more)
    with write_session(rt.engine) as session:
        progress.decide_gate(
            session=session,
            case_key=key,
            gate_key="sme-acceptance",
            decision=Decision.APPROVE,
            actor=progress.Actor(SME_ADVISOR),
            now=_at("2026-01-07"),
            evidence=["https://example.org/sme-reply.pdf"],
        )
    with read_session(rt.engine) as session:
        shown = queries.show_case(session=session, key=key, today=_at("2026-01-07").date())
    triage = {m["key"]: m for m in shown["milestones"]}["triage-decision"]
    assert triage["fields"] == {"service_type": "financing"}
    assert {f["name"]: f["value"] for f in shown["fields"]}["service_type"] == "financing"
    assert [
        (e["item_kind"], e["item_key"], e["url"], e["added_by"]) for e in shown["evidence"]
    ] == [
        ("milestone", "triage-decision", "https://example.org/triage", OPS),
        ("milestone", "triage-decision", "http://example.org/notes", OPS),
        ("gate", "sme-acceptance", "https://example.org/sme-reply.pdf", SME_ADVISOR),
    ]
    assert "SME's written reply" in shown["gates"][0]["to_look_at"]
    changed = [e for e in shown["events"] if e["kind"] == "case.fields"]
    assert [(e["subject"], e["before"], e["after"]) for e in changed] == [
        ("triage-decision", {"service_type": None}, {"service_type": "financing"})
    ]


def test_the_command_line_refuses_a_bad_value_in_one_line(consortium: Runtime) -> None:
    env = store_env(consortium)
    before = _count(consortium)
    done = cli(
        env, "case", "open", "shared-sme-service", "--title", "T", "--owner", OWNER,
        "--field", "employees=many",
    )  # fmt: skip
    one_error_line(done, "employees", "'many' is not a whole number")
    key = cli(env, "case", "open", "shared-sme-service", "--title", "T", "--owner", OWNER)
    assert key.code == 0, key
    done = cli(env, "case", "set", key.stdout.strip(), "service_type=loans", "--by", OWNER)
    one_error_line(done, "service_type: 'loans' is not one of: ip, financing")
    done = cli(env, "case", "set", key.stdout.strip(), "sector=MedTech", "--by", OWNER)
    assert done.code == 0, done
    assert _count(consortium) == before + 2  # case.open and one case.fields


def _count(rt: Runtime) -> int:
    with read_session(rt.engine) as session:
        return int(session.execute(select(func.count()).select_from(CaseEvent)).scalar_one())


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_an_import_with_a_bad_field_cell_is_refused_whole(
    consortium: Runtime, tmp_path: Path
) -> None:
    sheet = tmp_path / "cases.csv"
    sheet.write_text(
        "ref,kind,title,owner,start,sector,employees\n"
        f"a,shared-sme-service,A,{OWNER},2026-03-02,biotech,5\n"
        f"b,shared-sme-service,B,{OWNER},2026-03-02,biotech,five\n"
    )
    now = _at("2026-03-10")
    with write_session(consortium.engine) as session, pytest.raises(InvalidInput) as bad:
        bulk.import_cases(session=session, catalog=consortium.catalog, cases=sheet, now=now)
    assert bad.value.problems == [
        "cases.csv: row 3, column G (employees): 'five' is not a whole number; "
        "give a number like 42"
    ]
    assert _count(consortium) == 0
    sheet.write_text(sheet.read_text().replace("five", "7"))
    with write_session(consortium.engine) as session:
        bulk.import_cases(session=session, catalog=consortium.catalog, cases=sheet, now=now)
    with read_session(consortium.engine) as session:
        found = session.exec(
            select(CaseEvent.after).where(CaseEvent.kind == "case.fields")  # type: ignore[arg-type]
        ).all()
    assert sorted(e[0]["employees"] for e in found) == [5, 7]
