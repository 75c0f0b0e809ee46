"""The synthetic sheet generator: deterministic, varied, and consistent inside each household."""

from __future__ import annotations

import collections
from datetime import date

import pytest

from tablet.generator import CENSUS_MOMENT, KindMix, generate_sheets, tablet_profile
from tablet.people import female_surname, patronymic
from tablet.places import SCHEMA_KIND
from wire import canonical

GEN_KIND = {code: kind for kind, code in SCHEMA_KIND.items()}  # institution_kind code -> generator kind
KAZAKH_LETTERS = set("ӘәҒғҚқҢңӨөҰұҮүҺһІі")


def _age(birth: str, moment: date = CENSUS_MOMENT) -> int:
    b = date.fromisoformat(birth)
    return moment.year - b.year - ((moment.month, moment.day) < (b.month, b.day))


@pytest.fixture(scope="module")
def many() -> list[dict]:
    return generate_sheets(11, 600, device_id="tab-gen")


def test_same_seed_same_bytes() -> None:
    a = generate_sheets(42, 80, device_id="tab-a")
    b = generate_sheets(42, 80, device_id="tab-a")
    assert [canonical.encode(s) for s in a] == [canonical.encode(s) for s in b]


@pytest.mark.parametrize(("seed", "device"), [(43, "tab-a"), (42, "tab-b")])
def test_other_seed_or_device_other_sheets(seed: int, device: str) -> None:
    base = generate_sheets(42, 20, device_id="tab-a")
    other = generate_sheets(seed, 20, device_id=device)
    assert not {s["sheet_id"] for s in base} & {s["sheet_id"] for s in other}


def test_stream_does_not_depend_on_how_it_is_cut() -> None:
    whole = generate_sheets(9, 60, device_id="tab-a")
    parts = generate_sheets(9, 25, device_id="tab-a") + generate_sheets(9, 35, device_id="tab-a", start=25)
    assert whole == parts
    assert generate_sheets(9, 0, device_id="tab-a") == []


def test_worker_id_override() -> None:
    assert {s["worker_id"] for s in generate_sheets(1, 30, device_id="tab-a", worker_id="rw-77")} == {"rw-77"}


@pytest.mark.parametrize("weights", [{"household": -1}, dict.fromkeys(
    ("household", "childrens_home", "boarding_school", "hospital", "social_care_centre"), 0)])
def test_kind_mix_rejects_bad_weights(weights: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="weights"):
        KindMix(**weights)


def test_variety(many: list[dict]) -> None:
    kinds = collections.Counter(GEN_KIND.get(s.get("institution_kind", ""), "household") for s in many)
    assert set(kinds) == {"household", "childrens_home", "boarding_school", "hospital", "social_care_centre"}
    assert kinds["household"] > 400
    persons = [p for s in many for p in s["persons"]]
    relations = collections.Counter(p["relation_to_head"] for p in persons)
    for rel in ("head", "spouse", "child", "parent", "grandchild", "other_relative", "resident"):
        assert relations[rel] > 0, rel
    assert max(len(s["persons"]) for s in many) >= 6
    surnames = {p["surname"] for p in persons}
    assert any(KAZAKH_LETTERS & set(n) for n in surnames)
    assert {"Иванов", "Иванова"} & surnames or {"Петров", "Петрова"} & surnames or any(
        n.endswith(("ов", "ова")) and not KAZAKH_LETTERS & set(n) for n in surnames)
    patronymics = {p.get("patronymic", "") for p in persons}
    for ending in ("ұлы", "қызы", "ович", "овна"):
        assert any(x.endswith(ending) for x in patronymics), ending
    assert {p["sex"] for p in persons} == {"male", "female"}
    assert len({p["nationality"] for p in persons}) >= 6
    assert {s["source"] for s in many if s["form"] == "institution"} == {"interview", "administration_records"}


def test_names_agree_with_sex(many: list[dict]) -> None:
    for p in (p for s in many for p in s["persons"]):
        pat = p.get("patronymic")
        if p["sex"] == "female":
            assert not p["surname"].endswith(("ов", "ев", "ин", "ский")), p["surname"]
            assert pat is None or pat.endswith(("қызы", "овна", "евна", "ична")), pat
        else:
            assert not p["surname"].endswith(("ова", "ева", "ина", "ская")), p["surname"]
            assert pat is None or pat.endswith(("ұлы", "ович", "евич", "ич")), pat


