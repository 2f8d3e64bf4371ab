"""Partner and contact imports from CSV and XLSX: all rows or none, every problem located."""

import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from openpyxl import Workbook
from sqlalchemy import text

from bridgebsr.bootstrap import Runtime
from bridgebsr.errors import InvalidInput
from bridgebsr.exchange.sheets import read_sheet
from bridgebsr.office.directory import (
    ImportReport,
    import_contacts,
    import_partners,
    list_contacts,
    list_partners,
    parse_contacts,
    parse_partners,
    zone_for,
)
from bridgebsr.rules.roles import case_role_holders
from bridgebsr.store.case_rows import contact_by_email
from bridgebsr.store.db import write_session

# Headers in a shuffled order and mixed case; a comma inside a name is safe with ';'.
PARTNERS = [
    ["Country", "NAME", "Kind", "CODE", "TimeZone", "Region"],
    ["DK", "Øresund Bio Partners", "Tech Transfer", "oresund", "", ""],
    [
        "DE",
        "Universität Greifswald",
        "university",
        "UNIGW",
        "Europe/Berlin",
        "Mecklenburg-Vorpommern",
    ],
    ["LV", "Latvijas biotehnoloģijas ļaudis", "PUBLIC_AUTHORITY", "lvbio", "", "Rīga"],
    ["LT", "Vilniaus gyvybės mokslų centras", "cluster", "VGMC", "Europe/Vilnius", ""],
    ["pl", "Instytut Biochemii, Żoliborz", "national contact point", "IBB-PAN", "", "Mazowieckie"],
]
IN_FILE_ORDER = ["ORESUND", "UNIGW", "LVBIO", "VGMC", "IBB-PAN"]
EXPECTED = [
    {
        "code": "IBB-PAN",
        "name": "Instytut Biochemii, Żoliborz",
        "kind": "national-contact-point",
        "country": "PL",
        "region": "Mazowieckie",
        "timezone": "Europe/Warsaw",
    },
    {
        "code": "LVBIO",
        "name": "Latvijas biotehnoloģijas ļaudis",
        "kind": "public-authority",
        "country": "LV",
        "region": "Rīga",
        "timezone": "Europe/Riga",
    },
    {
        "code": "ORESUND",
        "name": "Øresund Bio Partners",
        "kind": "tech-transfer",
        "country": "DK",
        "region": "Denmark",
        "timezone": "Europe/Copenhagen",
    },
    {
        "code": "UNIGW",
        "name": "Universität Greifswald",
        "kind": "university",
        "country": "DE",
        "region": "Mecklenburg-Vorpommern",
        "timezone": "Europe/Berlin",
    },
    {
        "code": "VGMC",
        "name": "Vilniaus gyvybės mokslų centras",
        "kind": "cluster",
        "country": "LT",
        "region": "Lithuania",
        "timezone": "Europe/Vilnius",
    },
]


def _csv(path: Path, rows: list[list[str]], *, delimiter: str = ";", bom: bool = True) -> Path:
    body = "\r\n".join(delimiter.join(row) for row in rows) + "\r\n"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + body.encode("utf-8"))
    return path


def _xlsx(path: Path, rows: list[list[Any]]) -> Path:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for row in rows:
        sheet.append([None if cell == "" else cell for cell in row])
    book.save(path)
    return path


def _partners(rt: Runtime, path: Path, *, dry_run: bool = False) -> ImportReport:
    with write_session(rt.engine) as session:
        return import_partners(session=session, path=path, dry_run=dry_run)


def _contacts(rt: Runtime, path: Path, *, dry_run: bool = False) -> ImportReport:
    with write_session(rt.engine) as session:
        return import_contacts(
            session=session,
            path=path,
            roles=rt.catalog.roles(),
            kinds=set(rt.catalog.templates),
            dry_run=dry_run,
        )


def _listed(rt: Runtime) -> list[dict[str, Any]]:
    with write_session(rt.engine) as session:
        return list_partners(session=session)


def _count(rt: Runtime, table: str) -> int:
    with rt.engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def _refusal(call: Any, *args: Any, **kwargs: Any) -> InvalidInput:
    with pytest.raises(InvalidInput) as refused:
        call(*args, **kwargs)
    return refused.value


