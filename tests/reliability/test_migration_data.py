"""Every Alembic revision upgrades a populated store from the one before without losing a value,
and steps down and up again, on a SQLite file and on PostgreSQL, checked row by row.

For each step r(n-1) -> r(n) of the chain (read from the scripts, so a new revision is tested
as soon as it exists): migrate an empty store to r(n-1); fill every table that exists there
with realistic rows (Baltic names and accents, quotes, semicolons, formula-like and HTML-like
text, strings at their column's length limit, NULLs where allowed, nested JSON), written
through the models' own column types restricted to the columns r(n-1) has; record every
stored value; upgrade. Every row must still be there with every value as it was, and each
new column must hold its documented default (NEW_COLUMN_DEFAULTS, from the revisions'
docstrings) in the old rows. Then more rows are written at r(n) (new tables and columns
filled with values that are not the defaults), the store goes down to r(n-1) (every row of
the tables it keeps must survive, minus the columns the downgrade drops) and up again (the
columns come back with their defaults). At the head revision the ORM must load every row.

A store on PostgreSQL gets its own schema per test (the `pg_url` fixture of tests/conftest.py),
so the shared `test` database stays clean. `make soak` writes 1,500 rows per table instead
of 12.
"""

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Engine, MetaData, String, Table, insert, inspect, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel
from sqlmodel import select as orm_select

import models
from bridgebsr.store import migrate
from bridgebsr.store.db import make_engine
from tests.conftest import backend_url
from tests.reliability.conftest import size

ROWS = size(12, 1500)  # rows per table and phase
SECOND_PHASE = 100_000  # ids of rows written after the upgrade start here


def _chain() -> list[str]:
    script = ScriptDirectory.from_config(migrate._config_for_scripts())
    revisions = [r.revision for r in script.walk_revisions("base", "heads")]
    return list(reversed(revisions))


CHAIN = _chain()
STEPS = list(zip(CHAIN, CHAIN[1:], strict=False))
HEAD = CHAIN[-1]


@dataclass(frozen=True)
class Copied:
    """A new column that starts as a copy of another column of the same row."""

    column: str


# What a row that existed before a revision holds in each column the revision adds.
NEW_COLUMN_DEFAULTS: dict[tuple[str, str], object] = {
    # r0002: the monitor has not seen anything late yet.
    ("milestones", "overdue_on"): None,
    ("gates", "expired_on"): None,
    # r0003: no channel has taken an old outbox row yet.
    ("notifications", "delivered"): [],
    # r0004: existing contacts get email and chat, immediate, 21:00-07:00, 20 a day.
    ("contacts", "channels"): "email,chat",
    ("contacts", "digest"): False,
    ("contacts", "quiet_from"): time(21, 0),
    ("contacts", "quiet_until"): time(7, 0),
    ("contacts", "daily_cap"): 20,
    ("notifications", "delivery_id"): None,
    # r0005: no old outbox row is being sent or was sent twice; no old receipt re-sent one.
    ("notifications", "sending"): False,
    ("notifications", "resent"): 0,
    ("deliveries", "resent"): 0,
    # r0006: existing contacts lead no pilot kind.
    ("contacts", "leads"): "",
    # r0007: the original plan is the plan the rows had; template items in their first round;
    # every contact active.
    ("cases", "baseline_target"): Copied("target_date"),
    ("milestones", "baseline_start"): Copied("planned_start"),
    ("milestones", "baseline_due"): Copied("planned_due"),
    ("gates", "baseline_start"): Copied("planned_start"),
    ("gates", "baseline_due"): Copied("planned_due"),
    ("milestones", "adhoc"): False,
    ("milestones", "round"): 1,
    ("contacts", "retired_at"): None,
    ("contacts", "successor_id"): None,
    # r0009: no link was issued before; cases and milestones carry no data yet.
    ("contacts", "link_generation"): 1,
    ("cases", "fields"): {},
    ("milestones", "fields"): {},
}

# Known defects, found by these tests; the tests stay, marked, until the code is fixed. (The
# SQLite batch migrations that recreate referenced tables now run with foreign keys off and
# checked after: bridgebsr.migrate._migrating.)
KNOWN_BROKEN: dict[tuple[str, str, str], str] = {}

# --- realistic values ------------------------------------------------------------------------

