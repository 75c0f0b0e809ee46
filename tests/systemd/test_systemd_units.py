"""The installed units: ``systemd-analyze verify`` and ``security`` on the staged tree, and the policy table.

``verify`` exits 0 on many mistakes it reports as "..., ignoring" (an unknown
key, a bad value), and those are exactly the ones that silently drop a
sandbox setting; so any output about our unit counts as a failure. The
negative cases prove that on deliberately broken copies.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .sandbox_launch import unit_settings

UNITS = ["sanaq-gateway.service", "sanaq-usb-ingest.service"]
UNIT_DIR = Path("usr/lib/systemd/system")
MAX_EXPOSURE = {"sanaq-gateway.service": 2.0, "sanaq-usb-ingest.service": 3.0}


def verify(root: Path, unit: str) -> list[str]:
    """Problems ``systemd-analyze verify`` reports for ``unit`` under ``root`` (empty: clean)."""
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", f"--root={root}", unit],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    problems = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    if done.returncode != 0 and not problems:
        problems.append(f"exit status {done.returncode}")
    return problems


def exposure(root: Path, unit: str) -> float:
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", f"--root={root}", "--no-pager", unit],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert m, done.stdout[-2000:] + done.stderr
    return float(m.group(1))


@pytest.fixture
def scratch_root(verify_root: Path, tmp_path: Path) -> Path:
    root = tmp_path / "root"
    shutil.copytree(verify_root, root, symlinks=True)
    return root


@pytest.mark.parametrize("unit", UNITS)
def test_installed_unit_verifies_without_a_word(verify_root: Path, unit: str) -> None:
    assert verify(verify_root, unit) == []


BREAKAGES = [
    # (what, unit, line as shipped, broken line)
    ("misspelt sandbox key", "sanaq-gateway.service", "ProtectSystem=strict", "ProtectSystm=strict"),
    ("bad time span", "sanaq-gateway.service", "WatchdogSec=30s", "WatchdogSec=thirty"),
    ("unknown service type", "sanaq-gateway.service", "Type=notify", "Type=notifyy"),
    ("unknown syscall group", "sanaq-gateway.service", "SystemCallFilter=@system-service",
     "SystemCallFilter=@system-servic"),
    ("unknown address family", "sanaq-usb-ingest.service",
     "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
     "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLNK"),
    ("program not installed", "sanaq-usb-ingest.service",
     "ExecStart=/usr/bin/sanaq-usb-ingest run", "ExecStart=/usr/bin/sanaq-usb-ingestt run"),
    ("section lost", "sanaq-gateway.service", "[Service]", "[Servic]"),
    ("user name not allowed", "sanaq-usb-ingest.service", "User=sanaq-ingest", "User=sanaq ingest"),
    ("bad dependency", "sanaq-gateway.service", "Wants=network-online.target", "Wants=network-online.targett"),
]


@pytest.mark.parametrize(("what", "unit", "good", "bad"), BREAKAGES, ids=[b[0] for b in BREAKAGES])
def test_verify_catches_a_broken_copy(scratch_root: Path, what: str, unit: str, good: str, bad: str) -> None:
    path = scratch_root / UNIT_DIR / unit
    text = path.read_text()
    assert text.count(good) == 1, f"{what}: the unit no longer has {good!r}"
    path.write_text(text.replace(good, bad))
    assert verify(scratch_root, unit), f"{what}: systemd-analyze verify found nothing"


@pytest.mark.parametrize("unit", UNITS)
def test_exposure_is_within_budget(verify_root: Path, unit: str) -> None:
    level = exposure(verify_root, unit)
    print(f"{unit}: overall exposure {level}")
    assert level <= MAX_EXPOSURE[unit]


def test_exposure_check_sees_a_weakened_unit(scratch_root: Path) -> None:
    path = scratch_root / UNIT_DIR / "sanaq-gateway.service"
    text = path.read_text()
    sandbox = text.index("\n# Sandbox.")
    path.write_text(text[:sandbox] + "\n\n[Install]\nWantedBy=multi-user.target\n")
    assert exposure(scratch_root, "sanaq-gateway.service") > MAX_EXPOSURE["sanaq-gateway.service"]


COMMON = [
    ("Type", "notify"),
    ("NotifyAccess", "main"),
    ("WatchdogSec", "30s"),
    ("Restart", "on-failure"),
    ("RestartPreventExitStatus", "2"),
    ("UMask", "0077"),
    ("NoNewPrivileges", "yes"),
    ("CapabilityBoundingSet", ""),
    ("AmbientCapabilities", ""),
    ("ProtectSystem", "strict"),
    ("ProtectHome", "yes"),
    ("PrivateTmp", "yes"),
    ("ProtectKernelTunables", "yes"),
    ("ProtectKernelModules", "yes"),
    ("ProtectKernelLogs", "yes"),
    ("ProtectControlGroups", "yes"),
    ("ProtectClock", "yes"),
    ("ProtectHostname", "yes"),
    ("ProtectProc", "invisible"),
    ("ProcSubset", "pid"),
    ("RestrictNamespaces", "yes"),
    ("RestrictRealtime", "yes"),
    ("RestrictSUIDSGID", "yes"),
    ("LockPersonality", "yes"),
    ("MemoryDenyWriteExecute", "yes"),
    ("SystemCallArchitectures", "native"),
    ("SystemCallFilter", ["@system-service", "~@privileged @resources"]),
]
POLICY = [
    *[("sanaq-gateway.service", k, v) for k, v in COMMON],
    *[("sanaq-usb-ingest.service", k, v) for k, v in COMMON],
    ("sanaq-gateway.service", "User", "sanaq-gateway"),
    ("sanaq-gateway.service", "PrivateDevices", "yes"),
    ("sanaq-gateway.service", "PrivateUsers", "yes"),
    ("sanaq-gateway.service", "RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
    ("sanaq-gateway.service", "StateDirectory", "sanaq-gateway"),
    ("sanaq-usb-ingest.service", "User", "sanaq-ingest"),
    ("sanaq-usb-ingest.service", "Group", "sanaq-ingest"),
    ("sanaq-usb-ingest.service", "PrivateDevices", None),
    ("sanaq-usb-ingest.service", "DevicePolicy", "closed"),
    ("sanaq-usb-ingest.service", "DeviceAllow", "block-sd r"),
    ("sanaq-usb-ingest.service", "SupplementaryGroups", None),
    ("sanaq-usb-ingest.service", "RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6 AF_NETLINK"),
    ("sanaq-usb-ingest.service", "StateDirectory", "sanaq-usb-ingest"),
]


@pytest.mark.parametrize(("unit", "key", "expected"), POLICY, ids=[f"{u.split('.')[0]}-{k}" for u, k, _ in POLICY])
def test_unit_policy(stage: Path, unit: str, key: str, expected: str | list[str] | None) -> None:
    settings = unit_settings((stage / UNIT_DIR / unit).read_text())
    if expected is None:
        assert key not in settings
    elif isinstance(expected, list):
        assert settings.get(key) == expected
    else:
        assert settings.get(key) == [expected]


@pytest.mark.parametrize("unit", UNITS)
def test_private_keys_come_only_from_root_only_credential_paths(stage: Path, unit: str) -> None:
    settings = unit_settings((stage / UNIT_DIR / unit).read_text())
    creds = settings.get("LoadCredential", [])
    assert creds
    for value in creds:
        name, _, path = value.partition(":")
        assert "/" not in name
        assert path.startswith(("/etc/sanaq/keys/", "/etc/sanaq/station/")), value
        assert Path(path).name == name
    for key in ("Environment", "EnvironmentFile", "SetCredential", "ReadWritePaths"):
        assert key not in settings, f"{unit}: {key}= would bypass the credential and sandbox design"
