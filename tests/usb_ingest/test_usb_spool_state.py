"""Spool state that survives the process: ``status`` per tablet from disk, receipt log compaction, ``requeue``.

Real ``sanaq-usb-ingest`` processes on real images and a real gateway on
loopback; the compaction and requeue kill tests SIGKILL the real process at
the entry of its n-th ``fsync``/``rename``/``unlink`` system call (strace's
syscall tampering), for every n the command makes, so every step of the
rewrite is a crash point.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from usb_ingest.errors import RequeueRefused
from usb_ingest.receipt_log import ReceiptLog
from usb_ingest.spool import Spool
from usb_ingest.spool_state import TabletSpool
from usb_ingest.station import Station
from usb_ingest.status import StatusView
from usb_ingest.status_view import load_view

from .images import DAY_MS, Env, Gateway, export, now_ms, seal
from .test_usb_core_cli import COMMAND, cli

STRACE = shutil.which("strace")


def spool_of(env: Env) -> Spool:
    return Spool.open(env.state_dir / "spool", env.state_dir / "receipts.jsonl")


def tablet(view: dict[str, object], device_id: str) -> dict[str, object]:
    rows = [t for t in view["tablets"] if t["device_id"] == device_id]  # type: ignore[union-attr,index]
    assert len(rows) == 1, view["tablets"]
    return rows[0]  # type: ignore[no-any-return]


async def status_json(config: Path) -> dict[str, object]:
    code, out, err = await cli("status", "--config", str(config), "--json")
    assert code == 0, err
    return json.loads(out)  # type: ignore[no-any-return]


async def test_status_after_a_restart_shows_the_spool_per_tablet_from_disk(
    env: Env, gw: Gateway, tmp_path: Path
) -> None:
    one, two = tmp_path / "one.img", tmp_path / "two.img"
    sent_one = export(env, one, "TAB-0001", range(1, 4))
    sent_two = export(env, two, "TAB-0002", range(1, 3))
    config = env.write_config(tmp_path / "usb-ingest.toml", gw.url)
    before = now_ms()
    for image in (one, two):
        code, _, err = await cli("pull", str(image), "--config", str(config), "--no-forward")
        assert code == 0, err
    after = now_ms()
    # every process has ended: what status shows comes from the files, not from a process's counters
    view = await status_json(config)
    t1, t2 = tablet(view, "TAB-0001"), tablet(view, "TAB-0002")
    assert (t1["pending"], t1["pending_bytes"], t1["forwarded"], t1["rejected"]) == (
        3, sum(len(e) for e in sent_one.values()), 0, 0)
    assert (t2["pending"], t2["pending_bytes"]) == (2, sum(len(e) for e in sent_two.values()))
    assert before - 2000 <= t1["oldest_pending_ms"] <= after  # type: ignore[operator]
    assert (view["spool_pending"], view["delivered"]) == (5, 0)

    # a refusal recorded in the spool while no service runs: status.json is stale, the disk is not
    spool = spool_of(env)
    spool.reject(next(e for e in spool.pending_batches() if e.device_id == "TAB-0002"),
                 {"status": 403, "code": "revoked", "device_id": "TAB-0002", "seq": 1})
    view = await status_json(config)
    t2 = tablet(view, "TAB-0002")
    assert (t2["pending"], t2["rejected"], view["rejected"]) == (1, 1, 1)
    code, out, _ = await cli("status", "--config", str(config))
    assert code == 0
    assert "Spool by tablet (read from disk now)" in out and "TAB-0002" in out and "requeue --list" in out

    code, _, err = await cli("pull", str(one), "--config", str(config))  # forwards everything pending
    view = await status_json(config)
    t1, t2 = tablet(view, "TAB-0001"), tablet(view, "TAB-0002")
    assert (t1["pending"], t1["forwarded"], t1["oldest_pending_ms"]) == (0, 3, None), err
    assert (t2["pending"], t2["forwarded"], t2["rejected"]) == (0, 1, 1)


def test_status_falls_back_to_the_services_last_reading_when_the_spool_is_unreadable(tmp_path: Path) -> None:
    stored = StatusView(station_id="ST-01", pid=1, updated_at_ms=5, spool_pending=7,
                        tablets=(TabletSpool("TAB-0001", pending=7, pending_bytes=700, oldest_pending_ms=3),))
    path = tmp_path / "status.json"
    path.write_text(json.dumps(stored.to_json()))

    def unreadable() -> object:
        raise PermissionError(13, "Permission denied")

    view, fresh = load_view(path, unreadable)  # type: ignore[arg-type]
    assert (view, fresh) == (stored, False)
    assert StatusView.from_json(json.loads(path.read_text())) == stored
    with pytest.raises(ValueError, match="wrong type"):
        StatusView.from_json({**json.loads(path.read_text()), "tablets": [{"device_id": "T", "pending": "7"}]})


# ---- receipts.jsonl compaction ---------------------------------------------------------------------------


def receipt_row(device_id: str, seq: int, received_at_ms: int, digest: str | None = None) -> dict[str, object]:
    return {"device_id": device_id, "seq": seq, "batch_hash": digest or hashlib.sha256(f"{device_id}{seq}".encode())
            .hexdigest(), "received_at_ms": received_at_ms, "road": "station:ST-01",
            "receipt": base64.b64encode(os.urandom(180)).decode()}


def write_log(path: Path, rows: list[dict[str, object]], extra: bytes = b"") -> None:
    path.write_bytes(b"".join(json.dumps(r, sort_keys=True).encode() + b"\n" for r in rows) + extra)


def test_compaction_keeps_the_index_drops_old_receipts_and_duplicates(tmp_path: Path) -> None:
    log = tmp_path / "receipts.jsonl"
    now = now_ms()
    old = [receipt_row("TAB-0001", s, now - 100 * DAY_MS) for s in range(1, 201)]
    young = [receipt_row("TAB-0002", s, now - DAY_MS) for s in range(1, 51)]
    write_log(log, old + young + old[:10], extra=b"not json at all\n")
    before = ReceiptLog.load(log)
    result = before.compact(now_ms=now, keep_receipts_ms=90 * DAY_MS)
    assert result is not None
    assert (result.receipts_dropped, result.duplicates_dropped, result.lines_after) == (200, 10, 251)
    assert result.bytes_after < result.bytes_before / 2
    after = ReceiptLog.load(log)
    assert after.index == before.index and len(after.index) == 250
    rows = [json.loads(line) for line in log.read_bytes().splitlines() if line.startswith(b"{")]
    assert all("receipt" not in r for r in rows if r["device_id"] == "TAB-0001")
    assert all("receipt" in r for r in rows if r["device_id"] == "TAB-0002")  # young receipts are kept whole
    assert b"not json at all\n" in log.read_bytes()  # what cannot be understood is never destroyed
    assert oct(log.stat().st_mode & 0o777) == "0o600"
    assert after.compact(now_ms=now, keep_receipts_ms=90 * DAY_MS) is None  # nothing left to gain


def test_compaction_on_open_only_when_it_pays(tmp_path: Path) -> None:
    log = tmp_path / "receipts.jsonl"
    now = now_ms()
    write_log(log, [receipt_row("TAB-0001", s, now - 100 * DAY_MS) for s in range(1, 101)])
    assert ReceiptLog.load(log).compact(now_ms=now, keep_receipts_ms=90 * DAY_MS, force=False) is None  # < 1 MiB
    write_log(log, [receipt_row("TAB-0001", s, now - 100 * DAY_MS) for s in range(1, 5001)])
    size = log.stat().st_size
    result = ReceiptLog.load(log).compact(now_ms=now, keep_receipts_ms=90 * DAY_MS, force=False)
    assert result is not None and result.bytes_before == size and log.stat().st_size < size / 2


def test_a_torn_tail_is_not_copied_into_the_compacted_log(tmp_path: Path) -> None:
    log = tmp_path / "receipts.jsonl"
    now = now_ms()
    write_log(log, [receipt_row("TAB-0001", s, now - 100 * DAY_MS) for s in range(1, 4)], extra=b'{"device_id":"TA')
    book = ReceiptLog(log)  # the log as found, before the owner's load() would cut the tail
    assert book.compact(now_ms=now, keep_receipts_ms=0) is not None
    assert log.read_bytes().endswith(b"}\n") and len(ReceiptLog.load(log).index) == 3


def strace_kills(argv: list[str], syscall: str, n: int) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` with SIGKILL delivered at the entry of its n-th ``syscall`` (the call itself never runs)."""
    assert STRACE is not None, "strace is needed (make setup installs it)"
    return subprocess.run([STRACE, "-f", "-qq", "-o", "/dev/null", "-e", f"inject={syscall}:signal=KILL:when={n}",
                           *argv], capture_output=True, text=True, timeout=120, check=False)


