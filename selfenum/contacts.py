"""A respondent's optional contact for a reminder: strict parsing, sealing at rest, the authority's CSV.

A contact is a mobile number or an e-mail address. Numbers keep only their
digits (``+7 (701) 123-45-67`` is ``77011234567``: 10 to 15 digits, country
code first), so no cell of the export can start a spreadsheet formula;
addresses are a plain ``local@domain.tld`` whose first character is a letter,
digit or underscore. Anything else is refused with a message for the
respondent. Stored sealed (XSalsa20-Poly1305) under ``contacts.key`` in the
state directory, with the language the respondent chose; deleted when the
sheet is submitted and when the window closes. Never logged.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass

from nacl.exceptions import CryptoError
from nacl.secret import SecretBox

__all__ = ["Contact", "ContactRefused", "open_contact", "parse_contact", "reminders_csv", "seal_contact"]

_PHONE_CHARS = re.compile(r"\+?[0-9 ()\-]{7,30}")
_EMAIL = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._%+\-]{0,63}@[A-Za-z0-9](?:[A-Za-z0-9\-]{0,62}\.)+[A-Za-z]{2,24}")
_MAX_EMAIL = 254
BAD_CONTACT = "Enter a mobile number like +7 701 123 45 67 or an e-mail address like name@example.kz"


class ContactRefused(ValueError):
    """The text is neither a mobile number nor an e-mail address (the message is for the respondent)."""


@dataclass(frozen=True, slots=True)
class Contact:
    channel: str  # "phone" | "email"
    value: str


def parse_contact(text: str) -> Contact:
    text = text.strip()
    if _PHONE_CHARS.fullmatch(text):
        digits = re.sub(r"[^0-9]", "", text)
        if 10 <= len(digits) <= 15:
            return Contact("phone", digits)
    if len(text) <= _MAX_EMAIL and _EMAIL.fullmatch(text):
        return Contact("email", text)
    raise ContactRefused(BAD_CONTACT)


def seal_contact(key: bytes, contact: Contact, lang: str) -> bytes:
    body = json.dumps({"c": contact.channel, "v": contact.value, "l": lang}).encode()
    return bytes(SecretBox(key).encrypt(body))


def open_contact(key: bytes, sealed: bytes) -> tuple[Contact, str] | None:
    """The contact and its language, or None when the bytes do not open (another key: skipped)."""
    try:
        body = json.loads(SecretBox(key).decrypt(sealed))
        return Contact(str(body["c"]), str(body["v"])), str(body["l"])
    except (CryptoError, ValueError, KeyError, TypeError):
        return None


def reminders_csv(rows: list[tuple[str, str, Contact, str]]) -> bytes:
    """``entry_id, institution_code, language, channel, contact`` per (entry, institution, contact, language)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(["entry_id", "institution_code", "language", "channel", "contact"])
    for entry_id, institution, contact, lang in rows:
        w.writerow([entry_id, institution, lang, contact.channel, contact.value])
    return out.getvalue().encode("utf-8")
