"""Test bed for the USB ingest core: real keys, real export images, a real gateway on loopback.

* ``Env``: an authority (``keys``), tablets and a station enrolled with the real
  enrollment code, and the station's state directory. Built once per module as a
  template (``build_template``) and copied per test (``env_from_template``).
* Export images are written by the tablet's own writer (``tablet.usb_export``);
  hostile variants are edited with pyfatfs (files) or at the byte level
  (directory entries, long names, FAT chains) on FAT16.
* ``serve_gateway`` runs the real gateway app on 127.0.0.1 (plain HTTP or TLS
  with the authority's census CA), optionally on a fixed port so a test can
  take the gateway down and bring it back.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from nacl.signing import SigningKey
from pyfatfs.PyFatFS import PyFatFS

from gateway.config import GatewayConfig, ServerConfig
from gateway.server import build_server
from gateway.staff.config import StaffConfig
from gateway.store_sqlite import SqliteStore
from keys import Authority, ProvisioningBundle, enroll_station, enroll_tablet, server_ssl_context
from tablet.generator import generate_sheets
from tablet.outbox_schema import StoredBatch
from tablet.usb_export import write_export_volume
from usb_ingest.config import ForwardConfig, IngestConfig, VolumeLimits
from wire import seal_batch

DAY_MS = 86_400_000
STATION_ID = "ST-01"
TABLETS = ("TAB-0001", "TAB-0002", "TAB-0003")


@contextlib.contextmanager
def structlog_defaults() -> Iterator[None]:
    """structlog as shipped while a test runs (another test may have configured a level filter)."""
    import structlog

    old = structlog.get_config()
    structlog.reset_defaults()
    try:
        yield
    finally:
        structlog.configure(**old)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def serial_of(device_id: str) -> str:
    return f"SER-{device_id}"


# ---- keys and identities ----------------------------------------------------------------------


def build_template(root: Path) -> Path:
    """Authority + three tablets + one station under ``root`` (slow part, done once per module)."""
    now = now_ms()
    with Authority.create(root / "authority", now_ms=now) as a:
        for device_id in TABLETS:
            enroll_tablet(a, root / f"bundle-{device_id}", device_id=device_id, usb_serial=serial_of(device_id),
                          institution="HOSP-01", worker_id="W-17", gateway_url="https://localhost:8443", now_ms=now)
        enroll_station(a, root / "bundle-station", station_id=STATION_ID, gateway_url="https://localhost:8443",
                       now_ms=now)
    return root


@dataclass
class Env:
    root: Path
    authority: Authority
    tablets: dict[str, ProvisioningBundle]
    station_bundle: Path
    state_dir: Path
    extra_cleanup: list[Path] = field(default_factory=list)

    def tablet_key(self, device_id: str) -> SigningKey:
        return self.tablets[device_id].signing_key

    def config(self, gateway_url: str = "http://127.0.0.1:9", **limits: int) -> IngestConfig:
        return IngestConfig(
            station_bundle=self.station_bundle,
            gateway_url=gateway_url,
            state_dir=self.state_dir,
            snapshot_refresh_s=3600.0,
            spool_min_free_bytes=0,
            language="en",  # the tests read the technician's messages in English; test_l10n_station reads kk
            limits=VolumeLimits(**limits),
            forward=ForwardConfig(initial_backoff_s=0.02, max_backoff_s=0.2, request_timeout_s=5.0,
                                  concurrency=2, idle_poll_s=5.0),
        )

    def write_config(self, path: Path, gateway_url: str) -> Path:
        path.write_text(
            f'station_bundle = "{self.station_bundle}"\n'
            f'gateway_url = "{gateway_url}"\n'
            f'state_dir = "{self.state_dir}"\n'
            "spool_min_free_bytes = 0\n"
            'language = "en"\n'
            "[forward]\ninitial_backoff_s = 0.02\nmax_backoff_s = 0.2\nrequest_timeout_s = 5.0\n",
            encoding="utf-8",
        )
        return path

    def publish(self, *, validity_ms: int = 7 * DAY_MS, now: int | None = None) -> bytes:
        return self.authority.publish(now_ms=now if now is not None else now_ms(), validity_ms=validity_ms)

    def close(self) -> None:
        self.authority.close()
        for p in self.extra_cleanup:
            p.unlink(missing_ok=True)


def env_from_template(template: Path, dest: Path) -> Env:
    shutil.copytree(template, dest / "keys")
    root = dest / "keys"
    return Env(
        root=root,
        authority=Authority.open(root / "authority"),
        tablets={d: ProvisioningBundle.load(root / f"bundle-{d}") for d in TABLETS},
        station_bundle=root / "bundle-station",
        state_dir=dest / "state",
    )


# ---- batches and export images ----------------------------------------------------------------


def seal(env: Env, device_id: str, seq: int, *, key: SigningKey | None = None, sheets: int = 2) -> bytes:
    return seal_batch(
        device_id=device_id,
        seq=seq,
        sheets=generate_sheets(seq, sheets, device_id=device_id),
        sealed_at_ms=now_ms(),
        device_key=key or env.tablet_key(device_id),
        data_public_key=env.authority.data_public_key,
        ephemeral_secret=os.urandom(32),
    )


def export(env: Env, path: Path, device_id: str, seqs: range | list[int], *, key: SigningKey | None = None,
           usb_serial: str | None = None, envelopes: dict[int, bytes] | None = None) -> dict[int, bytes]:
    """Write an export image with the tablet's writer; returns {seq: envelope}."""
    envs = envelopes or {s: seal(env, device_id, s, key=key) for s in seqs}
    batches = [StoredBatch(s, e, hashlib.sha256(e).digest(), 2, now_ms()) for s, e in envs.items()]
    write_export_volume(path, batches, device_id=device_id, usb_serial=usb_serial or serial_of(device_id),
                        device_key=key or env.tablet_key(device_id), now_ms=now_ms())
    return envs


