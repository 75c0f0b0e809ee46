"""A respondent driven by a real HTTP client (aiohttp, cookie jar, no JavaScript): what the pages do."""

from __future__ import annotations

import re
from typing import Any

import aiohttp

_CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


class Respondent:
    def __init__(self, base: str) -> None:
        self.base = base
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.last = ""

    async def close(self) -> None:
        await self.session.close()

    async def get(self, path: str) -> tuple[int, str]:
        async with self.session.get(self.base + path) as r:
            self.last = await r.text()
            return r.status, self.last

    def csrf(self) -> str:
        m = _CSRF.search(self.last)
        assert m, "page has no CSRF token"
        return m.group(1)

    async def post(self, path: str, data: dict[str, Any], *, csrf: str | None = None) -> tuple[int, str, str]:
        form = {"csrf": self.csrf() if csrf is None else csrf, **data}
        async with self.session.post(self.base + path, data=form) as r:
            self.last = await r.text()
            return r.status, self.last, str(r.url.path)

    async def sign_in(self, code: str) -> tuple[int, str, str]:
        await self.get("/")
        return await self.post("/start", {"code": code})

    async def fill(self, answers: dict[str, dict[str, str]], *, action: str = "next") -> tuple[int, str, str]:
        result: tuple[int, str, str] = (0, "", "")
        for slug, fields in answers.items():
            await self.get(f"/q/{slug}")
            result = await self.post(f"/q/{slug}", {**fields, "action": action})
            assert result[0] == 200, (slug, result[1][:2000])
        return result
