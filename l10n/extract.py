"""Extraction: which files feed which catalog, updating the ``.po`` files, and the checks the tests run.

``python -m l10n.extract`` re-reads the code and templates of every domain
and merges the message ids into the Kazakh and Russian ``.po`` files (new ids
get an empty translation, gone ids are dropped, translator notes from
``# TRANSLATORS:`` / ``{# TRANSLATORS: #}`` comments are carried over).
``python -m l10n.extract --check`` changes nothing and exits 1 when a catalog
is out of date, a translation is empty, or a template has literal text
outside ``_()`` / ``{% trans %}``. Run from the repository root.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import jinja2
from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_file
from babel.messages.pofile import read_po, write_po

from .catalogs import LOCALE_DIR

__all__ = ["DOMAINS", "Domain", "check", "extract", "main", "template_literals", "update"]

ROOT = Path(__file__).resolve().parent.parent
_JINJA = "jinja2.ext:babel_extract"
_JINJA_OPTIONS = {"extensions": "jinja2.ext.i18n", "trimmed": "false", "newstyle_gettext": "true"}
_COMMENT_TAGS = ("TRANSLATORS:",)
# gettext's usual names, plus ``_both`` (gateway/staff/act_pdf.py: one message in Kazakh and Russian)
_KEYWORDS = {**DEFAULT_KEYWORDS, "_both": None}


@dataclass(frozen=True, slots=True)
class Domain:
    """A catalog and its sources (globs relative to the repository root)."""

    name: str
    python: tuple[str, ...]
    templates: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    locale_dir: Path = LOCALE_DIR
    root: Path = ROOT

    def files(self) -> Iterator[tuple[Path, str]]:
        skip = {p for pattern in self.exclude for p in self.root.glob(pattern)}
        for method, patterns in (("python", self.python), (_JINJA, self.templates)):
            for pattern in patterns:
                for path in sorted(self.root.glob(pattern)):
                    if path not in skip:
                        yield path, method


# Written at the top of every catalog: the words a translator meets in many messages, once.
TRANSLATOR_GLOSSARY = """\
Sanaq Sync translations ({domain} catalog). This file is the source: programs compile it when they start.
New message ids: `python -m l10n.extract`; check: `python -m l10n.extract --check` (docs/operations.md).
Keep every %(name)s placeholder. Census words follow the founding order (GLOSSARY.md), kk / ru:
  census sheet = санақ парағы / переписной лист; respondent = респондент / респондент
  responsible worker = жауапты қызметкер / ответственный работник
  Department employee = Департамент қызметкері / сотрудник Департамента
  acceptance-transfer act = қабылдау-беру актісі / акт приёма-передачи; tablet = планшет / планшет
  institution = мекеме / учреждение; first stage = бірінші кезең / первый этап
  USB cable = USB шнуры / USB-кабель; sync = синхрондау / синхронизация; online = онлайн / онлайн
Product words (not in the order), kept the same everywhere:
  registry (who holds which key) = тізілім / реестр; registry snapshot = тізілім көшірмесі / снимок реестра
  batch (one signed package of census sheets) = пакет / пакет; gateway = шлюз / шлюз
  station (USB ingest computer) = станция / станция; spool (batches waiting for the gateway) = кезек / очередь
  quarantined (stored, failed a sheet rule) = карантинде / в карантине; road (how a batch came) = жол / канал
  enumerated (has a census sheet) = санақтан өтті / переписан"""  # noqa: RUF001 - Kazakh and Russian words

DOMAINS = (
    Domain("staff", ("gateway/staff/*.py",), ("gateway/staff/templates/*.html",),
           exclude=("gateway/staff/act_pdf.py",)),
    Domain("station", ("usb_ingest/status.py", "usb_ingest/status_view.py", "usb_ingest/station.py",
                       "usb_ingest/daemon.py", "usb_ingest/__main__.py")),
    Domain("paper", ("gateway/staff/act_pdf.py", "keys/slips.py")),
)
# Text that may stand in a template untranslated: the product's name, symbols and numbers.
_PRODUCT = "Sanaq Sync"
_TEXT_ATTRIBUTES = ("title", "aria-label", "alt", "placeholder")


def extract(domain: Domain) -> Catalog:
    """The domain's message ids as they stand in the code, with locations and translator notes."""
    template = Catalog(domain=domain.name)
    for path, method in domain.files():
        options = _JINJA_OPTIONS if method == _JINJA else {}
        for lineno, message, comments, context in extract_from_file(
            method, str(path), keywords=_KEYWORDS, comment_tags=_COMMENT_TAGS, options=options,
            strip_comment_tags=True
        ):
            template.add(message, None, [(str(path.relative_to(domain.root)), lineno)], auto_comments=comments,
                         context=context)
    return template