# Partners


def test_partners_import_from_a_semicolon_csv_with_a_bom(rt: Runtime, tmp_path: Path) -> None:
    report = _partners(rt, _csv(tmp_path / "partners.csv", PARTNERS))
    assert (report.created, report.updated, report.unchanged) == (IN_FILE_ORDER, [], [])
    assert report.summary() == "partners: created 5, updated 0, unchanged 0"
    assert _listed(rt) == EXPECTED


def test_partner_names_come_back_byte_exact(rt: Runtime, tmp_path: Path) -> None:
    _partners(rt, _csv(tmp_path / "partners.csv", PARTNERS))
    with rt.engine.connect() as conn:
        names: dict[str, str] = dict(conn.execute(text("SELECT code, name FROM partners")).all())
    for code, name in (
        ("ORESUND", "Øresund Bio Partners"),
        ("UNIGW", "Universität Greifswald"),
        ("LVBIO", "Latvijas biotehnoloģijas ļaudis"),
        ("VGMC", "Vilniaus gyvybės mokslų centras"),
        ("IBB-PAN", "Instytut Biochemii, Żoliborz"),
    ):
        assert names[code].encode("utf-8") == name.encode("utf-8")
    assert names["ORESUND"].encode("utf-8")[:2] == b"\xc3\x98"  # Ø, NFC, no BOM left over


def test_a_comma_csv_without_bom_reads_the_same(rt: Runtime, tmp_path: Path) -> None:
    rows = [[cell.replace(",", "") for cell in row] for row in PARTNERS]
    _partners(rt, _csv(tmp_path / "partners.csv", rows, delimiter=",", bom=False))
    expected = [{**p, "name": p["name"].replace(",", "")} for p in EXPECTED]
    assert _listed(rt) == expected


def test_reimporting_the_same_file_changes_nothing(rt: Runtime, tmp_path: Path) -> None:
    path = _csv(tmp_path / "partners.csv", PARTNERS)
    _partners(rt, path)
    report = _partners(rt, path)
    assert (report.created, report.updated, report.unchanged) == ([], [], IN_FILE_ORDER)
    assert report.summary() == "partners: created 0, updated 0, unchanged 5"
    assert _listed(rt) == EXPECTED


def test_a_changed_row_updates_that_partner_only(rt: Runtime, tmp_path: Path) -> None:
    _partners(rt, _csv(tmp_path / "partners.csv", PARTNERS))
    changed = [row[:] for row in PARTNERS]
    changed[2][1] = "Universität Greifswald, Institut für Biochemie"
    changed[4][4] = ""  # VGMC: blank zone falls back to Lithuania's, the same as before
    report = _partners(rt, _csv(tmp_path / "changed.csv", changed))
    assert report.updated == ["UNIGW"]
    assert report.unchanged == ["ORESUND", "LVBIO", "VGMC", "IBB-PAN"]
    listed = {p["code"]: p for p in _listed(rt)}
    assert listed["UNIGW"]["name"] == "Universität Greifswald, Institut für Biochemie"
    assert _count(rt, "partners") == 5


def test_a_dry_run_reports_but_writes_nothing(rt: Runtime, tmp_path: Path) -> None:
    path = _csv(tmp_path / "partners.csv", PARTNERS)
    report = _partners(rt, path, dry_run=True)
    assert report.dry_run
    assert report.created == IN_FILE_ORDER
    assert report.summary() == "partners: would create 5, would update 0, unchanged 0"
    assert _count(rt, "partners") == 0

    _partners(rt, path)
    changed = [row[:] for row in PARTNERS]
    changed[1][1] = "Øresund Bio Partners ApS"
    report = _partners(rt, _csv(tmp_path / "changed.csv", changed), dry_run=True)
    assert (report.created, report.updated) == ([], ["ORESUND"])
    assert report.summary() == "partners: would create 0, would update 1, unchanged 4"
    assert _listed(rt) == EXPECTED


