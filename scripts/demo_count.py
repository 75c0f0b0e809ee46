"""The one-count part of ``make demo``: first-stage lists, the staff dashboard, persons counted, the review queue.

* ``make_admin`` creates the dashboard's administrator (``python -m gateway.staff
  add-user``) before the gateway starts; the password is generated and kept in
  a 0600 file of the demo directory.
* ``Dashboard`` is a real HTTPS client of ``/staff/`` (cookies, CSRF tokens):
  it imports the first-stage lists of the tablets' institutions, reads the
  summary and the coverage CSV.
* ``list_csv`` is the lists: entry 1 of the first institution is the respondent
  who answers online (the self-enumeration part of the demo); the rest are
  synthetic residents.
* ``show_count`` prints, from the census store, the persons counted and the
  review cases.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import sqlite3
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

__all__ = ["ONLINE_RESPONDENT", "Dashboard", "list_csv", "make_admin", "show_count"]

LIST_DATE = "2026-06-01"
DISTRICT = "Медеуский район"
# The respondent who answers online (scripts/demo_selfenum.py) is entry 1 of the first tablet's institution.
ONLINE_RESPONDENT = ("Жұмабаева", "Ақмарал", "Серікқызы", "1961-04-12")
_SECOND = ("Сейітов", "Нұрлан", "", "1975-09-30")  # entry 2 on the self-enumeration list too
_SURNAMES = ("Сейітов", "Ким", "Омарова", "Петров", "Әбдірахманов", "Нұрланова", "Иванова", "Құдайбергенов")
_GIVEN = ("Нұрлан", "Ли", "Айгүл", "Сергей", "Ерлан", "Дина", "Мария", "Асқар")
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def list_csv(institutions: list[str], entries: int) -> bytes:
    lines = ["institution_code,entry_id,list_date,surname,given_name,patronymic,birth_date,district"]
    for i, code in enumerate(institutions):
        for n in range(1, entries + 1):
            if i == 0 and n in (1, 2):
                surname, given, patronymic, birth = ONLINE_RESPONDENT if n == 1 else _SECOND
            else:
                k = (i * entries + n) % len(_SURNAMES)
                surname, given, patronymic = _SURNAMES[k], _GIVEN[(k + i) % len(_GIVEN)], ""
                birth = f"{1935 + (7 * n + 3 * i) % 75}-{1 + n % 12:02d}-{1 + (n * 5) % 28:02d}"
            lines.append(f"{code},{n},{LIST_DATE},{surname},{given},{patronymic},{birth},{DISTRICT}")
    return ("\n".join(lines) + "\n").encode("utf-8")


def make_admin(staff_db: Path, password_file: Path) -> str:
    """Create the dashboard administrator ``admin``; returns the generated password (also in ``password_file``)."""
    password = secrets.token_urlsafe(18)
    password_file.write_text(password + "\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "gateway.staff", "add-user", "--db", str(staff_db), "--username", "admin",
         "--role", "admin", "--password-file", str(password_file)],
        capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"demo: could not create the dashboard administrator: {done.stderr.strip()}")
    return password


class Dashboard:
    """The staff dashboard over HTTPS, as a browser would use it (no JavaScript needed)."""

    def __init__(self, url: str, ca: ssl.SSLContext, password: str) -> None:
        self._url, self._ca, self._password = url, ca, password

    def run(self, coro: Any) -> Any:
        return asyncio.run(coro)

    async def _session(self) -> tuple[aiohttp.ClientSession, str]:
        s = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                  connector=aiohttp.TCPConnector(ssl=self._ca))
        headers = {"Origin": self._url}
        async with s.get(self._url + "/staff/login") as r:
            csrf = _csrf(await r.text())
        async with s.post(self._url + "/staff/login", allow_redirects=False, headers=headers,
                          data={"csrf": csrf, "username": "admin", "password": self._password}) as r:
            if r.status != 303:
                await s.close()
                raise SystemExit(f"demo: dashboard login answered {r.status}")
        async with s.get(self._url + "/staff/") as r:
            return s, _csrf(await r.text())

    async def import_lists(self, data: bytes) -> str:
        s, csrf = await self._session()
        async with s:
            form = aiohttp.FormData()
            form.add_field("csrf", csrf)
            form.add_field("file", data, filename="first-stage-lists.csv", content_type="text/csv")
            async with s.post(self._url + "/staff/lists", data=form, headers={"Origin": self._url}) as r:
                page = await r.text()
                if r.status != 200:
                    raise SystemExit(f"demo: list import answered {r.status}")
        found = re.search(r"\d+ rows read, \d+ imported, \d+ rejected\.", page)
        return found.group(0) if found else "imported"

    async def certificates_pdf(self, institution: str) -> bytes:
        """The institution's participation certificates, one PDF, as a responsible worker prints them."""
        s, _ = await self._session()
        async with s, s.get(f"{self._url}/staff/certificates/{institution}/pdf") as r:
            body = await r.read()
            if r.status != 200 or not body.startswith(b"%PDF"):
                raise SystemExit(f"demo: certificates of {institution}: HTTP {r.status}")
            return body

    async def coverage(self) -> tuple[dict[str, Any], str]:
        s, _ = await self._session()
        async with s:
            async with s.get(self._url + "/staff/api/summary") as r:
                summary = await r.json()
            async with s.get(self._url + "/staff/export/coverage.csv") as r:
                text = await r.text()
        return summary, text


def _csrf(page: str) -> str:
    found = _CSRF.search(page)
    if found is None:
        raise SystemExit("demo: no CSRF token on a dashboard page")
    return found.group(1)


def show_count(db: Path) -> tuple[int, int]:
    """Print and return (persons counted, review cases) as the census store holds them."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        persons = conn.execute("SELECT count(*) FROM persons").fetchone()[0]
        by_road = conn.execute("SELECT road, count(*) FROM persons GROUP BY road ORDER BY road").fetchall()
        cases = conn.execute(
            "SELECT r.kind, r.entry_id, fb.road, fb.device_id, sb.road, sb.device_id FROM review_cases r"
            " JOIN batches fb ON fb.id = r.first_batch_id JOIN batches sb ON sb.id = r.second_batch_id ORDER BY r.id"
        ).fetchall()
        counted = dict(conn.execute("SELECT entry_id, count(*) FROM persons GROUP BY entry_id").fetchall())
    print(f"persons counted: {persons} (" + ", ".join(f"{road}: {n}" for road, n in by_road) + ")")
    print(f"review cases: {len(cases)}")
    for kind, entry, road1, dev1, road2, dev2 in cases:
        print(f"  {kind} {entry}: first {road1} ({dev1}), second {road2} ({dev2})")
        print(f"  {entry}: answered online and interviewed on a tablet, {counted.get(entry, 0)} person counted")
    return persons, len(cases)
