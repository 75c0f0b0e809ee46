"""A medium whose bytes change while the USB daemon reads it: the spool gets exactly the verified bytes.

Threat-model row "bytes change between verification and copy" (residual risk
R8). Two tests, both with real keys, a real export image and the daemon's
real verification and spool:

* **(a) real process, real medium.** ``sanaq-usb-ingest pull IMAGE`` runs as
  a child; right after it logs ``usb.manifest.verified`` the test SIGSTOPs
  it (no sleep: the stop is confirmed with ``waitid(WSTOPPED)``), reads every
  line it wrote so far (the last ``usb.batch.spooled`` seq *j*), changes one
  byte near the end of batch files in the image - the ones already read
  (<= *j* + 1) and every other one of those surely not read yet (>= *j* + 2) -
  and SIGCONTs it. Files changed before their read must be refused
  (``manifest-mismatch``/``hash``, a ``usb.security.event``), never stored;
  every spooled file must be the verified envelope, bit for bit.
* **(b) a medium that answers a second read differently** (in-process, the
  puller's public ``pull()`` on a file object): every byte of a batch file
  reads as the tablet wrote it the first time and inverted on any later
  read. A daemon that verified one read and copied from another would spool
  inverted bytes or refuse the batch; the spool must hold the first-read
  bytes of every batch, each read exactly once. (a) cannot place a change
  *between* the verification and the copy of one file deterministically;
  (b) does.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
from pathlib import Path

from tests.usb_ingest.images import Env, export, seal
from usb_ingest.puller import pull
from usb_ingest.station import Station

from .test_faults_usb_bed import COMMAND, DEVICE, Audit, write_config

BATCHES = 16
SHEETS = 30  # ~45 KB per batch: the reader's read-ahead (8 KiB) never reaches the end of the next file


def volume(env: Env, image: Path) -> tuple[dict[int, bytes], dict[int, tuple[int, int]]]:
    """An export image of ``BATCHES`` big batches; returns {seq: envelope} and {seq: (offset, size)} in the image."""
    envelopes = {s: seal(env, DEVICE, s, sheets=SHEETS) for s in range(1, BATCHES + 1)}
    export(env, image, DEVICE, list(envelopes), envelopes=envelopes)
    img = image.read_bytes()
    where = {}
    for seq, envelope in envelopes.items():
        offset = img.find(envelope[:64])
        assert offset > 0 and img[offset : offset + len(envelope)] == envelope, "batch file not contiguous"
        where[seq] = (offset, len(envelope))
    return envelopes, where


class StderrLines:
    """The child's stderr read straight from the pipe (no Python-side buffer), as JSON events."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.rest = b""
        self.events: list[dict[str, object]] = []

    def _take(self, data: bytes) -> list[dict[str, object]]:
        *lines, self.rest = (self.rest + data).split(b"\n")
        new = [json.loads(line) for line in lines if line.startswith(b"{")]
        self.events += new
        return new

    def until(self, event: str) -> None:
        while True:
            data = os.read(self.fd, 65536)
            assert data, f"the process ended before logging {event}"
            if any(e["event"] == event for e in self._take(data)):
                return

    def drain(self) -> None:
        """Everything already in the pipe (the writer is stopped), without blocking."""
        os.set_blocking(self.fd, False)
        try:
            while data := os.read(self.fd, 65536):
                self._take(data)
        except BlockingIOError:
            pass
        finally:
            os.set_blocking(self.fd, True)


