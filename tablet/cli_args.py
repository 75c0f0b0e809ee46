"""What every ``sanaq-tablet`` subcommand reads from its arguments and environment, and how it answers."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from keys.files import read_passphrase_file

from .errors import TabletError
from .identity import TabletIdentity, load_identity

__all__ = ["emit", "home", "identity", "now_ms", "passphrase"]


def now_ms(args: argparse.Namespace) -> int:
    return int(args.now_ms) if args.now_ms is not None else time.time_ns() // 1_000_000


def home(args: argparse.Namespace) -> Path:
    value = args.home or os.environ.get("SANAQ_TABLET_HOME")
    if not value:
        raise TabletError("no tablet home: pass --home DIR or set SANAQ_TABLET_HOME")
    return Path(value)


def passphrase(args: argparse.Namespace) -> bytes | None:
    """The device key's passphrase: ``--passphrase-file``, else ``$SANAQ_DEVICE_PASSPHRASE``, else none."""
    if args.passphrase_file:
        return read_passphrase_file(args.passphrase_file)
    if os.environ.get("SANAQ_DEVICE_PASSPHRASE"):
        return os.environ["SANAQ_DEVICE_PASSPHRASE"].encode()
    return None


def identity(args: argparse.Namespace) -> TabletIdentity:
    return load_identity(home(args), passphrase(args))


def emit(args: argparse.Namespace, value: dict[str, Any], text: str) -> None:
    print(json.dumps(value, sort_keys=True) if args.json else text, flush=True)
