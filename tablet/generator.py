"""Deterministic synthetic census sheets: households and institution residents.

``generate_sheets(seed, count, device_id=...)`` returns the sheets with stream
indices ``start .. start+count-1`` of the stream named by (seed, device id).
Each sheet is drawn from its own ``random.Random`` seeded with its index, so a
sheet does not depend on how the stream was cut into calls: ``generate_sheets(s,
10)`` equals ``generate_sheets(s, 4) + generate_sheets(s, 6, start=4)``. What a
tablet shares across sheets (its enumeration area, its institutions and their
respondent lists, its workers) comes from a per-tablet stream. The j-th sheet of
an institution answers entry j of its respondent list (wrapping around, as a
revisit, once the list is exhausted).

Every sheet is valid under docs/census-sheet.md (the schema and the cross-field rules);
persons are consistent with their relation (children at least 16 years younger
than their parents, grandchildren than their parents, marital status and
education fitting the age).
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, fields
from datetime import date, datetime, timedelta, timezone
from typing import Any

from wire.census_sheet import FOUNDING_ORDER_MOMENT

from .household import Family, make_household, make_resident
from .places import (
    INSTITUTION_KINDS,
    SCHEMA_KIND,
    Area,
    Institution,
    kind_of_code,
    make_institution,
    pick_area,
    random_address,
)

__all__ = [
    "CENSUS_MOMENT",
    "DEFAULT_MIX",
    "KindMix",
    "TabletProfile",
    "generate_sheets",
    "sheet_for_entry",
    "tablet_profile",
]

CENSUS_MOMENT = FOUNDING_ORDER_MOMENT.day  # the founding order's; a provisioned tablet uses its bundle's
_LOCAL = timezone(timedelta(hours=5))  # Kazakhstan, single time zone since 2024
_SHEETS_PER_DAY = 24
_FIELD_DAYS = 30


@dataclass(frozen=True, slots=True)
class KindMix:
    """Relative weights of the sheet kinds; a zero weight means the tablet never fills that kind."""

    household: int = 85
    childrens_home: int = 2
    boarding_school: int = 4
    hospital: int = 6
    social_care_centre: int = 3

    def __post_init__(self) -> None:
        weights = [getattr(self, f.name) for f in fields(self)]
        if any(w < 0 for w in weights) or sum(weights) == 0:
            raise ValueError("kind weights must be >= 0 and not all zero")

    @classmethod
    def only(cls, **weights: int) -> KindMix:
        """A mix of just the named kinds (every other weight 0): ``KindMix.only(hospital=1)``."""
        return cls(**(dict.fromkeys((f.name for f in fields(cls)), 0) | weights))

    def kinds(self) -> tuple[tuple[str, ...], tuple[int, ...]]:
        names = tuple(f.name for f in fields(self))
        return names, tuple(getattr(self, n) for n in names)


DEFAULT_MIX = KindMix()


@dataclass(frozen=True, slots=True)
class TabletProfile:
    """What all sheets of one tablet share."""

    area: Area
    interviewer_id: str
    institutions: dict[str, Institution]  # by kind
    responsible_workers: dict[str, str]  # institution code -> worker id


def tablet_profile(seed: int, device_id: str, mix: KindMix = DEFAULT_MIX) -> TabletProfile:
    rng = random.Random(f"sanaq-tablet/{seed}/{device_id}")  # noqa: S311 (synthetic data, not secrets)
    area = pick_area(rng)
    institutions = {k: make_institution(rng, k, area) for k in INSTITUTION_KINDS if getattr(mix, k) > 0}
    return TabletProfile(
        area=area,
        interviewer_id=f"int-{area.region.code[3:]}-{rng.randint(1, 9999):04d}",
        institutions=institutions,
        responsible_workers={i.code: f"rw-{i.code}-{rng.randint(1, 9)}" for i in institutions.values()},
    )


def _kind_stream(seed: int, device_id: str, mix: KindMix, n: int) -> list[str]:
    names, weights = mix.kinds()
    rng = random.Random(f"sanaq-kinds/{seed}/{device_id}")  # noqa: S311
    return [rng.choices(names, weights=weights)[0] for _ in range(n)]


def _filled_at_ms(rng: random.Random, index: int, moment: date) -> int:
    day = min(index // _SHEETS_PER_DAY, _FIELD_DAYS - 1)
    slot = index % _SHEETS_PER_DAY
    start = datetime(moment.year, moment.month, moment.day, 9, tzinfo=_LOCAL) + timedelta(days=day)
    when = start + timedelta(minutes=slot * 27 + rng.randint(0, 20), seconds=rng.randint(0, 59))
    return int(when.timestamp()) * 1000 + rng.randint(0, 999)


def _sheet_rng(seed: int, device_id: str, index: int) -> random.Random:
    return random.Random(f"sanaq-sheet/{seed}/{device_id}/{index}")  # noqa: S311


def generate_sheets(
    seed: int,
    count: int,
    *,
    device_id: str,
    mix: KindMix = DEFAULT_MIX,
    start: int = 0,
    worker_id: str | None = None,
    census_moment: date = CENSUS_MOMENT,
) -> list[dict[str, Any]]:
    """Sheets ``start .. start+count-1`` of the stream (seed, device_id).

    ``worker_id`` (the worker the registry binds the tablet to) replaces the
    generated interviewer and responsible-worker ids when given.
    """
    if count < 0 or start < 0:
        raise ValueError("count and start must be >= 0")
    profile = tablet_profile(seed, device_id, mix)
    kinds = _kind_stream(seed, device_id, mix, start + count)
    answered: dict[str, int] = {}
    for kind in kinds[:start]:
        answered[kind] = answered.get(kind, 0) + 1
    sheets = []
    for index in range(start, start + count):
        kind = kinds[index]
        answered[kind] = answered.get(kind, 0) + 1
        rng = _sheet_rng(seed, device_id, index)
        sheet: dict[str, Any] = {
            "sheet_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "census_moment": census_moment.isoformat(),
            "filled_at_ms": _filled_at_ms(rng, index, census_moment),
        }
        if kind == "household":
            sheet |= _household_part(rng, profile, census_moment)
        else:
            sheet |= _institution_part(rng, profile.institutions[kind], answered[kind], profile, census_moment)
        if worker_id is not None:
            sheet["worker_id"] = worker_id
        sheets.append(sheet)
    return sheets


def _household_part(rng: random.Random, profile: TabletProfile, moment: date) -> dict[str, Any]:
    return {
        "form": "household",
        "household_id": f"HH-{rng.randint(0, 99_999_999):08d}",
        "source": "interview",
        "worker_id": profile.interviewer_id,
        "worker_role": "interviewer",
        "address": random_address(rng, profile.area),
        "persons": make_household(rng, Family(moment)),
    }


def _institution_part(
    rng: random.Random, inst: Institution, nth: int, profile: TabletProfile, moment: date
) -> dict[str, Any]:
    resident, by_records = make_resident(rng, inst.kind, moment)
    return {
        "form": "institution",
        "institution_code": inst.code,
        "institution_kind": SCHEMA_KIND[inst.kind],
        "respondent_list_entry": inst.list_entry((nth - 1) % inst.list_size + 1),
        "source": "administration_records" if by_records else "interview",
        "worker_id": profile.responsible_workers[inst.code],
        "worker_role": "responsible_worker",
        "address": dict(inst.address),
        "persons": [resident],
    }


def _full_years(birth: date, moment: date) -> int:
    return moment.year - birth.year - ((moment.month, moment.day) < (birth.month, birth.day))


def sheet_for_entry(
    entry: dict[str, str],
    *,
    institution: str,
    device_id: str,
    seed: int,
    filled_at_ms: int,
    worker_id: str | None = None,
    census_moment: date = CENSUS_MOMENT,
) -> dict[str, Any]:
    """An institution sheet answering one list entry (``entry_id``, names and birth date from the list).

    The resident's other answers are synthetic (``make_resident``), made to fit
    the listed birth date (marital status and education by age, S-55, S-56).
    The institution's kind comes from its code's prefix (``hospital`` when unknown);
    its address is one per institution code.
    """
    kind = kind_of_code(institution) or "hospital"
    rng = random.Random(f"sanaq-entry/{seed}/{device_id}/{entry['entry_id']}")  # noqa: S311
    resident, by_records = make_resident(rng, kind, census_moment)
    birth = date.fromisoformat(entry["birth_date"])
    age = _full_years(birth, census_moment)
    resident |= {"surname": entry["surname"], "given_name": entry["given_name"], "birth_date": entry["birth_date"]}
    resident.pop("patronymic", None)
    if entry.get("patronymic"):
        resident["patronymic"] = entry["patronymic"]
    if age < 16:
        resident["marital_status"] = "not_applicable"
    elif resident["marital_status"] == "not_applicable":
        resident["marital_status"] = "never_married"
    if age < 7:
        resident["education"] = "not_applicable"
    elif resident["education"] == "not_applicable":
        resident["education"] = "primary" if age < 16 else "general_secondary"
    place = random.Random(f"sanaq-institution/{institution}")  # noqa: S311 - one address per institution
    address = random_address(place, pick_area(place), apartment=False)
    return {
        "sheet_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "census_moment": census_moment.isoformat(),
        "filled_at_ms": filled_at_ms,
        "form": "institution",
        "institution_code": institution,
        "institution_kind": SCHEMA_KIND[kind],
        "respondent_list_entry": entry["entry_id"],
        "source": "administration_records" if by_records else "interview",
        "worker_id": worker_id or f"rw-{institution}-1",
        "worker_role": "responsible_worker",
        "address": address,
        "persons": [resident],
    }
