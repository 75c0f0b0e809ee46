# ruff: noqa: RUF001, RUF002, SIM905  (Cyrillic name tables, written as space-separated words per line)
"""Name and ethnicity tables for synthetic census persons, with the inflection rules they need.

Synthetic data only: common Kazakh and Russian names (and a few other groups
living in Kazakhstan), written in Cyrillic. Female surnames follow the Russian
pattern (-ов/-ев/-ин + а, -ский -> -ская) except invariant ones (Шевченко,
Ким, Шмидт). Patronymics are built from the father's given name: Kazakh style
``<name>ұлы`` / ``<name>қызы``, or Russian style ``-ович`` / ``-овна`` (with
the irregular forms of names like Михаил, Юрий, Никита spelled out).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["ETHNICITIES", "Ethnicity", "female_surname", "patronymic", "pick_ethnicity"]

_RU_MALE: dict[str, tuple[str, str]] = {
    # given name: (patronymic of a son, patronymic of a daughter)
    "Сергей": ("Сергеевич", "Сергеевна"),
    "Александр": ("Александрович", "Александровна"),
    "Дмитрий": ("Дмитриевич", "Дмитриевна"),
    "Андрей": ("Андреевич", "Андреевна"),
    "Алексей": ("Алексеевич", "Алексеевна"),
    "Владимир": ("Владимирович", "Владимировна"),
    "Николай": ("Николаевич", "Николаевна"),
    "Михаил": ("Михайлович", "Михайловна"),
    "Иван": ("Иванович", "Ивановна"),
    "Евгений": ("Евгеньевич", "Евгеньевна"),
    "Игорь": ("Игоревич", "Игоревна"),
    "Юрий": ("Юрьевич", "Юрьевна"),
    "Олег": ("Олегович", "Олеговна"),
    "Виктор": ("Викторович", "Викторовна"),
    "Павел": ("Павлович", "Павловна"),
    "Максим": ("Максимович", "Максимовна"),
    "Артём": ("Артёмович", "Артёмовна"),
    "Кирилл": ("Кириллович", "Кирилловна"),
    "Никита": ("Никитич", "Никитична"),
    "Роман": ("Романович", "Романовна"),
}
_RU_FEMALE = (
    "Ольга Елена Татьяна Наталья Ирина Светлана Анна Мария Екатерина Юлия Галина Людмила "
    "Валентина Анастасия Дарья Полина Виктория Ксения София Алиса"
).split()
_RU_SURNAMES = (
    "Иванов Петров Смирнов Кузнецов Попов Васильев Соколов Михайлов Новиков Фёдоров Морозов "
    "Волков Алексеев Лебедев Семёнов Егоров Павлов Козлов Степанов Николаев Орлов Макаров "
    "Никитин Захаров Зайцев Соловьёв Борисов Яковлев Григорьев Романов Белов Тарасов Комаров "
    "Вишневский Ковальский"
).split()

_KZ_MALE = (
    "Нұрлан Ерлан Асқар Бауыржан Дәурен Ержан Қайрат Марат Серік Талғат Арман Әлихан Ернұр "
    "Нұрсұлтан Дамир Алмас Ақжол Бекзат Санжар Ерасыл Алдияр Айсұлтан Нұрислам Жандос Мұхтар"
).split()
_KZ_FEMALE = (
    "Айгүл Гүлнар Жанар Әсел Динара Айгерім Меруерт Сәуле Гүлмира Назерке Аружан Томирис "
    "Жансая Әйгерім Дана Айша Раушан Ботагөз Ақмарал Салтанат"
).split()
_KZ_SURNAMES = (
    "Қасымов Әбдірахманов Жұмабаев Серікбаев Ахметов Омаров Сәрсенбаев Тоқтаров Бекмұханов "
    "Дүйсенбаев Оспанов Мұқанов Есенов Төлеуов Байжанов Құдайбергенов Сейітов Нұрланов Ерғалиев "
    "Исаев Жақсылықов"
).split()

_VOWELS = set("аеёиоуыэюяәөұүіАЕЁИОУЫЭЮЯӘӨҰҮІ")


def female_surname(surname: str) -> str:
    """The female form of a surname; invariant surnames are returned unchanged."""
    if surname.endswith("ский"):
        return surname[:-2] + "ая"
    if surname.endswith(("ов", "ев", "ёв", "ин")):
        return surname + "а"
    return surname


def patronymic(father: str, *, female: bool, style: str) -> str:
    """Patronymic from the father's given name in ``style`` "kazakh" (-ұлы/-қызы) or "russian" (-ович/-овна)."""
    if father in _RU_MALE:
        return _RU_MALE[father][1 if female else 0]
    if style == "kazakh" or father[-1] in _VOWELS:
        return father + ("қызы" if female else "ұлы")
    return father + ("овна" if female else "ович")