@contextlib.contextmanager
def fat_edit(image: Path) -> Iterator[Any]:
    """A writable pyfatfs view of ``image`` (to add, replace or remove files)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fs = PyFatFS(str(image), read_only=False, preserve_case=True)
        try:
            yield fs
        finally:
            fs.close()


def fat_image(path: Path, files: dict[str, bytes], *, size: int = 8 * 1024 * 1024, label: str = "SANAQEXPORT") -> None:
    """A plain FAT16 image with arbitrary files (not made by the tablet)."""
    from pyfatfs.PyFat import PyFat

    path.write_bytes(b"")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pf = PyFat()
        pf.mkfs(str(path), fat_type=PyFat.FAT_TYPE_FAT16, size=size, label=label)
        pf.close()
    with fat_edit(path) as fs:
        for name, data in files.items():
            if "/" in name:
                fs.makedirs(name.rsplit("/", 1)[0], recreate=True)
            fs.writebytes(name, data)


def mkfs_fat_image(path: Path, sectors: int, files: dict[str, bytes], *, mkfs_args: tuple[str, ...] = (),
                   label: str = "SANAQEXPORT") -> None:
    """A FAT image of ``sectors`` 512-byte sectors made by ``mkfs.fat`` and filled by ``mmd``/``mcopy``.

    Independent of pyfatfs on both sides (the reader under test uses it).
    ``files`` maps "SANAQ/NAME" to bytes, as ``tablet.usb_export.export_files`` returns.
    """
    with path.open("wb") as f:
        f.truncate(sectors * 512)
    subprocess.run(["mkfs.fat", "-n", label, *mkfs_args, str(path)], check=True, capture_output=True)
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    dirs = sorted({name.rsplit("/", 1)[0] for name in files if "/" in name})
    for d in dirs:
        subprocess.run(["mmd", "-i", str(path), f"::/{d}"], check=True, capture_output=True, env=env)
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in files.items():
            src = Path(tmp) / name.replace("/", "_")
            src.write_bytes(data)
            subprocess.run(["mcopy", "-i", str(path), str(src), f"::/{name}"], check=True, capture_output=True,
                           env=env)


def fat_clusters(image: Path) -> tuple[int, bool]:
    """(data clusters as the FAT specification counts them, whether the boot sector has the FAT32 layout)."""
    boot = image.read_bytes()[:512]
    bps, spc, rsvd, nfats, rootent, tot16 = struct.unpack_from("<HBHBHH", boot, 11)
    (fat16,) = struct.unpack_from("<H", boot, 22)
    (tot32, fat32) = struct.unpack_from("<II", boot, 32)
    root_sectors = (rootent * 32 + bps - 1) // bps
    return ((tot16 or tot32) - rsvd - nfats * (fat16 or fat32) - root_sectors) // spc, fat16 == 0


# ---- byte-level FAT16 surgery -----------------------------------------------------------------


@dataclass(frozen=True)
class Fat16:
    bps: int
    spc: int
    fat_off: int
    root_off: int
    root_len: int
    data_off: int

    @classmethod
    def of(cls, img: bytes | bytearray) -> Fat16:
        bps, spc, rsvd, nfats, rootent = struct.unpack_from("<HBHBH", img, 11)
        (fatsz,) = struct.unpack_from("<H", img, 22)
        assert fatsz, "FAT16 only"
        root_off = (rsvd + nfats * fatsz) * bps
        return cls(bps, spc, rsvd * bps, root_off, rootent * 32, root_off + rootent * 32)

    def cluster_off(self, cluster: int) -> int:
        return self.data_off + (cluster - 2) * self.spc * self.bps

    def entries(self, img: bytes | bytearray, offset: int, length: int) -> Iterator[int]:
        for i in range(offset, offset + length, 32):
            if img[i] == 0:
                return
            yield i

    def export_dir(self, img: bytes | bytearray) -> int:
        """Offset of the first cluster of /SANAQ."""
        for i in self.entries(img, self.root_off, self.root_len):
            if bytes(img[i : i + 11]) == b"SANAQ      ":
                return self.cluster_off(struct.unpack_from("<H", img, i + 26)[0])
        raise AssertionError("no SANAQ directory")

    def find(self, img: bytes | bytearray, raw_name: bytes) -> int:
        """Offset of the /SANAQ entry with this 11-byte short name."""
        start = self.export_dir(img)
        for i in self.entries(img, start, self.spc * self.bps):
            if bytes(img[i : i + 11]) == raw_name:
                return i
        raise AssertionError(f"no entry {raw_name!r}")


def patch_image(image: Path, change: Callable[[bytearray, Fat16], None]) -> None:
    img = bytearray(image.read_bytes())
    change(img, Fat16.of(img))
    image.write_bytes(bytes(img))


def rename_long_name(img: bytearray, geo: Fat16, new_name: str) -> None:
    """Rewrite the (single) long-name chain in /SANAQ to spell ``new_name`` (same number of LFN parts)."""
    start = geo.export_dir(img)
    parts = [i for i in geo.entries(img, start, geo.spc * geo.bps) if img[i + 11] == 0x0F and img[i] != 0xE5]
    assert parts, "no long name to rewrite"
    units = list(new_name.encode("utf-16-le"))
    chars = [bytes(units[k : k + 2]) for k in range(0, len(units), 2)] + [b"\0\0"]
    chars += [b"\xff\xff"] * (13 * len(parts) - len(chars))
    assert len(chars) == 13 * len(parts), "new name needs another number of LFN parts"
    for i in parts:
        n = (img[i] & 0x1F) - 1
        piece = chars[13 * n : 13 * n + 13]
        img[i + 1 : i + 11] = b"".join(piece[0:5])
        img[i + 14 : i + 26] = b"".join(piece[5:11])
        img[i + 28 : i + 32] = b"".join(piece[11:13])


# ---- the gateway --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Gateway:
    url: str
    runner: web.AppRunner
    db_path: Path

    async def stop(self) -> None:
        await self.runner.cleanup()

    def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        import sqlite3

        con = sqlite3.connect(self.db_path)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()


async def serve_gateway(env: Env, db_path: Path, *, port: int = 0, tls: bool = False,
                        clock: Callable[[], int] | None = None, receipt_key: SigningKey | None = None,
                        snapshot: bytes | None = None) -> Gateway:
    a = env.authority
    config = GatewayConfig(database=f"sqlite:///{db_path}", server=ServerConfig(plain_http=not tls, port=port),
                           staff=StaffConfig(enabled=False))
    kwargs = {"clock": clock} if clock is not None else {}
    server = build_server(config, SqliteStore(db_path), data_key=a.data_private_key(),
                          receipt_key=receipt_key or a.gateway_signing_key(), root_public_key=a.root_public_key,
                          bootstrap_snapshot=snapshot or a.latest_snapshot(), **kwargs)
    await server.start(ssl_context=server_ssl_context(a.tls_cert_path, a.tls_key_path) if tls else None)
    bound = server.addresses[0][1]
    return Gateway(f"{'https' if tls else 'http'}://127.0.0.1:{bound}", server.runner, db_path)


def fill_export_dir(image: Path, names: list[bytes]) -> None:
    """Give /SANAQ ``names`` more entries (11-byte short names, empty files), moving it to free clusters.

    Byte-level and fast, so tests can build directories of tens of thousands of entries.
    """

    def change(img: bytearray, geo: Fat16) -> None:
        old = geo.export_dir(img)
        kept = b"".join(bytes(img[i : i + 32]) for i in geo.entries(img, old, geo.spc * geo.bps))
        new = kept + b"".join(n + b"\x20" + bytes(14) + bytes(6) for n in names)
        cluster_bytes = geo.spc * geo.bps
        need = -(-len(new) // cluster_bytes)
        (fatsz,) = struct.unpack_from("<H", img, 22)
        total = fatsz * geo.bps // 2
        free = [c for c in range(total - 1, 1, -1)
                if struct.unpack_from("<H", img, geo.fat_off + 2 * c)[0] == 0
                and geo.cluster_off(c) + cluster_bytes <= len(img)]
        run = sorted(free[:need])
        assert len(run) == need and run[-1] - run[0] == need - 1, "no contiguous free run"
        for k, c in enumerate(run):
            nxt = run[k + 1] if k + 1 < len(run) else 0xFFFF
            for copy in range(img[16]):
                struct.pack_into("<H", img, geo.fat_off + copy * fatsz * geo.bps + 2 * c, nxt)
        start = geo.cluster_off(run[0])
        img[start : start + need * cluster_bytes] = new.ljust(need * cluster_bytes, b"\0")
        for i in geo.entries(img, geo.root_off, geo.root_len):
            if bytes(img[i : i + 11]) == b"SANAQ      ":
                struct.pack_into("<H", img, i + 26, run[0])

    patch_image(image, change)
