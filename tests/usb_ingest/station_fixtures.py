"""The station/gateway world of the USB tests, as fixtures shared by tests/usb_ingest and tests/faults.

Import the fixtures into a test module (or a conftest) by name; pytest registers them there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from .images import Env, Gateway, build_template, env_from_template, serve_gateway, structlog_defaults

__all__ = ["_logs_unfiltered", "env", "gw", "template"]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Keys and registry made once per module (enrolment is the slow part), copied per test."""
    return build_template(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def env(template: Path, tmp_path: Path) -> Iterator[Env]:
    e = env_from_template(template, tmp_path)
    yield e
    e.close()


@pytest.fixture
async def gw(env: Env, tmp_path: Path) -> AsyncIterator[Gateway]:
    gateway = await serve_gateway(env, tmp_path / "census.db")
    yield gateway
    await gateway.stop()


@pytest.fixture
def _logs_unfiltered() -> Iterator[None]:
    with structlog_defaults():
        yield
