"""``sanaq-gateway check-config`` finds what would stop the service, each problem named with option and file."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.config_check import check_gateway_config, read_unit
from keys.authority import Authority
from keys.gateway_bundle import export_gateway

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "systemd" / "examples" / "gateway.toml"
UNIT = REPO / "systemd" / "sanaq-gateway.service"
NOW = 1_790_000_000_000


@pytest.fixture(scope="module")
def authority_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("auth") / "authority"
    with Authority.create(path, now_ms=NOW, server_names=["127.0.0.1"]):
        pass
    return path


class Site:
    """An /etc/sanaq/keys tree, the example config with the root key filled in, and the unit's directory."""

    def __init__(self, root: Path, authority_dir: Path) -> None:
        self.keys = root / "etc/sanaq/keys"
        self.keys.parent.mkdir(parents=True)
        with Authority.open(authority_dir) as a:
            export_gateway(a, self.keys)
        self.root_pub = (self.keys / "root.pub").read_text().strip()
        self.config = root / "etc/sanaq/gateway.toml"
        self.write_config(EXAMPLE.read_text().replace("REPLACE-WITH-THE-64-HEX-DIGITS-OF-root.pub", self.root_pub))
        self.unit_dir = root / "usr/lib/systemd/system"
        self.unit_dir.mkdir(parents=True)
        self.unit_text = UNIT.read_text().replace("/etc/sanaq/keys/", f"{self.keys}/")
        (self.unit_dir / "sanaq-gateway.service").write_text(self.unit_text)

    def write_config(self, text: str) -> None:
        self.config.write_text(text)

    def edit_config(self, old: str, new: str) -> None:
        text = self.config.read_text()
        assert old in text
        self.write_config(text.replace(old, new))

    def drop_in(self, text: str) -> None:
        d = self.unit_dir / "sanaq-gateway.service.d"
        d.mkdir(exist_ok=True)
        (d / "override.conf").write_text(text)

    def check(self) -> list[tuple[str, str, str | None, str]]:
        report = check_gateway_config(self.config, unit=read_unit([self.unit_dir]), now_ms=NOW + 1000)
        return [(f.level, f.option, f.file, f.message) for f in report.findings]


@pytest.fixture
def site(tmp_path: Path, authority_dir: Path) -> Site:
    return Site(tmp_path, authority_dir)


def test_a_good_site_has_no_findings(site: Site) -> None:
    assert site.check() == []


def _other_authority_snapshot(site: Site) -> None:
    with Authority.create(site.keys.parent / "other", now_ms=NOW) as other:
        shutil.copy(other.snapshot_path, site.keys / "registry.snapshot")


def _unreadable_absolute_key(site: Site) -> None:
    site.edit_config('#receipt_key = "gateway.key"', f'receipt_key = "{site.keys / "gateway.key"}"')


def _wrong_passphrase(site: Site) -> None:
    (site.keys / "passphrase").write_text("not the passphrase\n")
    os.chmod(site.keys / "passphrase", 0o600)
    site.drop_in(f"[Service]\nLoadCredential=passphrase:{site.keys / 'passphrase'}\n")
    site.edit_config('#passphrase_file = "passphrase"', 'passphrase_file = "passphrase"')


CASES: list[tuple[str, Callable[[Site], None], str, str, str | None]] = [
    # (case, break the site, option named, words of the message, file named (suffix))
    ("shipped placeholder root key",
     lambda s: s.edit_config(f'root_public_key = "{s.root_pub}"',
                             'root_public_key = "REPLACE-WITH-THE-64-HEX-DIGITS-OF-root.pub"'),
     "keys.root_public_key", "still the shipped placeholder", None),
    ("root key not hex", lambda s: s.edit_config(s.root_pub, s.root_pub[:-2]),
     "keys.root_public_key", "exactly 64 hex digits", None),
    ("credential source missing", lambda s: (s.keys / "data.key").unlink(),
     "keys.data_key", "status=243/CREDENTIALS", "data.key"),
    ("key not handed over by the unit",
     lambda s: s.edit_config('#previous_data_keys = []', 'previous_data_keys = ["data-old.key"]'),
     "keys.previous_data_keys[0]", "LoadCredential=data-old.key", "sanaq-gateway.service"),
    ("absolute key path the service user cannot read", _unreadable_absolute_key,
     "keys.receipt_key", "cannot", "gateway.key"),
    ("corrupt TLS key", lambda s: (s.keys / "gateway-tls.key").write_text("garbage\n"),
     "server.tls_key", "corrupt-key-file", "gateway-tls.key"),
    ("wrong passphrase", _wrong_passphrase, "keys.data_key", "wrong-passphrase", "data.key"),
    ("snapshot of another authority", _other_authority_snapshot,
     "keys.bootstrap_snapshot", "does not verify under keys.root_public_key", "registry.snapshot"),
    ("unknown option", lambda s: s.edit_config("[limits]", "[limits]\nmax_bodybytes = 1"),
     "config", "unknown option(s) in gateway config.limits: max_bodybytes", "gateway.toml"),
    ("dashboard on PostgreSQL without a shared pepper file",
     lambda s: s.edit_config('#database = "sqlite:', 'database = "postgresql://gw@db1/census"\n#x = "sqlite:'),
     "staff.codes_pepper_file", "required on PostgreSQL", None),
]