PEOPLE = (
    "Mette Højgaard Sørensen",
    "Søren Østergaard",
    "Jūratė Žemaitytė",
    "Łukasz Wiśniewski-Żółć",
    "Kärt Õunapuu",
    "Ingrid Ødegård",
    "Pēteris Bērziņš",
    "Henrik Öberg",
    "Katrin Schäfer",
    "Aino Väisänen",
    "Siobhán O'Brien",
    "Анна Смирнова",
    "Þórdís Ásgeirsdóttir",
)
TEXTS = (
    "Transregional IP integration model",
    'Letters of intent from "founding" partners',
    "Financing; seed round, 2 investors",
    "=cmd|' /C calc'!A0",
    "+SUM(A1:A9)",
    "-2+3",
    '@HYPERLINK("http://evil.example")',
    "<script>alert('x')</script>",
    "line one\nline two\r\nline three",
    "tab\tseparated",
    "back\\slash and 100% done",
    "emoji 🧬🔬 and ẞ, İ, ǅ",
    "",
    " leading and trailing spaces ",
    "Ø" * 40,
)
PARTNER_CODES = ("SCANBALT", "STEINBEIS", "BCV", "IPPT-PAN", "BFO", "MVA", "LBA", "EBA", "BIO-LT")
COUNTRIES = ("DK", "SE", "FI", "NO", "IS", "EE", "LV", "LT", "PL", "DE", "RU")
ZONES = (
    "Europe/Copenhagen",
    "Europe/Berlin",
    "Europe/Riga",
    "Europe/Vilnius",
    "Atlantic/Reykjavik",
)
KINDS = ("ip-integration", "life-science-foundation", "shared-sme-service")
ROLES = ("coordinator", "pilot-lead", "case-owner", "sme-advisor", "council-member")
STAGES = ("scoping", "feasibility", "intake", "triage", "matching", "delivery", None)