BAD_PARTNERS = [
    ["code", "name", "kind", "country", "region", "timezone"],
    ["GOOD", "Good Partner", "cluster", "DK", "", ""],
    ["BADC", "Bad Country", "cluster", "XX", "", ""],
    [],  # a blank line is skipped but still counted, so rows match the file's lines
    ["BADTZ", "", "cluster", "SE", "", "Mars/Olympus"],
    ["good", "Duplicate", "cluster", "FI", "", ""],
]
BAD_PARTNER_PROBLEMS = [
    "partners.csv: row 3, column D (country): "
    "'XX' is not an ISO 3166-1 alpha-2 country code (DK, SE, DE, ...)",
    "partners.csv: row 5, column B (name): empty; every row needs a value here",
    "partners.csv: row 5, column F (timezone): "
    "'Mars/Olympus' is not an IANA time zone (Europe/Riga, ...)",
    "partners.csv: row 6, column A (code): 'GOOD' also appears in row 2",
]


def test_bad_rows_are_all_named_and_nothing_is_written(rt: Runtime, tmp_path: Path) -> None:
    error = _refusal(_partners, rt, _csv(tmp_path / "partners.csv", BAD_PARTNERS))
    assert error.problems == BAD_PARTNER_PROBLEMS
    assert str(error) == (
        f"partners.csv: 4 problem(s), nothing imported; first: {BAD_PARTNER_PROBLEMS[0]}"
    )
    assert _count(rt, "partners") == 0


def test_bad_rows_leave_existing_partners_as_they_were(rt: Runtime, tmp_path: Path) -> None:
    _partners(rt, _csv(tmp_path / "partners.csv", PARTNERS))
    rows = [*BAD_PARTNERS, ["ORESUND", "Renamed", "cluster", "DK", "", ""]]
    error = _refusal(_partners, rt, _csv(tmp_path / "partners.csv", rows))
    assert error.problems == BAD_PARTNER_PROBLEMS
    assert _listed(rt) == EXPECTED


def test_bad_rows_in_a_dry_run_are_refused_the_same(rt: Runtime, tmp_path: Path) -> None:
    error = _refusal(_partners, rt, _csv(tmp_path / "partners.csv", BAD_PARTNERS), dry_run=True)
    assert error.problems == BAD_PARTNER_PROBLEMS


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("Tech Transfer", "tech-transfer"),
        ("PUBLIC_AUTHORITY", "public-authority"),
        ("tech_transfer", "tech-transfer"),
        ("Transnational-Collaboration", "transnational-collaboration"),
        ("SME", "sme"),
        ("national  contact point", "national-contact-point"),
    ],
)
def test_partner_kind_ignores_case_spaces_hyphens_and_underscores(
    rt: Runtime, tmp_path: Path, kind: str, expected: str
) -> None:
    rows = [["code", "name", "kind", "country"], ["P1", "Partner", kind, "SE"]]
    _partners(rt, _csv(tmp_path / "p.csv", rows))
    assert _listed(rt) == [
        {
            "code": "P1",
            "name": "Partner",
            "kind": expected,
            "country": "SE",
            "region": "Sweden",
            "timezone": "Europe/Stockholm",
        }
    ]


def test_an_unknown_kind_lists_the_known_ones(rt: Runtime, tmp_path: Path) -> None:
    rows = [["code", "name", "kind", "country"], ["P1", "Partner", "charity", "SE"]]
    error = _refusal(_partners, rt, _csv(tmp_path / "p.csv", rows))
    assert error.problems == [
        "p.csv: row 2, column C (kind): 'charity' is not a partner kind (cluster, "
        "public-authority, tech-transfer, national-contact-point, "
        "transnational-collaboration, university, sme, investor)"
    ]


def test_a_header_must_name_the_required_columns_and_no_others(rt: Runtime, tmp_path: Path) -> None:
    rows = [["code", "name", "colour", "country"], ["P1", "Partner", "teal", "SE"]]
    error = _refusal(_partners, rt, _csv(tmp_path / "p.csv", rows))
    assert str(error) == (
        "p.csv: row 1: missing column(s) kind; unknown column(s) colour; the header must "
        "name code, name, kind, country (optional: region, timezone)"
    )
    assert _count(rt, "partners") == 0


def test_xlsx_partners_import_the_same(rt: Runtime, tmp_path: Path) -> None:
    path = _xlsx(tmp_path / "partners.xlsx", PARTNERS)
    report = _partners(rt, path)
    assert report.created == IN_FILE_ORDER
    assert _listed(rt) == EXPECTED
    again = _partners(rt, path)
    assert again.unchanged == IN_FILE_ORDER


