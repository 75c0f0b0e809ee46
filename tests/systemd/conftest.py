from __future__ import annotations

import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

from tests.gateway.harness import World

from .service_harness import REPO

HOST_UNIT_DIRS = [Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")]


def make_install(destdir: Path, *extra: str, target: str = "install", env_home: Path | None = None) -> str:
    """``make -f systemd/install.mk TARGET DESTDIR=...``; programs are wrappers around ``env_home``."""
    args = ["make", "--no-print-directory", "-f", str(REPO / "systemd" / "install.mk"), target, f"DESTDIR={destdir}"]
    if env_home is not None:
        args += ["SANAQ_VENV=no", f"SANAQ_HOME={env_home}"]
    done = subprocess.run([*args, *extra], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def add_host_units(unit_dir: Path) -> None:
    """Copy this machine's units (targets and the like) into ``unit_dir``, never over ours."""
    host = next((d for d in HOST_UNIT_DIRS if (d / "sysinit.target").exists()), None)
    assert host is not None, "no systemd unit directory on this machine"
    unit_dir.mkdir(parents=True, exist_ok=True)
    for f in host.iterdir():
        if not (unit_dir / f.name).exists() and (f.is_file() or f.is_symlink()) and not f.name.startswith("sanaq-"):
            shutil.copy2(f, unit_dir / f.name, follow_symlinks=False)


@pytest.fixture
def world() -> World:
    return World.make()


@pytest.fixture(scope="session")
def dev_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv made by hand whose site-packages point at this tree and the test venv's packages.

    It stands in for ``/opt/sanaq-sync`` (the wrappers run ``python -I``, which
    ignores the working directory and PYTHONPATH).
    """
    env = tmp_path_factory.mktemp("env")
    (env / "bin").mkdir()
    base = Path(getattr(sys, "_base_executable", sys.executable))
    (env / "bin" / "python").symlink_to(base)
    (env / "pyvenv.cfg").write_text(f"home = {base.parent}\ninclude-system-site-packages = false\n")
    site_dir = env / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    site_dir.mkdir(parents=True)
    (site_dir / "sanaq-dev.pth").write_text("\n".join([str(REPO), *site.getsitepackages()]) + "\n")
    return env


@pytest.fixture(scope="session")
def stage(tmp_path_factory: pytest.TempPathFactory, dev_env: Path) -> Path:
    """``make install`` into a staging DESTDIR, once per session. Tests must not modify it."""
    destdir = tmp_path_factory.mktemp("destdir")
    make_install(destdir, env_home=dev_env)
    return destdir


@pytest.fixture(scope="session")
def verify_root(stage: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The staged tree plus this machine's own units (sysinit.target, network-online.target, ...).

    ``systemd-analyze verify --root`` loads a unit's dependencies from the
    root, and a staged tree holds only ours.
    """
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing: apt-get install systemd (make setup does)")
    root = tmp_path_factory.mktemp("verifyroot") / "root"
    shutil.copytree(stage, root, symlinks=True)
    add_host_units(root / "usr" / "lib" / "systemd" / "system")
    return root


@pytest.fixture(scope="session")
def syscall_groups(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``systemd-analyze syscall-filter``: this systemd's system call groups, for the sandbox launcher."""
    out = subprocess.run(
        ["systemd-analyze", "syscall-filter"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    path = tmp_path_factory.mktemp("seccomp") / "groups.txt"
    path.write_text(out)
    return path