@pytest.mark.parametrize(
    ("male", "female"),
    [("Қасымов", "Қасымова"), ("Иванов", "Иванова"), ("Соловьёв", "Соловьёва"), ("Никитин", "Никитина"),
     ("Вишневский", "Вишневская"), ("Шевченко", "Шевченко"), ("Ким", "Ким"), ("Шмидт", "Шмидт")],
)
def test_female_surname(male: str, female: str) -> None:
    assert female_surname(male) == female


@pytest.mark.parametrize(
    ("father", "female", "style", "expected"),
    [("Нұрлан", False, "kazakh", "Нұрланұлы"), ("Нұрлан", True, "kazakh", "Нұрланқызы"),
     ("Нұрлан", True, "russian", "Нұрлановна"), ("Сергей", False, "kazakh", "Сергеевич"),
     ("Михаил", True, "russian", "Михайловна"), ("Юрий", False, "russian", "Юрьевич"),
     ("Никита", True, "russian", "Никитична")],
)
def test_patronymic(father: str, female: bool, style: str, expected: str) -> None:
    assert patronymic(father, female=female, style=style) == expected


def test_ages_follow_relations(many: list[dict]) -> None:
    for sheet in (s for s in many if s["form"] == "household"):
        persons = sheet["persons"]
        assert [p["person_no"] for p in persons] == list(range(1, len(persons) + 1))
        ages = {p["person_no"]: _age(p["birth_date"]) for p in persons}
        assert all(0 <= a <= 110 for a in ages.values())
        by_rel = collections.defaultdict(list)
        for p in persons:
            by_rel[p["relation_to_head"]].append(ages[p["person_no"]])
        couple = by_rel["head"] + by_rel["spouse"]
        if by_rel["child"] and by_rel["grandchild"]:
            assert max(by_rel["grandchild"]) <= max(by_rel["child"]) - 16
        elif by_rel["child"]:
            assert max(by_rel["child"]) <= min(couple) - 16, sheet["sheet_id"]
        for parent_age in by_rel["parent"]:
            assert parent_age >= by_rel["head"][0] + 16
        for p in persons:
            if ages[p["person_no"]] < 16:
                assert p["marital_status"] == "not_applicable"
            if ages[p["person_no"]] < 7:
                assert p["education"] == "not_applicable"
        if by_rel["spouse"]:
            statuses = {p["marital_status"] for p in persons if p["relation_to_head"] in ("head", "spouse")}
            assert statuses in ({"married"}, {"cohabiting"})


def test_filled_at_increases_through_the_field_period(many: list[dict]) -> None:
    times = [s["filled_at_ms"] for s in many]
    assert times == sorted(times) and len(set(times)) == len(times)
    assert all(0 <= (t - times[0]) < 31 * 86_400_000 for t in times)


def test_institution_sheets_answer_distinct_list_entries() -> None:
    mix = KindMix.only(childrens_home=1, boarding_school=1, hospital=1, social_care_centre=1)
    sheets = generate_sheets(3, 80, device_id="tab-inst", mix=mix)
    profile = tablet_profile(3, "tab-inst", mix)
    entries = [s["respondent_list_entry"] for s in sheets]
    assert len(set(entries)) == len(entries)
    for s in sheets:
        inst = profile.institutions[GEN_KIND[s["institution_kind"]]]
        assert s["institution_code"] == inst.code
        assert s["respondent_list_entry"].startswith(inst.code + "/")
        assert 1 <= int(s["respondent_list_entry"].split("/")[1]) <= inst.list_size
        assert s["address"] == inst.address
        assert s["persons"][0]["relation_to_head"] == "resident"
    ages = collections.defaultdict(list)
    for s in sheets:
        ages[GEN_KIND[s["institution_kind"]]].append(_age(s["persons"][0]["birth_date"]))
    assert max(ages["childrens_home"]) <= 17 and max(ages["boarding_school"]) <= 17
    assert min(ages["social_care_centre"]) >= 18


def test_only_mixed_kinds_appear() -> None:
    sheets = generate_sheets(4, 40, device_id="tab-h", mix=KindMix.only(hospital=1))
    assert {s["institution_kind"] for s in sheets} == {"inpatient_care"}
