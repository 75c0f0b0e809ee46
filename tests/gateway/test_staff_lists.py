# ruff: noqa: RUF001  (Cyrillic names in the test data)
"""Respondent lists: strict CSV validation, the import report, re-imports, and coverage after real syncs."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from gateway.staff.db import connect_staff_db
from gateway.staff.errors import ListFileRejected
from gateway.staff.lists import parse_list_csv
from tablet.generator import KindMix, generate_sheets, tablet_profile

from .harness import World, now_ms, post_batch
from .staff_browser import (
    LIST_HEADER,
    StaffClient,
    StaffGateway,
    list_csv,
    signed_in,
    start_staff_gateway,
    summary,
    surname,
    upload,
)

HEADER = LIST_HEADER
LIMITS = {"max_bytes": 1 << 20, "max_rows": 1000}


def parse(text: str):
    return parse_list_csv(text.encode("utf-8"), **LIMITS)


def test_rows_are_validated_one_by_one_and_reported_with_line_numbers() -> None:
    text = HEADER + (
        "BL-000001,BL-000001/00001,2026-09-20,Иванов,Пётр,Ильич,1950-01-01,Алмалинский район\n"  # 2 ok
        "B-1,1,2026-09-20,Иванов,Пётр,,1950-01-01,\n"  # 3
        "BL-000001,SI-000002/00002,2026-09-20,Иванов,Пётр,,1950-01-01,Алмалинский район\n"  # 4
        "BL-000001,3,2026-13-01,Иванов,Пётр,,1950-01-01,Алмалинский район\n"  # 5
        "BL-000001,4,2026-09-20,Иванов,Пётр,,2027-01-01,Алмалинский район\n"  # 6
        "BL-000001,5,2026-09-20,Иван0в,Пётр,,1950-01-01,Алмалинский район\n"  # 7
        "BL-000001,6,2026-09-20,Иванов,,,1950-01-01,Алмалинский район\n"  # 8
        "BL-000001,7,2026-09-20,Иванов\n"  # 9
        "BL-000001,00001,2026-09-20,Петров,Иван,,1960-05-05,Алмалинский район\n"  # 10 duplicate of line 2
        "BL-000001,8,2026-09-21,Петров,Иван,,1960-05-05,Алмалинский район\n"  # 11 other list date
        'BL-000001,9,2026-09-20,"Ива\nнов",Пётр,,1950-01-01,Алмалинский район\n'  # 12-13 newline in a name
        "\n"  # 14 blank: skipped
        "BL-000001,10,2026-09-20,O'Brien-Смит,Анна Мария,,1990-12-31,Алмалинский район\n"  # 15 ok
        "BL-000001,11,2026-09-20,Смит,Анна,,1990-12-31,Другой район\n"  # 16 other district
        "BL-000001,0,2026-09-20,Смит,Анна,,1990-12-31,Алмалинский район\n"  # 17 entry 0
    )
    parsed = parse(text)
    assert [(r.line, r.entry_id) for r in parsed.rows] == [(2, "BL-000001/00001"), (15, "BL-000001/00010")]
    assert [(r.line, r.column) for r in parsed.rejected] == [
        (3, "institution_code"),
        (4, "entry_id"),
        (5, "list_date"),
        (6, "birth_date"),
        (7, "surname"),
        (8, "given_name"),
        (9, None),
        (10, "entry_id"),
        (11, "list_date"),
        (12, "surname"),
        (16, "district"),
        (17, "entry_id"),
    ]
    assert parsed.total_rows == 14


def test_semicolons_and_a_byte_order_mark_are_accepted() -> None:
    text = (
        "\ufeffinstitution_code;entry_id;list_date;surname;given_name;birth_date\n"
        "DD-000003;12;2026-09-01;Ким;Ли;2012-03-04\n"
    )
    parsed = parse(text)
    assert [r.entry_id for r in parsed.rows] == ["DD-000003/00012"] and parsed.rejected == ()


@pytest.mark.parametrize(
    ("case", "data", "message"),
    [
        ("not utf-8", HEADER.encode() + "BL-000001,1,2026-09-20,Иванов".encode("cp1251"), "not UTF-8"),
        ("unknown column", b"institution_code,entry_id,list_date,surname,given_name,birth_date,nickname\n", "unknown"),
        ("missing column", b"institution_code,entry_id,list_date,surname,given_name\n", "missing column"),
        ("repeated column", b"institution_code,entry_id,list_date,surname,given_name,birth_date,surname\n", "twice"),
        ("empty", b"  \n", "empty"),
        ("too many rows", (HEADER + "BL-000001,1,2026-09-20,А,Б,,1950-01-01,\n" * 1001).encode(), "more than 1000"),
        ("too large", HEADER.encode() + b"x" * (1 << 20), "larger than"),
        ("broken quoting", (HEADER + 'BL-000001,1,2026-09-20,"Ива"нов,Пётр,,1950-01-01,\n').encode(), "malformed CSV"),
    ],
)
def test_unusable_files_are_refused_whole(case: str, data: bytes, message: str) -> None:
    with pytest.raises(ListFileRejected, match=message):
        parse_list_csv(data, **LIMITS)


@pytest.fixture
async def gw(world: World, tmp_path: Path, staff_database: str) -> AsyncIterator[StaffGateway]:
    gateway = await start_staff_gateway(world, tmp_path, database=staff_database)
    yield gateway
    await gateway.stop()


@pytest.fixture
async def admin(gw: StaffGateway) -> AsyncIterator[StaffClient]:
    async with signed_in(gw, "admin") as c:
        yield c


async def test_import_report_lists_rejected_rows_and_imports_the_rest(gw: StaffGateway, admin) -> None:
    data = list_csv("SI-000010", range(1, 6)) + "SI-000010,6,2026-09-20,Ким,Ли,,2030-01-01,Медеуский район\n".encode()
    status, html = await upload(admin, data, name="school-list.csv")
    assert status == 200
    assert "6 rows read, 5 imported, 1 rejected." in html
    assert '<td class="num">7</td><td>birth_date</td>' in html  # line 7 is the bad row
    assert "Import report: school-list.csv" in html
    assert gw.staff_rows("SELECT institution_code, list_date, entry_count FROM respondent_lists") == [
        ("SI-000010", "2026-09-20", 5)
    ]


async def test_reimport_replaces_same_or_newer_lists_and_refuses_older(gw: StaffGateway, admin) -> None:
    assert (await upload(admin, list_csv("CS-000020", range(1, 9))))[0] == 200
    status, html = await upload(admin, list_csv("CS-000020", range(1, 4)))
    assert status == 200 and "3 imported" in html
    assert gw.staff_rows("SELECT count(*) FROM respondent_entries") == [(3,)]
    status, html = await upload(admin, list_csv("CS-000020", range(1, 3), list_date="2026-09-01"))
    assert status == 400 and "newer than 2026-09-01" in html
    assert gw.staff_rows("SELECT count(*) FROM respondent_entries") == [(3,)]
    status, html = await upload(admin, list_csv("CS-000020", range(1, 5), list_date="2026-09-25"))
    assert status == 200 and "<td>2026-09-20</td>" in html  # the replaced list's date is reported
    assert gw.staff_rows("SELECT list_date, entry_count FROM respondent_lists") == [("2026-09-25", 4)]



async def test_coverage_counts_sheets_synced_through_the_gateway(world: World, gw: StaffGateway, admin) -> None:
    mix = KindMix.only(hospital=1)
    code = tablet_profile(7, "TAB-0001", mix).institutions["hospital"].code
    # the list holds entries 2..11; the tablet answers entries 1..4 (entry 1 is not on the list)
    assert (await upload(admin, list_csv(code, range(2, 12))))[0] == 200
    assert (await summary(admin))["coverage"]["institutions"][code] == [0, 10]
    sheets = generate_sheets(7, 4, device_id="TAB-0001", mix=mix)
    assert [s["respondent_list_entry"] for s in sheets] == [f"{code}/{n:05d}" for n in range(1, 5)]
    households = generate_sheets(9, 3, device_id="TAB-0002", mix=KindMix.only(household=1))
    async with aiohttp.ClientSession() as s:
        status, _ = await post_batch(s, gw, world.batch("TAB-0001", 1, sheets), world.tablets["TAB-0001"])
        assert status == 200
        status, _ = await post_batch(s, gw, world.batch("TAB-0002", 1, households), world.tablets["TAB-0002"])
        assert status == 200
    answer = await summary(admin)
    assert answer["coverage"] == {
        "listed": 10,
        "enumerated": 3,
        "institutions": {code: [3, 10]},
        "persons": 4,
        "review_open": 0,
    }
    assert answer["sheets"] == 7

    status, body, resp = await admin.get("/staff/export/coverage.csv")
    assert status == 200 and resp.content_type == "text/csv"
    rows = {(r["level"], r["key"]): r for r in csv.DictReader(io.StringIO(body))}
    assert rows[("institution", code)] | {} == {
        "level": "institution",
        "key": code,
        "district": "Медеуский район",
        "region": rows[("institution", code)]["region"],
        "list_date": "2026-09-20",
        "institutions": "1",
        "listed": "10",
        "enumerated": "3",
        "off_list": "1",
        "coverage": "0.3000",
        "persons": "4",
        "enumerated_online": "0",
        "interviewed": str(sum(s["source"] == "interview" for s in sheets)),
        "administration_records": str(sum(s["source"] == "administration_records" for s in sheets)),
        "review_open": "0",
        "additions": "0",
    }
    assert rows[("institution", code)]["region"].startswith("KZ-")
    assert rows[("district", "Медеуский район")]["enumerated"] == "3"
    assert rows[("overall", "overall")]["listed"] == "10"

    status, html, _ = await admin.get(f"/staff/missing?institution={code}")
    assert status == 200 and "7 listed respondents have no sheet" in html
    assert surname(5) in html and surname(11) in html
    assert surname(2) not in html and surname(4) not in html
    assert gw.staff_rows("SELECT action FROM audit WHERE action LIKE 'missing%' OR action LIKE 'export%'") == [
        ("export.coverage",),
        ("missing.viewed",),
    ]


FORMULA_DISTRICTS = [
    "Almaty;=cmd|' /C calc'!A0",
    "Almaty,=cmd|' /C calc'!A0",
    '=HYPERLINK("http://evil.example")',
    "+7 777",
    "-2+3",
    "@SUM(A1)",
    "Almaty; +cmd",
    "Almaty;'=cmd",
    'Алматы,"=1+1"',
    "Almaty;＝cmd",
]


def _csv_line(delimiter: str, fields: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="\n").writerow(fields)
    return out.getvalue()


@pytest.mark.parametrize("delimiter", [",", ";"])
@pytest.mark.parametrize("district", FORMULA_DISTRICTS)
def test_districts_that_a_spreadsheet_could_run_are_refused_on_import(delimiter: str, district: str) -> None:
    """Finding 4: a district that starts a formula after any separator never enters a list."""
    header = ["institution_code", "entry_id", "list_date", "surname", "given_name", "birth_date", "district"]
    text = _csv_line(delimiter, header) + _csv_line(
        delimiter, ["BL-000001", "1", "2026-09-20", "Иванов", "Пётр", "1950-01-01", district]
    )
    parsed = parse(text)
    assert parsed.rows == ()
    assert [(r.line, r.column) for r in parsed.rejected] == [(2, "district")]
    assert "formula" in parsed.rejected[0].reason


@pytest.mark.parametrize("district", ["Медеуский район", "Алматы-1", "район им. Абая", "Almaty, Medeu"])
def test_ordinary_districts_still_import(district: str) -> None:
    header = ["institution_code", "entry_id", "list_date", "surname", "given_name", "birth_date", "district"]
    parsed = parse(
        _csv_line(",", header) + _csv_line(",", ["BL-000001", "1", "2026-09-20", "Ким", "Ли", "1950-01-01", district])
    )
    assert [r.district for r in parsed.rows] == [district]


FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "＝", "＋", "－", "＠")


@pytest.mark.parametrize("delimiter", [",", ";"])
async def test_coverage_csv_has_no_formula_cell_under_either_separator(world: World, tmp_path: Path, delimiter) -> None:
    """Finding 4: lists held from before the import check are exported with every formula start neutralised.

    The export is read as a spreadsheet would with ``,`` and with ``;`` as the
    separator; no cell (spaces and quotes trimmed) may start a formula.
    """
    staff_db = tmp_path / "staff.db"
    conn = connect_staff_db(staff_db, now_ms=now_ms())
    with conn:
        for n, district in enumerate(FORMULA_DISTRICTS, start=1):
            code = f"FX-{n:06d}"
            conn.execute(
                "INSERT INTO respondent_lists VALUES (?, '2026-09-20', ?, 1, 0, NULL, 'old.csv')", (code, district)
            )
            conn.execute(
                "INSERT INTO respondent_entries VALUES (?, ?, 'Иванов', 'Пётр', '', '1950-01-01', NULL, NULL, NULL)",
                (code, f"{code}/00001"),
            )
    conn.close()
    gw = await start_staff_gateway(world, tmp_path)
    admin = StaffClient(gw)
    try:
        assert await admin.login("admin") == 303
        status, body, _ = await admin.get("/staff/export/coverage.csv")
    finally:
        await admin.close()
        await gw.stop()
    assert status == 200
    institutions = [r for r in csv.DictReader(io.StringIO(body)) if r["level"] == "institution"]
    assert len(institutions) == len(FORMULA_DISTRICTS)  # every held list is exported
    cells = [cell for row in csv.reader(io.StringIO(body), delimiter=delimiter) for cell in row]
    assert len(cells) > 2 * len(FORMULA_DISTRICTS)
    dangerous = [
        c for c in cells if c.strip().lstrip("\"'").startswith(FORMULA_START) and not c.strip().startswith("'")
    ]
    assert dangerous == []