def flip(image: Path, offset: int) -> int:
    """Change one byte of the image; 1 if the medium now reads back the changed byte."""
    with image.open("r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x5A]))
        f.flush()
        os.fsync(f.fileno())
        f.seek(offset)
        return int(f.read(1) != byte)


def test_bytes_changed_on_the_medium_during_a_real_pull_never_reach_the_spool(
    env: Env, tmp_path: Path, fault_ledger
) -> None:
    image = tmp_path / "tab.img"
    envelopes, where = volume(env, image)
    config = write_config(env, tmp_path / "usb.toml", "http://127.0.0.1:9")
    proc = subprocess.Popen([*COMMAND, "pull", str(image), "--config", str(config), "--no-forward", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert proc.stderr is not None
    try:
        lines = StderrLines(proc.stderr.fileno())
        lines.until("usb.manifest.verified")
        os.kill(proc.pid, signal.SIGSTOP)
        os.waitid(os.P_PID, proc.pid, os.WSTOPPED | os.WNOWAIT)
        lines.drain()
        done = max((int(e["seq"]) for e in lines.events if e["event"] == "usb.batch.spooled"), default=0)
        read_before = list(range(1, min(done + 1, BATCHES) + 1))  # spooled, or perhaps being read right now
        unread = list(range(done + 2, BATCHES + 1))[::2]  # surely not read yet: must be refused
        flipped = 0
        for seq in read_before + unread:
            offset, size = where[seq]
            flipped += flip(image, offset + size - 100)
        os.kill(proc.pid, signal.SIGCONT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines._take(err + b"\n")
    report = json.loads(out.decode().splitlines()[-1])
    audit = Audit(env, None, envelopes)
    spooled = audit.spool()
    hash_refused = {p["seq"] for p in report["problems"] if (p["code"], p["kind"]) == ("manifest-mismatch", "hash")}
    flagged = {int(e["seq"]) for e in lines.events if e["event"] == "usb.security.event" and e.get("kind") == "hash"}
    untouched = set(envelopes) - set(read_before) - set(unread)
    forged = audit.bad + len(set(unread) & set(spooled))
    presented = set(unread) | hash_refused  # changed files the daemon read after the change (and refused)
    lost = len(untouched - set(spooled)) + len(set(read_before[:-1]) - set(spooled))
    fault_ledger.add(inputs=BATCHES, faults=flipped, forgeries_tried=len(presented) + audit.bad, forgeries=forged,
                     lost=lost, crashes=int(proc.returncode not in (0, 1)))
    assert len(unread) >= 2, f"the pull had read {done} batches before the stop; nothing left to change"
    assert (forged, lost, audit.bad) == (0, 0, 0), audit.notes
    assert proc.returncode == 1 and report["outcome"] == "partial", err.decode()[-2000:]
    assert set(unread) <= hash_refused and hash_refused <= set(unread) | {done + 1}, (unread, hash_refused)
    assert hash_refused == flagged  # each one is a security event
    assert set(spooled) == set(envelopes) - hash_refused  # ... and everything else was taken, bit for bit


class ShiftingMedium(io.RawIOBase):
    """The image bytes, except that a batch file's bytes read a second time come back inverted."""

    def __init__(self, data: bytes, regions: dict[int, tuple[int, int]]) -> None:
        self.data = data
        self.pos = 0
        self.regions = regions
        self.seen = {seq: bytearray(size) for seq, (_, size) in regions.items()}
        self.reads = dict.fromkeys(regions, 0)
        self.inverted = 0
        self.fired: set[int] = set()  # batches whose bytes were served changed (the trap fired)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: len(self.data)}[whence]
        self.pos = base + offset
        return self.pos

    def tell(self) -> int:
        return self.pos

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        start, end = self.pos, min(self.pos + len(buffer), len(self.data))
        chunk = bytearray(self.data[start:end])
        for seq, (offset, size) in self.regions.items():
            lo, hi = max(start, offset), min(end, offset + size)
            if lo >= hi:
                continue
            self.reads[seq] += 1
            seen = self.seen[seq]
            for i in range(lo, hi):
                if seen[i - offset]:
                    chunk[i - start] ^= 0xFF
                    self.inverted += 1
                    self.fired.add(seq)
                seen[i - offset] = 1
        buffer[: len(chunk)] = chunk
        self.pos = end
        return len(chunk)


def test_a_medium_that_answers_a_second_read_differently_cannot_change_what_is_spooled(
    env: Env, tmp_path: Path, fault_ledger
) -> None:
    image = tmp_path / "tab.img"
    envelopes, where = volume(env, image)
    medium = ShiftingMedium(image.read_bytes(), where)
    station = Station.open(env.config())
    try:
        report = pull(medium, trust=station.trust, spool=station.spool, station=station.identity,
                      limits=station.config.limits)
    finally:
        station.close()
    audit = Audit(env, None, envelopes)
    spooled = audit.spool()
    # the trap is armed on every batch; only a second read fires it: that is the fault, and the forgery tried
    fault_ledger.add(inputs=BATCHES, faults=len(medium.fired), forgeries_tried=len(medium.fired),
                     forgeries=audit.bad, lost=BATCHES - len(spooled) if not audit.bad else 0)
    assert audit.bad == 0, audit.notes  # no spooled file holds bytes of a second read
    assert report.outcome == "complete" and report.problems == (), report.problems
    assert sorted(spooled) == sorted(envelopes)
    assert medium.reads == dict.fromkeys(envelopes, 1), medium.reads  # each file read once
    assert medium.inverted == 0 and medium.fired == set()
