"""What needs action this week, the top of the report: three short tables.

- `late`: open milestones of active cases past their due date, most late first, with whose
  they are (the owner's name and partner).
- `gates`: open gates with who may still decide them and how many approvals they still need,
  deadline first.
- `at_risk`: open cases forecast to finish after their target date, most slipped first
  (the forecast view's own order).
- `requests`: requests for a new due date waiting for the pilot lead's answer, oldest first.

The first two are `office.agenda`'s (its rules: which items, whose, which deciders), the
third the forecast view's, the last `office.requests`'; nothing here restates them. Scoped to
a partner, they keep that partner's cases.
"""

from __future__ import annotations

from datetime import date

import pandas as pd
from sqlalchemy import Engine

from bridgebsr.office.agenda import agenda
from bridgebsr.office.requests import pending_requests
from bridgebsr.rules.texts import email_key
from bridgebsr.store.db import read_session
from bridgebsr.store.people import load_directory

ALL_GATES = 36_500  # days ahead: every open gate, whatever its deadline

LATE = ["case", "item", "title", "owner", "due", "days_late", "status"]
GATES = ["case", "item", "title", "deadline", "when", "approvals_needed", "deciders"]
AT_RISK = ["case", "pilot", "partner", "current_stage", "target_date", "forecast_date"]
AT_RISK += ["slip_working_days", "driving_item"]
REQUESTS = ["id", "case", "item", "title", "asked_by", "current_due", "requested_due"]
REQUESTS += ["reason", "age_days", "leads"]


def needs_action(
    engine: Engine, *, today: date, forecast: pd.DataFrame, partner: str | None = None
) -> dict[str, pd.DataFrame]:
    """The late items, the gates waiting, the cases at risk and the requests for a new date
    waiting for an answer, by name."""
    with read_session(engine) as session:
        rows = agenda(session=session, today=today, within=ALL_GATES, partner=partner)
        directory = load_directory(session.connection())
        asked = pending_requests(session=session, partner=partner)

    def named(emails: list[str]) -> str:
        people = []
        for email in emails:
            person = directory.by_email.get(email_key(email))
            people.append(f"{person.name} ({person.partner_code})" if person else email)
        return ", ".join(people) or "nobody"

    late = [
        {**r, "owner": named(r["who"]), "due": date.fromisoformat(r["due"])}
        for r in rows
        if r["kind"] == "milestone" and r["days_late"] > 0
    ]
    late.sort(key=lambda r: (-r["days_late"], r["case"], r["item"]))
    gates = [
        {
            **r,
            "deadline": date.fromisoformat(r["due"]),
            "approvals_needed": r["needed"],
            "deciders": named(r["who"]),
        }
        for r in rows
        if r["kind"] == "gate"
    ]
    at_risk = forecast[forecast["at_risk"].astype(bool)] if "at_risk" in forecast else forecast
    waiting = [
        {
            **r,
            "asked_by": named([r["asked_by"]]),
            "age_days": (today - r["asked_at"].date()).days,
            "leads": named(r["leads"]),
        }
        for r in asked
    ]
    return {
        "late": pd.DataFrame(late, columns=LATE),
        "gates": pd.DataFrame(gates, columns=GATES),
        "at_risk": at_risk.reindex(columns=AT_RISK).reset_index(drop=True),
        "requests": pd.DataFrame(waiting, columns=REQUESTS),
    }
