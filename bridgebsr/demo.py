"""The demo portfolio: the real consortium, one case per pilot months under way, SME requests,
and one case of each other activity of the work programme at its own point of progress."""

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlmodel import Session, select

from bridgebsr.bootstrap import Runtime
from bridgebsr.office import cases, directory, measurements, progress
from bridgebsr.rules import planning
from bridgebsr.rules.rows import GateRow, Node
from bridgebsr.store import case_rows as store
from bridgebsr.store.db import write_session
from models import Case, Contact, Decision, GateStatus, Source

DATA = Path(__file__).parent / "data"
DEMO = progress.Actor("demo@bridgebsr", Source.DEMO)
# Days late (negative: early) of the n-th item finished: a realistic spread, the same each run.
SLIPS = (0, 3, -1, 6, 0, 2, 11, 0, -2, 4, 0, 9)
SME_REQUESTS = (
    ("oskar.lundback@lundback-dx.example", None),
    ("ruta.zemaityte@gintarelis-bio.example", "triage-decision"),
    ("ingrid.odegard@orland-marine.example", "needs-interview"),
    ("henrik.oberg@ostersjo-vita.example", "match-proposal"),
    ("oskar.lundback@lundback-dx.example", "triage-decision"),
    ("ruta.zemaityte@gintarelis-bio.example", "sme-acceptance"),
    ("ingrid.odegard@orland-marine.example", "service-delivery"),
    ("henrik.oberg@ostersjo-vita.example", "match-proposal"),
    ("oskar.lundback@lundback-dx.example", "sme-acceptance"),
    ("ruta.zemaityte@gintarelis-bio.example", "follow-up-call"),
    ("ingrid.odegard@orland-marine.example", "service-delivery"),
    ("henrik.oberg@ostersjo-vita.example", "kpi-record"),
)

# Each demo SME's case fields (shared-sme-service), by its contact.
SMES = {
    "oskar.lundback@lundback-dx.example": {
        "sme_name": "Lundbäck Diagnostics AB", "sector": "diagnostics", "employees": "14"
    },
    "ruta.zemaityte@gintarelis-bio.example": {
        "sme_name": "Gintarėlis Bio UAB", "sector": "biotech", "employees": "23"
    },
    "ingrid.odegard@orland-marine.example": {
        "sme_name": "Ørland Marine Ingredients AS", "sector": "food-and-agri", "employees": "41"
    },
    "henrik.oberg@ostersjo-vita.example": {
        "sme_name": "Östersjö Vita AB", "sector": "pharma", "employees": "8"
    },
}  # fmt: skip
SERVICE_TYPES = ("financing", "ip", "eu-programme", "partnering")
# What the demo records when it completes a milestone that captures fields.
CAPTURES = {
    "capital-commitments": {"funds_raised_eur": "1250000.00", "founders_committed": "6"},
    "trial-run": {"ip_cases_handled": "37", "regions_in_trial": "5"},
    "trial-evaluation": {"evaluation_report": "https://bridge-bsr.example/ip-trial-evaluation"},
}
# The IP case's indicator values (`case measure`): per region, the baseline collected about
# 200 days ago and the values measured about 30 days ago, by indicator.
IP_REGIONS = ("Skåne", "Mecklenburg-Vorpommern", "Mazowieckie")
IP_MEASUREMENTS = {
    "sme-patent-applications": ((21, 26), (14, 13), (9, 15)),
    "smes-with-ip-strategy": ((18.5, 24.0), (12.0, 15.5), (8.0, 7.5)),
    "days-to-ip-advice": ((24, 15), (31, 22), (45, 47)),
}
IP_MEASURED_AGO = (200, 30)

