"""Reading a first-stage respondent list (the staff dashboard's CSV format) for minting access codes.

Same file format as the dashboard's list import (``docs/operations.md``):
UTF-8 (BOM allowed), comma or semicolon separated, header with at least
``institution_code, entry_id, list_date, surname, given_name, birth_date``
(``patronymic``, ``district`` and ``household`` optional; entries sharing a
``household`` in an institution get one code). Entry ids are ``AA-123456/00042``
or the bare number. A bad row refuses the whole file with its line number:
minting is an authority act, half a list is worse than none. Names are read
only to print on the slips; they are never stored by the web service.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass

from .errors import OperatorError

__all__ = ["MAX_HOUSEHOLD", "ListedRespondent", "households", "read_list"]

_REQUIRED = ("institution_code", "entry_id", "list_date", "surname", "given_name", "birth_date")
_OPTIONAL = ("patronymic", "district", "household")
_HOUSEHOLD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,31}")
MAX_HOUSEHOLD = 30
_CODE = re.compile(r"[A-Z]{2}-[0-9]{6}")
_ENTRY_FULL = re.compile(r"([A-Z]{2}-[0-9]{6})/([0-9]{5})")
_ENTRY_NUMBER = re.compile(r"[0-9]{1,5}")
_MAX_BYTES = 32 * 1024 * 1024
_MAX_NAME = 64


@dataclass(frozen=True, slots=True)
class ListedRespondent:
    institution_code: str
    entry_id: str
    name: str  # "Surname Given Patronymic", for the slip only
    household: str = ""  # where the lists are household-based: the household's id in its institution


def read_list(data: bytes) -> list[ListedRespondent]:
    if len(data) > _MAX_BYTES:
        raise OperatorError("list file too large", max_bytes=_MAX_BYTES)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise OperatorError("list file is not UTF-8") from e
    first = text.split("\n", 1)[0]
    delimiter = ";" if ";" in first and "," not in first else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = [c.strip().lower() for c in next(reader)]
    except (StopIteration, csv.Error) as e:
        raise OperatorError("list file has no header") from e
    if [c for c in _REQUIRED if c not in header] or [c for c in header if c not in _REQUIRED + _OPTIONAL]:
        raise OperatorError("list header must name the required columns and no unknown ones",
                            required=list(_REQUIRED))
    out: list[ListedRespondent] = []
    seen: set[str] = set()
    sizes: dict[tuple[str, str], int] = {}
    try:
        for line, values in enumerate(reader, start=2):
            if not any(v.strip() for v in values):
                continue
            if len(values) != len(header):
                raise OperatorError("row has the wrong number of columns", line=line)
            row = dict(zip(header, values, strict=True))
            code = row["institution_code"].strip()
            if not _CODE.fullmatch(code):
                raise OperatorError("institution code must look like AB-123456", line=line)
            raw = row["entry_id"].strip()
            full = _ENTRY_FULL.fullmatch(raw)
            if full and full.group(1) == code:
                number = int(full.group(2))
            elif _ENTRY_NUMBER.fullmatch(raw):
                number = int(raw)
            else:
                raise OperatorError("entry id must be CODE/NNNNN of this institution or a number", line=line)
            if number < 1:
                raise OperatorError("entry number must be >= 1", line=line)
            entry = f"{code}/{number:05d}"
            if entry in seen:
                raise OperatorError("entry id appears twice", line=line)
            seen.add(entry)
            parts = [row["surname"].strip(), row["given_name"].strip(), row.get("patronymic", "").strip()]
            if not parts[0] or not parts[1] or any(len(p) > _MAX_NAME for p in parts):
                raise OperatorError("surname and given name are required, at most 64 characters", line=line)
            household = row.get("household", "").strip()
            if household and not _HOUSEHOLD.fullmatch(household):
                raise OperatorError("household must be 1-32 letters, digits or hyphens", line=line)
            sizes[(code, household)] = sizes.get((code, household), 0) + 1
            if household and sizes[(code, household)] > MAX_HOUSEHOLD:
                raise OperatorError(f"a household has more than {MAX_HOUSEHOLD} members", line=line)
            out.append(ListedRespondent(code, entry, " ".join(p for p in parts if p), household))
    except csv.Error as e:
        raise OperatorError("list file is not valid CSV") from e
    return out


def households(listed: list[ListedRespondent]) -> list[list[ListedRespondent]]:
    """One group per person without a household, one per (institution, household) in list order."""
    groups: list[list[ListedRespondent]] = []
    by_key: dict[tuple[str, str], list[ListedRespondent]] = {}
    for r in listed:
        if not r.household:
            groups.append([r])
        elif (r.institution_code, r.household) in by_key:
            by_key[(r.institution_code, r.household)].append(r)
        else:
            by_key[(r.institution_code, r.household)] = [r]
            groups.append(by_key[(r.institution_code, r.household)])
    for g in groups:
        g.sort(key=lambda r: r.entry_id)
    return groups
