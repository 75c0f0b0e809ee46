"""libfiu inside the real USB ingest daemon: failed writes and fsyncs of the spool and the receipt log.

The daemon (``sanaq-usb-ingest pull`` / ``run``) runs under ``fiu-run -x``
(libfiu's POSIX preload); the gateway is the real app on loopback.

Why the failures are placed as they are: the daemon's log lines go to its
stderr/stdout with ``write(2)`` too, and libfiu cannot tell descriptors
apart, so a *random* ``write`` failure would mostly break the log channel
(journald's business, not the spool's). Hence:

* ``fsync`` fails at random (EIO) for whole runs - only the spool, the
  receipt log and the snapshot cache call it - at 15 % while a volume is
  pulled (four times), at 30 % while the ``run`` service forwards what a
  clean pull then spooled;
* ``write`` (ENOSPC, EIO) and ``fsync`` fail exactly once, at the append of a
  receipt to ``receipts.jsonl``: a proxy between daemon and gateway holds the
  gateway's answer, the test switches the point on with ``fiu-ctrl``
  (``onetime``), then lets the answer through; the next ``write``/``fsync``
  of the process is that append. A real ENOSPC of the spool itself is in
  ``test_faults_usb_disk.py``;
* ``fsync`` always fails (EIO) from the start: the station must say that its
  disk failed, not that its bundle is bad.

Rules (``Audit`` in ``test_faults_usb_bed``): no crash (exit 0/1/2 with one
clear line, never a traceback), no complete-looking spool file that is not
the verified envelope, nothing the gateway stored without a receipt line or
a pending entry at the station, and a clean run converges to every batch
stored once and receipted.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.usb_ingest.images import Env, Gateway, export

from .test_faults_usb_bed import (
    DEVICE,
    Audit,
    HoldProxy,
    UsbRun,
    fiu_ctrl,
    run_service,
    run_usb,
    spawn_usb,
    write_config,
)

EIO, ENOSPC = 5, 28
STRERROR = {EIO: "Input/output error", ENOSPC: "No space left on device"}

pytestmark = pytest.mark.usefixtures("need_fiu_run")


# ---- one failure, exactly at the receipt append ------------------------------------------------------------

RECEIPT_CASES = [
    ("write-enospc", "posix/io/rw/write", ENOSPC),
    ("write-eio", "posix/io/rw/write", EIO),
    ("fsync-eio", "posix/io/sync/fsync", EIO),
]


@pytest.mark.parametrize(("point", "errno"), [c[1:] for c in RECEIPT_CASES], ids=[c[0] for c in RECEIPT_CASES])
async def test_a_failed_receipt_append_is_retried_and_logged_once(
    point: str, errno: int, env: Env, gw: Gateway, tmp_path: Path, fault_ledger
) -> None:
    image = tmp_path / "tab.img"
    envelopes = export(env, image, DEVICE, range(1, 5))
    audit = Audit(env, gw, envelopes)
    proxy = await HoldProxy(int(gw.url.rsplit(":", 1)[1])).start()
    try:
        config = write_config(env, tmp_path / "usb.toml", proxy.url, concurrency=1)
        spooled = await run_usb("pull", str(image), "--config", str(config), "--no-forward")
        assert spooled.code == 0, spooled.stderr
        prefix = tmp_path / "fiu"
        proc = await spawn_usb("pull", str(image), "--config", str(config), "--json", "--wait", "15",
                               fiu=[], fiu_prefix=prefix)
        armed: list[int] = []

        async def arm_before_first_answer(n: int) -> bool:
            if n == 1:  # the gateway stored seq 1 and answered; the daemon has not seen the answer yet
                await fiu_ctrl(prefix, proc.pid, f"enable name={point},failnum=1,failinfo={errno},onetime")
                armed.append(n)
            return True

        proxy.on_answer = arm_before_first_answer
        out, err = await proc.communicate()
    finally:
        await proxy.close()
    run = UsbRun(proc.returncode if proc.returncode is not None else -1, out.decode(), err.decode())
    hit = [e for e in run.events if e.get("event") == "usb.forward.spool_error"
           and STRERROR[errno] in str(e.get("error"))]
    lines = audit.receipt_line_counts()
    lost, doubled = audit.outcome()
    fault_ledger.add(inputs=proxy.posts, faults=len(hit), lost=lost + audit.bad, duplicates=doubled,
                     crashes=int(run.crashed))
    assert armed == [1] and len(hit) == 1, run.stderr  # the failure struck the receipt append, once
    assert not run.crashed and run.code == 0, run.stderr
    assert (lost, doubled, audit.bad) == (0, 0, 0), audit.notes
    assert proxy.posts == len(envelopes) + 1  # seq 1 sent again after the failed append, answered duplicate
    assert run.count("usb.forward.delivered") == len(envelopes)
    assert dict(lines) == dict.fromkeys(envelopes, 1), f"receipt lines per seq: {dict(lines)}"


# ---- fsync failing at random for whole runs -----------------------------------------------------------


async def test_fsync_failing_at_random_loses_nothing_and_a_clean_run_converges(
    env: Env, gw: Gateway, tmp_path: Path, fault_ledger
) -> None:
    image = tmp_path / "tab.img"
    envelopes = export(env, image, DEVICE, range(1, 11))
    audit = Audit(env, gw, envelopes)
    config = write_config(env, tmp_path / "usb.toml", gw.url)
    def fiu(p: float) -> list[str]:
        return [f"enable_random name=posix/io/sync/fsync,probability={p},failinfo={EIO}"]

    runs = []
    lost = unsafe = 0
    for i in range(4):  # pulls under faults: each takes what it can, or stops with one line
        run = await run_usb("pull", str(image), "--config", str(config), "--json", "--no-forward",
                            fiu=fiu(0.15), fiu_prefix=tmp_path / f"fiu-pull-{i}")
        runs.append(run)
        pending = audit.spool()
        report = run.report
        if report is not None and report["outcome"] == "complete":  # "you may unplug": all must be held
            unsafe += sum(1 for s in envelopes if s not in pending)
    runs.append(await run_usb("pull", str(image), "--config", str(config), "--no-forward"))  # the rest, cleanly
    assert runs[-1].code == 0 and len(audit.spool()) == len(envelopes), (runs[-1].stderr, audit.notes)
    for i in range(6):  # the service forwards under faults until the spool is empty
        run = await run_service(config, lambda _event: not audit.spool() and not audit.pending_custody(),
                                fiu=fiu(0.3), fiu_prefix=tmp_path / f"fiu-run-{i}")
        runs.append(run)
        lost += audit.lost()
        if not audit.spool():
            break
    clean = await run_usb("pull", str(image), "--config", str(config), "--json")
    runs.append(clean)
    missing, doubled = audit.outcome()
    faults = sum(r.stderr.count(STRERROR[EIO]) + r.stdout.count(STRERROR[EIO]) for r in runs)
    crashes = sum(r.crashed for r in runs)
    fault_ledger.add(inputs=len(envelopes) * len(runs), faults=faults, lost=lost + missing + unsafe + audit.bad,
                     duplicates=doubled, crashes=crashes)
    assert crashes == 0, [(r.code, r.plain_lines) for r in runs if r.crashed]
    assert faults > 0, "no fsync failure was injected"
    assert (lost, missing, unsafe, doubled, audit.bad) == (0, 0, 0, 0, 0), audit.notes
    assert clean.code == 0, clean.stderr
    for run in runs:
        assert run.code in ((0, 2) if run.service else (0, 1, 2)), (run.code, run.plain_lines)
        if run.code == 2:  # the one line names the station's fault, never the volume's
            assert run.plain_lines[0].startswith(("sanaq-usb-ingest: error: spool-error:",
                                                  "sanaq-usb-ingest: error: station-setup:")), run.plain_lines


async def test_an_io_error_while_the_station_starts_is_named_as_such(env: Env, tmp_path: Path, fault_ledger) -> None:
    image = tmp_path / "tab.img"
    export(env, image, DEVICE, range(1, 3))
    config = write_config(env, tmp_path / "usb.toml", "http://127.0.0.1:9")
    run = await run_usb("pull", str(image), "--config", str(config), "--no-forward",
                        fiu=[f"enable name=posix/io/sync/fsync,failinfo={EIO}"], fiu_prefix=tmp_path / "fiu")
    fault_ledger.add(inputs=1, faults=1, crashes=int(run.crashed))
    assert (run.code, run.crashed) == (2, False), run.stderr
    line = run.plain_lines[0]
    assert STRERROR[EIO] in line and "bundle" not in line, line  # the disk failed, not the station bundle
