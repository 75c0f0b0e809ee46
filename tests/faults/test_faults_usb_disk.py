"""A full disk under the USB daemon's state directory: a real, small tmpfs (root needed; fails, never skips).

Three ways the spool runs out of room, each with a volume of more batches
than fit, pulled by the real ``sanaq-usb-ingest pull`` process:

* ``blocks``  - a ballast file leaves room for a few batches; the spool's
  free-space check refuses the next one;
* ``inodes``  - the tmpfs is remounted with only a few free inodes; creating
  the next temp file fails with a real ENOSPC from ``open(2)``;
* ``reserve`` - ``spool_min_free_bytes`` keeps a reserve the next batch
  would eat into.

The pull must exit 2 with one ``spool-error`` line, every complete-looking
spool file must be a whole verified envelope, and once room returns (ballast
deleted, tmpfs remounted bigger, reserve lowered) a re-pull converges:
every batch stored once at the gateway, receipted once, nothing pending.

A full disk under the receipt log (``write(2)`` ENOSPC while the ``run``
service forwards) must keep every entry until a receipt line is written.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.usb_ingest.images import Env, Gateway, export, seal
from usb_ingest.station import Station

from .test_faults_usb_bed import (
    DEVICE,
    Audit,
    UsbRun,
    ballast,
    free_bytes,
    run_service,
    run_usb,
    small_tmpfs,
    torn_receipt_lines,
    write_config,
)

BATCHES = 12
PAGE = 4096
ROOM = 2 * PAGE  # one spooled ~4.1 KB envelope takes two tmpfs pages


@pytest.fixture
def state_on_tmpfs(env: Env) -> Iterator[Path]:
    """The station's state directory on a 4 MiB tmpfs, primed (lock, snapshot cache, status, spool dirs)."""
    with small_tmpfs(env.state_dir, "size=4m") as mount:
        Station.open(env.config()).close()
        yield mount


