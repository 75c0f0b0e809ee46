"""psycopg is the ``postgres`` extra (pyproject.toml): a SQLite-only install has no psycopg.

The slow install test (tests/systemd/test_systemd_install.py) builds such a venv; this one keeps the cheap
check in the fast suite: every command's module imports with psycopg made unimportable.
"""

from __future__ import annotations

import subprocess
import sys

ENTRY_MODULES = (
    "gateway.__main__",
    "gateway.server",
    "gateway.staff.setup",
    "gateway.staff.admin_cli",
    "usb_ingest.__main__",
    "selfenum.__main__",
    "tablet.__main__",
)

PROBE = """
import importlib, sys
sys.modules["psycopg"] = None  # import psycopg now raises ImportError, as without the extra
sys.modules["psycopg_pool"] = None
failed = []
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except ImportError as e:
        failed.append(f"{name}: {e}")
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""


def test_every_command_imports_without_the_postgres_extra() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE, *ENTRY_MODULES], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_probe_does_catch_a_module_that_needs_psycopg() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE, "gateway.store_postgres"], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 1 and "gateway.store_postgres" in done.stdout
