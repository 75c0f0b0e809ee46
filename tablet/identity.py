"""Who the tablet is: its device id and key, the data key it seals to, the keys it trusts.

Tablet home directory (0700)::

    HOME/identity/     the provisioning bundle from ``sanaq-keys enroll-tablet``
                       (device.key, provisioning.json, ca.crt, registry.snapshot),
                       copied in by ``sanaq-tablet init``
    HOME/outbox.db     the outbox (``tablet.outbox``), 0600
    HOME/fill-cursor.json   where each ``fill --seed`` stream continues

``TabletIdentity`` is what the rest of the client uses; tests build one
directly from nacl keys, the CLI loads it from the bundle.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from nacl.signing import SigningKey

from keys import ProvisioningBundle
from keys.errors import KeysError
from wire.census_sheet import FOUNDING_ORDER_MOMENT, CensusMoment
from wire.keyids import key_id

from .errors import IdentityError

__all__ = ["IDENTITY_DIR", "OUTBOX_FILE", "TabletIdentity", "load_identity"]

IDENTITY_DIR = "identity"
OUTBOX_FILE = "outbox.db"


@dataclass(frozen=True, slots=True)
class TabletIdentity:
    device_id: str
    signing_key: SigningKey = field(repr=False)
    data_public_key: bytes
    usb_serial: str
    gateway_keys: tuple[bytes, ...] = ()
    worker_id: str | None = None
    institution: str | None = None
    gateway_url: str | None = None
    ca_cert_path: Path | None = None  # the census CA the gateway's TLS certificate must chain to
    root_public_key: bytes | None = None
    census: CensusMoment = FOUNDING_ORDER_MOMENT  # the census moment its sheets refer to (provisioning.json)

    def gateway_key_map(self) -> dict[bytes, bytes]:
        """Receipt / sync-state keys (key id -> public key) for ``wire.parse_receipt`` and ``parse_sync_state``."""
        return {key_id(k): k for k in self.gateway_keys}

    @classmethod
    def from_bundle(cls, bundle: ProvisioningBundle) -> TabletIdentity:
        if bundle.role != "tablet" or bundle.usb_serial is None:
            raise IdentityError("provisioning bundle is not a tablet's", path=str(bundle.path), role=bundle.role)
        return cls(
            device_id=bundle.device_id,
            signing_key=bundle.signing_key,
            data_public_key=bundle.data_public_key,
            usb_serial=bundle.usb_serial,
            gateway_keys=bundle.gateway_keys,
            worker_id=bundle.worker_id,
            institution=bundle.institution,
            gateway_url=bundle.gateway_url,
            ca_cert_path=bundle.ca_cert_path,
            root_public_key=bundle.root_public_key,
            census=bundle.census or FOUNDING_ORDER_MOMENT,
        )


def load_identity(home: str | os.PathLike[str], passphrase: bytes | None = None) -> TabletIdentity:
    """Load ``HOME/identity``; ``IdentityError`` (wrapping the bundle's error) when it is missing or invalid."""
    path = Path(home) / IDENTITY_DIR
    if not path.is_dir():
        raise IdentityError("tablet home has no identity; run `sanaq-tablet init` first", path=str(path))
    try:
        bundle = ProvisioningBundle.load(path, passphrase)
    except KeysError as e:
        raise IdentityError(f"tablet identity unusable ({e.code}): {e}", path=str(path)) from e
    return TabletIdentity.from_bundle(bundle)
