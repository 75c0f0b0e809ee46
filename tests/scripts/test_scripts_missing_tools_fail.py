"""A bare ``pytest`` on a machine without a test tool fails and names the tool; it never skips the tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_libfiu_tests_fail_naming_fiu_run_when_it_is_missing(tmp_path: Path) -> None:
    bare = tmp_path / "bin"  # a PATH with the virtualenv's programs and nothing else: no fiu-run
    bare.mkdir()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{bare}"}
    env.pop("SANAQ_FAULT_LEDGER", None)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider", "-rfEs",
         "tests/faults/test_faults_usb_io.py::test_an_io_error_while_the_station_starts_is_named_as_such"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 1, done.stdout[-3000:]
    assert "1 error" in done.stdout and "skipped" not in done.stdout, done.stdout[-3000:]  # fails at setup
    assert "fiu-run not found on PATH: apt-get install fiu-utils" in done.stdout