def _text(rng: random.Random, limit: int | None, pool: tuple[str, ...] = TEXTS) -> str:
    """A text from the pool, sometimes stretched to exactly the column's limit."""
    value = rng.choice(pool)
    if limit is not None and rng.random() < 0.15:
        value = (value or "x") * (limit // max(len(value), 1) + 1)
    return value[:limit] if limit is not None else value


def _moment(rng: random.Random) -> datetime:
    start = datetime(2009, 1, 1, tzinfo=UTC)
    return start + timedelta(
        seconds=rng.randrange(20 * 365 * 86400), microseconds=rng.randrange(10**6)
    )


def _day(rng: random.Random) -> date:
    return date(2009, 1, 1) + timedelta(days=rng.randrange(20 * 365))


def _maybe(rng: random.Random, value: Any) -> Any:
    return value if rng.random() < 0.6 else None


def _json(rng: random.Random, depth: int = 0) -> Any:
    """Nested JSON like payloads and audit `before`/`after` values."""
    if depth > 2 or rng.random() < 0.3:
        return rng.choice(
            [
                rng.choice(TEXTS),
                rng.randrange(-(10**6), 10**6),
                0.25,
                True,
                False,
                None,
                "2026-11-26",
            ]
        )
    if rng.random() < 0.5:
        return [_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(PEOPLE + TEXTS[:3]): _json(rng, depth + 1) for _ in range(rng.randrange(4))}


def _payload(rng: random.Random) -> dict[str, Any]:
    return {
        "case": f"IP-2026-{rng.randrange(10000):04d}",
        "case_title": rng.choice(TEXTS),
        "pilot": rng.choice(KINDS),
        "item": "council-approval",
        "item_kind": rng.choice(["milestone", "gate"]),
        "due": _day(rng).isoformat(),
        "days_late": rng.randrange(-5, 30),
        "extra": _json(rng),
    }


@dataclass
class _Pools:
    """Ids written so far, per table, for the foreign keys of later rows."""

    ids: dict[str, list[int]] = field(default_factory=dict)

    def pick(self, rng: random.Random, table: str) -> int:
        return rng.choice(self.ids[table])


RowMaker = Callable[[random.Random, int, int, _Pools], dict[str, Any]]


def _key_sequence(rng: random.Random, i: int, phase: int, _: _Pools) -> dict[str, Any]:
    prefixes = ("IP", "LSF", "SME", "MENT", "ACTION", "CR")
    return {
        "prefix": prefixes[i % 6][: 6 - phase] + ("Z" * phase),
        "year": 2009 + i // 6,
        "last": rng.randrange(10_000),
    }


def _partner(rng: random.Random, i: int, phase: int, _: _Pools) -> dict[str, Any]:
    country = rng.choice(COUNTRIES)
    return {
        "code": f"{rng.choice(PARTNER_CODES)}-{phase}-{i}",
        "name": _text(rng, 200, PEOPLE + TEXTS),
        "kind": rng.choice([k.value for k in models.PartnerKind]),
        "country": country,
        "region": _text(rng, 120, ("Hovedstaden", "Mecklenburg-Vorpommern", "Rīga", "Łódzkie")),
        "timezone": rng.choice(ZONES),
    }


def _template_version(rng: random.Random, i: int, phase: int, _: _Pools) -> dict[str, Any]:
    return {
        "kind": rng.choice(KINDS),
        "version": phase * SECOND_PHASE + i + 1,
        "checksum": f"{rng.getrandbits(256):064x}",
        "body": {"kind": rng.choice(KINDS), "title": rng.choice(TEXTS), "extra": _json(rng)},
        "first_used_at": _moment(rng),
    }


def _contact(rng: random.Random, i: int, phase: int, pools: _Pools) -> dict[str, Any]:
    quiet = rng.random() < 0.7
    return {
        "email": f"person.{phase}.{i}@{rng.choice(PARTNER_CODES).lower()}.example",
        "name": _text(rng, 200, PEOPLE),
        "partner_id": pools.pick(rng, "partners"),
        "role": rng.choice(ROLES),
        "country": rng.choice(COUNTRIES),
        "timezone": rng.choice(ZONES),
        # Values a contact may hold after r0004, none of them the migration's defaults.
        "channels": rng.choice(["email", "chat"]),
        "digest": True,
        "quiet_from": time(22, 30) if quiet else None,
        "quiet_until": time(6, 15) if quiet else None,
        "daily_cap": rng.choice([0, 5, 100]),
        # After r0006, never its default: the kinds this person leads.
        "leads": rng.choice(KINDS),
        # After r0007, never the defaults: left, and handed over to someone already here.
        "retired_at": _moment(rng),
        "successor_id": pools.pick(rng, "contacts") if pools.ids.get("contacts") else None,
        # After r0009, never its default: links revoked at least once.
        "link_generation": rng.randrange(2, 9),
    }


def _case(rng: random.Random, i: int, phase: int, pools: _Pools) -> dict[str, Any]:
    start = _day(rng)
    status = rng.choice([s.value for s in models.CaseStatus])
    return {
        "key": f"{rng.choice(['IP', 'LSF', 'SME'])}-{start.year}-{phase * SECOND_PHASE + i:04d}",
        "kind": rng.choice(KINDS),
        "template_version": rng.randrange(1, 4),
        "title": _text(rng, 300),
        "lead_partner_id": pools.pick(rng, "partners"),
        "owner_id": pools.pick(rng, "contacts"),
        "country": rng.choice(COUNTRIES),
        "status": status,
        "current_stage": rng.choice(STAGES),
        "start_date": start,
        "target_date": start + timedelta(days=rng.randrange(400)),
        "forecast_date": start + timedelta(days=rng.randrange(500)),
        "baseline_target": start + timedelta(days=rng.randrange(300)),  # r0007
        "opened_at": _moment(rng),
        "closed_at": _moment(rng) if status in ("completed", "cancelled") else None,
        "updated_at": _moment(rng),
        "version": rng.randrange(1, 50),
        # After r0009, never its default: typed values as the field rule stores them.
        "fields": {
            "sme_name": rng.choice(PEOPLE),
            "service_type": rng.choice(["ip", "financing", "eu-programme", "partnering"]),
            "employees": rng.randrange(1, 500),
            "funds_raised_eur": f"{rng.randrange(0, 10**7)}.{rng.randrange(100):02d}",
            "note": rng.choice(TEXTS),
        },
    }


def _case_event(rng: random.Random, i: int, phase: int, pools: _Pools) -> dict[str, Any]:
    return {
        "case_id": pools.pick(rng, "cases"),
        "at": _moment(rng),
        "actor": rng.choice(["demo@bridgebsr", "soren.ostergaard@scanbalt.example", "ops@cli"]),
        "kind": rng.choice(["case.open", "milestone.complete", "gate.open", "case.hold"]),
        "subject": _maybe(rng, rng.choice(["needs-interview", "council-approval"])),
        "before": _maybe(rng, {"status": "planned", "note": rng.choice(TEXTS)}),
        "after": _maybe(rng, {"status": "done", "data": _json(rng)}),
        "source": rng.choice([s.value for s in models.Source]),
        "source_ref": _maybe(rng, _text(rng, 120, ("cases.csv row 7", "flow-run 5f0c", "x"))),
        "comment": _text(rng, None),
    }


def _dates(rng: random.Random) -> dict[str, Any]:
    start = _day(rng)
    return {
        "baseline_start": start - timedelta(days=rng.randrange(1, 30)),  # r0007
        "baseline_due": start + timedelta(days=rng.randrange(40)),
        "planned_start": start,
        "planned_due": start + timedelta(days=rng.randrange(60)),
        "forecast_start": start + timedelta(days=rng.randrange(30)),
        "forecast_due": start + timedelta(days=rng.randrange(90)),
        "critical": rng.random() < 0.5,
    }


def _depends(rng: random.Random) -> list[dict[str, Any]]:
    return [
        {"key": f"m-{j}", "lag": rng.randrange(5), "days": rng.choice(["working", "calendar"])}
        for j in range(rng.randrange(3))
    ]


def _gate(rng: random.Random, i: int, phase: int, pools: _Pools) -> dict[str, Any]:
    return {
        "case_id": pools.pick(rng, "cases"),
        "key": f"gate-{phase}-{i}",
        "seq": i,
        "title": _text(rng, 300),
        "stage": rng.choice(STAGES[:-1]),
        "approver_role": rng.choice(ROLES),
        "required": rng.randrange(1, 4),
        "deadline_days": rng.randrange(1, 30),
        "days": rng.choice(["working", "calendar"]),
        "on_timeout": rng.choice(["escalate", "reject", "approve"]),
        "rework_stage": rng.choice(STAGES),
        "depends_on": _depends(rng),
        **_dates(rng),
        "status": rng.choice([s.value for s in models.GateStatus]),
        "round": rng.randrange(1, 4),
        "opened_on": _maybe(rng, _day(rng)),
        "deadline": _maybe(rng, _day(rng)),
        "decided_on": _maybe(rng, _day(rng)),
        "expired_on": _day(rng),  # after r0002; never the default
    }


def _milestone(rng: random.Random, i: int, phase: int, pools: _Pools) -> dict[str, Any]:
    return {
        "case_id": pools.pick(rng, "cases"),
        "key": f"milestone-{phase}-{i}",
        "seq": i,
        "title": _text(rng, 300),
        "stage": rng.choice(STAGES[:-1]),
        "owner_role": rng.choice(ROLES),
        "owner_id": _maybe(rng, pools.pick(rng, "contacts")),
        "duration": rng.randrange(0, 200),
        "days": rng.choice(["working", "calendar"]),
        "strict": rng.random() < 0.8,
        "depends_on": _depends(rng),
        **_dates(rng),
        "status": rng.choice([s.value for s in models.MilestoneStatus]),
        "started_on": _maybe(rng, _day(rng)),
        "finished_on": _maybe(rng, _day(rng)),
        "overdue_on": _day(rng),  # after r0002; never the default
        "adhoc": True,  # after r0007; never the defaults
        "round": rng.randrange(2, 5),
        "fields": {"service_type": rng.choice(["ip", "financing"]), "nested": _json(rng)},  # r0009
    }


def _gate_decision(rng: random.Random, i: int, phase: int, pools: _Pools) -> dict[str, Any]:
    return {
        "gate_id": pools.pick(rng, "gates"),
        "round": phase * SECOND_PHASE + i + 1,
        "approver_id": pools.pick(rng, "contacts"),
        "decision": rng.choice(["approve", "reject"]),
        "comment": _text(rng, None),
        "at": _moment(rng),
        "source": rng.choice([s.value for s in models.Source]),
    }


def _delivery(rng: random.Random, i: int, phase: int, pools: _Pools) -> dict[str, Any]:
    return {
        "recipient_id": pools.pick(rng, "contacts"),
        "at": _moment(rng),
        "kind": rng.choice(["notice", "digest", "overflow"]),
        "notices": rng.randrange(1, 40),
        "ok": rng.random() < 0.8,
        "title": _text(rng, 300),
        "channels": [{"channel": "email", "ok": True, "error": _maybe(rng, rng.choice(TEXTS))}],
        "resent": rng.randrange(1, 9),  # after r0005; never the default
    }


def _notification(rng: random.Random, i: int, phase: int, pools: _Pools) -> dict[str, Any]:
    sent = rng.random() < 0.5
    return {
        "dedupe_key": f"IP-2026-0001:m-{i}:owner-10wd:{phase}:{i}",
        "case_id": pools.pick(rng, "cases"),
        "subject": _maybe(rng, "needs-interview"),
        "rule": rng.choice(["owner-10wd", "owner-2wd", "lead-on-day", "coordinator-late"]),
        "recipient_id": pools.pick(rng, "contacts"),
        "urgent": rng.random() < 0.3,
        "status": rng.choice([s.value for s in models.NotificationStatus]),
        "due_on": _maybe(rng, _day(rng)),
        "fire_on": _day(rng),
        "payload": _payload(rng),
        "created_at": _moment(rng),
        "attempts": rng.randrange(0, 6),
        "next_attempt_at": _maybe(rng, _moment(rng)),
        "last_error": _maybe(rng, _text(rng, None)),
        "sent_at": _moment(rng) if sent else None,
        # After r0003, r0004 and r0005; never the defaults.
        "delivered": ["email"] if sent else ["chat"],
        "delivery_id": pools.pick(rng, "deliveries") if pools.ids.get("deliveries") else None,
        "sending": True,
        "resent": rng.randrange(1, 5),
    }


def _team_member(rng: random.Random, i: int, phase: int, pools: _Pools) -> dict[str, Any]:
    return {
        "case_id": pools.pick(rng, "cases"),
        "role": f"{rng.choice(ROLES)}-{phase}-{i}",
        "contact_id": pools.pick(rng, "contacts"),
        "since": _moment(rng),
    }


def _baseline(rng: random.Random, i: int, phase: int, pools: _Pools) -> dict[str, Any]:
    return {
        "case_id": pools.pick(rng, "cases"),
        "number": phase * SECOND_PHASE + i + 1,
        "at": _moment(rng),
        "actor": rng.choice(["soren.ostergaard@scanbalt.example", "ops@cli"]),
        "reason": _text(rng, None),
        "source": rng.choice([s.value for s in models.Source]),
        "target_date": _day(rng),
    }


def _plan_change(rng: random.Random, i: int, phase: int, pools: _Pools) -> dict[str, Any]:
    start = _day(rng)
    return {
        "case_id": pools.pick(rng, "cases"),
        "item_kind": rng.choice(["milestone", "gate"]),
        "item_key": _text(rng, 60, ("needs-interview", "council-approval", "Ø" * 60)),
        "at": _moment(rng),
        "start": start,
        "due": start + timedelta(days=rng.randrange(60)),
        "why": rng.choice(["reschedule", "rebaseline", "add"]),
        "baseline": _maybe(rng, rng.randrange(1, 9)),
    }


def _absence(rng: random.Random, i: int, phase: int, pools: _Pools) -> dict[str, Any]:
    starts = _day(rng)
    return {
        "contact_id": pools.pick(rng, "contacts"),
        "starts": starts,
        "ends": starts + timedelta(days=rng.randrange(30)),
        "deputy_id": pools.pick(rng, "contacts"),
        "created_at": _moment(rng),
    }


def _directory_event(rng: random.Random, i: int, phase: int, pools: _Pools) -> dict[str, Any]:
    email = f"person.{phase}.{i}@{rng.choice(PARTNER_CODES).lower()}.example"
    added = rng.random() < 0.3
    return {
        "at": _moment(rng),
        "actor": rng.choice(["soren.ostergaard@scanbalt.example", "ops@cli", "cli"]),
        "kind": rng.choice(["contact.add", "contact.edit", "contact.import", "absence.add"]),
        "subject": _text(rng, 254, (email, rng.choice(PARTNER_CODES), "Ø" * 254)),
        "before": None if added else {"name": rng.choice(PEOPLE), "extra": _json(rng)},
        "after": _maybe(rng, {"name": rng.choice(PEOPLE), "country": rng.choice(COUNTRIES)}),
        "source": rng.choice([s.value for s in models.Source]),
        "source_ref": _maybe(rng, _text(rng, 120, ("contacts.csv", "partners.xlsx", "x"))),
        "comment": _text(rng, None),
    }


def _evidence(rng: random.Random, i: int, phase: int, pools: _Pools) -> dict[str, Any]:
    return {
        "case_id": pools.pick(rng, "cases"),
        "item_kind": rng.choice(["milestone", "gate"]),
        "item_key": _text(rng, 60, ("needs-interview", "council-approval", "Ø" * 60)),
        "round": rng.randrange(1, 4),
        "url": rng.choice(
            [
                "https://docs.example/report?id=1&v=2",
                "http://wiki.example/Öresund",
                "https://x.example/" + "a" * 1980,
            ]
        ),
        "note": _text(rng, None),
        "added_by": rng.choice(["katrin.schaefer@bioconvalley.example", "ops@cli"]),
        "at": _moment(rng),
        "source": rng.choice([s.value for s in models.Source]),
    }


def _date_request(rng: random.Random, i: int, phase: int, pools: _Pools) -> dict[str, Any]:
    current = _day(rng)
    answered = rng.random() < 0.5
    return {
        "case_id": pools.pick(rng, "cases"),
        "item_key": _text(rng, 60, ("needs-interview", "trial-run", "Ø" * 60)),
        "requested_by_id": pools.pick(rng, "contacts"),
        "requested_due": current + timedelta(days=rng.randrange(1, 90)),
        "current_due": current,
        "reason": _text(rng, None),
        "status": rng.choice(["accepted", "declined"]) if answered else "pending",
        "at": _moment(rng),
        "source": rng.choice([s.value for s in models.Source]),
        "decided_by": "karin.astrom@mva.example" if answered else None,
        "decided_at": _moment(rng) if answered else None,
        "comment": _text(rng, None),
    }


def _access_denial(rng: random.Random, i: int, phase: int, pools: _Pools) -> dict[str, Any]:
    return {
        "at": _moment(rng),
        "address": rng.choice(["127.0.0.1", "2001:db8::1", "203.0.113.77"]),
        "reason": rng.choice(["forged", "expired", "revoked", "wrong-purpose", "out-of-scope"]),
        "path": _text(rng, 300, ("/l/***", "/cases/IP-2026-0001", "/feeds/***.ics")),
        "contact_id": _maybe(rng, pools.pick(rng, "contacts")),
    }


def _stored_report(rng: random.Random, i: int, phase: int, pools: _Pools) -> dict[str, Any]:
    content = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 2000)))
    return {
        "name": f"weekly {2026}-W{rng.randrange(1, 53):02d}",
        "scope": rng.choice(["", "MVA", "BCV"]),
        "filename": rng.choice(["portfolio.xlsx", "portfolio.html", "Øresund report.html"]),
        "media_type": rng.choice(["text/html; charset=utf-8", "application/vnd.ms-excel"]),
        "content": content,
        "size": len(content),
        "created_at": _moment(rng),
    }


