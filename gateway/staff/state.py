"""The staff dashboard's state, held on the gateway app under one typed key."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from gateway.context import GatewayContext

from .accounts import Accounts
from .config import StaffConfig
from .db import StaffStorage
from .feed import DashboardFeed
from .queries import StaffQueries
from .views import Views

__all__ = ["STAFF", "StaffState"]


@dataclass(slots=True)
class StaffState:
    config: StaffConfig
    ctx: GatewayContext
    db: StaffStorage
    accounts: Accounts
    queries: StaffQueries
    feed: DashboardFeed
    views: Views
    pepper_path: Path  # the access-code pepper (``codes.load_pepper``)


STAFF = web.AppKey("sanaq_staff_state", StaffState)
