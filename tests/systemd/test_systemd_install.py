"""``make -f systemd/install.mk install|uninstall`` into a staging DESTDIR, run for real.

Most tests write wrappers around the hand-made ``dev_env`` (SANAQ_VENV=no) so
they take a second; ``test_full_install_builds_a_working_virtualenv`` builds
the real /opt/sanaq-sync virtualenv with pip (slow, needs the package index).
"""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from .conftest import add_host_units, make_install
from .service_harness import EXAMPLE_GATEWAY, REPO

FILES = [
    # (path under DESTDIR, mode)
    ("usr/bin/sanaq-gateway", 0o755),
    ("usr/bin/sanaq-usb-ingest", 0o755),
    ("usr/bin/sanaq-keys", 0o755),
    ("usr/bin/sanaq-selfenum", 0o755),
    ("usr/lib/systemd/system/sanaq-selfenum.service", 0o644),
    ("usr/share/doc/sanaq-sync/selfenum.md", 0o644),
    ("usr/share/doc/sanaq-sync/examples/selfenum.toml", 0o644),
    ("etc/sanaq/selfenum.toml", 0o644),
    ("etc/sanaq/selfenum", 0o700),
    ("usr/lib/systemd/system/sanaq-gateway.service", 0o644),
    ("usr/lib/systemd/system/sanaq-usb-ingest.service", 0o644),
    ("usr/lib/sysusers.d/sanaq.conf", 0o644),
    ("usr/lib/tmpfiles.d/sanaq.conf", 0o644),
    ("usr/lib/udev/rules.d/70-sanaq-tablet.rules", 0o644),
    ("usr/share/doc/sanaq-sync/operations.md", 0o644),
    ("usr/share/doc/sanaq-sync/examples/gateway.toml", 0o644),
    ("usr/share/doc/sanaq-sync/examples/usb-ingest.toml", 0o644),
    ("etc/sanaq/gateway.toml", 0o644),
    ("etc/sanaq/usb-ingest.toml", 0o644),
    ("etc/sanaq/keys", 0o700),
    ("etc/sanaq/station", 0o700),
]


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir()}


@pytest.mark.parametrize(("path", "mode"), FILES)
def test_install_puts_files_in_place(stage: Path, path: str, mode: int) -> None:
    assert stat.S_IMODE((stage / path).stat().st_mode) == mode


def test_install_puts_nothing_else(stage: Path) -> None:
    assert tree(stage) == {p for p, _ in FILES if not (stage / p).is_dir()}


def check_config(wrapper: Path, config: Path, cwd: Path, env: dict[str, str] | None = None):
    return subprocess.run(
        [str(wrapper), "check-config", "--config", str(config)],
        cwd=cwd, capture_output=True, text=True, timeout=120, check=False, env=env,
    )


def test_wrapper_runs_the_program_isolated_from_cwd_and_pythonpath(stage: Path, tmp_path: Path) -> None:
    evil = tmp_path / "evil"
    (evil / "gateway").mkdir(parents=True)
    (evil / "gateway" / "__init__.py").write_text("raise SystemExit('HIJACKED')\n")
    (evil / "gateway" / "__main__.py").write_text("raise SystemExit('HIJACKED')\n")
    done = check_config(stage / "usr/bin/sanaq-gateway", EXAMPLE_GATEWAY, evil, env={"PYTHONPATH": str(evil)})
    # The shipped example still holds the placeholder root key: the real program says so, by option name.
    assert done.returncode == 2, done.stdout + done.stderr
    assert "keys.root_public_key: still the shipped placeholder" in done.stdout
    assert "HIJACKED" not in done.stdout + done.stderr