def _channel_post(rng: random.Random, i: int, phase: int, pools: _Pools) -> dict[str, Any]:
    sent = rng.random() < 0.5
    return {
        "dedupe_key": f"channel:ip-integration|IP-2026-0001:m-{i}:due:{phase}:{i}",
        "channel": rng.choice(["channel:all", "channel:ip-integration", "channel:partner:mva"]),
        "case_id": pools.pick(rng, "cases"),
        "rule": rng.choice(["owner-10wd", "lead-on-day"]),
        "urgent": rng.random() < 0.3,
        "status": rng.choice([s.value for s in models.NotificationStatus]),
        "fire_on": _day(rng),
        "payload": _payload(rng),
        "created_at": _moment(rng),
        "attempts": rng.randrange(0, 6),
        "next_attempt_at": _maybe(rng, _moment(rng)),
        "last_error": _maybe(rng, _text(rng, None)),
        "sent_at": _moment(rng) if sent else None,
    }


def _measurement(rng: random.Random, i: int, phase: int, pools: _Pools) -> dict[str, Any]:
    return {
        "case_id": pools.pick(rng, "cases"),
        "indicator": _text(rng, 60, ("patent-applications", "licences-signed", "Ø" * 60)),
        "region": _text(rng, 120, ("Skåne", "Mecklenburg-Vorpommern", "Pomorskie")),
        "measured_on": _day(rng) + timedelta(days=phase * 1000 + i),
        "value": rng.choice([0.0, 12.5, -3.25, 1e9, 0.1]),
        "note": _text(rng, None),
        "recorded_by": rng.choice(["karin.astrom@mva.example", "ops@cli"]),
        "at": _moment(rng),
        "source": rng.choice([s.value for s in models.Source]),
    }