@pytest.mark.parametrize(("case", "breakage", "option", "words", "file"), CASES, ids=[c[0] for c in CASES])
def test_each_problem_is_named_with_option_and_file(site: Site, case: str, breakage: Callable[[Site], None],
                                                    option: str, words: str, file: str | None) -> None:
    if case.startswith("absolute") and _service_user_missing():
        pytest.skip("no sanaq-gateway or nobody user on this machine to judge permissions by")
    if case.startswith("absolute"):
        site.drop_in("[Service]\nUser=nobody\n")
    breakage(site)
    problems = [f for f in site.check() if f[0] == "problem"]
    assert problems, case
    _level, got_option, got_file, message = problems[0]
    assert got_option == option, problems
    assert words in message, problems
    if file is None:
        assert got_file is None
    else:
        assert got_file is not None and got_file.endswith(file), problems


def _service_user_missing() -> bool:
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        return True
    return False


def test_rotated_data_key_not_installed_is_a_warning(site: Site, authority_dir: Path, tmp_path: Path) -> None:
    """A snapshot naming a data key this gateway lacks (rotated, not installed) is shown before tablets fail."""
    copy = tmp_path / "auth-copy"
    shutil.copytree(authority_dir, copy)
    from keys.rotation import rotate_data

    with Authority.open(copy) as a:
        rotate_data(a, now_ms=NOW, validity_ms=7 * 86_400_000)
        shutil.copy(a.snapshot_path, site.keys / "registry.snapshot")
    findings = site.check()
    assert [(f[0], f[1]) for f in findings] == [("warning", "keys.data_key")]
    assert "cannot open" in findings[0][3]


def test_command_line_output_is_readable_and_exit_status_2(site: Site) -> None:
    site.edit_config(f'root_public_key = "{site.root_pub}"', 'root_public_key = "REPLACE-WITH-root.pub"')
    env = {k: v for k, v in os.environ.items() if k != "CREDENTIALS_DIRECTORY"}
    done = subprocess.run([sys.executable, "-m", "gateway", "check-config", "--config", str(site.config)],
                          capture_output=True, text=True, timeout=60, check=False, env=env, cwd=REPO)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "GatewayConfig(" not in done.stdout and "Traceback" not in done.stdout + done.stderr
    assert f"PROBLEM: {site.config}: keys.root_public_key: still the shipped placeholder" in done.stdout
    assert "problem(s); the service would not start" in done.stdout


def test_under_the_unit_credentials_directory_is_checked(site: Site, tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    for name in ("data.key", "gateway.key", "gateway-tls.key", "gateway-tls.crt"):
        shutil.copy(site.keys / name, creds / name)
    report = check_gateway_config(site.config, creds_dir=creds, now_ms=NOW + 1000)
    assert [(f.option, f.message) for f in report.problems] == [
        ("keys.bootstrap_snapshot", "no credential named registry.snapshot in $CREDENTIALS_DIRECTORY")]


def test_serve_with_the_placeholder_root_key_refuses_to_start_naming_the_option(site: Site, tmp_path: Path) -> None:
    """Not only check-config: the service itself stops at start with the option's name, exit 2, no traceback."""
    site.edit_config(f'root_public_key = "{site.root_pub}"', 'root_public_key = "REPLACE-WITH-root.pub"')
    creds = tmp_path / "creds"  # the keys as the unit hands them over, so only the root key is wrong
    creds.mkdir()
    for name in ("data.key", "gateway.key", "gateway-tls.key", "gateway-tls.crt", "registry.snapshot"):
        shutil.copy(site.keys / name, creds / name)
    env = {**os.environ, "CREDENTIALS_DIRECTORY": str(creds)}
    done = subprocess.run([sys.executable, "-m", "gateway", "serve", "--config", str(site.config)],
                          capture_output=True, text=True, timeout=60, check=False, env=env, cwd=REPO)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert "keys.root_public_key" in done.stdout + done.stderr
