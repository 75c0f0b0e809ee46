# ruff: noqa: RUF001, RUF002  (Kazakh and Russian expectations)
"""The catalogs: complete in Kazakh and Russian, placeholders kept, plural forms right, extraction up to date.

Covers every ``l10n`` domain (staff dashboard, station, paper) and the
respondents' site (``selfenum/locale``). The extraction check re-reads the
code and templates as ``python -m l10n.extract --check`` does, so a new
message id without translations, or new literal text in a template outside
``_()``/``{% trans %}``, fails here.
"""

from __future__ import annotations

import io
import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.plurals import get_plural
from babel.messages.pofile import read_po

from l10n import DOMAINS, LOCALE_DIR, Catalogs, LocalFormat
from l10n.extract import DOMAINS as EXTRACT_DOMAINS
from l10n.extract import ROOT, check, template_literals
from selfenum.i18n import LOCALE_DIR as SELFENUM_LOCALE

CATALOGS = [(domain, LOCALE_DIR / lang / "LC_MESSAGES" / f"{domain}.po", lang) for domain in DOMAINS
            for lang in ("kk", "ru")] + [
    ("selfenum", SELFENUM_LOCALE / lang / "LC_MESSAGES" / "selfenum.po", lang) for lang in ("kk", "ru")]
_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%[sd]")
KAZAKH_LETTERS = "әғқңөұүһі"


def _read(path: Path, lang: str) -> Catalog:
    return read_po(io.BytesIO(path.read_bytes()), locale=lang)


def _forms(value: object) -> list[str]:
    return list(value) if isinstance(value, tuple | list) else [str(value)]


@pytest.mark.parametrize(("domain", "path", "lang"), CATALOGS, ids=[f"{d}-{lang}" for d, _, lang in CATALOGS])
def test_every_message_has_a_translation_with_the_same_placeholders(domain: str, path: Path, lang: str) -> None:
    catalog = _read(path, lang)
    messages = [m for m in catalog if m.id]
    assert len(messages) >= 20, f"{path} looks truncated"
    nplurals = get_plural(lang).num_plurals
    for m in messages:
        ids, strings = _forms(m.id), _forms(m.string)
        assert all(s.strip() for s in strings), f"{path}: no {lang} translation of {ids[0]!r}"
        assert not m.fuzzy, f"{path}: {ids[0]!r} is fuzzy"
        if m.pluralizable:
            assert len(strings) == nplurals, f"{path}: {ids[0]!r} needs {nplurals} plural forms"
        wanted = set(_PLACEHOLDER.findall(ids[-1]))
        assert "" not in wanted, f"{ids[0]!r}: placeholders must be named (%(name)s), not positional"
        for s in strings:
            assert set(_PLACEHOLDER.findall(s)) == wanted, f"{path}: placeholders of {ids[0]!r} differ in {s!r}"


@pytest.mark.parametrize(("domain", "path", "lang"), CATALOGS, ids=[f"{d}-{lang}" for d, _, lang in CATALOGS])
def test_the_plural_forms_header_is_the_languages_own(domain: str, path: Path, lang: str) -> None:
    catalog = _read(path, lang)
    assert catalog.num_plurals == get_plural(lang).num_plurals
    assert catalog.plural_expr.replace(" ", "") == get_plural(lang).plural_expr.replace(" ", "")


@pytest.mark.parametrize(("n", "form"), [(1, "день"), (2, "дня"), (4, "дня"), (5, "дней"), (11, "дней"),
                                         (12, "дней"), (21, "день"), (22, "дня"), (25, "дней"), (111, "дней")])
def test_russian_has_three_plural_forms(n: int, form: str) -> None:
    assert Catalogs("staff").ngettext("ru", "%(n)s day", "%(n)s days", n) == f"{n} {form}"


@pytest.mark.parametrize("n", [1, 2, 5, 21])
def test_kazakh_keeps_the_noun_singular_after_a_number(n: int) -> None:
    assert Catalogs("staff").ngettext("kk", "%(n)s day", "%(n)s days", n) == f"{n} күн"


def test_english_shows_the_message_ids() -> None:
    staff = Catalogs("staff")
    assert staff.gettext("en", "Custody acts") == "Custody acts"
    assert staff.ngettext("en", "%(n)s day", "%(n)s days", 1) == "1 day"
    assert staff.gettext("kk", "Custody acts") == "Қабылдау-беру актілері"
    assert staff.gettext("ru", "Custody acts") == "Акты приёма-передачи"


def test_glossary_terms_are_used_for_census_words() -> None:
    """GLOSSARY.md: census sheet, responsible worker, acceptance-transfer act, USB cable."""
    staff, paper = Catalogs("staff"), Catalogs("paper")
    assert "санақ парақтары" in staff.gettext("kk", "census sheets stored")
    assert "переписных листов" in staff.gettext("ru", "census sheets stored")
    assert staff.gettext("kk", "Responsible worker") == "Жауапты қызметкер"
    assert staff.gettext("ru", "Responsible worker") == "Ответственный работник"
    assert "қабылдау-беру актісі" in paper.gettext("kk", "Acceptance-transfer act No. %(act)s", act="AT-1")
    assert paper.gettext("ru", "Acceptance-transfer act No. %(act)s", act="AT-1") == "Акт приёма-передачи № AT-1"
    assert (paper.gettext("kk", "USB cable"), paper.gettext("ru", "USB cable")) == ("USB шнуры", "USB-кабель")


