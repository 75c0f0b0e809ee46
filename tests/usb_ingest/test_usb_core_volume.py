"""The user-space FAT reader: real tablet images, hostile names, limits, and corrupt volumes that must never hang."""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import struct
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from usb_ingest.config import VolumeLimits
from usb_ingest.errors import CorruptVolume, IngestError, LimitExceeded, NotAnExportVolume
from usb_ingest.volume_fat import FatExportVolume

from .images import (
    Env,
    Fat16,
    env_from_template,
    export,
    fat_edit,
    fat_image,
    fill_export_dir,
    patch_image,
    rename_long_name,
)


@pytest.fixture(scope="module")
def good_image(template: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[int, bytes]]:
    """One tablet image shared by the read-only tests (each test copies it before editing)."""
    d = tmp_path_factory.mktemp("img")
    e = env_from_template(template, d)
    try:
        envs = export(e, d / "good.img", "TAB-0001", range(1, 6))
    finally:
        e.close()
    return d / "good.img", envs


def copy_of(image: Path, tmp_path: Path, name: str = "vol.img") -> Path:
    target = tmp_path / name
    target.write_bytes(image.read_bytes())
    return target


@pytest.mark.parametrize("fat_bits", [16, 32])
def test_reads_the_tablets_export_exactly(env: Env, tmp_path: Path, fat_bits: int) -> None:
    from tablet.usb_export import write_export_volume

    from .images import StoredBatch, now_ms, seal

    envs = {s: seal(env, "TAB-0002", s) for s in (1, 2, 7)}
    image = tmp_path / "x.img"
    write_export_volume(image, [StoredBatch(s, e, hashlib.sha256(e).digest(), 2, 1) for s, e in envs.items()],
                        device_id="TAB-0002", usb_serial="SER-TAB-0002", device_key=env.tablet_key("TAB-0002"),
                        now_ms=now_ms(), fat_bits=fat_bits)
    before = hashlib.sha256(image.read_bytes()).digest()
    with FatExportVolume.open(image, VolumeLimits()) as vol:
        assert vol.listing.label == "SANAQEXPORT"
        assert vol.listing.fat_bits == fat_bits
        assert vol.listing.extra == ()
        assert [n for n, _ in vol.listing.batches] == ["00000001.SQB", "00000002.SQB", "00000007.SQB"]
        assert vol.read_manifest()[:4] == b"SNQM"
        for seq, data in envs.items():
            assert vol.read_batch(f"{seq:08d}.SQB") == data
    assert hashlib.sha256(image.read_bytes()).digest() == before, "reading must not change the volume"


def test_reads_from_an_open_file_object(good_image: tuple[Path, dict[int, bytes]]) -> None:
    image, envs = good_image
    with image.open("rb") as fh, FatExportVolume.open(fh, VolumeLimits()) as vol:
        assert vol.read_batch("00000003.SQB") == envs[3]
        assert not fh.closed  # the caller's file stays the caller's


def test_foreign_names_are_listed_as_extra_and_never_followed(
    good_image: tuple[Path, dict[int, bytes]], tmp_path: Path
) -> None:
    image = copy_of(good_image[0], tmp_path)
    with fat_edit(image) as fs:
        fs.writebytes("SANAQ/NOTES.TXT", b"hello")
        fs.makedir("SANAQ/SUB")
        fs.writebytes("SANAQ/SUB/00000009.SQB", b"x" * 100)
        fs.writebytes("SANAQ/ab00000009.SQB", b"y" * 50)  # not 8.3: gets a long-name chain
        fs.writebytes("README.TXT", b"root file")

    def hostile(img: bytearray, geo: Fat16) -> None:
        rename_long_name(img, geo, "../00000009.SQB")
        # make the long-named entry's data chain loop: reading it would be caught, but it must not even be read
        entry = geo.find(img, b"AB000000SQB")  # pyfatfs's 8.3 alias for the long name
        cluster = struct.unpack_from("<H", img, entry + 26)[0]
        struct.pack_into("<H", img, geo.fat_off + 2 * cluster, cluster)

    patch_image(image, hostile)
    with FatExportVolume.open(image, VolumeLimits()) as vol:
        assert set(vol.listing.extra) == {"SANAQ/NOTES.TXT", "SANAQ/SUB/", "SANAQ/../00000009.SQB", "README.TXT"}
        assert [n for n, _ in vol.listing.batches] == [f"{s:08d}.SQB" for s in range(1, 6)]
        assert vol.read_batch("00000001.SQB") == good_image[1][1]
        with pytest.raises(NotAnExportVolume):
            vol._read_file("../00000009.SQB", 1000)
        with pytest.raises(ValueError, match="not a batch file name"):
            vol.read_batch("../00000009.SQB")


