"""Chain of custody under SIGKILL at every step of a grouped pull (ADR 0007, docs/protocol.md "Recovery records").

The real ``sanaq-usb-ingest pull`` process, groups of 3 batches, 8 batches on
the volume, killed by strace's syscall tampering at the entry of the n-th
``syncfs`` / ``rename`` / ``fsync`` / ``write`` (every flush, publishing
rename, seal, journal line, log line and custody write), for every n until a
run gets through. Each crash point starts from a fresh spool.

Station side, after each kill, a second real process opens the station (a
``pull`` of a volume that is not one: it opens the station, which recovers,
and reads nothing):

* no pull journal is left;
* the custody records in the spool name exactly the batches with a final file,
  each by exactly one record (one pull, fresh spool), and name nothing else;
* a record is a recovery record (``recovery.reason = "pull-interrupted"``) only
  when the killed process never logged ``usb.custody.spooled``, and a killed
  process that logged it left its own record, not a recovery record.

End to end, with a gateway per crash point (every ``rename`` and ``syncfs``
point of a forwarding pull: before, during and after each publish and the custody record): after
the kill a clean ``pull`` (recovery, the rest of the volume, forwarding) runs
to the end, and then at the gateway every stored batch is named by at least one
stored custody record; the batches the killed pull had published are named by
exactly one recovery record (when it died before its own record) and by the
clean pull's record (which names what it finds held, step 8 of the USB
procedure), the others by the clean pull's record alone.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from collections import Counter
from pathlib import Path

from keys import ProvisioningBundle
from tests.usb_ingest.images import Env, Gateway, export, serve_gateway
from wire import CustodyRecord, parse_custody

from .test_faults_usb_bed import COMMAND, DEVICE, Audit, receipt_lines, run_usb
from .test_faults_usb_group_kill import BATCHES, GROUP, grouped_config, spooled_logged, traced


def station_key(env: Env) -> bytes:
    return bytes(ProvisioningBundle.load(env.station_bundle).signing_key.verify_key)


def spool_records(env: Env) -> list[CustodyRecord]:
    key = station_key(env)
    return [parse_custody(p.read_bytes(), key)
            for p in sorted((env.state_dir / "spool" / "custody").glob("*.sqc"))]


def journals(env: Env) -> list[str]:
    d = env.state_dir / "spool" / "pulls"
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def logged(stderr: str, event: str) -> bool:
    return f'"event": "{event}"' in stderr


async def open_station(config: Path, not_a_volume: Path) -> str:
    """A real process that opens the station (recovering what a kill left) and reads no volume."""
    run = await run_usb("pull", str(not_a_volume), "--config", str(config), "--no-forward", "--json")
    assert not run.crashed and "volume refused" in run.stderr, (run.code, run.stderr)
    return run.stderr


async def test_sigkill_at_every_step_leaves_every_published_batch_named_once(
    env: Env, gw: Gateway, tmp_path: Path, fault_ledger
) -> None:
    image = tmp_path / "tab.img"
    envelopes = export(env, image, DEVICE, range(1, BATCHES + 1))
    audit = Audit(env, gw, envelopes)
    config = grouped_config(env, tmp_path / "usb.toml", gw.url)
    blank = tmp_path / "blank.img"
    blank.write_bytes(bytes(64 * 1024))
    argv = [*COMMAND, "pull", str(image), "--config", str(config), "--no-forward", "--json"]
    kills: dict[str, int] = {}
    problems: list[str] = []
    recoveries = completed = 0
    for syscall in ("syncfs", "rename", "fsync", "write"):
        for n in range(1, 400):
            shutil.rmtree(env.state_dir / "spool", ignore_errors=True)
            run = traced(argv, "-o", "/dev/null", "-e", f"inject={syscall}:signal=KILL:when={n}")
            if run.returncode not in (-9, 137):
                assert run.returncode == 0, run.stderr
                break
            kills[syscall] = kills.get(syscall, 0) + 1
            own_record = logged(run.stderr, "usb.custody.spooled")
            reopened = await open_station(config, blank)
            where = f"{syscall} #{n}"
            pending = audit.spool()  # seq -> hash of every whole final file
            if journals(env):
                problems.append(f"{where}: a pull journal is left after the station opened: {journals(env)}")
            records = spool_records(env)
            named = [(seq, h.hex()) for r in records for seq, h in r.batches]
            if sorted(named) != sorted(pending.items()):
                problems.append(f"{where}: records name {sorted(named)}, final files {sorted(pending.items())}")
            if len(records) > 1:
                problems.append(f"{where}: {len(records)} custody records for one pull")
            if spooled_logged(run.stderr) - set(pending):
                problems.append(f"{where}: logged as spooled, no final file")
            for r in records:
                if r.is_recovery and own_record:
                    problems.append(f"{where}: a recovery record although the pull stored its own")
                if r.is_recovery:
                    recoveries += 1
                    if r.recovered_at_ms is None or r.recovered_at_ms < r.pulled_at_ms:
                        problems.append(f"{where}: recovery time {r.recovered_at_ms} before the pull began")
                    if not logged(reopened, "usb.custody.recovered"):
                        problems.append(f"{where}: recovery record without usb.custody.recovered")
                elif not own_record:
                    completed += 1  # killed between the journal's custody line and the record: its bytes stored
    clean = await run_usb("pull", str(image), "--config", str(config), "--json")
    lost, doubled = audit.outcome()
    fault_ledger.add(inputs=BATCHES, faults=sum(kills.values()), lost=lost + audit.bad + len(problems),
                     duplicates=doubled, crashes=int(clean.crashed))
    assert (problems, audit.bad, audit.notes) == ([], 0, [])
    assert (lost, doubled, clean.code) == (0, 0, 0), (audit.notes, clean.stderr)
    groups = -(-BATCHES // GROUP)
    assert kills["syncfs"] >= groups and kills["rename"] >= BATCHES + 1, kills
    # the kills inside a publish (a rename after the first) and between the last seal and the record are the
    # ones that need a recovery record: at least one per group's publish
    assert recoveries >= BATCHES, (recoveries, kills)
    assert completed >= 1, "no kill fell between the journal's custody line and the stored record"


async def test_after_a_kill_and_a_clean_pull_every_stored_batch_is_named_at_the_gateway(
    env: Env, tmp_path: Path, fault_ledger
) -> None:
    image = tmp_path / "tab.img"
    envelopes = export(env, image, DEVICE, range(1, BATCHES + 1))
    key = station_key(env)
    all_batches = {(s, hashlib.sha256(e).hexdigest()) for s, e in envelopes.items()}
    kills = lost_total = doubled_total = crashes = 0
    problems: list[str] = []
    recovered_points = 0
    blank = tmp_path / "blank.img"
    blank.write_bytes(bytes(64 * 1024))
    points = [(syscall, n) for syscall in ("syncfs", "rename") for n in range(1, 60)]
    done: set[str] = set()
    for syscall, n in points:
        if syscall in done:
            continue
        where = f"{syscall} #{n}"
        shutil.rmtree(env.state_dir / "spool", ignore_errors=True)
        for p in env.state_dir.glob("receipts.jsonl*"):
            p.unlink()
        gw = await serve_gateway(env, tmp_path / f"census-{syscall}-{n}.db")
        try:
            config = grouped_config(env, tmp_path / "usb.toml", gw.url)
            argv = [*COMMAND, "pull", str(image), "--config", str(config), "--json"]
            # in a thread: the gateway answers from this event loop
            inject = f"inject={syscall}:signal=KILL:when={n}"
            run = await asyncio.to_thread(traced, argv, "-o", "/dev/null", "-e", inject)
            if run.returncode not in (-9, 137):  # got through: every point of this call was a crash point
                assert run.returncode == 0, run.stderr
                done.add(syscall)
                continue
            kills += 1
            published = set(Audit(env, None, envelopes).spool().items())
            own_record = logged(run.stderr, "usb.custody.spooled")
            # restarted without the tablet: the station opens (recovering) and forwards what its spool holds
            restart = await run_usb("pull", str(blank), "--config", str(config), "--json")
            crashes += int(restart.crashed or "volume refused" not in restart.stderr)
            stored = {(s, h.hex()) for s, h, _ in Audit(env, gw, envelopes).stored()}
            records = [parse_custody(bytes(r), key) for (r,) in gw.rows("SELECT record FROM custody ORDER BY id")]
            named = [(s, h.hex()) for r in records for s, h in r.batches]
            if not published <= stored:  # (and what the killed process forwarded itself, if it got that far)
                problems.append(f"{where}: the restart forwarded {sorted(stored)}, published {sorted(published)}")
            if stored - set(named):
                problems.append(f"{where}: stored, named by no custody record: {sorted(stored - set(named))}")
            if set(named) - stored:
                problems.append(f"{where}: a record names a batch not stored: {sorted(set(named) - stored)}")
            recovery = [r for r in records if r.is_recovery]
            normal = [r for r in records if not r.is_recovery]
            kinds = [e.get("kind") for e in restart.events if e.get("event") == "usb.custody.recovered"]
            want = sorted((s, bytes.fromhex(h)) for s, h in published)
            if own_record or not published:  # the pull's record was stored, or nothing was published
                if recovery or kinds not in ([], ["empty"]):
                    problems.append(f"{where}: recovered {kinds} ({len(recovery)} records) though nothing was cut")
            elif kinds == ["recovery"]:  # cut before its record was built: one recovery record, what was published
                recovered_points += 1
                if [sorted(r.batches) for r in recovery] != [want]:
                    problems.append(f"{where}: recovery records {[r.batches for r in recovery]}, published {want}")
            elif kinds == ["completed"]:  # cut after the journal held its record: that record, byte for byte
                if recovery or [sorted(r.batches) for r in normal] != [want]:
                    problems.append(f"{where}: completed, but records {records}, published {want}")
            else:
                problems.append(f"{where}: published {want} without a custody record, recovered {kinds}")
            # then the tablet is plugged again: the rest is taken and named by the clean pull's record
            clean = await run_usb("pull", str(image), "--config", str(config), "--json")
            crashes += int(clean.crashed or clean.code != 0)
            audit = Audit(env, gw, envelopes)
            lost, doubled = audit.outcome()
            lost_total += lost + audit.bad
            doubled_total += doubled
            records = [parse_custody(bytes(r), key) for (r,) in gw.rows("SELECT record FROM custody ORDER BY id")]
            if {(s, h.hex()) for s, h, _ in audit.stored()} - {(s, h.hex()) for r in records for s, h in r.batches}:
                problems.append(f"{where}: after the clean pull, a stored batch is named by no custody record")
            # every batch once: what the restart forwarded is delivered, so the clean pull names only what it took
            once = Counter((s, h.hex()) for r in records for s, h in r.batches)
            if set(once) != all_batches or max(once.values()) != 1 or sum(r.is_recovery for r in records) > 1:
                problems.append(f"{where}: after the clean pull, batches named {sorted(once.items())}")
            if {r.station_id for r in records} != {ProvisioningBundle.load(env.station_bundle).device_id}:
                problems.append(f"{where}: a record of another station")
            if [d for d, _, _ in receipt_lines(env.state_dir) if d != DEVICE]:
                problems.append(f"{where}: receipts of another device")
        finally:
            await gw.stop()
    fault_ledger.add(inputs=BATCHES * kills, faults=kills, lost=lost_total + len(problems),
                     duplicates=doubled_total, crashes=crashes)
    assert problems == []
    assert (lost_total, doubled_total, crashes) == (0, 0, 0)
    assert recovered_points >= BATCHES - 1, recovered_points  # the kills inside and after the publishes
