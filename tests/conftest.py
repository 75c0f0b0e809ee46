"""Suite-wide: every test starts from structlog's defaults.

Programs' ``main()`` run in-process (``sanaq-keys``, ``sanaq-usb-ingest``) configure structlog for the whole
interpreter, level filter included; without this reset a later test's ``capture_logs`` would miss the events
that configuration filters out.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog


@pytest.fixture(autouse=True)
def _structlog_defaults() -> Iterator[None]:
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()