def killed(run: subprocess.CompletedProcess[str]) -> bool:
    return run.returncode in (-9, 137)


def test_compaction_sigkilled_at_every_step_leaves_a_whole_log(env: Env, tmp_path: Path) -> None:
    config = env.write_config(tmp_path / "usb-ingest.toml", "http://127.0.0.1:9")
    log = env.state_dir / "receipts.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    now = now_ms()
    write_log(log, [receipt_row("TAB-0001", s, now - 100 * DAY_MS) for s in range(1, 301)]
              + [receipt_row("TAB-0001", 7, now - 100 * DAY_MS)])
    original = log.read_bytes()
    index = ReceiptLog.load(log, repair=False).index
    argv = [*COMMAND, "compact", "--config", str(config)]
    points = 0
    for syscall in ("fsync", "rename", "write"):
        for n in range(1, 60):
            log.write_bytes(original)
            run = strace_kills(argv, syscall, n)
            if not killed(run):
                assert run.returncode == 0, run.stderr
                break
            points += 1
            content = log.read_bytes()
            assert content in (original, compacted(original, now)), (syscall, n)  # the old log or the new one
            assert ReceiptLog.load(log).index == index, (syscall, n)  # the owner's next open sees the same index
            assert not list(log.parent.glob("receipts.jsonl.tmp-*")), (syscall, n)  # ... and removes leftovers
        else:
            pytest.fail(f"compact still killed at the 59th {syscall}")
    assert points >= 4, points  # fsync of the new log and of the directory, the rename, the writes
    assert ReceiptLog.load(log).index == index and log.read_bytes() == compacted(original, now)


