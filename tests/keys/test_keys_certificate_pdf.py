# ruff: noqa: RUF001, RUF003  (Kazakh letters are what this checks)
"""The participation certificate PDF: Kazakh and Russian text layer, real glyphs, a QR code that verifies.

Real tools on the real output: ``pdftotext`` (poppler) reads the text layer,
``pdftoppm`` rasterises a page, tesseract (kaz+rus) reads the raster back (tofu
boxes would not read as Kazakh words), and zxing-cpp decodes the QR code from
the raster into a carrier that ``wire.verify_certificate`` accepts
(``tests/pdf_tools.py``; a missing tool fails, naming its package).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from keys.certificate_pdf import PrintedCertificate, render_certificates_pdf
from tests.pdf_tools import ocr, pdf_text, qr_texts
from wire.certificate import (
    carrier_from_text,
    carrier_to_text,
    make_certificate,
    make_certificate_key,
    verify_certificate,
)

KAZAKH_LETTERS = "әғқңөұүһі"
ROOT = SigningKey(bytes(range(32)))
CERT_KEY = SigningKey(bytes(range(1, 33)))
# The issuing authority's printed name (configured on the service); "Шаһар" puts һ on the page.
ISSUER_NAME = "Атырау облысы бойынша Статистика департаменті, Шаһар бөлімі"
CASES = [("entry:AT-000123/00042", "tablet"), ("sheet:0f8fad5b-d9cb-469f-a165-70867728950e", "web"),
         ("entry:AT-000123/00043", "usb")]


def _certificates() -> list[PrintedCertificate]:
    key_doc = make_certificate_key(census="KZ-2020", issuer="staff-ATY", public_key=bytes(CERT_KEY.verify_key),
                                   issued_at_ms=1_600_000_000_000, root_key=ROOT)
    out = []
    for subject, road in CASES:
        carrier = key_doc + make_certificate(census="KZ-2020", subject=subject, day="2020-10-05", road=road,
                                             certificate_key=CERT_KEY)
        out.append(PrintedCertificate(verify_certificate(carrier, bytes(ROOT.verify_key)), ISSUER_NAME))
    return out


@pytest.fixture(scope="module")
def pdf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cert") / "certificates.pdf"
    path.write_bytes(render_certificates_pdf(_certificates(), verify_where="https://sanaq.example/certificate"))
    return path


def _text(pdf: Path, page: int) -> str:
    return pdf_text(pdf, page, layout=True)


def test_one_page_per_certificate_in_kazakh_and_russian(pdf: Path) -> None:
    pages = [_text(pdf, n) for n in (1, 2, 3)]
    for page, (subject, _) in zip(pages, CASES, strict=True):
        assert "Халық санағынан өту туралы анықтама" in page
        assert "Справка о прохождении переписи населения" in page
        assert subject.split(":", 1)[1] in page and "2020-10-05" in page and "KZ-2020" in page
    assert "Интернет" in pages[1] and "электронды жеткізгіш" in pages[2]
    with pytest.raises(subprocess.CalledProcessError):  # exactly three pages
        _text(pdf, 4)


def test_the_text_layer_has_every_kazakh_letter(pdf: Path) -> None:
    text = _text(pdf, 1)
    missing = [c for c in KAZAKH_LETTERS if c not in text]
    assert not missing, missing


def test_a_rasterised_page_reads_back_as_kazakh_not_tofu(pdf: Path, tmp_path: Path) -> None:
    text = ocr(pdf, tmp_path)
    # Each word needs its Kazakh letters drawn as themselves: ә ғ қ ң ө ұ ү і between them.
    for word in ("Халық санағынан өту туралы анықтама", "әдісі", "түпнұсқалығын", "респонденттің", "тізімдегі"):
        assert word in text, (word, text)


def test_the_qr_code_carries_the_signed_document(pdf: Path, tmp_path: Path) -> None:
    texts = qr_texts(pdf, tmp_path)
    assert len(texts) == len(CASES)
    for text, printed in zip(texts, _certificates(), strict=True):
        assert text == carrier_to_text(printed.certificate.raw)
        decoded = verify_certificate(carrier_from_text(text), bytes(ROOT.verify_key))
        assert (decoded.subject, decoded.road) == (printed.certificate.subject, printed.certificate.road)
