"""PDFs read back with real tools: poppler's text layer and raster, tesseract OCR, zxing-cpp QR decoding.

A missing tool fails the test naming the Debian package (``make setup`` installs them); it never skips.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import zxingcpp
from PIL import Image

__all__ = ["ocr", "pdf_text", "qr_texts", "tool"]

_PACKAGES = {"pdftotext": "poppler-utils", "pdftoppm": "poppler-utils",
             "tesseract": "tesseract-ocr tesseract-ocr-kaz tesseract-ocr-rus"}


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found on PATH: apt-get install {_PACKAGES[name]} (make setup installs it)")
    return path


def pdf_text(pdf: Path, page: int | None = None, *, layout: bool = False) -> str:
    """The text layer (of one page, 1-based); a page past the end raises ``CalledProcessError``."""
    pages = ["-f", str(page), "-l", str(page)] if page is not None else []
    return subprocess.run([tool("pdftotext"), *pages, *(["-layout"] if layout else []), str(pdf), "-"],
                          capture_output=True, text=True, check=True, timeout=60).stdout


def _raster(pdf: Path, out: Path, dpi: int, page: int | None) -> list[Path]:
    pages = ["-f", str(page), "-l", str(page)] if page is not None else []
    subprocess.run([tool("pdftoppm"), "-r", str(dpi), "-gray", "-png", *pages, str(pdf), str(out / "page")],
                   check=True, timeout=300)
    return sorted(out.glob("page-*.png"))


def qr_texts(pdf: Path, out: Path, *, dpi: int = 150) -> list[str]:
    """The text of the one QR code on each page, in page order."""
    texts = []
    for png in _raster(pdf, out, dpi, None):
        found = zxingcpp.read_barcodes(Image.open(png))
        assert len(found) == 1, png
        texts.append(str(found[0].text))
    return texts


def ocr(pdf: Path, out: Path, *, page: int = 1, languages: str = "kaz+rus") -> str:
    """What tesseract reads on a page rasterised at 300 dpi."""
    [png] = _raster(pdf, out, 300, page)
    return subprocess.run([tool("tesseract"), str(png), "-", "-l", languages], capture_output=True, text=True,
                          check=True, timeout=300).stdout
