"""``sanaq-tablet`` end to end in subprocesses, with a real provisioning bundle from ``keys``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from keys import Authority, enroll_tablet
from tablet.errors import DeviceMismatchError
from tablet.outbox import Outbox
from wire import decode_envelope, open_envelope, parse_manifest, verify_envelope

from .conftest import NOW

REPO = Path(__file__).resolve().parents[2]
DEVICE = "tab-cli-01"


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> tuple[Authority, Path]:
    base = tmp_path_factory.mktemp("authority")
    a = Authority.create(base / "auth", now_ms=NOW)
    enroll_tablet(a, base / "bundle", device_id=DEVICE, usb_serial="R58N30CLI01", institution="BL-000042",
                  worker_id="rw-BL-000042-1", gateway_url="https://localhost:8443", now_ms=NOW)
    return a, base / "bundle"


@pytest.fixture
def home(tmp_path: Path, authority: tuple[Authority, Path]) -> Path:
    h = tmp_path / "home"
    h.mkdir(mode=0o700)
    shutil.copytree(authority[1], h / "identity")  # what `init` will do
    return h


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tablet", "--home", str(home), "--now-ms", str(NOW), *args],
                          check=False, cwd=REPO, capture_output=True, text=True, timeout=120)


def ok_json(home: Path, *args: str) -> dict:
    proc = run(home, "--json", *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_fill_pack_export_status(home: Path, tmp_path: Path, authority: tuple[Authority, Path]) -> None:
    a, _ = authority
    assert ok_json(home, "fill", "--seed", "5", "--count", "130")["added"] == 130
    second = ok_json(home, "fill", "--seed", "5", "--count", "20")
    assert (second["added"], second["start"], second["sheets_pending"]) == (20, 130, 150)
    packed = ok_json(home, "pack", "--max-per-batch", "60")
    assert [b["seq"] for b in packed["batches"]] == [1, 2, 3]
    assert [b["records"] for b in packed["batches"]] == [60, 60, 30]

    image = tmp_path / "export.img"
    exported = ok_json(home, "export-usb", "--out", str(image))
    assert exported["seqs"] == [1, 2, 3] and exported["fat"] == 16

    status = ok_json(home, "status")
    assert (status["device_id"], status["batches_sealed"], status["sheets_in_flight"], status["next_seq"]) == (
        DEVICE, 3, 150, 4)

    device_pub = a.registry.tablet(DEVICE).public_key
    manifest = subprocess.run(["mcopy", "-i", str(image), "::/SANAQ/MANIFEST.SQM", "-"], check=True,
                              capture_output=True).stdout
    assert [e.seq for e in parse_manifest(manifest, device_pub).batches] == [1, 2, 3]

    # the authority's data key opens what the tablet sealed: every generated sheet, once, with the bundle's worker
    data = a.data_private_key()
    opened = []
    with Outbox.open(home / "outbox.db", device_id=DEVICE, now_ms=NOW) as ob:
        for b in ob.pending_batches():
            verified = verify_envelope(decode_envelope(b.envelope), device_pub)
            opened += open_envelope(verified, bytes(data.public_key), bytes(data))
    assert len({s["sheet_id"] for s in opened}) == 150
    assert {s["worker_id"] for s in opened} == {"rw-BL-000042-1"}


def test_mix_only_institutions(home: Path) -> None:
    assert ok_json(home, "fill", "--seed", "1", "--count", "10", "--mix", "hospital=1,social_care_centre=1")[
        "added"] == 10


@pytest.mark.parametrize(
    ("args", "code"),
    [(("export-usb", "--out", "x.img"), "nothing-to-export"),
     (("fill", "--seed", "1", "--count", "1", "--mix", "hostel=3"), "tablet-error"),
     (("fill", "--seed", "1", "--count", "1", "--mix", "household=0"), "tablet-error")],
    ids=["nothing-pending", "unknown-kind", "all-zero-mix"],
)
def test_refusals_are_one_line_exit_2(home: Path, tmp_path: Path, args: tuple[str, ...], code: str) -> None:
    args = tuple(str(tmp_path / a) if a == "x.img" else a for a in args)
    proc = run(home, *args)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"sanaq-tablet: error: {code}:")
    assert proc.stderr.count("\n") == 1


def test_missing_identity(tmp_path: Path) -> None:
    proc = run(tmp_path, "status")
    assert proc.returncode == 2
    assert proc.stderr.startswith("sanaq-tablet: error: identity-error:")


def test_outbox_of_another_device_refused(home: Path) -> None:
    Outbox.open(home / "outbox.db", device_id="tab-other", now_ms=NOW).close()
    proc = run(home, "status")
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"sanaq-tablet: error: {DeviceMismatchError.code}:")
