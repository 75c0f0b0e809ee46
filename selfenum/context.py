"""``SelfenumApp``: everything a request handler of the web service needs, under one typed app key."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import jinja2
from aiohttp import web

from keys.bundle import ProvisioningBundle
from keys.certificates import CertificateIssuer

from .code_feed import CodeFollower
from .config import SelfenumConfig
from .delivery import Deliverer, Sealer
from .i18n import Catalogs
from .questionnaire import Questionnaire
from .sessions import SessionBox
from .store import SelfenumStore
from .throttle import Throttle
from .trust import WebTrust

__all__ = ["APP", "SelfenumApp"]


@dataclass
class SelfenumApp:
    config: SelfenumConfig
    bundle: ProvisioningBundle
    store: SelfenumStore
    sessions: SessionBox
    pepper: bytes
    draft_salt: bytes
    contacts_key: bytes
    throttle: Throttle
    questionnaire: Questionnaire
    catalogs: Catalogs
    templates: jinja2.Environment
    sealer: Sealer
    clock_ms: Callable[[], int]
    deliverer: Deliverer | None = None
    trust: WebTrust | None = None
    codes: CodeFollower | None = None


    issuer: CertificateIssuer | None = None
    counters: dict[str, int] = field(default_factory=lambda: {"codes_refused": 0, "signins": 0, "submits": 0,
                                                              "csrf_refused": 0})


APP = web.AppKey("selfenum", SelfenumApp)
