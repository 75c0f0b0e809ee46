"""The example gateway.toml lists every staff option with its default."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

from gateway.staff import StaffConfig
from runtime.toml_config import build

EXAMPLE = Path(__file__).parents[2] / "systemd" / "examples" / "gateway.toml"


def test_the_example_lists_every_staff_option_with_its_default() -> None:
    table = EXAMPLE.read_text("utf-8").split("\n[staff]\n", 1)[1].split("\n[", 1)[0]
    data = tomllib.loads(re.sub(r"^#(\w+ = )", r"\1", table, flags=re.MULTILINE))
    assert set(data) == {f.name for f in dataclasses.fields(StaffConfig)}
    example, defaults = build(StaffConfig, data, "staff"), StaffConfig()
    differ = {f.name for f in dataclasses.fields(StaffConfig) if getattr(example, f.name) != getattr(defaults, f.name)}
    # the example names where the defaults land (next to census.db and staff.db) or paths they leave unset
    assert differ == {"db_path", "codes_pepper_file", "certificate_key_dir"}
