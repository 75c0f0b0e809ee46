"""Shared fixtures for keys/ tests: a fixed clock and a real authority directory in tmp_path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from keys.authority import Authority
from keys.records import TabletRecord
from keys.registry import Registry

NOW = 1_790_000_000_000
DAY_MS = 24 * 3600 * 1000


@pytest.fixture
def authority(tmp_path: Path) -> Iterator[Authority]:
    with Authority.create(tmp_path / "authority", now_ms=NOW) as a:
        yield a


def enroll(registry: Registry, device_id: str, *, now_ms: int = NOW) -> TabletRecord:
    return registry.enroll_tablet(
        device_id=device_id,
        public_key=bytes(SigningKey.generate().verify_key),
        usb_serial=f"SER-{device_id}",
        institution="HOSP-01",
        worker_id="W-17",
        worker_name="Aigerim Nurlanovna",
        act_no="ACT-2025-0017",
        now_ms=now_ms,
    )
