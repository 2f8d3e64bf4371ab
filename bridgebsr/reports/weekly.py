"""The weekly report's versions as files in memory, for `office.weekly` to store and send: the
whole portfolio and each partner's version (the cases it leads: `portfolio.scoped`), each from
the same load of the store, as the summary (`portfolio.summary_html`, an email's body), the
HTML page and the XLSX workbook of the report writers."""

import tempfile
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from sqlalchemy import Engine

from bridgebsr.office.weekly import Version
from bridgebsr.reports import kpis, portfolio, sheets
from bridgebsr.rules.weekly import WHOLE


def render(engine: Engine, day: date, scopes: Sequence[str]) -> list[Version]:
    """The versions `scopes` names (`WHOLE`, or a partner's code) as of `day`."""
    frames = kpis.load(engine, as_of=day)
    gantts: dict[str, str] = {}  # a case's chart is the same in every version: drawn once
    out = []
    with tempfile.TemporaryDirectory(prefix="bridgebsr-weekly-") as folder:
        for scope in scopes:
            built = portfolio.build(
                engine, as_of=day, partner=None if scope == WHOLE else scope, frames=frames
            )
            page = portfolio.write_html(built, Path(folder) / "page.html", gantts)[0]
            book = sheets.write_xlsx(built, Path(folder) / "book.xlsx")[0]
            files = {
                "summary": portfolio.summary_html(built).encode("utf-8"),
                "page": page.read_bytes(),
                "workbook": book.read_bytes(),
            }
            out.append(Version(scope=scope, files=files))
    return out