def compacted(original: bytes, now: int) -> bytes:
    scratch = Path(os.environ.get("TMPDIR", "/tmp")) / f"compacted-{os.getpid()}.jsonl"
    scratch.write_bytes(original)
    try:
        ReceiptLog(scratch).compact(now_ms=now, keep_receipts_ms=90 * DAY_MS)
        return scratch.read_bytes()
    finally:
        scratch.unlink()


# ---- requeue -----------------------------------------------------------------------------------------------


async def test_requeue_moves_rejected_entries_back_with_a_custody_note(env: Env, gw: Gateway, tmp_path: Path) -> None:
    image = tmp_path / "tab.img"
    export(env, image, "TAB-0001", range(1, 4))
    config = env.write_config(tmp_path / "usb-ingest.toml", gw.url)
    code, _, err = await cli("pull", str(image), "--config", str(config), "--no-forward")
    assert code == 0, err
    spool = spool_of(env)
    for entry in spool.pending_batches()[:2]:
        spool.reject(entry, {"status": 403, "code": "revoked", "device_id": entry.device_id, "seq": entry.seq})
    del spool

    code, out, err = await cli("requeue", "--list", "--config", str(config))
    assert code == 0, err
    listed = [line.split()[0] for line in out.splitlines() if "revoked" in line]
    assert len(listed) == 2 and "2 rejected entries" in out
    code, _, err = await cli("requeue", "--config", str(config))
    assert code == 2 and "give entry ids, or --all, or --list" in err
    code, _, err = await cli("requeue", "no-such-entry.sqb", "--config", str(config))
    assert code == 1 and "no rejected entry with this id" in err

    code, out, err = await cli("requeue", listed[0], "--note", "registry now lists the tablet", "--config",
                               str(config))
    assert code == 0, err
    view = await status_json(config)
    assert (tablet(view, "TAB-0001")["pending"], tablet(view, "TAB-0001")["rejected"]) == (2, 1)
    [note] = [json.loads(line) for line in (env.state_dir / "spool" / "custody-notes.jsonl").read_text().splitlines()]
    assert (note["action"], note["entry"], note["reason"]["code"], note["note"]) == (
        "requeue", listed[0], "revoked", "registry now lists the tablet")
    assert note["by"] and note["device_id"] == "TAB-0001"
    assert not (env.state_dir / "spool" / "rejected" / f"{listed[0]}.reason.json").exists()

    code, out, err = await cli("requeue", "--all", "--config", str(config))
    assert code == 0 and "1 requeued" in out, err
    code, out, err = await cli("pull", str(image), "--config", str(config), "--json")
    assert code == 0, err
    assert gw.rows("SELECT seq FROM batches ORDER BY seq") == [(1,), (2,), (3,)]
    view = await status_json(config)
    assert (tablet(view, "TAB-0001")["forwarded"], view["rejected"], view["spool_pending"]) == (3, 0, 0)


def test_requeue_refuses_a_batch_delivered_or_pending_meanwhile(env: Env, tmp_path: Path) -> None:
    spool = Spool.open(tmp_path / "spool", tmp_path / "receipts.jsonl")
    envelope = seal(env, "TAB-0001", 1)
    rejected = spool.reject(spool.store_batch("TAB-0001", 1, envelope), {"code": "revoked"})
    spool.store_batch("TAB-0001", 1, envelope)  # the tablet was pulled again meanwhile
    with pytest.raises(RequeueRefused, match="pending already"):
        spool.requeue(rejected.name, note="", now_ms=1)
    assert rejected.exists() and not (spool.root / "custody-notes.jsonl").exists()  # nothing changed


