# ruff: noqa: RUF001  (Cyrillic place names)
"""Where synthetic sheets are filled: regions, settlements, streets, and institutions.

An interviewer's tablet works one enumeration area (one region, district and
settlement), so its households share those and differ in street, house and
apartment. Institutions carry a registered code (``<2 letters>-<6 digits>``, the
letters naming the kind) and a first-stage respondent list whose entries the
institution sheets answer (``<code>/<5-digit entry number>``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = [
    "kind_of_code",
    "INSTITUTION_KINDS",
    "SCHEMA_KIND",
    "REGIONS",
    "Area",
    "Institution",
    "Region",
    "make_institution",
    "pick_area",
    "random_address",
]

INSTITUTION_KINDS = ("childrens_home", "boarding_school", "hospital", "social_care_centre")
# The generator's kinds as the sheet's institution_kind codes (docs/census-sheet.md, S-11).
SCHEMA_KIND = {
    "childrens_home": "childrens_home",
    "boarding_school": "gifted_boarding_school",
    "hospital": "inpatient_care",
    "social_care_centre": "social_service_centre",
}
_KIND_PREFIX = {"childrens_home": "DD", "boarding_school": "SI", "hospital": "BL", "social_care_centre": "CS"}


def kind_of_code(code: str) -> str | None:
    """The generator's institution kind of a code made by ``make_institution`` (None for other codes)."""
    return next((k for k, p in _KIND_PREFIX.items() if code.startswith(p + "-")), None)

_STREETS = (
    "ул. Абая", "ул. Сейфуллина", "ул. Желтоқсан", "ул. Толе би", "пр. Республики", "ул. Бейбітшілік",
    "ул. Кенесары", "ул. Пушкина", "ул. Гоголя", "ул. Әуезова", "ул. Жамбыла", "ул. Құрманғазы",
    "мкр. Самал-2", "мкр. Аксай-4", "ул. Назарбаева", "ул. Ломоносова", "ул. Шевченко", "ул. Достық",
)


@dataclass(frozen=True, slots=True)
class Region:
    code: str  # ISO 3166-2
    districts: tuple[tuple[str, tuple[str, ...]], ...]  # (district, settlements)
    urban: bool  # apartments are common


REGIONS: tuple[Region, ...] = (
    Region("KZ-75", (("Алмалинский район", ("г. Алматы",)), ("Бостандыкский район", ("г. Алматы",)),
                     ("Ауэзовский район", ("г. Алматы",))), urban=True),
    Region("KZ-71", (("район Есиль", ("г. Астана",)), ("район Сарыарка", ("г. Астана",)),
                     ("район Байконур", ("г. Астана",))), urban=True),
    Region("KZ-79", (("Абайский район", ("г. Шымкент",)), ("Енбекшинский район", ("г. Шымкент",))), urban=True),
    Region("KZ-35", (("г. Караганда", ("г. Караганда",)), ("Бухар-Жырауский район", ("пос. Ботакара", "с. Доскей"))),
           urban=False),
    Region("KZ-55", (("г. Павлодар", ("г. Павлодар",)), ("Павлодарский район", ("с. Мичурино", "с. Кенжеколь"))),
           urban=False),
    Region("KZ-61", (("Сайрамский район", ("с. Аксу", "с. Карабулак")), ("Толебийский район", ("г. Ленгер",))),
           urban=False),
    Region("KZ-43", (("Жалагашский район", ("пос. Жалагаш", "с. Мадениет")), ("г. Кызылорда", ("г. Кызылорда",))),
           urban=False),
)


@dataclass(frozen=True, slots=True)
class Area:
    """One enumeration area: what all households of one interviewer share."""

    region: Region
    district: str
    settlement: str


def pick_area(rng: random.Random) -> Area:
    region = rng.choice(REGIONS)
    district, settlements = rng.choice(region.districts)
    return Area(region, district, rng.choice(settlements))


def random_address(rng: random.Random, area: Area, *, apartment: bool | None = None) -> dict[str, str]:
    """An address in ``area``; ``apartment`` None means: as likely as the area makes it."""
    house = str(rng.randint(1, 240 if area.region.urban else 90))
    if rng.random() < 0.08:
        house += rng.choice("АБВ")
    elif rng.random() < 0.05:
        house += f"/{rng.randint(1, 4)}"
    address = {
        "region": area.region.code,
        "district": area.district,
        "settlement": area.settlement,
        "street": rng.choice(_STREETS),
        "house": house,
    }
    if apartment is None:
        apartment = rng.random() < (0.75 if area.region.urban else 0.2)
    if apartment:
        address["apartment"] = str(rng.randint(1, 320))
    return address


@dataclass(frozen=True, slots=True)
class Institution:
    code: str
    kind: str
    address: dict[str, str]
    list_size: int  # entries on its first-stage respondent list

    def list_entry(self, number: int) -> str:
        """Respondent list entry id for entry ``number`` (1-based)."""
        if not 1 <= number <= self.list_size:
            raise ValueError("entry number outside the respondent list")
        return f"{self.code}/{number:05d}"


_LIST_SIZES = {
    "childrens_home": (25, 120),
    "boarding_school": (80, 400),
    "hospital": (60, 600),
    "social_care_centre": (40, 250),
}


def make_institution(rng: random.Random, kind: str, area: Area) -> Institution:
    low, high = _LIST_SIZES[kind]
    return Institution(
        code=f"{_KIND_PREFIX[kind]}-{rng.randint(1, 999_999):06d}",
        kind=kind,
        address=random_address(rng, area, apartment=False),
        list_size=rng.randint(low, high),
    )
