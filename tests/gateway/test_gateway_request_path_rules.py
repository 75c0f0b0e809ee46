"""Rules of the gateway's request path that a reader cannot see from the outside, checked on the source.

* no ``assert`` statement in the modules a request runs through: ``python -O``
  strips them, so a check written as one silently disappears in production;
* no ``except Exception`` (or bare ``except``) in the handlers: a refusal is
  caught by its type, never by asking an arbitrary exception for a ``code``;
* no ``getattr(..., "code")`` on an exception in the handlers.

The error middleware (``problems.py``) is the one place allowed to catch
everything: it turns an unexpected failure into a logged 500.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

GATEWAY = Path(__file__).resolve().parents[2] / "gateway"
_CORE = ("app.py", "auth.py", "context.py", "errors.py", "problems.py", "registry.py", "server.py", "trust.py")
REQUEST_PATH = sorted({p.name for p in GATEWAY.glob("web_*.py")} | set(_CORE))
HANDLERS = sorted(p.name for p in GATEWAY.glob("web_*.py"))


def _tree(name: str) -> ast.Module:
    return ast.parse((GATEWAY / name).read_text(encoding="utf-8"), filename=name)


@pytest.mark.parametrize("name", REQUEST_PATH)
def test_no_assert_on_the_request_path(name: str) -> None:
    found = [node.lineno for node in ast.walk(_tree(name)) if isinstance(node, ast.Assert)]
    assert found == [], f"gateway/{name}: assert at lines {found}"


@pytest.mark.parametrize("name", HANDLERS)
def test_handlers_catch_by_type(name: str) -> None:
    broad = []
    for node in ast.walk(_tree(name)):
        if isinstance(node, ast.ExceptHandler):
            caught = node.type
            if caught is None or (isinstance(caught, ast.Name) and caught.id in ("Exception", "BaseException")):
                broad.append(node.lineno)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "getattr"
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and node.args[1].value == "code"
        ):
            broad.append(node.lineno)
    assert broad == [], f"gateway/{name}: broad except or getattr(e, 'code') at lines {broad}"


def test_the_scan_sees_the_handlers() -> None:
    assert {"web_common.py", "web_ingest.py", "web_state.py", "web_ops.py"} <= set(HANDLERS)
