"""Grouped durability under SIGKILL at every step, and the order of its system calls (ADR 0007).

The real ``sanaq-usb-ingest pull`` process, groups of 3 batches, 8 batches
on the volume. strace's syscall tampering delivers SIGKILL at the entry of the
n-th ``syncfs`` / ``rename`` / ``fsync`` / ``write`` the process makes, for
every n until a run gets through: every flush, every publishing rename, every
directory seal and every byte written (temp files, log lines, custody) is a
crash point. After each kill:

* every complete-looking spool file is the whole envelope the tablet wrote
  (``Audit.spool``; ``.tmp-*`` leftovers are allowed, ``Spool.open`` removes them);
* every batch the process logged as ``usb.batch.spooled`` before it died has
  its final file;
* every custody record names only batches with a final file.

A clean run then converges: every batch stored once at the gateway, receipted.

The order test traces one pull (``strace -y``) and checks, per batch: its temp
file's last write < the group's ``syncfs`` < its ``rename`` < the fsync of
``batches/`` < the ``usb.batch.spooled`` line; the custody record is
published after the last seal.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from keys import ProvisioningBundle
from tests.usb_ingest.images import Env, Gateway, export
from wire import parse_custody

from .test_faults_usb_bed import COMMAND, DEVICE, Audit, run_usb, write_config

STRACE = shutil.which("strace")
BATCHES = 8
GROUP = 3


def grouped_config(env: Env, path: Path, gateway_url: str) -> Path:
    write_config(env, path, gateway_url)
    path.write_text(f"spool_group_batches = {GROUP}\n" + path.read_text(), encoding="utf-8")
    return path


def traced(argv: list[str], *strace_args: str) -> subprocess.CompletedProcess[str]:
    assert STRACE is not None, "strace is needed (make setup installs it)"
    return subprocess.run([STRACE, "-f", "-qq", *strace_args, *argv], capture_output=True, text=True, timeout=120,
                          check=False)


def spooled_logged(stderr: str) -> set[int]:
    seqs = set()
    for line in stderr.splitlines():
        if line.startswith("{"):
            try:
                event = json.loads(line)
            except ValueError:  # the line the kill cut
                continue
            if event.get("event") == "usb.batch.spooled":
                seqs.add(int(event["seq"]))
    return seqs


def custody_named(env: Env) -> set[int]:
    station_key = bytes(ProvisioningBundle.load(env.station_bundle).signing_key.verify_key)
    named: set[int] = set()
    for p in (env.state_dir / "spool" / "custody").glob("*.sqc"):
        named |= {seq for seq, _ in parse_custody(p.read_bytes(), station_key).batches}
    return named


async def test_sigkill_at_every_step_of_a_grouped_pull_leaves_no_half_entry(
    env: Env, gw: Gateway, tmp_path: Path, fault_ledger
) -> None:
    image = tmp_path / "tab.img"
    envelopes = export(env, image, DEVICE, range(1, BATCHES + 1))
    audit = Audit(env, gw, envelopes)
    config = grouped_config(env, tmp_path / "usb.toml", gw.url)
    argv = [*COMMAND, "pull", str(image), "--config", str(config), "--no-forward", "--json"]
    kills: dict[str, int] = {}
    problems: list[str] = []
    for syscall in ("syncfs", "rename", "fsync", "write"):
        for n in range(1, 400):
            shutil.rmtree(env.state_dir / "spool", ignore_errors=True)  # each crash point from a fresh spool
            run = traced(argv, "-o", "/dev/null", "-e", f"inject={syscall}:signal=KILL:when={n}")
            if run.returncode not in (-9, 137):
                assert run.returncode == 0, run.stderr
                break
            kills[syscall] = kills.get(syscall, 0) + 1
            pending = audit.spool()
            missing = spooled_logged(run.stderr) - set(pending)
            if missing:
                problems.append(f"{syscall} #{n}: logged as spooled, no final file: {sorted(missing)}")
            unheld = custody_named(env) - set(pending)
            if unheld:
                problems.append(f"{syscall} #{n}: custody names batches without a final file: {sorted(unheld)}")
    clean = await run_usb("pull", str(image), "--config", str(config), "--json")
    lost, doubled = audit.outcome()
    fault_ledger.add(inputs=BATCHES, faults=sum(kills.values()), lost=lost + audit.bad + len(problems),
                     duplicates=doubled, crashes=int(clean.crashed))
    assert (problems, audit.bad, audit.notes) == ([], 0, [])
    assert (lost, doubled, clean.code) == (0, 0, 0), (audit.notes, clean.stderr)
    groups = -(-BATCHES // GROUP)
    # one syncfs per group; a rename per batch and for the custody record; a seal per group and for custody
    assert kills["syncfs"] >= groups and kills["rename"] >= BATCHES + 1 and kills["fsync"] >= groups + 1, kills
    assert kills["write"] >= BATCHES, kills


_LINE = re.compile(r"^(?P<pid>\d+)\s+(?P<call>\w+)\((?P<args>.*)$")


async def test_a_batch_is_reported_spooled_only_after_its_group_is_sealed(env: Env, tmp_path: Path) -> None:
    image = tmp_path / "tab.img"
    export(env, image, DEVICE, range(1, BATCHES + 1))
    config = grouped_config(env, tmp_path / "usb.toml", "http://127.0.0.1:9")
    trace = tmp_path / "trace.txt"
    run = traced([*COMMAND, "pull", str(image), "--config", str(config), "--no-forward", "--json"],
                 "-o", str(trace), "-y", "-s", "2000", "-e", "trace=syncfs,fsync,rename,write")
    assert run.returncode == 0, run.stderr
    batches = str(env.state_dir / "spool" / "batches")
    custody = str(env.state_dir / "spool" / "custody")
    last_write: dict[str, int] = {}  # temp file -> index of its last write
    flushes: list[int] = []
    seals: list[int] = []
    published: dict[int, tuple[int, str]] = {}  # seq -> (index of rename, temp name)
    reported: dict[int, int] = {}
    custody_at: list[int] = []
    for i, line in enumerate(trace.read_text().splitlines()):
        m = _LINE.match(line)
        if m is None:
            continue
        call, args = m.group("call"), m.group("args")
        if call == "write" and f"<{batches}/.tmp-" in args:
            last_write[args.split("<", 1)[1].split(">", 1)[0]] = i
        elif call == "write" and "usb.batch.spooled" in args:
            seq = re.search(r'\\"seq\\": (\d+)', args)
            assert seq is not None, line
            reported[int(seq.group(1))] = i
        elif call == "syncfs" and f"<{batches}>" in args:
            flushes.append(i)
        elif call == "fsync" and f"<{batches}>" in args:
            seals.append(i)
        elif call == "rename" and f'"{batches}/' in args:
            tmp, final = re.findall(r'"([^"]+)"', args)[:2]
            published[int(Path(final).name.rsplit(".", 3)[1])] = (i, tmp)
        elif call == "rename" and f'"{custody}/' in args:
            custody_at.append(i)
    assert sorted(published) == sorted(reported) == list(range(1, BATCHES + 1)), (published, reported)
    assert len(flushes) == len(seals) == -(-BATCHES // GROUP), (flushes, seals)
    for seq, (renamed, tmp) in published.items():
        flush = max(f for f in flushes if f < renamed)
        seal = min(s for s in seals if s > renamed)
        assert last_write[tmp] < flush < renamed < seal < reported[seq], (seq, last_write[tmp], flush, renamed, seal)
    assert len(custody_at) == 1 and custody_at[0] > max(seals)
