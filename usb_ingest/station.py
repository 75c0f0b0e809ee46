"""The station's open resources, shared by the daemon (``run``) and the one-off ``pull``.

``Station.open(config)`` loads the station bundle (identity and census CA),
takes an exclusive lock on the state directory (two processes must not drive
one spool), opens the spool (removing leftovers of interrupted writes), signs a
recovery custody record for each pull a crash cut (``pull_journal.recover``),
opens the snapshot cache and the status board. ``close`` releases the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import structlog

from keys import ProvisioningBundle, client_ssl_context, read_passphrase_file
from keys.errors import KeysError
from runtime.private_files import make_private_dir, open_private
from wire import UsbHints

from .config import IngestConfig
from .errors import SpoolError, StateLocked, StationSetupError
from .gateway_client import GatewayClient
from .pull_journal import recover as recover_pulls
from .puller import Grouping, PullReport, StationIdentity, pull
from .spool import Spool
from .station_text import StationText
from .status import StatusBoard
from .trust import StationTrust, wall_clock_ms

__all__ = ["Station", "locked_spool"]

log = structlog.get_logger("usb_ingest.station")


def _lock_state_dir(config: IngestConfig) -> int:
    try:
        make_private_dir(config.state_dir)
        fd = open_private(config.state_dir / "lock", os.O_RDWR)
    except OSError as e:
        raise StationSetupError("cannot use the state directory", path=str(config.state_dir),
                                error=e.strerror) from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        raise StateLocked("another sanaq-usb-ingest process uses this state directory",
                          path=str(config.state_dir)) from e
    return fd


@contextlib.contextmanager
def locked_spool(config: IngestConfig) -> Iterator[Spool]:
    """The spool alone, under the state directory's lock (technician commands: ``requeue``, ``compact``)."""
    lock_fd = _lock_state_dir(config)
    try:
        yield Spool.open(config.spool_dir, config.receipt_log_path, min_free_bytes=config.spool_min_free_bytes)
    finally:
        os.close(lock_fd)


@dataclass
class Station:
    config: IngestConfig
    bundle: ProvisioningBundle
    identity: StationIdentity
    spool: Spool
    trust: StationTrust
    board: StatusBoard
    _lock_fd: int

    @classmethod
    def open(cls, config: IngestConfig, *, clock: Callable[[], int] = wall_clock_ms) -> Station:
        try:
            passphrase = read_passphrase_file(config.bundle_passphrase_file) if config.bundle_passphrase_file else None
            bundle = ProvisioningBundle.load(config.station_bundle, passphrase)
        except KeysError as e:
            raise StationSetupError(f"station bundle unusable ({e.code}: {e})",
                                    path=str(config.station_bundle)) from e
        if bundle.role != "station":
            raise StationSetupError("the bundle is a tablet's, not a station's", path=str(config.station_bundle))
        lock_fd = _lock_state_dir(config)
        try:
            spool = Spool.open(config.spool_dir, config.receipt_log_path, min_free_bytes=config.spool_min_free_bytes)
            # before anything is forwarded: a pull cut by a crash gets its custody record (ADR 0007)
            recover_pulls(spool, station_id=bundle.device_id, signing_key=bundle.signing_key, clock=clock)
            spool.compact_receipts(now_ms=clock(), keep_receipts_ms=config.receipt_keep_ms, force=False)
            trust = StationTrust.open(config.snapshot_path, bundle, clock=clock)
        except BaseException:
            os.close(lock_fd)
            raise
        board = StatusBoard(config.status_path, bundle.device_id, clock, StationText(config.language))
        station = cls(config, bundle, StationIdentity(bundle.device_id, bundle.signing_key), spool, trust, board,
                      lock_fd)
        station.refresh_status()
        return station

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._lock_fd)

    @property
    def gateway_url(self) -> str:
        return self.config.gateway_url or self.bundle.gateway_url

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.gateway_url.startswith("https://"):
            return None
        try:
            return client_ssl_context(self.config.ca_cert or self.bundle.ca_cert_path)
        except KeysError as e:
            raise StationSetupError(f"census CA unusable ({e.code})") from e

    def client(self) -> GatewayClient:
        return GatewayClient(self.gateway_url, self.bundle.signing_key, ssl_context=self.ssl_context(),
                             timeout_s=self.config.forward.request_timeout_s)

    def refresh_status(self) -> None:
        self.board.set_trust(self.trust.state())
        try:
            self.board.set_spool(self.spool.counts(), self.spool.summary())
        except OSError as e:
            log.error("usb.spool.unreadable", error=e.strerror)

    def pull_volume(self, source: str, *, devnode: str | None = None, hints: UsbHints | None = None,
                    should_stop: Callable[[], bool] | None = None,
                    on_sealed: Callable[[int], None] | None = None) -> PullReport:
        """One pull with the status board kept up to date (blocking: run it in a worker thread)."""
        shown = devnode or str(source)
        self.board.device_started(shown, hints.serial if hints else None)
        try:
            report = pull(source, trust=self.trust, spool=self.spool, station=self.identity,
                          limits=self.config.limits, hints=hints,
                          on_progress=lambda p: self.board.device_progress(shown, p), should_stop=should_stop,
                          grouping=Grouping(self.config.spool_group_batches, self.config.spool_group_bytes),
                          on_sealed=on_sealed)
        except SpoolError as e:
            log.error("usb.spool.failed", error=str(e))
            self.board.device_failed(shown, self.board.text.gettext(
                "This machine cannot store the data (%(code)s). Call support; the tablet keeps its data.",
                code=e.code))
            raise
        finally:
            self.refresh_status()
        self.board.device_finished(shown, report)
        return report
