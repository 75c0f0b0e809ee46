"""The example configurations list every option, each with its default (or a deliberate site value)."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from gateway.config import GatewayConfig
from runtime.toml_config import build
from usb_ingest.config import IngestConfig

REPO = Path(__file__).resolve().parents[2]
_OPTION = re.compile(r"^#(?=[a-z_]+ = )", re.MULTILINE)

# Values the example sets on purpose (a site must see them), not defaults.
SITE_VALUES = {
    "gateway.toml": {"server.host", "server.tls_cert", "server.tls_key", "keys.root_public_key",
                     "keys.bootstrap_snapshot",
                     "server.workers"},  # default: this machine's CPUs; the example shows a value
    "usb-ingest.toml": {"station_bundle"},
}


def _options(cls: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            out |= _options(type(default), f"{prefix}{f.name}.")
        else:
            out[f"{prefix}{f.name}"] = default
    return out


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


@pytest.mark.parametrize(("name", "cls"), [("gateway.toml", GatewayConfig), ("usb-ingest.toml", IngestConfig)])
def test_example_lists_every_option_with_its_default(name: str, cls: Any) -> None:
    text = (REPO / "systemd/examples" / name).read_text()
    data = tomllib.loads(_OPTION.sub("", text))  # every commented option, uncommented
    listed = {f"{table}.{k}" if isinstance(v, dict) else table
              for table, v in data.items() for k in (v if isinstance(v, dict) else [None])}
    listed = {x.removesuffix(".None") for x in listed}
    expected = _options(cls)
    assert set(expected) - listed == set(), "options missing from the example"
    built = build(cls, data, name)
    for option, default in expected.items():
        if option in SITE_VALUES[name] or default is None:  # unset by default: the example shows a value
            continue
        value = _get(built, option)
        if isinstance(default, Path) or isinstance(value, Path):
            assert str(value) == str(default), option
        else:
            assert value == default, option