def test_a_name_listed_twice_is_a_corrupt_volume(good_image: tuple[Path, dict[int, bytes]], tmp_path: Path) -> None:
    image = copy_of(good_image[0], tmp_path)
    patch_image(image, lambda img, geo: img.__setitem__(
        slice(geo.find(img, b"00000002SQB"), geo.find(img, b"00000002SQB") + 11), b"00000001SQB"))
    with pytest.raises(CorruptVolume, match="twice"):
        FatExportVolume.open(image, VolumeLimits())


@pytest.mark.parametrize(
    ("files", "error"),
    [
        ({"README.TXT": b"x"}, "no /SANAQ directory"),
        ({"SANAQ/00000001.SQB": b"x" * 10}, "no /SANAQ/MANIFEST.SQM"),
        ({"SANAQ/MANIFEST.SQM/00000001.SQB": b"x"}, "no /SANAQ/MANIFEST.SQM"),  # a directory, not a file
    ],
)
def test_a_volume_without_manifest_is_not_an_export(tmp_path: Path, files: dict[str, bytes], error: str) -> None:
    image = tmp_path / "plain.img"
    fat_image(image, files)
    with pytest.raises(NotAnExportVolume, match=error):
        FatExportVolume.open(image, VolumeLimits())


@pytest.mark.parametrize(
    ("limits", "match"),
    [
        (VolumeLimits(max_total_bytes=10_000), "in total"),
        (VolumeLimits(max_fat_bytes=1024), "FAT larger"),
        (VolumeLimits(max_files=4), "too many entries"),
    ],
)
def test_volume_limits_refuse_before_reading(
    good_image: tuple[Path, dict[int, bytes]], limits: VolumeLimits, match: str
) -> None:
    with pytest.raises(LimitExceeded, match=match):
        FatExportVolume.open(good_image[0], limits)


def test_a_file_above_the_size_limit_is_never_read(good_image: tuple[Path, dict[int, bytes]]) -> None:
    with (FatExportVolume.open(good_image[0], VolumeLimits(max_file_bytes=1000)) as vol,
          pytest.raises(LimitExceeded, match="file larger")):
        vol.read_batch("00000001.SQB")


def test_a_huge_directory_is_refused_in_bounded_time(
    good_image: tuple[Path, dict[int, bytes]], tmp_path: Path
) -> None:
    image = copy_of(good_image[0], tmp_path)
    fill_export_dir(image, [f"X{i:07d}TXT".encode() for i in range(1500)])
    started = time.monotonic()
    with pytest.raises(LimitExceeded):
        FatExportVolume.open(image, VolumeLimits(max_files=1000))
    assert time.monotonic() - started < 5


def test_tens_of_thousands_of_entries_are_listed_in_bounded_time(
    good_image: tuple[Path, dict[int, bytes]], tmp_path: Path
) -> None:
    image = copy_of(good_image[0], tmp_path)
    fill_export_dir(image, [f"{i:08d}SQB".encode() for i in range(100, 20_100)])
    started = time.monotonic()
    with FatExportVolume.open(image, VolumeLimits()) as vol:
        assert len(vol.listing.batches) == 20_005
    assert time.monotonic() - started < 20


# ---- corrupt volumes: a clean refusal, never a hang or a crash ---------------------------------


def _child(path: str, conn: object) -> None:
    try:
        with FatExportVolume.open(path, VolumeLimits()) as vol:
            vol.read_manifest()
            for name, _ in vol.listing.batches:
                with contextlib.suppress(IngestError):
                    vol.read_batch(name)
        conn.send(("ok", ""))  # type: ignore[attr-defined]
    except IngestError as e:
        conn.send(("refused", e.code))  # type: ignore[attr-defined]
    except BaseException as e:
        conn.send(("escaped", f"{type(e).__module__}.{type(e).__name__}: {e}"))  # type: ignore[attr-defined]


def read_isolated(path: Path, timeout: float = 10.0) -> tuple[str, str]:
    """Open and read the volume in a forked child; ("hang", ...) if it does not finish in time."""
    ctx = multiprocessing.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(str(path), send))
    proc.start()
    proc.join(timeout)
    if proc.is_alive():
        proc.kill()
        proc.join()
        return ("hang", f">{timeout}s")
    if not recv.poll():
        return ("crash", f"exit code {proc.exitcode}")
    result: tuple[str, str] = recv.recv()
    return result


