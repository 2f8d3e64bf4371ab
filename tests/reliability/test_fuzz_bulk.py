"""Hostile case-import files (`bridgebsr case import`): the bulk importer either opens the cases
or refuses with InvalidInput, never another exception, and a refusal (or a dry run) leaves
every row of the store as it was.

The cases sheet and the progress sheet are generated together (refs, milestone keys, owners
and dates drawn from pools that often match, so the fuzzer gets past validation and into the
planning and writing code), as two CSV files, a CSV and an XLSX, or one workbook with both
sheets. Each example imports into a private copy of a store holding the consortium.
"""

from pathlib import Path

from hypothesis import Phase, event, example, given, reject, settings
from hypothesis import strategies as st

from bridgebsr.bootstrap import build_runtime
from bridgebsr.errors import InvalidInput
from bridgebsr.exchange.catalog import load_catalog
from bridgebsr.office import bulk
from bridgebsr.settings import Settings
from bridgebsr.store.db import write_session
from tests.conftest import at
from tests.reliability.conftest import Pristine, fuzz, scratch, store_rows
from tests.reliability.hostile import Spec, Table, csv_bytes, tables, xlsx_bytes, xlsx_tables

NOW = at("2026-04-15")
CATALOG = load_catalog()
REFS = ("r{i}", "SME request {i}", "r1 ", "R1", "r0")
# Milestones that wait for nothing (progress on them can be valid) and some that wait.
FIRST_MILESTONES = tuple(
    m.key for t in CATALOG.templates.values() for m in t.milestones if not m.after
)
MILESTONES = (*FIRST_MILESTONES, "needs-interview", "triage-decision", "council-approval")
OWNERS = (
    "oskar.lundback@lundback-dx.example",
    "karin.astrom@mva.example",
    "katrin.schaefer@bioconvalley.example",
    "KARIN.ASTROM@MVA.EXAMPLE",
    "nobody@nowhere.example",
)
DAYS = ("2026-03-02", "02.03.2026", "2026-03-10", "2026-04-16", "2026-3-2", "", "9999-12-31")
CASES = Spec(
    required=("ref", "kind", "title", "owner", "start"),
    optional=("partner", "target"),
    valid={
        "ref": REFS[:2],
        "kind": tuple(CATALOG.templates),
        "title": ("SME support request", "Ærø Bio: IP audit; phase 2", "=cmd|' /C calc'!A0"),
        "owner": OWNERS[:3],
        "start": DAYS[:3],
        "partner": ("MVA", "bcv", ""),
        "target": ("2026-12-31", "31.12.2027", ""),
    },
    odd={
        "ref": REFS[2:],
        "kind": ("Shared-SME-Service", "mentoring"),
        "title": ("", "t" * 301),
        "owner": OWNERS[3:],
        "start": DAYS[3:],
        "partner": ("NOPE",),
        "target": ("2026-01-01", "2026-02-30"),
    },
)
PROGRESS = Spec(
    required=("case", "milestone", "status"),
    optional=("started_on", "finished_on", "by"),
    valid={
        "case": ("r0", "r1", "r2", "SME request 1"),
        "milestone": FIRST_MILESTONES,
        "status": ("done", "in_progress", "waived", "Done", "in progress"),
        "started_on": DAYS[:3],
        "finished_on": ("2026-03-20", "2026-04-01", "2026-04-15", ""),
        "by": (*OWNERS[:2], ""),
    },
    odd={
        "case": REFS[2:4],
        "milestone": MILESTONES,
        "status": ("started", "blocked"),
        "started_on": DAYS[3:],
        "finished_on": ("2026-04-16", "2026-02-01"),
        "by": ("not an email",),
    },
)


def known_bug(exc: BaseException) -> str | None:
    """The reason of a known bug `exc` is an instance of, else None (none is known now)."""
    return None


@st.composite
def inputs(draw: st.DrawFn) -> dict[str, bytes]:
    """File name -> content: cases and maybe progress, as CSV, XLSX or one workbook."""
    cases: Table = draw(tables(CASES, max_rows=5))
    progress: Table | None = draw(st.none() | tables(PROGRESS, max_rows=6))
    shape = draw(st.sampled_from(["csv", "csv", "xlsx", "workbook"]))
    if shape == "workbook":
        sheets = {"cases": draw(xlsx_tables(cases))}
        if progress is not None:
            sheets["progress"] = draw(xlsx_tables(progress))
        return {"cases.xlsx": xlsx_bytes(sheets)}

    def as_csv(table: Table) -> bytes:
        return csv_bytes(
            table,
            delimiter=draw(st.sampled_from([",", ";"])),
            quoting=0,
            newline="\r\n",
            bom=draw(st.booleans()),
        )

    files = {}
    if shape == "xlsx":
        files["cases.xlsx"] = xlsx_bytes({"Sheet": draw(xlsx_tables(cases))})
    else:
        files["cases.csv"] = as_csv(cases)
    if progress is not None:
        files["progress.csv"] = as_csv(progress)
    return files


