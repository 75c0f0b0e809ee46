"""A contact for a reminder: strict parsing, sealed at rest, exported for the unfinished, gone after submission."""

from __future__ import annotations

import csv
import io
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import structlog

from selfenum.contacts import Contact, ContactRefused, parse_contact

from .bed import ANSWERS, INSTITUTION, Web, files_under
from .browserless import Respondent

E1, E2 = f"{INSTITUTION}/00001", f"{INSTITUTION}/00002"
PHONE = "+7 (701) 987-65-43"
DIGITS = "77019876543"


@pytest.mark.parametrize(("text", "expected"), [
    ("+7 701 123 45 67", Contact("phone", "77011234567")),
    ("8-701-123-45-67", Contact("phone", "87011234567")),
    ("  aigul.n@mail.kz ", Contact("email", "aigul.n@mail.kz")),
    ("a_b+census@stat.gov.kz", Contact("email", "a_b+census@stat.gov.kz")),
])
def test_contacts_accepted(text: str, expected: Contact) -> None:
    assert parse_contact(text) == expected


@pytest.mark.parametrize("text", [
    "", "12345", "+7 701 123 45 67 89 01 23", "=HYPERLINK(\"http://x\")", "@example.kz", "+cmd@x.kz",
    "-x@example.kz", "name@localhost", "name@@example.kz", "name@example.kz\nBcc: x@y.kz", "a" * 250 + "@x.kz",
    "имя@пример.kz", "701 123 45 67 ext",
])
def test_contacts_refused(text: str) -> None:
    with pytest.raises(ContactRefused):
        parse_contact(text)


def _config_file(config: Any, tmp_path: Path) -> Path:
    path = tmp_path / "selfenum.toml"
    path.write_text(f'web_bundle = "{config.web_bundle}"\nstate_dir = "{config.state_dir}"\n', "utf-8")
    return path


def _export(config: Any, tmp_path: Path) -> list[dict[str, str]]:
    """``sanaq-selfenum reminders export`` as the authority runs it (a real process)."""
    out = tmp_path / "reminders.csv"
    proc = subprocess.run([sys.executable, "-m", "selfenum", "reminders", "export", "--config",
                           str(_config_file(config, tmp_path)), "--out", str(out)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert DIGITS not in proc.stdout + proc.stderr  # the count only, never a contact
    return list(csv.DictReader(io.StringIO(out.read_text("utf-8"))))


async def test_a_reminder_contact_is_sealed_exported_while_unfinished_and_deleted_on_submission(
        site: Web, codes: dict[str, str], config: Any, tmp_path: Path) -> None:
    r, other = Respondent(site.url), Respondent(site.url)
    try:
        with structlog.testing.capture_logs() as logs:
            await r.get("/language/ru?next=/")
            await r.sign_in(codes[E1])
            await r.fill({"name": ANSWERS["name"]}, action="save")
            assert 'href="/contact"' in r.last
            status, page = await r.get("/contact")
            assert status == 200 and "Номер мобильного телефона или адрес электронной почты" in page
            status, page, _ = await r.post("/contact", {"contact": "=1+1", "action": "save"})
            assert status == 400 and 'href="#contact"' in page and "Введите номер мобильного телефона" in page
            status, page, _ = await r.post("/contact", {"contact": PHONE, "action": "save"})
            assert status == 200 and "Мы вам напомним" in page
            # a second respondent, in Kazakh (the default), leaves an address and then deletes it
            await other.sign_in(codes[E2])
            await other.get("/contact")
            status, page, _ = await other.post("/contact", {"contact": "x", "action": "save"})
            assert status == 400 and "электрондық пошта мекенжайын енгізіңіз" in page
            await other.post("/contact", {"contact": "aigul@mail.kz", "action": "save"})
            await other.get("/contact")
            status, page, _ = await other.post("/contact", {"action": "remove"})
            assert status == 200 and "Байланыс деректеріңіз жойылды" in page
        assert not any(DIGITS in str(e) or "aigul" in str(e) for e in logs)
        on_disk = b"".join(p.read_bytes() for p in files_under(config.state_dir))
        assert DIGITS.encode() not in on_disk and b"aigul" not in on_disk  # sealed at rest
        assert stat.S_IMODE((config.state_dir / "contacts.key").stat().st_mode) == 0o600

        rows = _export(config, tmp_path)
        assert rows == [{"entry_id": E1, "institution_code": INSTITUTION, "language": "ru", "channel": "phone",
                         "contact": DIGITS}]

        await r.fill({k: v for k, v in ANSWERS.items() if k != "name"})
        status, _, path = await r.post("/submit", {})
        assert (status, path) == (200, "/done")
        assert _export(config, tmp_path) == []
        from selfenum.app import APP

        assert site.app[APP].store.pending_contacts(now_ms=0) == []
    finally:
        await r.close()
        await other.close()


async def test_contacts_go_when_the_window_closes(site: Web, codes: dict[str, str], config: Any) -> None:
    from selfenum.app import APP

    r = Respondent(site.url)
    try:
        await r.sign_in(codes[E1])
        await r.get("/contact")
        await r.post("/contact", {"contact": PHONE, "action": "save"})
    finally:
        await r.close()
    store = site.app[APP].store
    assert store.pending_contacts(now_ms=config.window.closes_ms() - 1) != []
    store.purge_expired_drafts(now_ms=config.window.closes_ms())
    assert store.pending_contacts(now_ms=0) == []


async def test_the_contact_page_needs_a_signed_in_respondent(site: Web) -> None:
    r = Respondent(site.url)
    try:
        status, _ = await r.get("/contact")
        assert status == 200 and r.last.count('name="code"') == 1  # sent back to the start page
        await r.get("/")
        status, _, path = await r.post("/contact", {"contact": PHONE, "action": "save"})
        assert path == "/"
    finally:
        await r.close()
