"""structlog configured once, at a program's entry point: one JSON object per event on stdout.

journald stores stdout lines as they are; ``SYSLOG_IDENTIFIER`` comes from the
unit. Context (device id, seq, batch hash, request id) is bound per request or
per device with ``structlog.contextvars``. Event names are dotted
(``batch.stored``) and fields never carry sheet contents or key material.

``OPERATOR_PROCESSORS`` make lines readable for the person on call, in one
place for every program: each epoch-milliseconds time field ``x_at_ms`` (or
``x_ms``) gets an ISO-8601 twin ``x_at_iso``; ``*_hash`` fields given as
bytes are written as full lowercase hex (64 digits for SHA-256, the one form
everywhere); every warning and error gets a short ``hint`` from
``runtime.log_hints`` unless the call gave one.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict

from .log_hints import hint_for

__all__ = ["OPERATOR_PROCESSORS", "add_hint", "add_iso_times", "configure_logging", "hex_hashes"]

# Epoch milliseconds between 1973 and 5138: durations (skew_ms, delay_ms) stay below and are left alone.
_EPOCH_MS_MIN, _EPOCH_MS_MAX = 10**11, 10**14
_HINT_LEVELS = {"warning", "warn", "error", "exception", "critical"}


def add_iso_times(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    for key, value in list(event_dict.items()):
        if (key.endswith("_ms") and isinstance(value, int) and not isinstance(value, bool)
                and _EPOCH_MS_MIN <= value < _EPOCH_MS_MAX):
            iso = dt.datetime.fromtimestamp(value / 1000, dt.UTC).isoformat(timespec="milliseconds")
            event_dict.setdefault(f"{key[:-3]}_iso", iso.replace("+00:00", "Z"))
    return event_dict


def hex_hashes(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    for key, value in event_dict.items():
        if key.endswith("_hash") and isinstance(value, bytes | bytearray):
            event_dict[key] = bytes(value).hex()
    return event_dict


def add_hint(_logger: Any, method: str, event_dict: EventDict) -> EventDict:
    if method in _HINT_LEVELS and "hint" not in event_dict:
        event = event_dict.get("event")
        if isinstance(event, str):
            hint = hint_for(event, event_dict.get("kind") or event_dict.get("code"))
            if hint is not None:
                event_dict["hint"] = hint
    return event_dict


OPERATOR_PROCESSORS: tuple[structlog.typing.Processor, ...] = (add_iso_times, hex_hashes, add_hint)

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure_logging(
    level: str = "info", stream: TextIO | None = None, *, json_output: bool = True, cache: bool = True
) -> None:
    """The processes' logging. ``cache=False`` (in-process tests) keeps loggers reconfigurable afterwards:
    a cached logger keeps this configuration for good, and ``structlog.testing.capture_logs`` no longer sees it."""
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer(sort_keys=True)
        if json_output
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            *OPERATOR_PROCESSORS,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stdout),
        cache_logger_on_first_use=cache,
    )