def test_bad_xlsx_rows_are_named_and_nothing_is_written(rt: Runtime, tmp_path: Path) -> None:
    rows = [row for row in BAD_PARTNERS if row]  # the sheet has no blank row
    error = _refusal(_partners, rt, _xlsx(tmp_path / "partners.xlsx", rows))
    assert error.problems == [
        "partners.xlsx: row 3, column D (country): "
        "'XX' is not an ISO 3166-1 alpha-2 country code (DK, SE, DE, ...)",
        "partners.xlsx: row 4, column B (name): empty; every row needs a value here",
        "partners.xlsx: row 4, column F (timezone): "
        "'Mars/Olympus' is not an IANA time zone (Europe/Riga, ...)",
        "partners.xlsx: row 5, column A (code): 'GOOD' also appears in row 2",
    ]
    assert _count(rt, "partners") == 0


def test_a_damaged_xlsx_is_refused(rt: Runtime, tmp_path: Path) -> None:
    path = tmp_path / "partners.xlsx"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    error = _refusal(_partners, rt, path)
    assert str(error).startswith(f"{path}: not a readable XLSX file (")


def test_non_utf8_bytes_are_refused_clearly(rt: Runtime, tmp_path: Path) -> None:
    path = tmp_path / "partners.csv"
    # "code,name,kind,country\n" is 23 bytes and "DK1," 4 more: Ø is byte 27 in Latin-1.
    path.write_bytes("code,name,kind,country\nDK1,Øresund,cluster,DK\n".encode("latin-1"))
    error = _refusal(_partners, rt, path)
    assert str(error) == (f"{path}: not UTF-8 (byte 27); save the file as 'CSV UTF-8' and retry")
    assert _count(rt, "partners") == 0


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("partners.ods", b"x", "unsupported file type '.ods'; give a .csv or .xlsx file"),
        ("partners.csv", b"", "the file is empty; the first row must name the columns"),
        ("partners.csv", b"\xef\xbb\xbf\r\n", "the file is empty"),
    ],
)
def test_unreadable_files_are_refused(
    rt: Runtime, tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    assert str(_refusal(_partners, rt, path)).startswith(f"{path}: {message}")


def test_a_missing_file_is_refused(rt: Runtime, tmp_path: Path) -> None:
    path = tmp_path / "nowhere.csv"
    assert str(_refusal(_partners, rt, path)) == f"{path}: no such file"


@pytest.mark.parametrize("zone", ["Europe", "Etc", "x" * 300, "a\x00b", "Europe/../UTC"])
def test_a_time_zone_that_is_no_zone_file_is_refused(zone: str) -> None:
    with pytest.raises(ValueError, match="is not an IANA time zone"):
        zone_for(zone, "DK")


def test_cells_longer_than_their_columns_are_named(tmp_path: Path) -> None:
    rows = [
        ["code", "name", "kind", "country", "region"],
        ["C" * 41, "n" * 201, "cluster", "DK", "r" * 121],
        ["C" * 40, "n" * 200, "cluster", "SE", "r" * 120],  # the longest that fit
    ]
    with pytest.raises(InvalidInput) as caught:
        parse_partners(read_sheet(_csv(tmp_path / "long.csv", rows)))
    assert caught.value.problems == [
        "long.csv: row 2, column A (code): 41 characters; at most 40 fit here",
        "long.csv: row 2, column B (name): 201 characters; at most 200 fit here",
        "long.csv: row 2, column E (region): 121 characters; at most 120 fit here",
    ]


def test_a_nul_character_is_refused_with_its_row_and_column(tmp_path: Path) -> None:
    path = tmp_path / "nul.csv"
    path.write_bytes(b"code,name,kind,country\nA,ok,cluster,DK\nB,x\x00y,cluster,SE\x00\n")
    with pytest.raises(InvalidInput) as caught:
        read_sheet(path)
    assert caught.value.problems == [
        "nul.csv: row 3, column B (name): contains a NUL character (\\x00); remove it",
        "nul.csv: row 3, column D (country): contains a NUL character (\\x00); remove it",
    ]
    assert str(caught.value).startswith("nul.csv: 2 problem(s), nothing imported; first: ")


# Contacts


CONTACTS = [
    ["Email", "Name", "Partner", "Role", "Country", "Timezone"],
    [
        "Mette.Sorensen@ScanBalt.Example",
        "Mette Højgaard Sørensen",
        "oresund",
        "coordinator",
        "DK",
        "",
    ],
    [
        "jurgen@uni-greifswald.example",
        "Jürgen Ölschläger",
        "UNIGW",
        "Pilot-Lead",
        "DE",
        "Europe/Berlin",
    ],
    ["zaneta@ibb.example", "Żaneta Łężak", "IBB-PAN", "sme-advisor", "PL", ""],
]
DEFAULT_PREFERENCES = {
    "channels": "email,chat",
    "delivery": "immediate",
    "quiet_hours": "21:00-07:00",
    "daily_cap": 20,
}
EXPECTED_CONTACTS = [
    {
        "email": "jurgen@uni-greifswald.example",
        "name": "Jürgen Ölschläger",
        "role": "pilot-lead",
        "country": "DE",
        "timezone": "Europe/Berlin",
        "partner": "UNIGW",
        "leads": "",
    },
    {
        "email": "mette.sorensen@scanbalt.example",
        "name": "Mette Højgaard Sørensen",
        "role": "coordinator",
        "country": "DK",
        "timezone": "Europe/Copenhagen",
        "partner": "ORESUND",
        "leads": "",
    },
    {
        "email": "zaneta@ibb.example",
        "name": "Żaneta Łężak",
        "role": "sme-advisor",
        "country": "PL",
        "timezone": "Europe/Warsaw",
        "partner": "IBB-PAN",
        "leads": "",
    },
]


@pytest.fixture
def with_partners(rt: Runtime, tmp_path: Path) -> Runtime:
    """`rt` with the five test partners imported."""
    _partners(rt, _csv(tmp_path / "partners.csv", PARTNERS))
    return rt


def _listed_contacts(rt: Runtime) -> list[dict[str, Any]]:
    """The listing without the notification preferences, which must be the defaults."""
    with write_session(rt.engine) as session:
        rows = list_contacts(session=session)
    for row in rows:
        assert {k: row.pop(k) for k in DEFAULT_PREFERENCES} == DEFAULT_PREFERENCES
    return rows


def test_contacts_import_with_lower_case_emails(with_partners: Runtime, tmp_path: Path) -> None:
    report = _contacts(with_partners, _csv(tmp_path / "contacts.csv", CONTACTS))
    assert report.created == [
        "mette.sorensen@scanbalt.example",
        "jurgen@uni-greifswald.example",
        "zaneta@ibb.example",
    ]
    assert _listed_contacts(with_partners) == EXPECTED_CONTACTS
    again = _contacts(with_partners, _csv(tmp_path / "contacts.csv", CONTACTS))
    assert (again.created, again.updated, len(again.unchanged)) == ([], [], 3)


def test_contacts_dry_run_writes_nothing(with_partners: Runtime, tmp_path: Path) -> None:
    report = _contacts(with_partners, _csv(tmp_path / "contacts.csv", CONTACTS), dry_run=True)
    assert report.summary() == "contacts: would create 3, would update 0, unchanged 0"
    assert _count(with_partners, "contacts") == 0


def test_xlsx_contacts_import_the_same(with_partners: Runtime, tmp_path: Path) -> None:
    _contacts(with_partners, _xlsx(tmp_path / "contacts.xlsx", CONTACTS))
    assert _listed_contacts(with_partners) == EXPECTED_CONTACTS


def test_unknown_partner_and_role_are_refused_with_row_and_column(
    with_partners: Runtime, tmp_path: Path
) -> None:
    rows = [
        ["email", "name", "partner", "role", "country"],
        ["ok@example.org", "Ok", "ORESUND", "coordinator", "DK"],
        ["who@example.org", "Who", "NOPE", "coordinator", "DK"],
        ["wiz@example.org", "Wiz", "ORESUND", "wizard", "DK"],
        ["OK@Example.org", "Ok Again", "UNIGW", "coordinator", "DE"],
    ]
    error = _refusal(_contacts, with_partners, _csv(tmp_path / "contacts.csv", rows))
    assert len(error.problems) == 3
    assert error.problems[0] == (
        "contacts.csv: row 3, column C (partner): no partner 'NOPE'; import partners first"
    )
    assert error.problems[1].startswith(
        "contacts.csv: row 4, column D (role): 'wizard' is not a role the templates name ("
    )
    assert "coordinator" in error.problems[1]
    assert error.problems[2] == (
        "contacts.csv: row 5, column A (email): 'ok@example.org' also appears in row 2"
    )
    assert _count(with_partners, "contacts") == 0


def test_a_bad_email_is_refused(with_partners: Runtime, tmp_path: Path) -> None:
    rows = [
        ["email", "name", "partner", "role", "country"],
        ["not-an-address", "Nobody", "ORESUND", "coordinator", "DK"],
    ]
    error = _refusal(_contacts, with_partners, _csv(tmp_path / "contacts.csv", rows))
    assert len(error.problems) == 1
    assert error.problems[0].startswith(
        "contacts.csv: row 2, column A (email): 'not-an-address' is not an email address: "
    )


def test_two_invalid_emails_are_not_reported_as_duplicates(tmp_path: Path) -> None:
    rows = [
        ["email", "name", "partner", "role", "country"],
        ["bad", "A", "P1", "coordinator", "DK"],
        ["worse", "B", "P1", "coordinator", "DK"],
    ]
    sheet = read_sheet(_csv(tmp_path / "contacts.csv", rows))
    with pytest.raises(InvalidInput) as refused:
        parse_contacts(sheet, {"P1": 1}, {"coordinator"})
    assert len(refused.value.problems) == 2
    assert not any("None" in line for line in refused.value.problems)


def test_contacts_bring_their_notification_preferences(
    with_partners: Runtime, tmp_path: Path
) -> None:
    header = [*CONTACTS[0], "Channels", "Delivery", "Quiet_Hours", "Daily_Cap"]
    rows = [
        header,
        [*CONTACTS[1], "chat", "Digest", "22:00 - 06:30", "5"],
        [*CONTACTS[2], "", "", "none", ""],  # blanks keep the defaults
    ]
    _contacts(with_partners, _csv(tmp_path / "prefs.csv", rows))
    with write_session(with_partners.engine) as session:
        listed = {r["email"]: r for r in list_contacts(session=session)}
    first, second = (listed[row[0].lower()] for row in rows[1:])
    assert (first["channels"], first["delivery"], first["quiet_hours"], first["daily_cap"]) == (
        "chat",
        "digest",
        "22:00-06:30",
        5,
    )
    assert (second["channels"], second["quiet_hours"], second["daily_cap"]) == (
        "email,chat",
        "none",
        20,
    )


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("Channels", "fax", "'fax' is not a list of channels"),
        ("Delivery", "weekly", "'weekly' is not a delivery mode"),
        ("Quiet_Hours", "22-6", "'22-6' is not quiet hours"),
        ("Quiet_Hours", "07:00-07:00", "'07:00-07:00' starts and ends at the same time"),
        ("Daily_Cap", "-3", "'-3' is not a daily cap"),
        ("Daily_Cap", "2147483648", "'2147483648' is not a daily cap (a whole number 0-2147483647"),
    ],
)
def test_a_bad_preference_names_its_row_and_column_and_imports_nothing(
    with_partners: Runtime, tmp_path: Path, column: str, value: str, message: str
) -> None:
    rows = [[*CONTACTS[0], column], [*CONTACTS[1], value]]
    with pytest.raises(InvalidInput) as caught:
        _contacts(with_partners, _csv(tmp_path / "bad.csv", rows))
    assert f"row 2, column G ({column.lower()}): {message}" in str(caught.value)
    with write_session(with_partners.engine) as session:
        assert list_contacts(session=session) == []