def _po_path(domain: Domain, lang: str) -> Path:
    return domain.locale_dir / lang / "LC_MESSAGES" / f"{domain.name}.po"


def _read(path: Path, lang: str, domain: str) -> Catalog:
    return read_po(io.BytesIO(path.read_bytes()), locale=lang, domain=domain)


def _write(path: Path, catalog: Catalog) -> None:
    buf = io.BytesIO()
    write_po(buf, catalog, width=120, sort_output=True, ignore_obsolete=True, include_previous=False)
    path.write_bytes(buf.getvalue())


def update(domain: Domain) -> None:
    """Merge the code's message ids into the domain's ``kk`` and ``ru`` catalogs."""
    template = extract(domain)
    for lang in ("kk", "ru"):
        path = _po_path(domain, lang)
        if path.is_file():
            catalog = _read(path, lang, domain.name)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            catalog = Catalog(locale=lang, domain=domain.name, project="sanaq-sync", version="1",
                              copyright_holder="Statistics Department", msgid_bugs_address="census-it@stat.gov.kz",
                              language_team=f"{lang} <census-it@stat.gov.kz>", fuzzy=False)
        created = catalog.creation_date
        catalog.update(template, no_fuzzy_matching=True)
        catalog.creation_date = created  # unchanged ids give an unchanged file
        catalog.header_comment = "\n".join(f"# {line}".rstrip() for line in
                                            TRANSLATOR_GLOSSARY.format(domain=domain.name).splitlines())
        _write(path, catalog)


def _ids(message_id: object) -> tuple[str, ...]:
    return tuple(message_id) if isinstance(message_id, tuple | list) else (str(message_id),)


def check(domain: Domain) -> list[str]:
    """Problems: ids in the code but not the catalog (or the reverse), empty translations, literal text."""
    problems = []
    in_code = {m.id for m in extract(domain) if m.id}
    for lang in ("kk", "ru"):
        catalog = _read(_po_path(domain, lang), lang, domain.name)
        in_po = {m.id for m in catalog if m.id}
        problems += [f"{domain.name}/{lang}: not in the catalog (run python -m l10n.extract): {_ids(m)[0]!r}"
                     for m in in_code - in_po]
        problems += [f"{domain.name}/{lang}: no longer in the code: {_ids(m)[0]!r}" for m in in_po - in_code]
        for m in catalog:
            if m.id and (not m.string or any(not s for s in _ids(m.string))):
                problems.append(f"{domain.name}/{lang}: empty translation of {_ids(m.id)[0]!r}")
    for pattern in domain.templates:
        for path in sorted(domain.root.glob(pattern)):
            problems += [f"{path.relative_to(domain.root)}:{line}: literal text outside _() or trans: {text!r}"
                         for line, text in template_literals(path.read_text("utf-8"))]
    return problems


class _TextFinder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[int, str]] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        for name, value in attrs:
            if name in _TEXT_ATTRIBUTES and value:
                self._note(value)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self._note(data)

    def _note(self, text: str) -> None:
        line = self.getpos()[0]
        for raw in text.split(_HOLE):
            part = raw.strip()
            if any(c.isalpha() for c in part.replace(_PRODUCT, "")):
                self.found.append((line + raw[: len(raw) - len(raw.lstrip())].count("\n"), part))
            line += raw.count("\n")


_HOLE = "\u2063"  # stands for every Jinja expression, tag or comment: not a letter, splits the text around it


def template_literals(source: str) -> list[tuple[int, str]]:
    """(line, text) of human-readable text in a template that no ``_()`` or ``{% trans %}`` wraps.

    The template is lexed with Jinja's own lexer: raw text outside
    ``{% trans %}`` blocks is kept, everything else becomes a hole; the result
    is read as HTML and every text node and text attribute (title, aria-label,
    alt, placeholder) with a letter in it is reported.
    """
    env = jinja2.Environment(extensions=["jinja2.ext.i18n"], autoescape=True)
    out, in_trans, last = [], False, ""
    for _line, kind, value in env.lex(source):
        if kind == "name" and last == "block_begin" and value in ("trans", "endtrans"):
            in_trans = value == "trans"
        if kind not in ("whitespace",):
            last = kind
        if kind == "data" and not in_trans:
            out.append(value)
        else:
            out.append(_HOLE + "\n" * value.count("\n"))
    finder = _TextFinder()
    finder.feed("".join(out))
    finder.close()
    return finder.found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m l10n.extract", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 on any problem")
    args = parser.parse_args(argv)
    if not args.check:
        for domain in DOMAINS:
            update(domain)
    problems = [p for domain in DOMAINS for p in check(domain)]
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