# Every table of the store in an order that respects the foreign keys. A new table (or a new
# column) in a revision must be taught here, with realistic values, before its step passes.
MAKERS: dict[str, RowMaker] = {
    "key_sequences": _key_sequence,
    "partners": _partner,
    "template_versions": _template_version,
    "contacts": _contact,
    "cases": _case,
    "case_events": _case_event,
    "gates": _gate,
    "milestones": _milestone,
    "gate_decisions": _gate_decision,
    "deliveries": _delivery,
    "notifications": _notification,
    "case_team": _team_member,
    "baselines": _baseline,
    "plan_changes": _plan_change,
    "absences": _absence,
    "directory_events": _directory_event,
    "evidence": _evidence,
    "date_requests": _date_request,
    "access_denials": _access_denial,
    "stored_reports": _stored_report,
    "channel_posts": _channel_post,
    "measurements": _measurement,
}
COMPOSITE_KEYS = {"key_sequences": ("prefix", "year")}

# --- the store, as it is at one revision -------------------------------------------------------

Schema = dict[str, list[str]]  # table -> column names
Snapshot = dict[str, dict[tuple[Any, ...], dict[str, Any]]]  # table -> key -> column -> value


def _schema(engine: Engine) -> Schema:
    found = inspect(engine)
    return {
        t: [c["name"] for c in found.get_columns(t)]
        for t in found.get_table_names()
        if t != "alembic_version"
    }


