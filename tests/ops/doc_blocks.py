"""The fenced shell blocks of docs/operations.md that carry a tag (```sh ceremony), run as written."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

__all__ = ["OPERATIONS", "block", "clean_env", "run_block"]

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
_FENCE = re.compile(r"^```sh (?P<tag>[\w-]+)\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL)


def block(tag: str) -> str:
    """The one block tagged ``tag`` (exactly one must exist: a renamed tag must fail its test)."""
    found = [m.group("body") for m in _FENCE.finditer(OPERATIONS.read_text("utf-8")) if m.group("tag") == tag]
    assert len(found) == 1, f"docs/operations.md has {len(found)} blocks tagged 'sh {tag}'"
    return found[0]


def run_block(tag: str, cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the block with bash -e (a failing command fails the block), in ``cwd``; output is kept for asserts."""
    script = "set -euo pipefail\n" + block(tag)
    done = subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert done.returncode == 0, f"block 'sh {tag}' failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANAQ_") and k != "CREDENTIALS_DIRECTORY"}
    env.update(extra)
    return env
