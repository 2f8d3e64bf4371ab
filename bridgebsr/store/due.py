"""The dates an item's escalation ladder counts from, as columns for the queries that find
what is due or late (the monitor's candidates and marks, and whether a queued notice is still
wanted): the fields `rules.ladder` names."""

from typing import Any

from sqlmodel import col

from bridgebsr.rules.ladder import GATE_DUE_FIELD, MILESTONE_DUE_FIELD
from models import Gate, Milestone

MILESTONE_DUE: Any = col(getattr(Milestone, MILESTONE_DUE_FIELD))
GATE_DUE: Any = col(getattr(Gate, GATE_DUE_FIELD))
