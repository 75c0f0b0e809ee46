"""A big tablet on the USB road: forwarding starts while the pull still reads, and an unplug at any point resumes.

The real daemon in the umockdev bed and a real gateway (``test_usb_udev_e2e``'s
road), groups of 20 batches: every sealed group wakes the forwarder, so the
first receipt is logged before the pull has finished; unplugged in the middle
and plugged again, every batch reaches the gateway exactly once. In process:
the memory a pull holds grows with the number of files by a small index
entry each, never with the bytes taken.
"""

from __future__ import annotations

import dataclasses
import tracemalloc
from pathlib import Path

import pytest

from usb_ingest.config import VolumeLimits
from usb_ingest.station import Station
from usb_ingest.volume_fat import FatExportVolume

from . import test_usb_udev_e2e as e2e
from .images import Env, export, seal
from .test_usb_core_pull import _DyingDevice
from .test_usb_udev_e2e import Road, expected_rows, export_image

enrolled = e2e.enrolled  # fixtures of the e2e road, used here as they are
road = e2e.road


N = 300
GROUP = 20


def index_of(lines: list[dict[str, object]], event: str, **match: object) -> int:
    return next(i for i, line in enumerate(lines)
                if line.get("event") == event and all(line.get(k) == v for k, v in match.items()))


@pytest.mark.umockdev
async def test_the_first_batches_are_forwarded_while_the_pull_still_reads(road: Road, tmp_path: Path) -> None:
    road.config.write_text(f"spool_group_batches = {GROUP}\n" + road.config.read_text())
    batches = road.enrolled.batches("TAB-0001", range(1, N + 1))
    image = export_image(tmp_path / "big.img", road.enrolled, "TAB-0001", batches)
    daemon = await road.start_daemon()
    stick = road.plug(image, "TAB-0001")
    [finished] = await daemon.wait_for("usb.pull.finished", source=stick.devnode)
    assert (finished["outcome"], finished["spooled"]) == ("complete", N)
    first_receipt = index_of(daemon.lines, "usb.forward.delivered")  # the forwarder woke on a sealed group
    assert first_receipt < index_of(daemon.lines, "usb.pull.finished", source=stick.devnode)
    assert first_receipt > index_of(daemon.lines, "usb.batch.spooled", seq=GROUP)  # ... never before a seal
    await daemon.wait_for("usb.forward.delivered", n=N)
    await daemon.wait_for("usb.custody.delivered")
    assert road.gateway_rows() == expected_rows(batches, "TAB-0001")
    assert road.custody_rows() == [("ST-01", "TAB-0001", N)]  # batches forwarded meanwhile are still named


@pytest.mark.umockdev
async def test_a_big_tablet_unplugged_mid_pull_resumes_without_duplicates(road: Road, tmp_path: Path) -> None:
    road.config.write_text(f"spool_group_batches = {GROUP}\n" + road.config.read_text())
    batches = road.enrolled.batches("TAB-0001", range(1, N + 1))
    image = export_image(tmp_path / "big.img", road.enrolled, "TAB-0001", batches)
    daemon = await road.start_daemon()
    stick = road.plug(image, "TAB-0001")
    await daemon.wait_for("usb.batch.spooled", device_id="TAB-0001", seq=GROUP)
    road.bed.unplug(stick)
    [first] = await daemon.wait_for("usb.pull.finished", source=stick.devnode)
    assert first["outcome"] == "interrupted" and GROUP <= first["spooled"] < N, first
    again = road.plug(image, "TAB-0001", disk=stick.handle)
    second = (await daemon.wait_for("usb.pull.finished", n=2, source=again.devnode))[-1]
    assert second["outcome"] == "complete"
    assert first["spooled"] + second["spooled"] == N
    await daemon.wait_for("usb.forward.delivered", n=N)
    assert road.gateway_rows() == expected_rows(batches, "TAB-0001")  # each batch once
    assert not any(line["duplicate"] for line in daemon.find("usb.forward.delivered"))