def _key(table: str) -> tuple[str, ...]:
    return COMPOSITE_KEYS.get(table, ("id",))


def _typed(table: str, columns: list[str]) -> Table:
    """The table as the models type it, restricted to `columns` (the revision's)."""
    model = SQLModel.metadata.tables[table]
    return Table(
        table,
        MetaData(),
        *[Column(c, model.c[c].type, primary_key=c in _key(table)) for c in columns],
    )


def _fill(engine: Engine, schema: Schema, phase: int, pools: _Pools, seed: str) -> None:
    """ROWS rows in every table of `schema`, each with a value in every column it has."""
    unknown = set(schema) - set(MAKERS)
    assert not unknown, f"tables {sorted(unknown)} have no realistic rows here: add them to MAKERS"
    with engine.begin() as conn:
        for table, maker in MAKERS.items():
            if table not in schema:
                continue
            rng = random.Random(f"{seed}-{table}-{phase}")
            rows = []
            for i in range(ROWS):
                full = maker(rng, i, phase, pools)
                if table not in COMPOSITE_KEYS:
                    full["id"] = phase * SECOND_PHASE + i + 1
                missing = set(schema[table]) - set(full)
                assert not missing, f"{table}: no realistic value for {sorted(missing)} in MAKERS"
                _fit(table, full)
                rows.append({c: full[c] for c in schema[table]})
            conn.execute(insert(_typed(table, schema[table])), rows)
            if table not in COMPOSITE_KEYS:
                pools.ids.setdefault(table, []).extend(r["id"] for r in rows)