def test_a_control_character_in_a_name_is_refused_with_its_row_and_column(
    tmp_path: Path,
) -> None:
    partners = [
        ["code", "name", "kind", "country"],
        ["OK", "Fine Partner", "cluster", "DK"],
        ["BREAK", "Two\nLines", "cluster", "DK"],
    ]
    with pytest.raises(InvalidInput) as caught:
        parse_partners(read_sheet(_xlsx(tmp_path / "partners.xlsx", partners)))
    assert caught.value.problems == [
        "partners.xlsx: row 3, column B (name): contains a control character (\\n); "
        "a name is one line of text"
    ]
    contacts = [CONTACTS[0], [CONTACTS[1][0], "Mette \x1b[2J", *CONTACTS[1][2:]]]
    with pytest.raises(InvalidInput) as caught:
        parse_contacts(
            read_sheet(_csv(tmp_path / "contacts.csv", contacts)), {"ORESUND": 1}, {"coordinator"}
        )
    assert caught.value.problems == [
        "contacts.csv: row 2, column B (name): contains a control character (\\x1b); "
        "a name is one line of text"
    ]


def test_an_address_typed_in_decomposed_unicode_finds_the_same_person(
    with_partners: Runtime, tmp_path: Path
) -> None:
    composed = "sören.østergård@scanbalt.example"
    decomposed = unicodedata.normalize("NFD", composed)
    assert decomposed != composed
    row = [decomposed, "Søren Østergård", "ORESUND", "coordinator", "DK", ""]
    report = _contacts(with_partners, _csv(tmp_path / "c.csv", [CONTACTS[0], row]))
    assert report.created == [composed]  # the import keeps the composed form
    with write_session(with_partners.engine) as session:
        conn = session.connection()
        for typed in (decomposed, decomposed.upper(), composed):
            assert contact_by_email(conn, typed).email == composed