def _mutations(img: bytes) -> dict[str, bytes]:
    geo = Fat16.of(img)
    sanaq = geo.export_dir(img)
    sanaq_cluster = (sanaq - geo.data_off) // (geo.spc * geo.bps) + 2
    cases: dict[str, bytes] = {"zeros": bytes(len(img)), "empty": b""}
    for n in (10, 511, 512, 4096, geo.root_off, geo.data_off, sanaq + 64):
        cases[f"truncated_{n}"] = img[:n]

    def edit(name: str, offset: int, data: bytes) -> None:
        b = bytearray(img)
        b[offset : offset + len(data)] = data
        cases[name] = bytes(b)

    edit("no_55aa", 510, b"\0\0")
    edit("bad_jump", 0, b"\0")
    edit("sector_size_0", 11, b"\0\0")
    edit("cluster_size_0", 13, b"\0")
    edit("fat_size_0", 22, b"\0\0")
    edit("fat_size_huge", 22, b"\xff\xff")
    edit("fat_count_9", 16, b"\x09")
    edit("reserved_0", 14, b"\0\0")
    edit("total_sectors_huge", 19, b"\xff\xff")
    edit("export_dir_self_loop", geo.fat_off + 2 * sanaq_cluster, struct.pack("<H", sanaq_cluster))
    edit("export_dir_free_cluster", geo.fat_off + 2 * sanaq_cluster, b"\0\0")
    edit("export_dir_bad_cluster", geo.fat_off + 2 * sanaq_cluster, struct.pack("<H", 0xFFF7))
    edit("export_dir_points_past_fat", geo.fat_off + 2 * sanaq_cluster, struct.pack("<H", 0xFFEF))
    for k in range(1, 8):  # every file's chain made to loop onto the directory
        edit(f"file_chain_loop_{k}", geo.fat_off + 2 * (sanaq_cluster + k), struct.pack("<H", sanaq_cluster + k))
    edit("root_dir_random", geo.root_off, bytes(range(256)) * 2)
    edit("export_dir_random", sanaq, bytes((i * 37 + 11) % 256 for i in range(512)))
    b = bytearray(img)
    for i in geo.entries(b, sanaq, geo.spc * geo.bps):
        struct.pack_into("<I", b, i + 28, 0xFFFFFFF0)
    cases["file_sizes_huge"] = bytes(b)
    b = bytearray(img)
    for i in geo.entries(b, sanaq, geo.spc * geo.bps):
        struct.pack_into("<H", b, i + 26, 0)
    cases["file_clusters_zero"] = bytes(b)
    return cases


def test_corrupt_volumes_are_refused_cleanly(good_image: tuple[Path, dict[int, bytes]], tmp_path: Path) -> None:
    img = good_image[0].read_bytes()
    results = {}
    for name, data in _mutations(img).items():
        path = tmp_path / f"{name}.img"
        path.write_bytes(data)
        results[name] = read_isolated(path)
        path.unlink()
    bad = {k: v for k, v in results.items() if v[0] not in ("ok", "refused")}
    assert bad == {}
    assert results["export_dir_self_loop"] == ("refused", "corrupt-volume")
    assert results["zeros"] == ("refused", "corrupt-volume")
    assert results["fat_size_huge"][0] == "refused"
    assert results["truncated_512"] == ("refused", "corrupt-volume")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    region=st.sampled_from(["boot", "fat", "root", "export_dir"]),
    edits=st.lists(st.tuples(st.integers(0, 1023), st.integers(0, 255)), min_size=1, max_size=40),
)
def test_random_damage_never_hangs_or_escapes(
    good_image: tuple[Path, dict[int, bytes]], tmp_path: Path, region: str, edits: list[tuple[int, int]]
) -> None:
    img = bytearray(good_image[0].read_bytes())
    geo = Fat16.of(img)
    base = {"boot": 0, "fat": geo.fat_off, "root": geo.root_off, "export_dir": geo.export_dir(img)}[region]
    for offset, value in edits:
        img[base + offset] = value
    path = tmp_path / "fuzz.img"
    path.write_bytes(bytes(img))
    outcome = read_isolated(path)
    assert outcome[0] in ("ok", "refused"), outcome
