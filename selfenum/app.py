"""``create_app``: the public self-enumeration application and what it owns.

Middlewares, outermost first: security headers on every answer (strict CSP
with no third-party source, HSTS unless explicitly insecure, no framing, no
referrer, no caching of pages that show answers); then CSRF for every POST
(a missing or empty token is refused). Bodies are capped by
``client_max_size``. The device API and the staff dashboard do not exist
here: the only routes are the respondent's pages, the participation
certificate pages (``web_certificates``), health, readiness and metrics.
Background work (the forwarder, the draft sweeper) is owned by ``cleanup_ctx``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from pathlib import Path

import jinja2
import structlog
from aiohttp import web

from gwclient import SignedGatewayClient
from keys.access_codes import pepper_id
from keys.bundle import ProvisioningBundle
from keys.certificates import CertificateIssuer
from keys.tls import client_ssl_context

from . import web_certificates, web_pages
from .code_feed import CodeFollower
from .config import SelfenumConfig
from .context import APP, SelfenumApp
from .delivery import Deliverer, Sealer
from .errors import OperatorError
from .i18n import Catalogs
from .questionnaire import Questionnaire
from .sessions import SessionBox, load_or_make_secret
from .store import SelfenumStore
from .throttle import Throttle
from .trust import WebTrust

__all__ = ["APP", "create_app", "load_pepper", "pepper_path"]

log = structlog.get_logger("selfenum")

_CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; "
        "base-uri 'none'")





def _security_headers(config: SelfenumConfig) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                         ) -> web.StreamResponse:
        try:
            resp = await handler(request)
        except web.HTTPException as e:
            resp = e
        h = resp.headers
        h["Content-Security-Policy"] = _CSP
        h["X-Content-Type-Options"] = "nosniff"
        h["X-Frame-Options"] = "DENY"
        h["Referrer-Policy"] = "no-referrer"
        h["Cross-Origin-Opener-Policy"] = "same-origin"
        h["Permissions-Policy"] = "camera=(), microphone=(), geolocation=()"
        if not request.path.startswith("/static/"):
            h["Cache-Control"] = "no-store"
        if not config.server.insecure_cookies:
            h["Strict-Transport-Security"] = "max-age=63072000; includeSubDomains"
        if isinstance(resp, web.HTTPException):
            raise resp
        return resp

    return middleware


def create_app(config: SelfenumConfig, *, clock_ms: Callable[[], int] | None = None,
               bundle_passphrase: bytes | None = None) -> web.Application:
    state = config.state_dir
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    bundle = ProvisioningBundle.load(config.web_bundle, bundle_passphrase)
    pepper = load_pepper(config)  # before the store opens: a missing pepper leaves nothing open
    store = SelfenumStore(state / "selfenum.db", state / "spool")
    clock = clock_ms or (lambda: time.time_ns() // 1_000_000)
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("selfenum", "templates"), autoescape=True, undefined=jinja2.StrictUndefined)
    se = SelfenumApp(
        config=config,
        bundle=bundle,
        store=store,
        sessions=SessionBox(load_or_make_secret(state / "cookie.key")),
        pepper=pepper,
        draft_salt=load_or_make_secret(state / "draft.salt"),
        contacts_key=load_or_make_secret(state / "contacts.key"),
        throttle=Throttle(per_address=config.throttle.per_address, window_s=config.throttle.per_address_window_s,
                          per_code=config.throttle.per_code_signins, clock=lambda: clock() / 1000.0),
        questionnaire=Questionnaire(),
        catalogs=Catalogs(),
        templates=env,
        sealer=Sealer(bundle.device_id, bundle.signing_key, bundle.data_public_key),
        clock_ms=clock,
        issuer=(CertificateIssuer.load(config.certificates.key_dir, bundle.root_public_key)
                if config.certificates.key_dir is not None else None),
    )
    app = web.Application(client_max_size=config.limits.max_body_bytes,
                          middlewares=[_security_headers(config), web_pages.csrf_middleware])
    app[APP] = se
    web_pages.add_routes(app)
    web_certificates.add_certificate_routes(app)
    static = Path(str(resources.files("selfenum").joinpath("static")))
    app.router.add_static("/static/", static, follow_symlinks=False, show_index=False)
    app.cleanup_ctx.append(_forwarder)
    return app


def pepper_path(config: SelfenumConfig) -> Path:
    """The access-code pepper: shared by ``codes mint`` and the service (same state directory), or the
    dashboard's copy (``codes_pepper_file``)."""
    return config.codes_pepper_file if config.codes_pepper_file is not None else config.state_dir / "codes.pepper"


def load_pepper(config: SelfenumConfig) -> bytes:
    """The pepper's 32 bytes; made on first use only in the state directory, never at ``codes_pepper_file``."""
    if config.codes_pepper_file is not None:
        try:
            data = config.codes_pepper_file.read_bytes()
        except OSError as e:
            raise OperatorError("codes_pepper_file cannot be read", path=str(config.codes_pepper_file)) from e
        if len(data) != 32:
            raise OperatorError("codes_pepper_file must hold exactly 32 bytes", path=str(config.codes_pepper_file))
        return data
    return load_or_make_secret(pepper_path(config))


async def _forwarder(app: web.Application) -> AsyncIterator[None]:
    se = app[APP]
    cfg = se.config
    ssl_context = client_ssl_context(se.bundle.ca_cert_path) if cfg.gateway_url.startswith("https") else None
    async with SignedGatewayClient(cfg.gateway_url, se.bundle.signing_key, ssl_context=ssl_context,
                                   timeout_s=cfg.forward.request_timeout_s, log_area="selfenum") as client:
        trust = WebTrust(se.bundle, cfg.state_dir / "registry.snapshot")
        se.trust = trust
        se.deliverer = Deliverer(se.store, client, web_id=se.bundle.device_id,
                                 gateway_keys=trust.gateway_keys,
                                 initial_backoff_s=cfg.forward.initial_backoff_s,
                                 max_backoff_s=cfg.forward.max_backoff_s,
                                 max_inflight=cfg.forward.max_inflight)
        se.codes = CodeFollower(se.store, client, web_id=se.bundle.device_id, pepper_id=pepper_id(se.pepper),
                                gateway_keys=trust.gateway_keys)
        tasks = [asyncio.create_task(se.deliverer.forward_loop(), name="selfenum-forwarder"),
                 asyncio.create_task(trust.refresh_loop(client, cfg.forward.registry_refresh_s),
                                     name="selfenum-registry"),
                 asyncio.create_task(se.codes.follow_loop(cfg.forward.codes_poll_s), name="selfenum-codes")]
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
    se.store.close()
