from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from .bed import Env, Gateway, build_template, env_from_template, serve_gateway


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
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
