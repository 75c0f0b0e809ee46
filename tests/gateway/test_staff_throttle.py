"""Staff login throttling over real HTTP on loopback: concurrent attempts, other addresses, delays, the ceiling.

Client addresses are real: a client bound to 127.0.0.2 reaches the gateway on
127.0.0.1 from another address, as a second machine on the VPN would.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.staff import StaffConfig

from .harness import World
from .staff_browser import PASSWORD, ManualClock, StaffClient, StaffGateway, csrf_of, start_staff_gateway

# Options that exist in every version of StaffConfig: with the defaults, 5 failures per user.
DEFAULTS = StaffConfig(refresh_interval_s=0.1, full_refresh_s=5.0, heartbeat_s=1.0, language="en")
FREE = 5


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


async def attempt(client: StaffClient, username: str, password: str) -> tuple[int, str, str | None]:
    _, page, _ = await client.get("/staff/login")
    status, html, resp = await client.post(
        "/staff/login", {"csrf": csrf_of(page), "username": username, "password": password}
    )
    return status, html, resp.headers.get("Retry-After")


async def open_clients(gw: StaffGateway, n: int, source: str | None = None) -> list[StaffClient]:
    return [StaffClient(gw, source=source) for _ in range(n)]


async def close_all(clients: list[StaffClient]) -> None:
    for c in clients:
        await c.close()


@pytest.fixture
async def gw(world: World, tmp_path: Path, clock: ManualClock, staff_database: str) -> AsyncIterator[StaffGateway]:
    gateway = await start_staff_gateway(world, tmp_path, clock=clock, staff=DEFAULTS, database=staff_database)
    yield gateway
    await gateway.stop()


async def test_thirty_concurrent_attempts_get_exactly_the_allowed_failures_then_429(gw, clock) -> None:
    """Finding 1: the attempt is reserved before Argon2 runs, so a burst cannot outrun the limit."""
    clients = await open_clients(gw, 30)
    try:
        tokens = []
        for c in clients:  # every client holds its own login form (cookie + field) before the burst
            _, page, _ = await c.get("/staff/login")
            tokens.append(csrf_of(page))
        burst = await asyncio.gather(
            *(
                c.post("/staff/login", {"csrf": t, "username": "admin", "password": f"wrong guess number {i}"})
                for i, (c, t) in enumerate(zip(clients, tokens, strict=True))
            )
        )
        assert Counter(status for status, _, _ in burst) == {401: FREE, 429: 30 - FREE}
        # past the limit every attempt is refused, the right password included, concurrently too
        again = await asyncio.gather(*(attempt(c, "admin", PASSWORD) for c in clients[:8]))
        assert [status for status, _, _ in again] == [429] * 8
        assert gw.staff_rows("SELECT count(*) FROM sessions") == [(0,)]
        assert gw.staff_rows("SELECT count(*) FROM audit WHERE action = 'login.failed'") == [(FREE,)]
        clock.advance(int(again[0][2] or 0) * 1000)
        assert (await attempt(clients[0], "admin", PASSWORD))[0] == 303
    finally:
        await close_all(clients)


async def test_an_attacker_at_another_address_cannot_lock_the_owner_out(gw) -> None:
    """Finding 6: failures from 127.0.0.2 slow 127.0.0.2 only; the owner at 127.0.0.1 logs in at once."""
    (attacker,) = await open_clients(gw, 1, source="127.0.0.2")
    (owner,) = await open_clients(gw, 1)
    try:
        statuses = [(await attempt(attacker, "admin", f"guess {i} of the attacker"))[0] for i in range(FREE + 3)]
        assert statuses == [401] * FREE + [429] * 3
        assert await owner.login("admin") == 303
        assert (await attempt(attacker, "admin", PASSWORD))[0] == 429  # still slowed, even with the password
    finally:
        await close_all([attacker, owner])


async def test_one_guesser_behind_a_nat_does_not_lock_out_the_others(gw) -> None:
    """Finding 6: 21 failures for 21 usernames from one address leave its other users able to log in."""
    clients = await open_clients(gw, 21)
    try:
        results = await asyncio.gather(
            *(attempt(c, f"user{i:02d}", "a guess at a password") for i, c in enumerate(clients))
        )
        assert [status for status, _, _ in results] == [401] * 21
        assert await clients[0].login("viewer") == 303
    finally:
        await close_all(clients)


def delays_config() -> StaffConfig:
    return StaffConfig(
        language="en",
        refresh_interval_s=0.1,
        full_refresh_s=5.0,
        heartbeat_s=1.0,
        login_free_failures=2,
        login_delay_base_s=10,
        login_delay_max_s=40,
        login_window_s=300,
    )


async def test_delays_double_per_user_and_address_and_a_success_resets_them(world, tmp_path, clock) -> None:
    config = delays_config()
    gw = await start_staff_gateway(world, tmp_path, clock=clock, staff=config)
    (client,) = await open_clients(gw, 1)
    try:
        assert [(await attempt(client, "admin", "wrong one"))[0] for _ in range(2)] == [401, 401]
        for wait_s in (10, 20, 40, 40):  # doubling, capped at login_delay_max_s
            status, html, retry = await attempt(client, "admin", "wrong again")
            assert (status, retry) == (429, str(wait_s)) and "Too many failed logins" in html
            clock.advance(wait_s * 1000 - 1)
            assert (await attempt(client, "admin", PASSWORD))[0] == 429
            clock.advance(1)
            assert (await attempt(client, "admin", "still wrong"))[0] == 401
        status, _, retry = await attempt(client, "admin", PASSWORD)
        assert (status, retry) == (429, "40")
        clock.advance(40_000)
        assert await client.login("admin") == 303  # the right password after the wait
        assert gw.staff_rows("SELECT count(*) FROM login_pairs") == [(0,)]
        other = StaffClient(gw)
        try:  # a success starts the pair afresh: two free failures again
            assert [(await attempt(other, "admin", "wrong"))[0] for _ in range(3)] == [401, 401, 429]
            clock.advance((10 + config.login_window_s) * 1000)  # quiet for the window after the wait: afresh
            assert [(await attempt(other, "admin", "wrong"))[0] for _ in range(3)] == [401, 401, 429]
        finally:
            await other.close()
    finally:
        await client.close()
        await gw.stop()


def ceiling_config() -> StaffConfig:
    return StaffConfig(
        language="en",
        refresh_interval_s=0.1,
        full_refresh_s=5.0,
        heartbeat_s=1.0,
        login_free_failures=2,
        login_delay_base_s=1,
        login_user_ceiling=6,
        login_ceiling_window_s=3600,
    )


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.staff", *args], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("how", ["accounts page", "cli"])
async def test_the_user_ceiling_locks_across_addresses_until_an_admin_unlocks(
    world, tmp_path, clock, how, staff_database
) -> None:
    users = (("admin", "admin"), ("viewer", "viewer"), ("chief", "admin"))
    config = ceiling_config()
    gw = await start_staff_gateway(world, tmp_path, clock=clock, staff=config, users=users, database=staff_database)
    attackers = [StaffClient(gw, source=f"127.0.0.{n}") for n in (2, 3, 4)]
    owner, chief = StaffClient(gw), StaffClient(gw)
    try:
        for a in attackers:  # 2 failures from each of 3 addresses: the ceiling of 6
            assert [(await attempt(a, "admin", "distributed guess"))[0] for _ in range(2)] == [401, 401]
        status, html, retry = await attempt(owner, "admin", PASSWORD)
        assert status == 429 and "ask an administrator to unlock it" in html
        assert int(retry or 0) == config.login_ceiling_window_s
        assert gw.staff_rows("SELECT count(*) FROM sessions") == [(0,)]
        assert await chief.login("chief") == 303  # other accounts are untouched
        _, page, _ = await chief.get("/staff/accounts")
        assert 'id="throttled-admin"' in page and "locked" in page
        if how == "cli":
            done = run_cli("unlock-user", *gw.cli_where(), "--username", "admin")
            assert done.returncode == 0 and "6 failed logins forgotten" in done.stdout, done.stderr
        else:
            status, page, _ = await chief.post("/staff/accounts/unlock", {"csrf": chief.csrf, "username": "admin"})
            assert status == 200 and "Unlocked admin: 6 failed logins forgotten." in page
        assert gw.staff_rows("SELECT action FROM audit WHERE action = 'user.unlocked'") == [("user.unlocked",)]
        assert await owner.login("admin") == 303
    finally:
        await close_all([*attackers, owner, chief])
        await gw.stop()


async def test_unlocking_needs_an_admin_and_the_form_token(gw) -> None:
    viewer, admin = StaffClient(gw), StaffClient(gw)
    try:
        assert await viewer.login("viewer") == 303 and await admin.login("admin") == 303
        status, page, _ = await viewer.post("/staff/accounts/unlock", {"csrf": viewer.csrf, "username": "admin"})
        assert status == 403 and "for administrators" in page
        status, _, _ = await admin.post("/staff/accounts/unlock", {"csrf": "", "username": "admin"})
        assert status == 403
        status, page, _ = await admin.post("/staff/accounts/unlock", {"csrf": admin.csrf, "username": "NO SUCH!"})
        assert status == 400 and "Not unlocked" in page
        assert gw.staff_rows("SELECT count(*) FROM audit WHERE action = 'user.unlocked'") == [(0,)]
    finally:
        await close_all([viewer, admin])


async def test_a_login_flood_beyond_the_pending_limit_is_503_and_counts_nothing(world, tmp_path, clock) -> None:
    """Attempts beyond ``max_pending_logins`` are refused before they are reserved or stored."""
    config = StaffConfig(
        language="en",
        refresh_interval_s=0.1,
        full_refresh_s=5.0,
        heartbeat_s=1.0,
        max_concurrent_password_checks=1,
        max_pending_logins=1,
    )
    gw = await start_staff_gateway(world, tmp_path, clock=clock, staff=config)
    clients = await open_clients(gw, 20)
    try:
        tokens = []
        for c in clients:
            _, page, _ = await c.get("/staff/login")
            tokens.append(csrf_of(page))
        burst = await asyncio.gather(
            *(
                c.post("/staff/login", {"csrf": t, "username": f"flood{i:02d}", "password": "a guess at a password"})
                for i, (c, t) in enumerate(zip(clients, tokens, strict=True))
            )
        )
        statuses = Counter(status for status, _, _ in burst)
        assert set(statuses) <= {401, 503} and statuses[401] >= 1 and statuses[503] >= 1, statuses
        assert all(resp.headers["Retry-After"] == "1" for status, _, resp in burst if status == 503)
        assert gw.staff_rows("SELECT count(*) FROM login_failures") == [(statuses[401],)]
        assert gw.staff_rows("SELECT count(*) FROM login_pairs") == [(statuses[401],)]
        assert await clients[0].login("admin") == 303  # once the flood is over, the owner logs in
    finally:
        await close_all(clients)
        await gw.stop()
