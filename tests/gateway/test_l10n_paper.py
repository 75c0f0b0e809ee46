# ruff: noqa: RUF001, RUF003  (Kazakh and Russian expectations)
"""Official paper in Kazakh and Russian: the acceptance-transfer act PDF and the access-code slips.

Read with poppler (``make setup`` installs poppler-utils): ``pdftotext`` for
the text layer, ``pdffonts`` for embedding, ``pdftoppm`` to rasterise. The
tofu check prints the nine Kazakh letters as nine one-letter words (the
responsible worker's name on the act) and compares their pixels: a font
without them would draw the same empty box nine times.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.staff import StaffConfig
from selfenum.slips import Slip, write_slips

from .harness import World
from .staff_browser import StaffClient, StaffGateway, start_staff_gateway
from .test_staff_acts import ISSUE

KAZAKH_LETTERS = "әғқңөұүһі"
LETTERS_AS_NAME = " ".join(KAZAKH_LETTERS)  # "ә ғ қ ң ө ұ ү һ і": one word per letter in the text layer
DPI = 144  # 2 pixels per PDF point


def run(*args: str) -> str:
    done = subprocess.run(args, capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, f"{args[0]} failed ({done.returncode}): {done.stderr} (make setup: poppler-utils)"
    return done.stdout


def embedded_fonts(pdf: Path) -> list[tuple[str, str]]:
    """(font name, emb column) per font of the PDF, from pdffonts."""
    rows = run("pdffonts", str(pdf)).splitlines()[2:]
    return [(r.split()[0], r.split()[-5]) for r in rows if r.strip()]


def page_pixels(pdf: Path, out: Path) -> tuple[int, int, bytes]:
    """Page 1 rasterised in 8-bit grey (binary PGM): width, height, pixels."""
    run("pdftoppm", "-gray", "-r", str(DPI), "-f", "1", "-l", "1", "-singlefile", str(pdf), str(out))
    data = out.with_suffix(".pgm").read_bytes()
    match = re.match(rb"P5\s+(\d+)\s+(\d+)\s+255\s", data)
    assert match, "not a binary PGM"
    width, height = int(match.group(1)), int(match.group(2))
    return width, height, data[match.end():]


def word_boxes(pdf: Path) -> list[tuple[str, float, float, float, float]]:
    html = run("pdftotext", "-bbox", "-f", "1", "-l", "1", str(pdf), "-")
    pattern = r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">([^<]*)</word>'
    return [(w, float(a), float(b), float(c), float(d)) for a, b, c, d, w in re.findall(pattern, html)]


def glyph(pixels: tuple[int, int, bytes], box: tuple[float, float, float, float]) -> tuple[str, ...]:
    """The inked pixels of one word's box as rows of '#' and '.', trimmed to the ink."""
    width, _, data = pixels
    scale = DPI / 72
    x0, y0, x1, y1 = (round(v * scale) for v in box)
    rows = ["".join("#" if data[y * width + x] < 128 else "." for x in range(x0, x1)) for y in range(y0, y1)]
    inked = [r for r in rows if "#" in r]
    if not inked:
        return ()
    left = min(r.index("#") for r in inked)
    right = max(len(r) - r[::-1].index("#") for r in inked)
    return tuple(r[left:right] for r in inked)


@pytest.fixture
async def gw(world: World, tmp_path: Path) -> AsyncIterator[StaffGateway]:
    gateway = await start_staff_gateway(world, tmp_path)
    yield gateway
    await gateway.stop()


async def act_pdf(gw: StaffGateway, tmp_path: Path) -> Path:
    admin = StaffClient(gw)
    try:
        assert await admin.login("admin") == 303
        form = ISSUE | {"csrf": admin.csrf, "worker_name": LETTERS_AS_NAME, "staff_name": "Һәкім Ғалымұлы"}
        status, _, resp = await admin.post("/staff/acts", form)
        assert status == 303
        async with admin.session.get(f"{gw.url}{resp.headers['Location']}/pdf") as got:
            assert got.status == 200 and got.content_type == "application/pdf"
            path = tmp_path / "act.pdf"
            path.write_bytes(await got.read())
    finally:
        await admin.close()
    return path


async def test_the_act_pdf_is_kazakh_and_russian_with_an_embedded_font(gw: StaffGateway, tmp_path: Path) -> None:
    pdf = await act_pdf(gw, tmp_path)
    text = run("pdftotext", "-layout", str(pdf), "-")
    for words in ("қабылдау-беру актісі", "Акт приёма-передачи", "Санақ планшетін жауапты қызметкерге беру",
                  "Передача переписного планшета ответственному работнику", "Тапсырды", "Передал", "Қабылдады",
                  "Принял", "Жауапты қызметкер", "Ответственный работник", "зарядтау құрылғысы, USB шнуры",
                  "жоғарыда аталған керек-жарақтар", "Астана уақыты"):
        assert words in text, words
    assert "Acceptance-transfer" not in text  # official paper: no English
    assert set(KAZAKH_LETTERS) <= set(text)
    assert LETTERS_AS_NAME in text
    fonts = embedded_fonts(pdf)
    assert fonts and all(emb == "yes" for _, emb in fonts), fonts
    assert any("DejaVuSans" in name for name, _ in fonts)


async def test_the_act_pdf_draws_each_kazakh_letter_not_tofu(gw: StaffGateway, tmp_path: Path) -> None:
    pdf = await act_pdf(gw, tmp_path)
    pixels = page_pixels(pdf, tmp_path / "page")
    boxes = {w: (x0, y0, x1, y1) for w, x0, y0, x1, y1 in word_boxes(pdf) if len(w) == 1 and w in KAZAKH_LETTERS}
    assert set(boxes) == set(KAZAKH_LETTERS), f"letters found as words: {sorted(boxes)}"
    glyphs = {letter: glyph(pixels, box) for letter, box in boxes.items()}
    assert all(glyphs.values()), [k for k, v in glyphs.items() if not v]  # every letter leaves ink
    assert len(set(glyphs.values())) == len(KAZAKH_LETTERS), "two letters drew the same shape: a missing glyph"


def test_slips_print_kazakh_and_russian_with_an_embedded_font(tmp_path: Path) -> None:
    pdf = tmp_path / "slips.pdf"
    slips = [Slip("AB-000001/00001", "Жұмабаева Әйгерім", "7KQM2XHDPW9C4NTFR3E8"),
             Slip("AB-000001/00002", "Өмірзақов Ұлан", "4NTFR3E87KQM2XHDPW9C")]
    write_slips(pdf, "AB-000001", slips, url="https://sanaq.example/", window="01.10.2020 - 15.10.2020",
                font=StaffConfig().pdf_font)
    text = run("pdftotext", str(pdf), "-")
    one_line = " ".join(text.split())
    assert "Халық санағы онлайн режимде. Санақ парағын https://sanaq.example/ сайтында" in one_line
    assert "Перепись населения онлайн. Заполните переписной лист на сайте https://sanaq.example/" in one_line
    assert "Жұмабаева Әйгерім" in text and "Өмірзақов Ұлан" in text
    fonts = embedded_fonts(pdf)
    assert fonts and all(emb == "yes" for _, emb in fonts), fonts
