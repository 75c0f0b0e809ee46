"""Synthetic persons: household compositions and institution residents.

Ages are chosen first and birth dates derived from them (a person aged ``a`` at
the census moment), so every relation keeps its order: a child is at least 18
years younger than the parents who live with it, a grandchild than its parent.
Names follow the family: children carry the father's surname (female form for
daughters) and a patronymic from his given name; a wife usually carries the
husband's surname.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from .people import Ethnicity, female_surname, patronymic, pick_ethnicity

__all__ = ["Family", "birth_date", "education_for", "make_household", "make_resident"]

Person = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Family:
    moment: date  # the census moment: ages are full years at this date


def birth_date(rng: random.Random, moment: date, age: int) -> str:
    """A birth date on which the person is exactly ``age`` full years old at ``moment``."""
    year = moment.year - age
    day = min(moment.day, 28) if moment.month == 2 else moment.day
    anniversary = date(year, moment.month, day)
    return (anniversary - timedelta(days=rng.randint(1, 364))).isoformat()  # born before the moment (S-52)


def education_for(rng: random.Random, age: int) -> str:
    if age < 7:
        return "not_applicable"
    if age < 11:
        return "none"
    if age < 16:
        return "primary"
    if age < 18:
        return "basic_secondary"
    levels = ["basic_secondary", "general_secondary", "technical_vocational", "post_secondary", "higher",
              "postgraduate"]
    weights = [4, 30, 28, 6, 30, 2] if age < 70 else [25, 35, 20, 5, 15, 0]
    if age < 21:
        weights = [10, 60, 25, 5, 0, 0]
    return rng.choices(levels, weights=weights)[0]


def _single_status(rng: random.Random, age: int) -> str:
    if age < 16:
        return "not_applicable"
    if age < 25:
        return "never_married" if rng.random() < 0.9 else "divorced"
    statuses = ["never_married", "divorced", "separated", "widowed"]
    weights = [30, 35, 10, 25] if age < 60 else [8, 17, 5, 70]
    return rng.choices(statuses, weights=weights)[0]


@dataclass(frozen=True, slots=True)
class _Household:
    rng: random.Random
    moment: date
    eth: Ethnicity
    style: str
    language: str
    citizenship: str

    def person(
        self, *, sex: str, age: int, relation: str, surname: str, father: str | None, marital: str | None = None
    ) -> Person:
        rng = self.rng
        female = sex == "female"
        p: Person = {
            "surname": female_surname(surname) if female else surname,
            "given_name": rng.choice(self.eth.female_names if female else self.eth.male_names),
            "sex": sex,
            "birth_date": birth_date(rng, self.moment, age),
            "citizenship": self.citizenship,
            "nationality": self.eth.nationality(female=female),
            "native_language": self.language if rng.random() < 0.9 else self.eth.pick_language(rng),
            "relation_to_head": relation,
            "marital_status": marital if marital is not None and age >= 16 else _single_status(rng, age),
            "education": education_for(rng, age),
        }
        if father is not None:
            p["patronymic"] = patronymic(father, female=female, style=self.style)
        return p

    def any_father(self) -> str:
        return self.rng.choice(self.eth.male_names)

    def children(self, relation: str, surname: str, father: str, youngest_parent_age: int, most: int) -> list[Person]:
        oldest = min(youngest_parent_age - 18, 30)
        if oldest < 0:
            return []
        n = self.rng.choices(range(most + 1), weights=[2, 30, 35, 20, 9, 4][: most + 1])[0]
        ages = sorted((self.rng.randint(0, oldest) for _ in range(n)), reverse=True)
        kids = []
        for a in ages:
            sex = self.rng.choice(("male", "female"))
            kids.append(self.person(sex=sex, age=a, relation=relation, surname=surname, father=father))
        return kids


def make_household(rng: random.Random, family: Family) -> list[Person]:
    """Persons of one household; person 1 is the head."""
    eth = pick_ethnicity(rng)
    h = _Household(rng, family.moment, eth, eth.pick_patronymic_style(rng), eth.pick_language(rng),
                   eth.pick_citizenship(rng))
    base = rng.choice(eth.surnames)
    shape = rng.choices(
        ["single", "couple", "nuclear", "single_parent", "with_parents", "three_generations"],
        weights=[12, 16, 40, 10, 11, 11],
    )[0]
    persons: list[Person] = []
    if shape == "single":
        age = rng.randint(19, 90)
        persons.append(h.person(sex=rng.choice(("male", "female")), age=age, relation="head", surname=base,
                                father=h.any_father()))
    elif shape == "single_parent":
        female = rng.random() < 0.85
        age = rng.randint(22, 55)
        head = h.person(sex="female" if female else "male", age=age, relation="head", surname=base,
                        father=h.any_father())
        father = h.any_father() if female else head["given_name"]
        persons = [head, *h.children("child", base, father, age, 3)]
    elif shape == "three_generations":
        persons = _three_generations(h, base)
    else:
        persons = _couple_household(h, base, shape)
    if rng.random() < 0.05 and len(persons) < 29:
        head = persons[0]
        sib_age = max(16, _age(head, family.moment) + rng.randint(-10, 10))
        sibling = h.person(sex=rng.choice(("male", "female")), age=sib_age, relation="sibling", surname=base,
                           father=None)
        if "patronymic" in head:  # same father as the head
            sibling["patronymic"] = patronymic(_father_of(head, h), female=sibling["sex"] == "female", style=h.style)
        persons.append(sibling)
    if rng.random() < 0.03 and len(persons) < 30:
        eth2 = pick_ethnicity(rng)
        other = _Household(rng, family.moment, eth2, eth2.pick_patronymic_style(rng), eth2.pick_language(rng), "KAZ")
        lodger = other.person(sex=rng.choice(("male", "female")), age=rng.randint(18, 40), relation="non_relative",
                              surname=rng.choice(other.eth.surnames), father=other.any_father())
        persons.append(lodger)
    for number, p in enumerate(persons, start=1):
        p["person_no"] = number
    return persons


def _couple_household(h: _Household, base: str, shape: str) -> list[Person]:
    rng = h.rng
    status = "married" if rng.random() < 0.9 else "cohabiting"
    husband_age = rng.randint(24, 62) if shape != "couple" else rng.randint(20, 88)
    if shape == "with_parents":
        husband_age = rng.randint(24, 50)
    wife_age = max(18, husband_age - rng.randint(-2, 8))
    grandfather = h.any_father()
    husband_is_head = rng.random() < 0.85
    husband = h.person(sex="male", age=husband_age, relation="head" if husband_is_head else "spouse", surname=base,
                       father=grandfather, marital=status)
    wife_surname = base if rng.random() < 0.8 else rng.choice(h.eth.surnames)
    wife = h.person(sex="female", age=wife_age, relation="spouse" if husband_is_head else "head",
                    surname=wife_surname, father=h.any_father(), marital=status)
    persons = [husband, wife] if husband_is_head else [wife, husband]
    if shape in ("nuclear", "with_parents"):
        persons += h.children("child", base, husband["given_name"], min(husband_age, wife_age), 5)
    if shape == "with_parents":
        head = persons[0]
        head_age = husband_age if husband_is_head else wife_age
        both = rng.random() < 0.45
        father_age = min(98, head_age + rng.randint(20, 38))
        mother_age = min(98, max(head_age + 18, father_age - rng.randint(0, 6)))
        # the head's own parents: the head's patronymic names the father
        parent_surname = base if husband_is_head else rng.choice(h.eth.surnames)
        head_father = _father_of(head, h)
        if both:
            father = h.person(sex="male", age=father_age, relation="parent", surname=parent_surname,
                              father=h.any_father(), marital="married")
            father["given_name"] = head_father
            persons.append(father)
        persons.append(h.person(sex="female", age=mother_age, relation="parent", surname=parent_surname,
                                father=h.any_father(), marital="married" if both else "widowed"))
    return persons


def _three_generations(h: _Household, base: str) -> list[Person]:
    """Elderly head and wife, their married son, his wife (the head's daughter-in-law), grandchildren."""
    rng = h.rng
    head_age = rng.randint(52, 82)
    wife_age = max(42, head_age - rng.randint(0, 7))
    head = h.person(sex="male", age=head_age, relation="head", surname=base, father=h.any_father(), marital="married")
    wife = h.person(sex="female", age=wife_age, relation="spouse", surname=base, father=h.any_father(),
                    marital="married")
    son_age = rng.randint(22, min(wife_age, head_age) - 20)
    son = h.person(sex="male", age=son_age, relation="child", surname=base, father=head["given_name"],
                   marital="married")
    dil_age = max(18, son_age - rng.randint(-2, 6))
    daughter_in_law = h.person(sex="female", age=dil_age, relation="other_relative", surname=base,
                               father=h.any_father(), marital="married")
    grandchildren = h.children("grandchild", base, son["given_name"], min(son_age, dil_age), 4)
    return [head, wife, son, daughter_in_law, *grandchildren]


def _age(person: Person, moment: date) -> int:
    born = date.fromisoformat(person["birth_date"])
    return moment.year - born.year - ((moment.month, moment.day) < (born.month, born.day))


def _father_of(person: Person, h: _Household) -> str:
    """The given name the person's patronymic was built from (any male name if it has none)."""
    pat = person.get("patronymic")
    if pat:
        for name in h.eth.male_names:
            if patronymic(name, female=person["sex"] == "female", style=h.style) == pat:
                return name
    return h.any_father()


_RESIDENT_AGES = {
    "childrens_home": ((0, 2, 5), (3, 17, 95)),
    "boarding_school": ((7, 17, 100),),
    "hospital": ((0, 17, 20), (18, 64, 45), (65, 95, 35)),
    "social_care_centre": ((18, 64, 35), (65, 98, 65)),
}


def make_resident(rng: random.Random, kind: str, moment: date) -> tuple[Person, bool]:
    """One institution resident, and whether the sheet is filled from administration records."""
    bands = _RESIDENT_AGES[kind]
    low, high, _ = rng.choices(bands, weights=[b[2] for b in bands])[0]
    age = rng.randint(low, high)
    eth = pick_ethnicity(rng)
    h = _Household(rng, moment, eth, eth.pick_patronymic_style(rng), eth.pick_language(rng), eth.pick_citizenship(rng))
    known_father = not (kind == "childrens_home" and rng.random() < 0.15)
    person = h.person(sex=rng.choice(("male", "female")), age=age, relation="resident",
                      surname=rng.choice(eth.surnames), father=h.any_father() if known_father else None)
    person["person_no"] = 1
    if kind in ("childrens_home", "boarding_school"):
        by_records = age < 10 or rng.random() < 0.3
    else:
        by_records = rng.random() < (0.35 if kind == "hospital" else 0.4)
    return person, by_records