# Pilot leads, and who holds a role for a case


def _leads(rt: Runtime) -> dict[str, str]:
    with write_session(rt.engine) as session:
        return {r["email"]: r["leads"] for r in list_contacts(session=session)}


def test_contacts_name_the_pilot_kinds_they_lead(with_partners: Runtime, tmp_path: Path) -> None:
    mette = "mette.sorensen@scanbalt.example"
    rows = [
        [*CONTACTS[0], "Leads"],
        [*CONTACTS[1], "Shared-SME-Service, ip-integration"],
        [*CONTACTS[2], ""],
        [*CONTACTS[3], "life-science-foundation"],
    ]
    _contacts(with_partners, _csv(tmp_path / "leads.csv", rows))
    assert _leads(with_partners) == {
        mette: "ip-integration,shared-sme-service",
        "jurgen@uni-greifswald.example": "",
        "zaneta@ibb.example": "life-science-foundation",
    }
    # A file without the column leaves what each one leads; a blank cell: they lead none.
    again = _contacts(with_partners, _csv(tmp_path / "plain.csv", CONTACTS))
    assert len(again.unchanged) == 3 and _leads(with_partners)[mette] != ""
    _contacts(with_partners, _csv(tmp_path / "none.csv", [rows[0], [*CONTACTS[1], ""]]))
    assert _leads(with_partners)[mette] == ""