def _fit(table: str, row: dict[str, Any]) -> None:
    """Strings cut to their column's length (PostgreSQL enforces it, as the models declare)."""
    model = SQLModel.metadata.tables[table]
    for name, value in row.items():
        kind = model.c[name].type
        if isinstance(value, str) and isinstance(kind, String) and kind.length:
            row[name] = value[: kind.length]


def _raw(engine: Engine, schema: Schema) -> Snapshot:
    """Every stored value as the driver returns it: no type of ours reinterprets anything."""
    out: Snapshot = {}
    with engine.connect() as conn:
        for table, columns in schema.items():
            key = _key(table)
            listed = ", ".join(f'"{c}"' for c in columns)
            order = ", ".join(f'"{c}"' for c in key)
            result = conn.exec_driver_sql(f'SELECT {listed} FROM "{table}" ORDER BY {order}')
            rows = [dict(zip(columns, r, strict=True)) for r in result]
            out[table] = {tuple(r[c] for c in key): r for r in rows}
    return out


def _typed_values(engine: Engine, table: str, columns: list[str]) -> dict[tuple[Any, ...], Any]:
    """The values of `columns` as the models read them, by row key."""
    key = _key(table)
    typed = _typed(table, sorted({*columns, *key}))
    with engine.connect() as conn:
        rows = conn.execute(select(typed)).mappings().all()
    return {tuple(r[c] for c in key): {c: r[c] for c in columns} for r in rows}


def _project(snapshot: Snapshot, schema: Schema) -> Snapshot:
    """The snapshot cut down to the tables and columns of `schema`."""
    return {
        t: {k: {c: row[c] for c in schema[t]} for k, row in snapshot[t].items()}
        for t in schema
        if t in snapshot
    }


def _assert_same(expected: Snapshot, found: Snapshot, what: str) -> None:
    problems = []
    for table, rows in expected.items():
        got = found.get(table)
        if got is None:
            problems.append(f"{table}: the table is gone")
            continue
        for key, row in rows.items():
            other = got.get(key)
            if other is None:
                problems.append(f"{table} {key}: the row is gone")
                continue
            for column, value in row.items():
                if column not in other:
                    problems.append(f"{table}.{column}: the column is gone")
                elif other[column] != value:
                    problems.append(f"{table} {key} {column}: {value!r} became {other[column]!r}")
        problems += [f"{table} {k}: a row appeared" for k in sorted(set(got) - set(rows), key=str)]
    shown = "\n".join(problems[:40])
    assert not problems, f"{what}: {len(problems)} difference(s)\n{shown}"


def _expected(table: str, row: dict[str, Any], column: str) -> object:
    """What a row that was there before `column` came holds in it."""
    default = NEW_COLUMN_DEFAULTS[table, column]
    return row[default.column] if isinstance(default, Copied) else default


def _assert_defaults(engine: Engine, old: Schema, new: Schema, keys: Snapshot, what: str) -> None:
    """Each column `new` has and `old` has not holds its documented default in the rows of
    `keys` (the rows that were there before the column came)."""
    for table, columns in new.items():
        added = [c for c in columns if table in old and c not in old[table]]
        if not added:
            continue
        undocumented = [c for c in added if (table, c) not in NEW_COLUMN_DEFAULTS]
        assert not undocumented, (
            f"{table}.{undocumented}: a new column with no documented default for existing "
            "rows; add it to NEW_COLUMN_DEFAULTS (and to the revision's docstring)"
        )
        copied = [d.column for c in added if isinstance(d := NEW_COLUMN_DEFAULTS[table, c], Copied)]
        values = _typed_values(engine, table, added + copied)

        wrong = [
            f"{table} {k} {c}: {values[k][c]!r}, not {_expected(table, values[k], c)!r}"
            for k in keys[table]
            for c in added
            if values[k][c] != _expected(table, values[k], c)
        ]
        assert not wrong, f"{what}: {len(wrong)} wrong default(s)\n" + "\n".join(wrong[:40])


