"""Logs for the person on call: every warning/error event has a hint; times in ISO too; one hash form."""

from __future__ import annotations

import ast
import io
import json
from pathlib import Path

import pytest
import structlog

from runtime.log_hints import HINTS, hint_for
from runtime.logs import configure_logging

REPO = Path(__file__).resolve().parents[2]
PROGRAMS = ("gateway", "usb_ingest", "tablet", "keys", "runtime", "selfenum")
_LEVELS = {"warning", "error", "exception", "critical"}


def _event_names(node: ast.AST, assignments: dict[str, list[ast.AST]]) -> set[str]:
    """String constants an event argument can take: literals, both arms of `a if c else b`, a local name."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.IfExp):
        return _event_names(node.body, assignments) | _event_names(node.orelse, assignments)
    if isinstance(node, ast.Name):
        return set().union(*(_event_names(v, {}) for v in assignments.get(node.id, [])))
    return set()


def warning_and_error_events() -> dict[str, str]:
    """{event name: where} for every log call at warning level or above in the programs' code."""
    found: dict[str, str] = {}
    for package in PROGRAMS:
        for path in sorted((REPO / package).rglob("*.py")):
            tree = ast.parse(path.read_text("utf-8"))
            for func in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]:
                assignments: dict[str, list[ast.AST]] = {}
                levels: set[str] = set()  # `level = log.warning if ... else log.info`
                for n in ast.walk(func):
                    if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name):
                        assignments.setdefault(n.targets[0].id, []).append(n.value)
                        attrs = [a.attr for a in ast.walk(n.value) if isinstance(a, ast.Attribute)]
                        if any(a in _LEVELS for a in attrs):
                            levels.add(n.targets[0].id)
                for n in ast.walk(func):
                    if not isinstance(n, ast.Call) or not n.args:
                        continue
                    f = n.func
                    is_log = (isinstance(f, ast.Attribute) and f.attr in _LEVELS and isinstance(f.value, ast.Name)
                              and "log" in f.value.id) or (isinstance(f, ast.Name) and f.id in levels)
                    if is_log:
                        for name in _event_names(n.args[0], assignments):
                            found.setdefault(name, f"{path.relative_to(REPO)}:{n.lineno}")
    return found


def test_the_scan_finds_the_events_it_must() -> None:
    events = warning_and_error_events()
    # literal, conditional, through a local name, and through `level = log.warning if ... else log.info`
    for name in ("registry.missing", "usb.volume.refused", "usb.forward.rejected", "request.refused"):
        assert name in events, name
    assert len(events) > 50


def test_every_warning_and_error_event_has_a_hint() -> None:
    missing = {name: where for name, where in warning_and_error_events().items() if hint_for(name) is None}
    assert not missing, f"add a hint to runtime/log_hints.py for: {missing}"


def test_hints_are_short_and_every_detailed_key_has_a_base() -> None:
    for key, text in HINTS.items():
        assert 0 < len(text) <= 110, key
        if ":" in key:
            assert key.split(":")[0] in HINTS, key


@pytest.fixture
def json_lines() -> io.StringIO:
    stream = io.StringIO()
    configure_logging("info", stream, cache=False)
    yield stream
    structlog.reset_defaults()


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_line_for_on_call(json_lines: io.StringIO) -> None:
    log = structlog.get_logger("t")
    log.warning("security.event", kind="revoked-signer", device_id="ST-01", received_at_ms=1_790_000_000_123,
                batch_hash=b"\xab" * 32, skew_ms=620)
    log.info("batch.stored", expires_at_ms=1_790_000_000_000)
    log.warning("usb.trust.refresh_failed", hint="given by the call")
    first, second, third = _lines(json_lines)
    assert first["hint"] == HINTS["security.event:revoked-signer"]
    assert first["received_at_iso"] == "2026-09-21T14:13:20.123Z"
    assert first["batch_hash"] == "ab" * 32
    assert "skew_iso" not in first  # a duration, not a time
    assert "hint" not in second and second["expires_at_iso"] == "2026-09-21T14:13:20.000Z"
    assert third["hint"] == "given by the call"


def _all_events() -> dict[str, str]:
    """{event name: where} for every literal log event at any level in the programs' code."""
    found: dict[str, str] = {}
    levels = _LEVELS | {"info", "debug"}
    for package in PROGRAMS:
        for path in sorted((REPO / package).rglob("*.py")):
            for n in ast.walk(ast.parse(path.read_text("utf-8"))):
                if (isinstance(n, ast.Call) and n.args and isinstance(n.func, ast.Attribute)
                        and n.func.attr in levels and isinstance(n.func.value, ast.Name) and "log" in n.func.value.id
                        and isinstance(n.args[0], ast.Constant) and isinstance(n.args[0].value, str)):
                    found.setdefault(n.args[0].value, f"{path.relative_to(REPO)}:{n.lineno}")
    return found


def test_a_snapshot_taken_into_force_has_one_event_name_in_every_service() -> None:
    """The same thing is not `registry.accepted` in one service and `usb.trust.refreshed` in another."""
    events = _all_events()
    about_snapshots = {e: where for e, where in events.items()
                       if any(w in e for w in ("registry", "snapshot", "trust"))
                       and any(w in e for w in ("accepted", "followed", "refreshed", "installed", "taken"))}
    assert set(about_snapshots) == {"registry.snapshot.accepted", "registry.refreshed"}, about_snapshots