def test_a_kind_no_template_defines_is_refused_with_row_and_column(
    with_partners: Runtime, tmp_path: Path
) -> None:
    rows = [[*CONTACTS[0], "leads"], [*CONTACTS[1], "ip-integration mentoring-exchange"]]
    error = _refusal(_contacts, with_partners, _csv(tmp_path / "contacts.csv", rows))
    assert error.problems == [
        "contacts.csv: row 2, column G (leads): 'mentoring-exchange' is not a pilot kind of "
        "the catalog ("
        "cluster-mentoring, cluster-strategy-analysis, council-review-round, "
        "innovation-action-plan, ip-bottleneck-analysis, ip-integration, "
        "life-science-foundation, shared-sme-service, sme-financing-analysis)"
    ]
    assert _count(with_partners, "contacts") == 0


@dataclass(frozen=True)
class _Someone:
    name: str
    partner_id: int


def test_role_holders_for_a_case_are_its_lead_partners_else_its_pilots_leads() -> None:
    here, there, lead = _Someone("here", 1), _Someone("there", 2), _Someone("lead", 3)
    assert case_role_holders([there, here], 1, [lead]) == [here]
    assert case_role_holders([there], 1, [lead]) == [lead]  # never everyone with the role
    assert case_role_holders([there], 1, []) == []
    assert case_role_holders([], 1, [lead]) == [lead]