@pytest.mark.parametrize("domain", EXTRACT_DOMAINS, ids=[d.name for d in EXTRACT_DOMAINS])
def test_catalogs_match_the_code_and_templates_have_no_literal_text(domain) -> None:
    assert check(domain) == []


@pytest.fixture
def staff_copy(tmp_path: Path):
    """The staff domain over a copy of its code, templates and catalogs, to change freely."""
    (tmp_path / "gateway").mkdir()
    shutil.copytree(ROOT / "gateway" / "staff", tmp_path / "gateway" / "staff")
    shutil.copytree(LOCALE_DIR, tmp_path / "locale")
    domain = next(d for d in EXTRACT_DOMAINS if d.name == "staff")
    copy = replace(domain, root=tmp_path, locale_dir=tmp_path / "locale")
    assert check(copy) == []
    return copy


def test_a_new_literal_in_a_template_fails_the_check(staff_copy) -> None:
    page = staff_copy.root / "gateway" / "staff" / "templates" / "dashboard.html"
    page.write_text(page.read_text("utf-8").replace("{% block main %}", "{% block main %}\n<p>Sync is slow today</p>"))
    problems = check(staff_copy)
    assert len(problems) == 1 and "dashboard.html:5: literal text" in problems[0] and "Sync is slow" in problems[0]


def test_a_new_attribute_text_in_a_template_fails_the_check(staff_copy) -> None:
    page = staff_copy.root / "gateway" / "staff" / "templates" / "login.html"
    page.write_text(page.read_text("utf-8").replace('maxlength="64"', 'maxlength="64" placeholder="your name"'))
    assert any("your name" in p for p in check(staff_copy))


def test_a_new_message_without_translations_fails_the_check(staff_copy) -> None:
    page = staff_copy.root / "gateway" / "staff" / "templates" / "dashboard.html"
    page.write_text(page.read_text("utf-8").replace("{% block main %}", '{% block main %}{{ _("Brand new words") }}'))
    problems = check(staff_copy)
    assert "staff/kk: not in the catalog (run python -m l10n.extract): 'Brand new words'" in problems
    assert "staff/ru: not in the catalog (run python -m l10n.extract): 'Brand new words'" in problems


def test_updating_adds_new_ids_with_empty_translations_that_the_check_reports(staff_copy) -> None:
    from l10n.extract import update

    source = staff_copy.root / "gateway" / "staff" / "web_pages.py"
    source.write_text(source.read_text("utf-8") + '\n\nNEW = N_("A message added today")\n')
    update(staff_copy)
    problems = check(staff_copy)
    assert problems == ["staff/kk: empty translation of 'A message added today'",
                        "staff/ru: empty translation of 'A message added today'"]
    kept = _read(staff_copy.locale_dir / "ru" / "LC_MESSAGES" / "staff.po", "ru")
    assert kept["Custody acts"].string == "Акты приёма-передачи"  # existing translations survive an update


def test_text_inside_trans_blocks_and_gettext_calls_is_not_literal() -> None:
    source = ('{% trans %}Hello there{% endtrans %} <b title="{{ _("Tip") }}">{{ _("Hi") }}</b> · Sanaq Sync '
              '{# a comment with words #}<script>var words = 1;</script>')
    assert template_literals(source) == []
    assert template_literals('<p>\n{{ x }} sheets</p>') == [(2, "sheets")]


def test_local_formats_of_dates_and_numbers() -> None:
    at_ms = 1_601_712_300_000  # 2020-10-03T08:05Z = 13:05 Astana (UTC+05:00)
    assert LocalFormat("kk", 300).datetime(at_ms) == "03.10.2020 13:05"
    assert LocalFormat("ru", 300).datetime(at_ms, seconds=True) == "03.10.2020 13:05:00"
    assert LocalFormat("en", 300).datetime(at_ms) == "2020-10-03 13:05"
    assert LocalFormat("ru", 300).number(1234567) == "1\u00a0234\u00a0567"
    assert LocalFormat("kk", 300).number(87.54, digits=1) == "87,5"
    assert LocalFormat("en", 300).number(1234567) == "1,234,567"
    assert LocalFormat("kk", 300).iso_date("2020-06-01") == "01.06.2020"
    assert (LocalFormat("ru", 300).month_day("10-03"), LocalFormat("en", 300).month_day("10-03")) == ("03.10", "10-03")


def test_the_kazakh_catalogs_use_the_kazakh_letters() -> None:
    """A catalog typed with look-alike Latin or Russian letters instead of ә ғ қ ң ө ұ ү һ і would pass the rest."""
    text = "\n".join("\n".join(_forms(m.string)) for d in DOMAINS  # apart: one string's end never meets the next
                   for m in _read(LOCALE_DIR / "kk" / "LC_MESSAGES" / f"{d}.po", "kk") if m.id)
    assert set(KAZAKH_LETTERS) - {"һ"} <= set(text)
    assert not re.search(r"[a-z][әғқңөұүі]|[әғқңөұүі][a-z]", text), "Latin letters glued to Kazakh ones"