def _import(store: Pristine, root: Path, files: dict[str, bytes], dry_run: bool) -> object:
    """Run the import on a fresh copy of `store`; checks that nothing is written unless the
    import succeeded for real, and that what it reports is in the store."""
    with scratch(root) as folder:
        home = store.copy(folder)
        for name, data in files.items():
            (folder / name).write_bytes(data)
        cases = folder / next(n for n in files if n.startswith("cases"))
        progress = folder / "progress.csv" if "progress.csv" in files else None
        db = home / "bridgebsr.db"
        before = store_rows(db)
        rt = build_runtime(Settings(home=home, database_url=f"sqlite:///{db}"))
        outcome: object
        try:
            with write_session(rt.engine) as session:
                outcome = bulk.import_cases(
                    session=session,
                    catalog=CATALOG,
                    cases=cases,
                    progress=progress,
                    now=NOW,
                    dry_run=dry_run,
                )
        except Exception as exc:
            outcome = exc
        finally:
            rt.engine.dispose()
        after = store_rows(db)
    if dry_run or isinstance(outcome, Exception):
        assert after == before, f"the store changed: {outcome!r}"
        return outcome
    assert isinstance(outcome, bulk.BulkReport)
    new_cases = len(after["cases"]) - len(before["cases"])
    assert new_cases == len(outcome.created), "the report names every case written"
    keys = {row[1] for row in after["cases"]}
    assert {key for _, key in outcome.created} <= keys
    return outcome


def _judge(outcome: object, set_aside_known: bool = True) -> None:
    if isinstance(outcome, bulk.BulkReport):
        event("opened cases" if outcome.created else "opened nothing")
        return
    if isinstance(outcome, InvalidInput):
        event("refused")
        assert str(outcome).strip()
        return
    assert isinstance(outcome, Exception)
    if set_aside_known and known_bug(outcome):
        event(f"known bug: {type(outcome).__name__}")
        reject()
    raise outcome


@fuzz(quick=60)
@given(files=inputs(), dry_run=st.booleans())
def test_a_case_import_opens_everything_or_nothing(
    consortium_store: Pristine, scratch_root: Path, files: dict[str, bytes], dry_run: bool
) -> None:
    _judge(_import(consortium_store, scratch_root, files, dry_run))


CASES_HEADER = b"ref,kind,title,owner,start,target\n"
PROGRESS_HEADER = b"case,milestone,status,started_on,finished_on\n"


@settings(phases=[Phase.explicit], database=None, deadline=None)
@example(
    files={
        "cases.csv": CASES_HEADER
        + b"r1,shared-sme-service,T,karin.astrom@mva.example,9999-12-20,\n"
    },
    where="row 2, column E (start)",
)
@example(
    files={
        "cases.csv": CASES_HEADER
        + b"r1,shared-sme-service,T,karin.astrom@mva.example,0001-01-01,\n"
    },
    where="row 2, column E (start)",
)
@example(
    files={
        "cases.csv": CASES_HEADER
        + b"r1,shared-sme-service,T,karin.astrom@mva.example,2026-03-02,31.12.9999\n"
    },
    where="row 2, column F (target)",
)
@example(
    files={
        "cases.csv": CASES_HEADER
        + b"r1,shared-sme-service,T,karin.astrom@mva.example,2026-03-02,\n",
        "progress.csv": PROGRESS_HEADER + b"r1,request-intake,done,,1899-12-31\n",
    },
    where="row 2, column E (finished_on)",
)
@given(files=st.just({"cases.csv": b""}), where=st.just(""))
def test_a_date_at_the_ends_of_the_calendar_is_refused_with_its_place(
    consortium_store: Pristine, scratch_root: Path, files: dict[str, bytes], where: str
) -> None:
    outcome = _import(consortium_store, scratch_root, files, False)
    _judge(outcome, set_aside_known=False)
    assert isinstance(outcome, InvalidInput)
    assert where in str(outcome) and "outside the years 1900-2999" in str(outcome)


@settings(phases=[Phase.explicit], database=None, deadline=None)
@example(
    files={
        "cases.csv": CASES_HEADER
        + b"r1,shared-sme-service,a\x00b,karin.astrom@mva.example,2026-03-02,\n"
    },
    where="cases.csv: row 2, column C (title)",
)
@example(
    files={
        "cases.csv": CASES_HEADER
        + b"r1,shared-sme-service,T,karin.astrom@mva.example,2026-03-02,\n",
        "progress.csv": PROGRESS_HEADER + b"r1,request-intake,done,,2026-03-03\x00\n",
    },
    where="progress.csv: row 2, column E (finished_on)",
)
@given(files=st.just({"cases.csv": b""}), where=st.just(""))
def test_a_nul_character_is_refused_with_its_place(
    consortium_store: Pristine, scratch_root: Path, files: dict[str, bytes], where: str
) -> None:
    outcome = _import(consortium_store, scratch_root, files, False)
    _judge(outcome, set_aside_known=False)
    assert isinstance(outcome, InvalidInput)
    assert where in str(outcome) and "NUL" in str(outcome)