def test_requeue_sigkilled_at_every_step_never_loses_the_entry(env: Env, tmp_path: Path) -> None:
    config = env.write_config(tmp_path / "usb-ingest.toml", "http://127.0.0.1:9")
    spool = spool_of(env)
    entry = spool.store_batch("TAB-0001", 1, seal(env, "TAB-0001", 1))
    spool.reject(entry, {"code": "revoked"})
    name = entry.path.name
    root = env.state_dir / "spool"
    argv = [*COMMAND, "requeue", name, "--config", str(config)]
    kills: list[tuple[str, int]] = []
    for syscall in ("fsync", "rename", "unlink"):
        for n in range(1, 30):
            run = strace_kills(argv, syscall, n)
            if killed(run):
                kills.append((syscall, n))
            places = [p for p in (root / "batches" / name, root / "rejected" / name) if p.exists()]
            assert len(places) == 1, (syscall, n, places)  # exactly one copy, always a whole one
            assert hashlib.sha256(places[0].read_bytes()).hexdigest() == name.split(".")[-2]
            if places[0].parent.name == "batches":
                assert (root / "custody-notes.jsonl").exists(), (syscall, n)  # the note came first
            if not killed(run):
                break
            if places[0].parent.name == "batches":  # put it back for the next crash point
                spool_of(env).reject(spool_of(env).pending_batches()[0], {"code": "revoked"})
        # finish: a requeue that was not killed (or one found already done) leaves it pending
        if (root / "rejected" / name).exists():
            assert subprocess.run(argv, capture_output=True, check=False).returncode == 0
        assert (root / "batches" / name).exists()
        spool_of(env).reject(spool_of(env).pending_batches()[0], {"code": "revoked"})
    # note fsync, 3 directory fsyncs, the rename back, the reason's unlink: each one a crash point
    assert {"fsync", "rename", "unlink"} <= {s for s, _ in kills} and len(kills) >= 6, kills


def test_the_station_compacts_a_big_receipt_log_when_it_starts(env: Env) -> None:
    log = env.state_dir / "receipts.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    now = now_ms()
    write_log(log, [receipt_row("TAB-0001", s, now - 100 * DAY_MS) for s in range(1, 5001)])
    size = log.stat().st_size
    index = ReceiptLog.load(log, repair=False).index
    station = Station.open(env.config())
    try:
        assert log.stat().st_size < size / 2
        assert station.spool.state_of("TAB-0001", 7, index[("TAB-0001", 7)]) == "delivered"
        assert station.spool.summary().forwarded == 5000
    finally:
        station.close()
    assert ReceiptLog.load(log).index == index


async def test_requeue_while_the_service_runs_says_to_stop_it_first(env: Env, tmp_path: Path) -> None:
    config = env.write_config(tmp_path / "usb-ingest.toml", "http://127.0.0.1:9")
    station = Station.open(env.config())  # holds the state directory's lock, as the service does
    try:
        code, _, err = await cli("requeue", "--all", "--config", str(config))
    finally:
        station.close()
    lines = [line for line in err.splitlines() if not line.startswith("{")]
    assert code == 2 and len(lines) == 1, err
    assert "state-locked" in lines[0] and "systemctl stop sanaq-usb-ingest" in lines[0]
    assert "then `sanaq-usb-ingest requeue ...`, then systemctl start sanaq-usb-ingest" in lines[0]


async def test_compact_while_the_service_runs_refuses_and_leaves_the_log_alone(env: Env, tmp_path: Path) -> None:
    config = env.write_config(tmp_path / "usb-ingest.toml", "http://127.0.0.1:9")
    station = Station.open(env.config())  # the service's lock on the state directory
    try:
        log = env.state_dir / "receipts.jsonl"
        write_log(log, [receipt_row("TAB-0001", s, now_ms() - 100 * DAY_MS) for s in (1, 1, 2)])
        before = log.read_bytes()
        code, out, err = await cli("compact", "--config", str(config))
        assert log.read_bytes() == before  # not compacted under the service
    finally:
        station.close()
    lines = [line for line in err.splitlines() if not line.startswith("{")]
    assert code == 2 and len(lines) == 1 and "receipts.jsonl" not in out, (out, err)
    assert "state-locked" in lines[0] and "systemctl stop sanaq-usb-ingest" in lines[0]
    assert "then `sanaq-usb-ingest compact ...`, then systemctl start sanaq-usb-ingest" in lines[0]
