from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from .bed import (
    Env,
    Gateway,
    Web,
    build_template,
    env_from_template,
    mint,
    selfenum_config,
    serve_gateway,
    serve_selfenum,
)


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


@pytest.fixture
def config(env: Env, gw: Gateway, tmp_path: Path) -> Any:
    return selfenum_config(env, tmp_path / "selfenum", gw.url)


@pytest.fixture
def codes(config: Any) -> dict[str, str]:
    return mint(config)


@pytest.fixture
async def site(config: Any, codes: dict[str, str]) -> AsyncIterator[Web]:
    w = await serve_selfenum(config)
    yield w
    await w.stop()
