"""``sanaq-tablet init``: install a provisioning bundle as the tablet's identity, create the outbox.

Installation is all or nothing. The bundle is loaded and fully checked first
(``keys.ProvisioningBundle.load``: key, passphrase, snapshot signature, this
device listed with this key); then its four files are copied into a staging
directory ``HOME/.identity-XXXX`` (0700; ``device.key`` born 0600, each file
written temp -> fsync -> rename), the copy is loaded again, and the staging
directory is renamed to ``HOME/identity`` and the home directory fsynced.
With ``force`` an installed identity is first renamed aside and removed only
after the new one is in place (a crash in between leaves it under
``HOME/.identity-replaced-XXXX``, never half of either).

An existing outbox is never deleted or reassigned: if it belongs to another
device the installation is refused, ``force`` or not.

**The seq line.** Seqs are never reused. A freshly enrolled device starts at
seq 1. A device id that already has batches at the gateway (the tablet was
wiped and re-provisioned) must continue after them:

* ``resume_from`` = the gateway's verified sync state (``init
  --resume-from-gateway``, online): the outbox starts at ``max_seq + 1``;
* ``start_seq`` (``init --start-seq N``, offline): N from the registry or the
  dashboard.

The sync engine double-checks at every pass (``tablet.client``): a gateway
state naming seqs this outbox never sealed moves the line forward when no
batch is open, and until the outbox has one verified receipt no state alone
closes a batch.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

import structlog

from keys import ProvisioningBundle
from keys.bundle import CA_CERT, DEVICE_KEY, PROVISIONING, SNAPSHOT
from keys.errors import KeysError
from keys.files import PRIVATE_MODE, PUBLIC_MODE, atomic_write, fsync_dir

from .errors import IdentityError, IdentityExistsError
from .identity import IDENTITY_DIR, OUTBOX_FILE, TabletIdentity, load_identity
from .outbox import Outbox

__all__ = ["BUNDLE_FILES", "install_identity", "load_bundle_identity", "set_seq_floor"]

BUNDLE_FILES = ((DEVICE_KEY, PRIVATE_MODE), (PROVISIONING, PUBLIC_MODE), (CA_CERT, PUBLIC_MODE),
                (SNAPSHOT, PUBLIC_MODE))

log = structlog.get_logger("tablet.provision")


def load_bundle_identity(bundle_dir: str | os.PathLike[str], passphrase: bytes | None) -> TabletIdentity:
    """The identity a bundle would install (checked as ``init`` checks it), without installing it."""
    try:
        bundle = ProvisioningBundle.load(bundle_dir, passphrase)
    except KeysError as e:
        raise IdentityError(f"provisioning bundle unusable ({e.code}): {e}", path=str(bundle_dir)) from e
    return TabletIdentity.from_bundle(bundle)


def install_identity(
    home: str | os.PathLike[str],
    bundle_dir: str | os.PathLike[str],
    *,
    passphrase: bytes | None,
    now_ms: int,
    force: bool = False,
) -> TabletIdentity:
    """Install ``bundle_dir`` as ``HOME/identity`` and make sure ``HOME/outbox.db`` exists; returns the identity."""
    home, bundle_dir = Path(home), Path(bundle_dir)
    incoming = load_bundle_identity(bundle_dir, passphrase)
    try:
        home.mkdir(mode=0o700, exist_ok=True)
    except OSError as e:
        raise IdentityError("cannot create the tablet home", path=str(home), error=e.strerror) from e
    target = home / IDENTITY_DIR
    if target.exists() and not force:
        raise IdentityExistsError("the tablet home already holds an identity (use --force to replace it)",
                                  path=str(target))
    outbox_path = home / OUTBOX_FILE
    if outbox_path.exists():  # refuses (DeviceMismatchError) before anything changes
        Outbox.open(outbox_path, device_id=incoming.device_id, now_ms=now_ms).close()

    staging = home / f".identity-{secrets.token_hex(6)}"
    replaced: Path | None = None
    try:
        staging.mkdir(mode=0o700)
        for name, mode in BUNDLE_FILES:
            atomic_write(staging / name, (bundle_dir / name).read_bytes(), mode=mode)
        check = load_bundle_identity(staging, passphrase)
        if check.device_id != incoming.device_id:
            raise IdentityError("bundle changed while it was being copied", path=str(bundle_dir))
        if target.exists():
            replaced = home / f".identity-replaced-{secrets.token_hex(6)}"
            os.rename(target, replaced)
        try:
            os.rename(staging, target)
        except OSError:
            if replaced is not None:
                os.rename(replaced, target)  # put the old identity back
                replaced = None
            raise
        fsync_dir(home)
    except OSError as e:
        raise IdentityError("cannot install the identity", path=str(target), error=e.strerror) from e
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if replaced is not None:
        shutil.rmtree(replaced, ignore_errors=True)
        fsync_dir(home)
    Outbox.open(outbox_path, device_id=incoming.device_id, now_ms=now_ms).close()
    log.info("tablet.identity.installed", device_id=incoming.device_id, replaced=replaced is not None)
    return load_identity(home, passphrase)


def set_seq_floor(home: str | os.PathLike[str], identity: TabletIdentity, next_seq: int, *, now_ms: int,
                  reason: str) -> int:
    """Make the outbox's next seq at least ``next_seq``; returns the next seq in force."""
    with Outbox.open(Path(home) / OUTBOX_FILE, device_id=identity.device_id, now_ms=now_ms) as outbox:
        return outbox.advance_next_seq(next_seq, now_ms=now_ms, reason=reason)