# ---- bounded memory -----------------------------------------------------------------------------------------
#
# The bound (ADR 0007, docs/operations.md): a pull holds one batch file at a time (at most
# limits.max_file_bytes), the FAT (max_fat_bytes) and the manifest (max_manifest_bytes) while it runs, plus
# ~3 KB per batch file of index (its directory entry, manifest entry, report and spool index entries). It never
# holds the batches it took: a 50,000-sheet tablet (5,000 batches) peaks at ~14 MiB of Python heap
# (bench/results/usb_big.json has the process's peak RSS).

PER_BATCH_INDEX = 4096


def pull_heap_peak(env: Env, image: Path, state: str) -> tuple[int, int]:
    """(peak traced Python heap during one in-process pull, batches spooled)."""
    station = Station.open(dataclasses.replace(env.config(), state_dir=env.state_dir.parent / state))
    try:
        tracemalloc.start()
        try:
            report = station.pull_volume(str(image))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    finally:
        station.close()
    assert report.outcome == "complete"
    return peak, len(report.spooled)


def image_of(env: Env, path: Path, batches: int, sheets: int) -> int:
    """An export of ``batches`` batches of ``sheets`` sheets; returns the largest batch's size."""
    envelopes = {s: seal(env, "TAB-0001", s, sheets=sheets) for s in range(1, batches + 1)}
    export(env, path, "TAB-0001", range(1, batches + 1), envelopes=envelopes)
    return max(len(e) for e in envelopes.values())


def test_a_pull_holds_one_batch_at_a_time_and_a_small_index_per_file(env: Env, tmp_path: Path) -> None:
    few, many = 100, 600
    small = image_of(env, tmp_path / "few.img", few, 2)
    image_of(env, tmp_path / "many.img", many, 2)
    fat = image_of(env, tmp_path / "fat.img", few, 40)  # as many files, each ~20x the bytes
    peak_few, n_few = pull_heap_peak(env, tmp_path / "few.img", "s1")
    peak_many, n_many = pull_heap_peak(env, tmp_path / "many.img", "s2")
    peak_fat, n_fat = pull_heap_peak(env, tmp_path / "fat.img", "s3")
    assert (n_few, n_many, n_fat) == (few, many, few)
    # more files: the peak grows by at most the per-file index, not by the bytes taken (600 x ~3 KB taken)
    assert peak_many - peak_few <= (many - few) * PER_BATCH_INDEX, (peak_few, peak_many)
    # bigger files, same count: the peak grows by about one batch (read, hashed, written, read back), never by
    # the volume's bytes (100 x ~40 KB)
    assert peak_fat - peak_few <= 4 * (fat - small) + 256 * 1024, (peak_few, peak_fat, fat)
    assert peak_fat < few * fat / 4, (peak_fat, few * fat)


def test_an_unplug_inside_any_batch_keeps_every_whole_batch_and_the_next_pull_takes_the_rest_once(
    env: Env, tmp_path: Path
) -> None:
    """Groups of 3, 12 batches: the read fails (EIO, the plug pulled) inside each batch in turn."""
    n = 12
    image = tmp_path / "tab.img"
    envs = export(env, image, "TAB-0001", range(1, n + 1))
    with _DyingDevice(image, "r") as probe:  # the bytes read before the first batch (FAT, directory, manifest)
        probe.budget = 1 << 40
        with FatExportVolume.open(probe, VolumeLimits()) as vol:
            vol.read_manifest()
        structure = (1 << 40) - probe.budget
    config = dataclasses.replace(env.config(), spool_group_batches=3)
    for k in range(1, n + 1):
        station = Station.open(dataclasses.replace(config, state_dir=tmp_path / f"state-{k}"))
        try:
            with _DyingDevice(image, "r") as dev:
                dev.budget = structure + sum(len(envs[s]) for s in range(1, k)) + len(envs[k]) // 2
                cut = station.pull_volume(dev, devnode="/dev/sdz1")  # type: ignore[arg-type]
            assert (cut.outcome, cut.spooled) == ("interrupted", tuple(range(1, k))), k  # staged ones sealed
            assert all(station.spool.read(e) == envs[e.seq] for e in station.spool.pending_batches())
            rest = station.pull_volume(str(image))
            assert (rest.outcome, rest.spooled, rest.already_held) == (
                "complete", tuple(range(k, n + 1)), tuple(range(1, k))), k
            assert [e.seq for e in station.spool.pending_batches()] == list(range(1, n + 1))  # each once
        finally:
            station.close()