# One case of each other activity of the work programme: (kind, title, owner, lead partner,
# days since it started, the last item finished, its case fields, what its milestones
# captured, its team). The analyses began first; the action plan and the Council round are
# recent. `{ip}` in a field is the IP pilot's case key.
ACTIVITIES: tuple[
    tuple[
        str, str, str, str, int, str | None, dict[str, str], dict[str, dict[str, str]],
        dict[str, str],
    ],
    ...,
] = (
    (
        "cluster-strategy-analysis", "Regional cluster innovation strategies in ScanBalt",
        "katrin.schaefer@bioconvalley.example", "BCV", 200, "regional-workshops",
        {"regions_in_scope": "9", "strategy_period": "2021-2027"},
        {
            "questionnaire": {"questionnaires_sent": "64", "responses_received": "41"},
            "regional-workshops": {"workshops_held": "7", "workshop_participants": "186"},
        },
        {},
    ),
    (
        "ip-bottleneck-analysis", "Regional IP bottlenecks and IP indicators",
        "sabine.wuerth@steinbeis.example", "STEINBEIS", 280, "final-report",
        {"regions_in_scope": "8", "tto_count": "23"},
        {
            "tto-questionnaire": {"tto_responses": "17"},
            "regional-workshops": {"workshops_held": "6"},
            "indicator-set": {"indicators_defined": "12"},
        },
        {},
    ),
    (
        "sme-financing-analysis", "SME financing bottlenecks and investor map",
        "anders.bogh@scanbalt.example", "SCANBALT", 150, "investor-interviews",
        {"regions_in_scope": "8", "financing_stage": "seed"},
        {"investor-interviews": {"investors_interviewed": "38"}},
        {},
    ),
    (
        "innovation-action-plan", "Innovation Action Plan for ScanBalt BioRegion",
        "mette.sorensen@scanbalt.example", "SCANBALT", 45, "findings-synthesis",
        {"plan_period_start": "2027-01-01", "plan_period_end": "2030-12-31"},
        {},
        {},
    ),
    (
        "council-review-round", "Council review of the transregional IP model",
        "karin.astrom@mva.example", "SCANBALT", 30, "papers-circulated",
        {"subject": "pilot", "subject_case": "{ip}", "procedure": "meeting"},
        {},
        {"pilot-lead": "karin.astrom@mva.example"},
    ),
    (
        "cluster-mentoring", "BioForum Oulu mentors the Latvian Biotechnology Association",
        "karlis.berzins@biotech-lv.example", "LBA", 70, "plan-approval",
        {"topic": "tech-transfer", "mentor_partner": "BIOFORUM-OULU"},
        {},
        {"mentor": "aino.makela@bioforum-oulu.example"},
    ),
)  # fmt: skip


def load_consortium(rt: Runtime) -> None:
    """Import the shipped partners and contacts of the Bridge-BSR consortium (idempotent)."""
    with write_session(rt.engine) as session:
        directory.import_partners(session=session, path=DATA / "partners.csv", actor=DEMO)
    with write_session(rt.engine) as session:
        directory.import_contacts(
            session=session,
            path=DATA / "contacts.csv",
            roles=rt.catalog.roles(),
            kinds=set(rt.catalog.templates),
            actor=DEMO,
        )


def load_demo(rt: Runtime, today: date) -> list[str]:
    """Load the demo portfolio as of `today` into a store without cases; returns the new keys."""
    load_consortium(rt)
    with Session(rt.engine) as session:
        if session.exec(select(Case.id)).first() is not None:
            return []
    keys = [
        _case(
            rt,
            today,
            "ip-integration",
            "Transregional IP integration model",
            "karin.astrom@mva.example",
            "MVA",
            335,
            "model-revision",
        ),
        _case(
            rt,
            today,
            "life-science-foundation",
            "Top of Europe Life Science Foundation",
            "katrin.schaefer@bioconvalley.example",
            "BCV",
            300,
            "founders-approval",
        ),
    ]
    for i, (owner, through) in enumerate(SME_REQUESTS):
        keys.append(
            _case(
                rt,
                today,
                "shared-sme-service",
                f"SME support request {i + 1}",
                owner,
                None,
                8 + 9 * i,
                through,
                fields=SMES.get(owner, {}),
                captures={"triage-decision": {"service_type": SERVICE_TYPES[i % 4]}},
            )
        )
    _measure_ip(rt, keys[0], today)
    for kind, title, owner, partner, days_ago, through, values, captured, team in ACTIVITIES:
        keys.append(
            _case(
                rt,
                today,
                kind,
                title,
                owner,
                partner,
                days_ago,
                through,
                fields={k: v.format(ip=keys[0]) for k, v in values.items()},
                captures=captured,
                team=team,
            )
        )
    for key in keys:
        with write_session(rt.engine) as session:
            progress.reforecast_case(session=session, case_key=key, actor=DEMO, now=_at(today))
    return keys


