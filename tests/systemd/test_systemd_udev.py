"""``70-sanaq-tablet.rules``: who gets read access to which block device.

udev 252 has no offline rule checker (``udevadm verify`` came in 254) and
``udevadm test`` needs the real device, so the rules are run by a small
evaluator of the subset they use (match ``==``/``!=`` with ``|`` alternatives
and globs, assignments, ``GOTO``/``LABEL``). It refuses any other key, so a
rule that starts running programs (RUN, PROGRAM, IMPORT) or changing owners
fails here until it is reviewed and the evaluator taught.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field

import pytest

from .service_harness import SYSTEMD_DIR

RULES = SYSTEMD_DIR / "udev" / "70-sanaq-tablet.rules"
_TOKEN = re.compile(r'\s*([A-Z_]+)(?:\{([A-Za-z0-9_]+)\})?\s*(==|!=|\+=|:=|=)\s*"([^"]*)"\s*(?:,|$)')
_MATCH_KEYS = {"ACTION", "SUBSYSTEM", "KERNEL", "ENV"}
_ASSIGN_KEYS = {"GROUP", "MODE", "ENV", "TAG", "GOTO", "LABEL"}


@dataclass
class Outcome:
    group: str | None = None
    mode: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)


def parse(text: str) -> list[list[tuple[str, str | None, str, str]]]:
    rules = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        tokens, pos = [], 0
        while pos < len(line):
            m = _TOKEN.match(line, pos)
            assert m, f"cannot parse rule at: {line[pos:]!r}"
            tokens.append((m.group(1), m.group(2), m.group(3), m.group(4)))
            pos = m.end()
        rules.append(tokens)
    return rules


def _matches(pattern: str, value: str) -> bool:
    return any(fnmatch.fnmatchcase(value, alt) for alt in pattern.split("|"))


def evaluate(rules: list[list[tuple[str, str | None, str, str]]], device: dict[str, str]) -> Outcome:
    out = Outcome()
    labels = {t[3]: i for i, rule in enumerate(rules) for t in rule if t[0] == "LABEL"}
    i = 0
    while i < len(rules):
        rule, i = rules[i], i + 1
        matched = True
        for key, attr, op, value in rule:
            if op in ("==", "!="):
                assert key in _MATCH_KEYS, f"unknown match key {key}"
                actual = device.get(f"ENV{{{attr}}}" if key == "ENV" else key, "")
                if _matches(value, actual) != (op == "=="):
                    matched = False
                    break
        if not matched:
            continue
        for key, attr, op, value in rule:
            if op in ("==", "!="):
                continue
            assert key in _ASSIGN_KEYS, f"assignment key {key} is not allowed in this rules file"
            if key == "GROUP":
                out.group = value
            elif key == "MODE":
                out.mode = value
            elif key == "ENV":
                assert attr is not None
                out.env[attr] = value
            elif key == "TAG":
                assert op == "+="
                out.tags.append(value)
            elif key == "GOTO":
                i = labels[value]
    return out


def usb_volume(kernel: str = "sdb1", devtype: str = "partition", **env: str) -> dict[str, str]:
    device = {
        "ACTION": "add",
        "SUBSYSTEM": "block",
        "KERNEL": kernel,
        "ENV{DEVTYPE}": devtype,
        "ENV{ID_BUS}": "usb",
        "ENV{ID_FS_TYPE}": "vfat",
        "ENV{ID_FS_LABEL}": "SANAQEXPORT",
    }
    for k, v in env.items():
        key = k if k in ("ACTION", "SUBSYSTEM", "KERNEL") else f"ENV{{{k}}}"
        if v is None:
            device.pop(key, None)
        else:
            device[key] = v
    return device


GRANTED = Outcome("sanaq-ingest", "0640", {"SANAQ_EXPORT": "1", "UDISKS_IGNORE": "1"}, ["systemd"])
NOTHING = Outcome()
CASES = [
    ("usb partition", usb_volume(), GRANTED),
    ("usb superfloppy (no partition table)", usb_volume("sdc", "disk"), GRANTED),
    ("change event after blkid", usb_volume(ACTION="change"), GRANTED),
    ("second SCSI major", usb_volume("sdaa1"), GRANTED),
    ("remove", usb_volume(ACTION="remove"), NOTHING),
    ("other label", usb_volume(ID_FS_LABEL="NO NAME"), NOTHING),
    ("label prefix only", usb_volume(ID_FS_LABEL="SANAQEXPORT2"), NOTHING),
    ("label lower case", usb_volume(ID_FS_LABEL="sanaqexport"), NOTHING),
    ("no label", usb_volume(ID_FS_LABEL=None), NOTHING),
    ("ext4 with the label", usb_volume(ID_FS_TYPE="ext4"), NOTHING),
    ("exfat with the label", usb_volume(ID_FS_TYPE="exfat"), NOTHING),
    ("not probed yet", usb_volume(ID_FS_TYPE=None, ID_FS_LABEL=None), NOTHING),
    ("internal SATA disk with the label", usb_volume("sda1", ID_BUS="ata"), NOTHING),
    ("NVMe with the label", usb_volume("nvme0n1p1", ID_BUS="nvme"), NOTHING),
    ("MMC node", usb_volume("mmcblk0p1", ID_BUS=None), NOTHING),
    ("loop device", usb_volume("loop0", ID_BUS=None), NOTHING),
    ("device-mapper", usb_volume("dm-0", ID_BUS=None), NOTHING),
    ("usb subsystem, not block", usb_volume(SUBSYSTEM="usb"), NOTHING),
    ("unknown devtype", usb_volume(DEVTYPE="other"), NOTHING),
]


@pytest.mark.parametrize(("device", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rules_grant_read_to_tablet_export_volumes_only(device: dict[str, str], expected: Outcome) -> None:
    assert evaluate(parse(RULES.read_text()), device) == expected


def test_granted_mode_never_lets_the_group_or_others_write() -> None:
    for rule in parse(RULES.read_text()):
        for key, _attr, _op, value in rule:
            if key == "MODE":
                assert int(value, 8) & 0o027 == 0, value


def test_runs_after_blkid_has_set_the_file_system_properties() -> None:
    # 60-persistent-storage.rules imports blkid (ID_FS_TYPE, ID_FS_LABEL) and ID_BUS.
    assert int(RULES.name.split("-", 1)[0]) > 60


@pytest.mark.parametrize(
    "broken",
    ['KERNEL=="sd*", RUN+="/bin/sh"', 'KERNEL=="sd*", OWNER="sanaq-ingest"', 'KERNEL=="sd*", PROGRAM="/bin/true"'],
)
def test_evaluator_refuses_keys_it_was_not_taught(broken: str) -> None:
    with pytest.raises(AssertionError):
        evaluate(parse(broken), usb_volume())