@dataclass(frozen=True, slots=True)
class Ethnicity:
    """One ethnic group: how its members answer the nationality question and what names they carry."""

    key: str
    nationality_male: str
    nationality_female: str
    languages: tuple[str, ...]  # ISO 639-3, most common first
    surnames: tuple[str, ...]
    male_names: tuple[str, ...]
    female_names: tuple[str, ...]
    patronymic_style: str  # "kazakh", "russian" or "mixed"
    citizenships: tuple[str, ...]  # ISO 3166-1 alpha-3, most common first
    weight: int

    def nationality(self, *, female: bool) -> str:
        return self.nationality_female if female else self.nationality_male

    def pick_patronymic_style(self, rng: random.Random) -> str:
        if self.patronymic_style == "mixed":
            return "kazakh" if rng.random() < 0.6 else "russian"
        return self.patronymic_style

    def pick_language(self, rng: random.Random) -> str:
        return self.languages[0] if rng.random() < 0.8 else rng.choice(self.languages)

    def pick_citizenship(self, rng: random.Random) -> str:
        return self.citizenships[0] if rng.random() < 0.97 else rng.choice(self.citizenships)


_RU_M = tuple(_RU_MALE)


def _group(
    key: str, nat_m: str, nat_f: str, *, langs: str, surnames: str, weight: int, cit: str = "KAZ", names: str = ""
) -> Ethnicity:
    """Smaller groups: own surnames, Russian-style patronymics; given names their own or Russian.

    ``names`` is "male names | female names"; male names end in a consonant, so the
    regular -ович/-овна rule fits them.
    """
    male, female = (tuple(part.split()) for part in names.split("|")) if names else (_RU_M, tuple(_RU_FEMALE))
    return Ethnicity(
        key, nat_m, nat_f, tuple(langs.split()), tuple(surnames.split()), male, female,
        "russian", tuple(cit.split()), weight,
    )


ETHNICITIES: tuple[Ethnicity, ...] = (
    Ethnicity(
        "kazakh", "казах", "казашка", ("kaz", "rus"), tuple(_KZ_SURNAMES), tuple(_KZ_MALE), tuple(_KZ_FEMALE),
        "mixed", ("KAZ", "UZB", "MNG", "CHN", "XXA"), 70,
    ),
    Ethnicity(
        "russian", "русский", "русская", ("rus",), tuple(_RU_SURNAMES), _RU_M, tuple(_RU_FEMALE),
        "russian", ("KAZ", "RUS"), 18,
    ),
    _group("ukrainian", "украинец", "украинка", langs="rus ukr",
           surnames="Шевченко Бондаренко Коваленко Ткаченко Мельник", weight=2),
    _group(
        "uzbek", "узбек", "узбечка", langs="uzb rus", surnames="Каримов Юсупов Рахимов Алимов Турсунов", weight=3,
        cit="KAZ UZB",
        names="Рустам Азиз Бахтиёр Шерзод Улугбек Жасур | Дилноза Гульнора Нигора Шахноза Мохира",
    ),
    _group(
        "uyghur", "уйгур", "уйгурка", langs="uig rus kaz", surnames="Масимов Турдиев Хамраев Исмаилов", weight=2,
        names="Ахмет Алим Дильшат Ильхам Мурат | Зульфия Мадина Гульмира Рахила Динара",
    ),
    _group(
        "tatar", "татарин", "татарка", langs="tat rus", surnames="Хасанов Сафин Гарипов Валиев Ахмадуллин", weight=2,
        names="Ринат Рустем Ильдар Марат Тимур | Гульнара Альфия Лейсан Венера Эльмира",
    ),
    _group("german", "немец", "немка", langs="rus deu", surnames="Шмидт Мюллер Вебер Шнайдер Фишер", weight=1,
           cit="KAZ DEU"),
    _group("korean", "кореец", "кореянка", langs="rus kor", surnames="Ким Пак Цой Ли Тен", weight=2),
)


def pick_ethnicity(rng: random.Random) -> Ethnicity:
    return rng.choices(ETHNICITIES, weights=[e.weight for e in ETHNICITIES])[0]