def _measure_ip(rt: Runtime, key: str, today: date) -> None:
    """Record the IP case's indicator values for three regions, each day in one write."""
    for i, ago in enumerate(IP_MEASURED_AGO):
        day = today - timedelta(days=ago)
        given = [
            {"indicator": name, "region": region, "on": day.isoformat(), "value": str(v[i])}
            for name, values in IP_MEASUREMENTS.items()
            for region, v in zip(IP_REGIONS, values, strict=True)
        ]
        with write_session(rt.engine) as session:
            measurements.record(
                session=session,
                key=key,
                given=given,
                actor=DEMO.email,
                now=_at(day),
                source=Source.DEMO,
            )


def _at(day: date) -> datetime:
    return datetime.combine(day, time(15), ZoneInfo("Europe/Copenhagen")).astimezone(UTC)


def _case(
    rt: Runtime,
    today: date,
    kind: str,
    title: str,
    owner: str,
    partner: str | None,
    days_ago: int,
    through: str | None,
    fields: dict[str, str] | None = None,
    captures: dict[str, dict[str, str]] | None = None,
    team: dict[str, str] | None = None,
) -> str:
    start = today - timedelta(days=days_ago)
    with write_session(rt.engine) as session:
        key = cases.open_case(
            session=session,
            catalog=rt.catalog,
            kind=kind,
            title=title,
            owner_email=owner,
            partner_code=partner,
            start=start,
            now=_at(start),
            source=Source.DEMO,
            team=team,
            fields=fields,
        ).key
    if through:
        _advance(rt, key, through, today, {**CAPTURES, **(captures or {})})
    return key


def _nodes(rt: Runtime, key: str) -> dict[str, Node]:
    with Session(rt.engine) as session:
        plan = store.load_case(session, key, for_update=False).plan
    return {n.key: n for n in plan.nodes()}


def _advance(
    rt: Runtime, key: str, through: str, today: date, captures: dict[str, dict[str, str]]
) -> None:
    """Finish `through` and all it depends on, in order, each a little early or late,
    recording the `captures` of the milestones that capture fields."""
    needed = _ancestors(_nodes(rt, key), through)
    for n in range(len(needed)):
        nodes = _nodes(rt, key)
        ready = [
            k
            for k in nodes
            if k in needed
            and not planning.is_finished(nodes[k])
            and all(planning.is_finished(nodes[d["key"]]) for d in nodes[k].depends_on)
        ]
        if not ready:
            return
        node = nodes[ready[0]]
        if isinstance(node, GateRow):
            _approve(rt, key, node, today)
            continue
        day = min(node.forecast_due + timedelta(days=SLIPS[n % len(SLIPS)]), today - timedelta(1))
        finished = [planning.finish_date(nodes[d["key"]]) for d in node.depends_on]
        day = max([day, *(f for f in finished if f is not None)])
        with write_session(rt.engine) as session:
            progress.progress_milestone(
                session=session,
                case_key=key,
                milestone_key=node.key,
                action="complete",
                actor=DEMO,
                now=_at(day),
                on=day,
                fields=captures.get(node.key),
            )


def _ancestors(nodes: dict[str, Node], key: str) -> set[str]:
    found, stack = set(), [key]
    while stack:
        k = stack.pop()
        if k not in found:
            found.add(k)
            stack += [d["key"] for d in nodes[k].depends_on]
    return found


def _approve(rt: Runtime, key: str, gate: GateRow, today: date) -> None:
    assert gate.status is GateStatus.OPEN and gate.opened_on is not None
    day = min(gate.opened_on + timedelta(days=3), today - timedelta(days=1))
    with Session(rt.engine) as session:
        role = select(Contact.email).where(Contact.role == gate.approver_role)
        approvers = list(session.exec(role.order_by(Contact.email)))[: gate.required]
    for email in approvers:
        with write_session(rt.engine) as session:
            progress.decide_gate(
                session=session,
                case_key=key,
                gate_key=gate.key,
                decision=Decision.APPROVE,
                now=_at(day),
                actor=progress.Actor(email, Source.DEMO, comment="Approved"),
            )
