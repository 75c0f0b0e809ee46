"""Sending the authority's latest snapshot to gateway instances, and asking them which one they hold.

``push`` is ``PUT /v1/registry`` with ``Content-Type: application/vnd.sanaq.snapshot``
(the root signature inside the snapshot is its authorisation, so no request
signature). ``status`` reads ``GET /readyz`` (unauthenticated: the version in
force and the gateway's problems). Both pin the census CA of the authority
(``ca.crt``) and check the host name, like every client of the gateway; a URL
is answered one by one, and one instance failing never stops the others.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .tls import client_ssl_context

__all__ = ["SNAPSHOT_TYPE", "InstanceAnswer", "push_snapshot", "registry_status"]

SNAPSHOT_TYPE = "application/vnd.sanaq.snapshot"
_MAX_ANSWER_BYTES = 64 * 1024
_TIMEOUT_S = 15.0


@dataclass(frozen=True, slots=True)
class InstanceAnswer:
    """One gateway instance's answer. ``ok`` False: ``error`` says why (problem code or transport error)."""

    url: str
    ok: bool
    version: int | None = None
    error: str | None = None
    problems: tuple[str, ...] = ()


def _context(url: str, ca_cert: Path) -> ssl.SSLContext | None:
    return client_ssl_context(ca_cert) if url.startswith("https://") else None


def _request(req: urllib.request.Request, ca_cert: Path) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(req, timeout=_TIMEOUT_S, context=_context(req.full_url, ca_cert)) as resp:  # noqa: S310 - URL scheme checked by the caller
            return resp.status, _json(resp.read(_MAX_ANSWER_BYTES))
    except urllib.error.HTTPError as e:
        return e.code, _json(e.read(_MAX_ANSWER_BYTES))


def _json(data: bytes) -> dict[str, object]:
    try:
        value = json.loads(data)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _check_url(url: str) -> str | None:
    if not url.startswith(("https://", "http://")):
        return "not an https:// URL"
    return None


def _transport_error(e: BaseException) -> str:
    if isinstance(e, urllib.error.URLError):
        reason = e.reason
        if isinstance(reason, ssl.SSLCertVerificationError):
            return f"tls: {reason.verify_message} (is the gateway's certificate from this authority's CA, " \
                   "with this host name?)"
        return f"unreachable: {reason}"
    return f"unreachable: {e}"


def push_snapshot(urls: Sequence[str], snapshot: bytes, ca_cert: Path) -> list[InstanceAnswer]:
    """PUT the snapshot to every URL (the gateway base URL, e.g. ``https://10.8.0.1:8443``)."""
    answers = []
    for url in urls:
        base = url.rstrip("/")
        bad = _check_url(base)
        if bad:
            answers.append(InstanceAnswer(url, False, error=f"bad-url: {bad}"))
            continue
        req = urllib.request.Request(f"{base}/v1/registry", data=snapshot, method="PUT",  # noqa: S310
                                     headers={"Content-Type": SNAPSHOT_TYPE})
        try:
            status, body = _request(req, ca_cert)
        except (OSError, ssl.SSLError) as e:
            answers.append(InstanceAnswer(url, False, error=_transport_error(e)))
            continue
        version = body.get("version")
        if status == 200 and isinstance(version, int):
            answers.append(InstanceAnswer(url, True, version=version))
        else:
            code = body.get("code", f"http-{status}")
            detail = body.get("detail") or body.get("title") or ""
            answers.append(InstanceAnswer(url, False, error=f"{code}: {detail}".rstrip(": ")))
    return answers


def registry_status(urls: Sequence[str], ca_cert: Path) -> list[InstanceAnswer]:
    """The snapshot version each instance has in force and what keeps it from being ready."""
    answers = []
    for url in urls:
        base = url.rstrip("/")
        bad = _check_url(base)
        if bad:
            answers.append(InstanceAnswer(url, False, error=f"bad-url: {bad}"))
            continue
        try:
            status, body = _request(urllib.request.Request(f"{base}/readyz"), ca_cert)  # noqa: S310
        except (OSError, ssl.SSLError) as e:
            answers.append(InstanceAnswer(url, False, error=_transport_error(e)))
            continue
        version = body.get("registry_version")
        problems = body.get("problems")
        problem_list = tuple(str(p) for p in problems) if isinstance(problems, list) else ()
        if status not in (200, 503) or "ready" not in body:
            answers.append(InstanceAnswer(url, False, error=f"http-{status}: not a Sanaq gateway /readyz answer"))
            continue
        answers.append(InstanceAnswer(url, status == 200, version=version if isinstance(version, int) else None,
                                      problems=problem_list,
                                      error=None if status == 200 else "; ".join(problem_list) or "not ready"))
    return answers