def remount(where: Path, options: str) -> None:
    done = subprocess.run(["mount", "-o", f"remount,{options}", str(where)], check=False, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr


def used_inodes(where: Path) -> int:
    st = os.statvfs(where)
    return st.f_files - st.f_ffree


@contextlib.contextmanager
def no_room(flavour: str, mount: Path, config: Path) -> Iterator[None]:
    """Leave room for a few batches in the way ``flavour`` says; give the room back when the block ends."""
    if flavour == "blocks":
        ballast(mount / "ballast", leave_bytes=4 * ROOM + 4096)
    elif flavour == "inodes":
        remount(mount, f"nr_inodes={used_inodes(mount) + 4}")
    else:
        write_config_reserve(config, free_bytes(mount) - 4 * ROOM - 4096)
    yield
    if flavour == "blocks":
        (mount / "ballast").unlink()
    elif flavour == "inodes":
        remount(mount, "nr_inodes=100000")
    else:
        write_config_reserve(config, 0)


def write_config_reserve(config: Path, reserve: int) -> None:
    lines = [line for line in config.read_text().splitlines() if not line.startswith("spool_min_free_bytes")]
    lines.insert(0, f"spool_min_free_bytes = {reserve}")
    config.write_text("\n".join(lines) + "\n")


EXPECTED_LINE = {
    "blocks": "sanaq-usb-ingest: error: spool-error: spool disk is full",
    "inodes": "sanaq-usb-ingest: error: spool-error: cannot write to the spool (error=No space left on device",
    "reserve": "sanaq-usb-ingest: error: spool-error: spool disk is full",
}


@pytest.mark.parametrize("flavour", ["blocks", "inodes", "reserve"])
async def test_a_full_spool_stops_the_pull_with_one_line_and_a_re_pull_converges(
    flavour: str, env: Env, gw: Gateway, tmp_path: Path, state_on_tmpfs: Path, fault_ledger
) -> None:
    image = tmp_path / "tab.img"
    envelopes = export(env, image, DEVICE, range(1, BATCHES + 1))
    audit = Audit(env, gw, envelopes)
    config = write_config(env, tmp_path / "usb.toml", gw.url)
    with no_room(flavour, state_on_tmpfs, config):
        full = await run_usb("pull", str(image), "--config", str(config), "--json", "--wait", "2")
        taken = sorted(set(audit.spool()) | {s for s, _, _ in audit.stored()})  # spooled, perhaps forwarded
        lost = audit.lost()
        status = json.loads((env.state_dir / "status.json").read_text())
    clean = await run_usb("pull", str(image), "--config", str(config), "--json")
    missing, doubled = audit.outcome()
    lines = audit.receipt_line_counts()
    fault_ledger.add(inputs=2 * BATCHES, faults=1, lost=lost + missing + audit.bad, duplicates=doubled,
                     crashes=int(full.crashed) + int(clean.crashed))
    assert (full.code, full.crashed) == (2, False), full.stderr
    assert full.plain_lines[0].startswith(EXPECTED_LINE[flavour]), full.plain_lines
    assert 0 < len(taken) < BATCHES, f"{len(taken)} batches spooled: the disk was not full at the right time"
    assert taken == list(range(1, len(taken) + 1))  # in order, none skipped
    if flavour == "reserve":  # the disk itself had room: the technician's view says what happened
        assert "cannot store the data" in (status["last_error"] or ""), status
    assert (clean.code, clean.crashed) == (0, False), clean.stderr
    assert clean.report is not None
    assert sorted(clean.report["already_held"] + clean.report["already_delivered"]) == taken
    assert (lost, missing, doubled, audit.bad) == (0, 0, 0, 0), audit.notes
    assert dict(lines) == dict.fromkeys(envelopes, 1)


async def test_pulls_on_a_spool_that_stays_full_converge_by_forwarding(
    env: Env, gw: Gateway, tmp_path: Path, state_on_tmpfs: Path, fault_ledger
) -> None:
    image = tmp_path / "tab.img"
    envelopes = export(env, image, DEVICE, range(1, BATCHES + 1))
    audit = Audit(env, gw, envelopes)
    config = write_config(env, tmp_path / "usb.toml", gw.url)
    runs = []
    with no_room("reserve", state_on_tmpfs, config):  # the reserve keeps room for receipts, as deployed
        for _ in range(BATCHES // 2):  # the technician plugs the tablet in again; nobody frees the disk
            runs.append(await run_usb("pull", str(image), "--config", str(config), "--json", "--wait", "10"))
            if runs[-1].code == 0:
                break
        missing, doubled = audit.outcome()
    # not delivered is not lost: what is not at the gateway is in the spool or still on the tablet
    fault_ledger.add(inputs=BATCHES * len(runs), faults=len(runs), lost=audit.bad, duplicates=doubled,
                     crashes=sum(r.crashed for r in runs))
    assert not any(r.crashed for r in runs)
    assert runs[0].code == 2 and len(audit.stored()) > 0, "the first pull forwarded nothing it had spooled"
    assert (missing, doubled) == (0, 0), audit.notes


async def test_a_full_disk_under_the_receipt_log_keeps_every_entry_until_room_returns(
    env: Env, gw: Gateway, tmp_path: Path, state_on_tmpfs: Path, fault_ledger
) -> None:
    image = tmp_path / "tab.img"
    envelopes = export(env, image, DEVICE, range(1, BATCHES + 1))
    audit = Audit(env, gw, envelopes)
    config = write_config(env, tmp_path / "usb.toml", gw.url)
    spooled = await run_usb("pull", str(image), "--config", str(config), "--no-forward")
    assert spooled.code == 0 and len(audit.spool()) == BATCHES, spooled.stderr
    failures = 0

    def three_failed_appends(event: dict[str, object]) -> bool:
        nonlocal failures
        if event.get("event") == "usb.forward.spool_error" and "No space left" in str(event.get("error")):
            failures += 1
        return failures >= 3

    ballast(state_on_tmpfs / "ballast", leave_bytes=0)
    service = await run_service(config, three_failed_appends)
    lost = audit.lost()
    held = len(audit.spool())
    stored_meanwhile = len(audit.stored())
    (state_on_tmpfs / "ballast").unlink()
    clean = await run_usb("pull", str(image), "--config", str(config), "--json")
    missing, doubled = audit.outcome()
    lines = audit.receipt_line_counts()
    fault_ledger.add(inputs=2 * BATCHES, faults=failures, lost=lost + missing + audit.bad, duplicates=doubled,
                     crashes=int(service.crashed) + int(clean.crashed))
    assert (service.code, service.crashed) == (0, False), service.stdout[-2000:] + service.stderr
    assert failures >= 3 and stored_meanwhile > 0  # the gateway stored batches whose receipt could not be logged
    assert held == BATCHES and lost == 0, audit.notes  # ... so each stays pending at the station
    assert (clean.code, clean.crashed) == (0, False), clean.stderr
    assert (missing, doubled, audit.bad) == (0, 0, 0), audit.notes
    assert dict(lines) == dict.fromkeys(envelopes, 1)



async def test_a_receipt_line_cut_short_by_a_full_disk_never_corrupts_the_log(
    env: Env, gw: Gateway, tmp_path: Path, state_on_tmpfs: Path, fault_ledger
) -> None:
    envelopes = {s: seal(env, DEVICE, s) for s in range(1, BATCHES + 1)}
    audit = Audit(env, gw, envelopes)
    config = write_config(env, tmp_path / "usb.toml", gw.url)
    log = env.state_dir / "receipts.jsonl"

    async def pull(seqs: list[int], *extra: str) -> UsbRun:
        image = tmp_path / f"tab-{seqs[0]}-{seqs[-1]}.img"
        export(env, image, DEVICE, seqs, envelopes={s: envelopes[s] for s in seqs})
        return await run_usb("pull", str(image), "--config", str(config), "--json", *extra)

    assert (await pull([1])).code == 0
    line = log.stat().st_size
    fit = PAGE // line  # receipt lines that still fit in the log's first page
    assert (await pull(list(range(2, fit + 1)))).code == 0
    assert (await pull(list(range(fit + 1, BATCHES + 1)), "--no-forward")).code == 0
    assert log.stat().st_size + line > PAGE, "the next receipt line would not cross a page"
    events: list[str] = []

    def two_receipts_or_three_failures(event: dict[str, object]) -> bool:
        events.append(str(event.get("event")))
        return events.count("usb.forward.delivered") >= 2 or events.count("usb.forward.spool_error") >= 3

    ballast(state_on_tmpfs / "ballast", leave_bytes=0)  # the log's last page has room for part of a line
    service = await run_service(config, two_receipts_or_three_failures)
    (state_on_tmpfs / "ballast").unlink()
    clean = await pull(list(envelopes))
    torn = torn_receipt_lines(env.state_dir)
    missing, doubled = audit.outcome()
    per_seq = audit.receipt_line_counts()
    fault_ledger.add(inputs=2 * BATCHES, faults=1, lost=missing + audit.bad, duplicates=doubled,
                     crashes=int(service.crashed) + int(clean.crashed))
    assert not service.crashed and not clean.crashed, service.stderr + clean.stderr
    assert (missing, doubled, audit.bad) == (0, 0, 0), audit.notes
    assert torn == 0 and clean.count("usb.receipts.bad_line") == 0, log.read_text()[-2000:]
    assert dict(per_seq) == dict.fromkeys(envelopes, 1)

