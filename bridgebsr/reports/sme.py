"""The shared SME service: requests by country and service type (the case field
`service_type`), first response, delivery."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from bridgebsr.reports.frames import (
    COUNTRY,
    NAT,
    PARTNER,
    PILOT,
    SERVICE_TYPE,
    SME_KIND,
    TRIAGE_MILESTONE,
    UNSPECIFIED,
    UNTRIAGED,
    Frames,
    calendar_days,
    case_columns,
    codes_of,
    day_array,
    dims_of,
    is_open,
    positions_of,
    workdays,
)
from bridgebsr.reports.groups import Grouping, group_keys
from models import CaseStatus, MilestoneStatus


def service_type(frames: Frames, ids: Any) -> npt.NDArray[np.object_]:
    """Each case's `service_type` field (the shared SME service template declares it and
    captures it at triage), `unspecified` where it holds none."""
    if SERVICE_TYPE not in frames.fields.columns:
        return np.full(len(ids), UNSPECIFIED, dtype=object)
    values = frames.fields[SERVICE_TYPE].reindex(ids).to_numpy(dtype=object)
    return np.where(pd.isna(values), UNSPECIFIED, values)


def sme_requests(frames: Frames) -> pd.DataFrame:
    """One row per shared-sme-service request.

    Columns: case_id, case, country, partner, status, service_type, start_date,
    first_response_on (the first milestone done), closed_on, `first_response_working_days`,
    `first_response_calendar_days`, `delivery_working_days`, `delivery_calendar_days` (start
    to completion, completed requests). Working days of the case's calendar.
    """
    return frames.derived("sme_requests", lambda: _sme_requests(frames))


def _sme_requests(frames: Frames) -> pd.DataFrame:
    cases, m = frames.cases, frames.milestones
    is_sme = (cases[PILOT] == SME_KIND).to_numpy()
    rows = np.flatnonzero(is_sme)
    positions = positions_of(frames, "milestones")
    in_sme = (positions >= 0) & is_sme[np.maximum(positions, 0)]
    done = in_sme & (m["status"] == MilestoneStatus.DONE.value).to_numpy()
    done &= m["finished_on"].notna().to_numpy()
    first = m["finished_on"][done].groupby(m["case_id"][done]).min()
    triaged = set(m["case_id"][done & (m["key"] == TRIAGE_MILESTONE).to_numpy()])
    out = case_columns(
        frames, rows, ["key", COUNTRY, PARTNER, "status", "start_date", "closed_on"]
    ).rename(columns={"key": "case"})
    ids = cases.index.to_numpy()[rows]
    out.insert(0, "case_id", ids)
    kinds = service_type(frames, ids)
    # A request with no service type yet is untriaged until its triage is done.
    untriaged = (kinds == UNSPECIFIED) & ~np.isin(ids, list(triaged))
    out.insert(5, SERVICE_TYPE, np.where(untriaged, UNTRIAGED, kinds))
    out["first_response_on"] = first.reindex(ids).to_numpy()
    completed = (out["status"] == CaseStatus.COMPLETED.value).to_numpy()
    start = day_array(out["start_date"])
    answered = day_array(out["first_response_on"])
    delivered = np.where(completed, day_array(out["closed_on"]), NAT)
    work = workdays(frames)
    calendars = codes_of(cases["calendar"])[rows]
    out["first_response_working_days"] = work.between(start, answered, calendars)
    out["first_response_calendar_days"] = calendar_days(start, answered)
    out["delivery_working_days"] = work.between(start, delivered, calendars)
    out["delivery_calendar_days"] = calendar_days(start, delivered)
    return out


def build_sme_service(frames: Frames, by: Sequence[str] = (COUNTRY, SERVICE_TYPE)) -> pd.DataFrame:
    """The shared SME support service: requests per country and service type.

    Columns: the `by` dimensions (any of country, partner, service_type), `requests`, `open`,
    `completed`, `cancelled` (declined or withdrawn), `responded` (a first milestone done),
    `median_first_response_working_days`, `p90_first_response_working_days`,
    `median_first_response_calendar_days` (start to the first milestone done),
    `median_delivery_working_days`, `p90_delivery_working_days`,
    `median_delivery_calendar_days` (start to completion, completed requests).
    """
    dims = dims_of(by, (COUNTRY, PARTNER, SERVICE_TYPE))
    requests = sme_requests(frames)
    groups = Grouping(group_keys(requests, dims))
    status = requests["status"]
    both, median = ("median", "p90"), ("median",)
    return groups.table(
        {
            "requests": groups.count(),
            "open": groups.count(is_open(status)),
            "completed": groups.count(status == CaseStatus.COMPLETED.value),
            "cancelled": groups.count(status == CaseStatus.CANCELLED.value),
            "responded": groups.count(requests["first_response_on"].notna()),
            **groups.stats(
                requests["first_response_working_days"], "first_response_working_days", both
            ),
            **groups.stats(
                requests["first_response_calendar_days"], "first_response_calendar_days", median
            ),
            **groups.stats(requests["delivery_working_days"], "delivery_working_days", both),
            **groups.stats(requests["delivery_calendar_days"], "delivery_calendar_days", median),
        }
    ).reset_index()
