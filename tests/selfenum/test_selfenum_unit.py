"""The installed sanaq-selfenum unit: verify clean, sandbox exposure within 2.0, the policy of the other units."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.systemd.conftest import dev_env, stage, verify_root  # noqa: F401 - fixtures used by name
from tests.systemd.sandbox_launch import unit_settings
from tests.systemd.test_systemd_units import COMMON, exposure, verify

UNIT = "sanaq-selfenum.service"
UNIT_DIR = Path("usr/lib/systemd/system")


def test_unit_verifies_without_a_word(verify_root: Path) -> None:  # noqa: F811
    assert verify(verify_root, UNIT) == []


def test_exposure_is_within_budget(verify_root: Path) -> None:  # noqa: F811
    assert exposure(verify_root, UNIT) <= 2.0


@pytest.mark.parametrize(("key", "expected"), [
    *COMMON,
    ("User", "sanaq-selfenum"),
    ("PrivateDevices", "yes"),
    ("PrivateUsers", "yes"),
    ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
    ("StateDirectory", "sanaq-selfenum"),
    ("ExecStart", "/usr/bin/sanaq-selfenum serve --config /etc/sanaq/selfenum.toml"),
])
def test_unit_policy(stage: Path, key: str, expected: str | list[str]) -> None:  # noqa: F811
    settings = unit_settings((stage / UNIT_DIR / UNIT).read_text())
    assert settings.get(key) == (expected if isinstance(expected, list) else [expected])


def test_bundle_comes_only_from_root_only_credentials(stage: Path) -> None:  # noqa: F811
    settings = unit_settings((stage / UNIT_DIR / UNIT).read_text())
    creds = settings["LoadCredential"]
    assert sorted(Path(v.partition(":")[2]).name for v in creds) == [
        "ca.crt", "device.key", "provisioning.json", "registry.snapshot"]
    assert all(v.partition(":")[2].startswith("/etc/sanaq/selfenum/") for v in creds)
    assert oct((stage / "etc/sanaq/selfenum").stat().st_mode & 0o777) == "0o700"
    for key in ("Environment", "EnvironmentFile", "ReadWritePaths"):
        assert key not in settings