def test_wrapper_passes_arguments_and_exit_status(stage: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nportt = 1\n")
    done = check_config(stage / "usr/bin/sanaq-gateway", bad, tmp_path)
    assert done.returncode == 2
    assert done.stderr == ""
    assert done.stdout.splitlines() == [
        f"PROBLEM: {bad}: config ({bad}): unknown option(s) in gateway config.server: portt",
        f"{bad}: 1 problem(s); the service would not start with this configuration",
    ]
    keys = subprocess.run(
        [str(stage / "usr/bin/sanaq-keys"), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert keys.returncode == 0, keys.stderr
    assert keys.stdout.startswith("usage: sanaq-keys")


def test_install_keeps_an_existing_config(tmp_path: Path, dev_env: Path) -> None:
    mine = tmp_path / "etc" / "sanaq" / "gateway.toml"
    mine.parent.mkdir(parents=True)
    mine.write_text("# edited by the site\n")
    out = make_install(tmp_path, env_home=dev_env)
    assert mine.read_text() == "# edited by the site\n"
    assert "kept" in out
    assert (tmp_path / "usr/share/doc/sanaq-sync/examples/gateway.toml").read_bytes() == EXAMPLE_GATEWAY.read_bytes()
    assert (tmp_path / "etc/sanaq/usb-ingest.toml").exists()


def test_uninstall_reverses_install_and_keeps_keys_and_edits(tmp_path: Path, dev_env: Path) -> None:
    destdir = tmp_path / "d"
    make_install(destdir, env_home=dev_env)
    (destdir / "etc/sanaq/keys/data.key").write_bytes(b"secret")
    (destdir / "etc/sanaq/usb-ingest.toml").write_text("# edited\n")
    make_install(destdir, env_home=dev_env, target="uninstall")
    assert tree(destdir) == {"etc/sanaq/keys/data.key", "etc/sanaq/usb-ingest.toml"}
    assert not (destdir / "etc/sanaq/station").exists()
    assert (dev_env / "bin" / "python").exists(), "uninstall with SANAQ_VENV=no must not touch SANAQ_HOME"


def test_uninstall_leaves_a_foreign_program_of_the_same_name(tmp_path: Path, dev_env: Path) -> None:
    foreign = tmp_path / "usr/bin/sanaq-keys"
    foreign.parent.mkdir(parents=True)
    foreign.write_text("#!/bin/sh\necho not ours\n")
    make_install(tmp_path, env_home=dev_env, target="uninstall")
    assert foreign.exists()


def test_prefix_moves_programs_and_units_together(tmp_path: Path, dev_env: Path) -> None:
    make_install(tmp_path, "PREFIX=/usr/local", env_home=dev_env)
    unit = tmp_path / "usr/local/lib/systemd/system/sanaq-gateway.service"
    assert "ExecStart=/usr/local/bin/sanaq-gateway serve" in unit.read_text()
    assert (tmp_path / "usr/local/bin/sanaq-gateway").exists()
    assert (tmp_path / "usr/local/lib/udev/rules.d/70-sanaq-tablet.rules").exists()
    add_host_units(tmp_path / "usr/lib/systemd/system")
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", f"--root={tmp_path}", "sanaq-gateway.service"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_sysusers_and_tmpfiles_make_users_and_private_directories(stage: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(stage, root, symlinks=True)
    (root / "etc").mkdir(exist_ok=True)
    for tool in (["systemd-sysusers"], ["systemd-tmpfiles", "--create"]):
        done = subprocess.run([*tool, f"--root={root}"], capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
    users = {line.split(":")[0]: line.split(":") for line in (root / "etc/passwd").read_text().splitlines()}
    groups = {line.split(":")[0]: line.split(":") for line in (root / "etc/group").read_text().splitlines()}
    for name, home in (("sanaq-gateway", "/var/lib/sanaq-gateway"), ("sanaq-ingest", "/var/lib/sanaq-usb-ingest")):
        assert users[name][5:] == [home, "/usr/sbin/nologin"]
        assert int(users[name][2]) < 1000, "a system user"
    assert users["sanaq-ingest"][3] == groups["sanaq-ingest"][2]
    assert all(not g[3] for g in groups.values()), "nobody is a supplementary member of our groups"
    ingest = int(users["sanaq-ingest"][2])
    for path, owner, mode in (
        ("var/lib/sanaq-usb-ingest/spool", ingest, 0o700),
        ("var/lib/sanaq-usb-ingest", ingest, 0o750),  # group members read status.json; the spool stays 0700
        ("var/lib/sanaq-gateway", int(users["sanaq-gateway"][2]), 0o700),
        ("etc/sanaq/keys", 0, 0o700),
        ("etc/sanaq/station", 0, 0o700),
    ):
        st = (root / path).stat()
        assert (stat.S_IMODE(st.st_mode), st.st_uid) == (mode, owner), path


@pytest.mark.parametrize("python", ["/root/python3", "/home/admin/venv/bin/python3", "/nonexistent-dir/python3"])
def test_an_interpreter_the_services_cannot_see_is_refused(tmp_path: Path, python: str) -> None:
    done = subprocess.run(
        ["make", "-f", str(REPO / "systemd/install.mk"), "install", f"DESTDIR={tmp_path}", f"SANAQ_PYTHON={python}"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode != 0
    assert "ProtectHome" in done.stderr
    assert not (tmp_path / "opt").exists()


@pytest.mark.slow
def test_full_install_builds_a_working_virtualenv(tmp_path: Path) -> None:
    python = "/usr/bin/python3"
    probe = subprocess.run([python, "-c", "import ensurepip, venv"], capture_output=True, timeout=60, check=False)
    if probe.returncode != 0:
        pytest.fail("/usr/bin/python3 cannot make virtualenvs: apt-get install python3-venv")
    make_install(tmp_path, f"SANAQ_PYTHON={python}")
    home = tmp_path / "opt/sanaq-sync"
    assert (home / "pyvenv.cfg").read_text().count(str(tmp_path)) == 0
    assert not any(str(tmp_path) in p.read_text(errors="ignore") for p in (home / "bin").iterdir() if p.is_file())
    wrapper = (tmp_path / "usr/bin/sanaq-gateway").read_text().replace("/opt/sanaq-sync", str(home))
    staged = tmp_path / "sanaq-gateway-staged"
    staged.write_text(wrapper)
    staged.chmod(0o755)
    done = check_config(staged, EXAMPLE_GATEWAY, tmp_path)
    # the installed program runs and judges the shipped example: its placeholder root key is a problem
    assert done.returncode == 2, done.stdout + done.stderr
    assert "keys.root_public_key: still the shipped placeholder" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    imports = subprocess.run(
        [str(home / "bin/python"), "-I", "-c", "import gateway, keys.cli, runtime.sdnotify, usb_ingest, wire, pyudev"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )
    assert imports.returncode == 0, imports.stderr
    make_install(tmp_path, f"SANAQ_PYTHON={python}", target="uninstall")
    assert not home.exists()


def test_prefix_outside_usr_keeps_units_and_rules_where_systemd_and_udev_look(tmp_path: Path, dev_env: Path) -> None:
    out = make_install(tmp_path, "PREFIX=/opt/sanaq-sync", env_home=dev_env)
    assert "units and rules to /usr/local/lib" in out
    unit = tmp_path / "usr/local/lib/systemd/system/sanaq-gateway.service"
    assert "ExecStart=/opt/sanaq-sync/bin/sanaq-gateway serve" in unit.read_text()
    for path in ("usr/local/lib/udev/rules.d/70-sanaq-tablet.rules", "usr/local/lib/sysusers.d/sanaq.conf",
                 "usr/local/lib/tmpfiles.d/sanaq.conf", "opt/sanaq-sync/bin/sanaq-gateway"):
        assert (tmp_path / path).exists(), path
    assert not (tmp_path / "opt/sanaq-sync/lib").exists()  # nothing systemd or udev would have to find there
    verified = make_install(tmp_path, "PREFIX=/opt/sanaq-sync", env_home=dev_env, target="verify-units")
    assert "verified: sanaq-gateway.service sanaq-usb-ingest.service" in verified


@pytest.mark.parametrize("var", ["UNITDIR=/opt/sanaq-sync/lib/systemd/system", "UDEVRULESDIR=/opt/rules"])
def test_a_directory_systemd_or_udev_never_reads_is_refused(tmp_path: Path, dev_env: Path, var: str) -> None:
    done = subprocess.run(
        ["make", "--no-print-directory", "-f", str(REPO / "systemd/install.mk"), "install", f"DESTDIR={tmp_path}",
         "SANAQ_VENV=no", f"SANAQ_HOME={dev_env}", var],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode != 0
    assert f"refusing: {var}: systemd and udev never read there" in done.stderr
    assert tree(tmp_path) == set()


def test_verify_units_target_reports_a_broken_unit(tmp_path: Path, dev_env: Path) -> None:
    make_install(tmp_path, env_home=dev_env)
    make_install(tmp_path, env_home=dev_env, target="verify-units")  # clean as installed
    unit = tmp_path / "usr/lib/systemd/system/sanaq-usb-ingest.service"
    unit.write_text(unit.read_text().replace("[Service]", "[Service]\nRestartSecc=5", 1))
    done = subprocess.run(
        ["make", "--no-print-directory", "-f", str(REPO / "systemd/install.mk"), "verify-units",
         f"DESTDIR={tmp_path}"], capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode != 0
    assert "RestartSecc" in done.stderr and "systemd-analyze verify reported" in done.stderr