def _move(engine: Engine, target: str, before: Snapshot, schema: Schema, down: bool) -> None:
    """Migrate to `target`; if that fails, prove it failed whole before re-raising."""
    at = migrate.current(engine)
    try:
        if down:
            migrate.downgrade(engine, target)
        else:
            migrate.upgrade(engine, target)
    except Exception:
        assert migrate.current(engine) == at, "a failed migration left a new revision behind"
        _assert_same(before, _raw(engine, schema), "a failed migration changed the rows")
        raise
    assert migrate.current(engine) == target


def _load_every_model(engine: Engine, expected: Snapshot) -> None:
    """At the head the application itself reads every row back."""
    tables: list[type[SQLModel]] = [
        models.KeySequence,
        models.Partner,
        models.TemplateVersion,
        models.Contact,
        models.Case,
        models.CaseEvent,
        models.Gate,
        models.Milestone,
        models.GateDecision,
        models.Delivery,
        models.Notification,
        models.TeamMember,
        models.Baseline,
        models.PlanChange,
        models.Absence,
        models.DirectoryEvent,
        models.Evidence,
        models.DateRequest,
        models.AccessDenial,
        models.StoredReport,
        models.ChannelPost,
        models.Measurement,
    ]
    assert {str(m.__tablename__) for m in tables} == set(expected)
    with Session(engine) as session:
        for model in tables:
            loaded = session.exec(orm_select(model)).all()
            assert len(loaded) == len(expected[str(model.__tablename__)]), model.__name__


# --- the tests ---------------------------------------------------------------------------------


def _params(test: str) -> list[Any]:
    out = []
    for backend in ("sqlite", "postgres"):
        for prev, new in STEPS:
            marks: list[pytest.MarkDecorator] = []
            if backend == "postgres":
                marks.append(pytest.mark.postgres)
            reason = KNOWN_BROKEN.get((backend, prev, test))
            if reason:
                marks.append(pytest.mark.xfail(strict=True, raises=IntegrityError, reason=reason))
            out.append(pytest.param(backend, prev, new, marks=marks, id=f"{backend}-{prev}-{new}"))
    return out


@pytest.fixture
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return backend_url(request, tmp_path, request.node.callspec.params["backend"])


@pytest.fixture
def store(store_url: str) -> Iterator[Engine]:
    """An empty store on the backend of the test, through the application's own engine."""
    engine = make_engine(store_url)
    yield engine
    engine.dispose()


def test_the_chain_is_linear_from_the_first_revision_to_the_head() -> None:
    assert CHAIN[0] == "0001" and HEAD == migrate.head() and len(STEPS) == len(CHAIN) - 1


@pytest.mark.parametrize(("backend", "prev", "new"), _params("upgrade"))
def test_upgrade_keeps_every_row_and_fills_new_columns_with_their_defaults(
    store: Engine, backend: str, prev: str, new: str
) -> None:
    migrate.upgrade(store, prev)
    old_schema = _schema(store)
    _fill(store, old_schema, 0, _Pools(), f"{prev}-{new}")
    before = _raw(store, old_schema)
    assert all(len(rows) == ROWS for rows in before.values()), "every table holds rows"

    _move(store, new, before, old_schema, down=False)
    new_schema = _schema(store)
    assert set(new_schema) >= set(old_schema), "a table disappeared"
    _assert_same(before, _project(_raw(store, new_schema), old_schema), f"upgrade {prev}->{new}")
    _assert_defaults(store, old_schema, new_schema, before, f"upgrade {prev}->{new}")
    if new == HEAD:
        _load_every_model(store, _raw(store, new_schema))


@pytest.mark.parametrize(("backend", "prev", "new"), _params("round-trip"))
def test_downgrade_then_upgrade_round_trips_every_row(
    store: Engine, backend: str, prev: str, new: str
) -> None:
    migrate.upgrade(store, prev)
    old_schema = _schema(store)
    pools = _Pools()
    _fill(store, old_schema, 0, pools, f"{prev}-{new}")
    migrate.upgrade(store, new)
    new_schema = _schema(store)
    # Rows written at r(n), with every new table and column holding non-default values.
    _fill(store, new_schema, 1, pools, f"{prev}-{new}")
    at_new = _raw(store, new_schema)

    _move(store, prev, at_new, new_schema, down=True)
    assert _schema(store) == old_schema, "the downgrade leaves the schema of the revision below"
    kept = _project(at_new, old_schema)
    _assert_same(kept, _raw(store, old_schema), f"downgrade {new}->{prev}")

    _move(store, new, kept, old_schema, down=False)
    assert _schema(store) == new_schema, "the upgrade brings back the same schema"
    again = _raw(store, new_schema)
    _assert_same(kept, _project(again, old_schema), f"upgrade {prev}->{new} after the downgrade")
    _assert_defaults(store, old_schema, new_schema, kept, f"upgrade {prev}->{new} again")
    for table in set(new_schema) - set(old_schema):
        assert again[table] == {}, f"{table} comes back empty"
    if new == HEAD:
        _load_every_model(store, again)
