"""``check-config`` on ``staff.certificate_key_dir``: handed over, certified by this root, a matching key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from keys.authority import Authority
from keys.certificates import create_certificate_key

from .test_gateway_config_check import NOW, Site

DROP_IN = ("[Service]\nLoadCredential=certificate.key:{keys}/certificate.key\n"
           "LoadCredential=certificate-key.doc:{keys}/certificate-key.doc\n")


@pytest.fixture(scope="module")
def authority_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("auth") / "authority"
    with Authority.create(path, now_ms=NOW, server_names=["127.0.0.1"]):
        pass
    return path


@pytest.fixture
def site(tmp_path: Path, authority_dir: Path) -> Site:
    s = Site(tmp_path / "site", authority_dir)
    s.edit_config("#certificate_key_dir = \"certificate-key\"", "certificate_key_dir = \".\"")
    return s


def _install(site: Site, authority_dir: Path, tmp_path: Path, *, drop_in: bool = True) -> None:
    with Authority.open(authority_dir) as a:
        create_certificate_key(a, tmp_path / "made", issuer="staff-ATY", census="KZ-2020", now_ms=NOW)
    for name in ("certificate.key", "certificate-key.doc"):
        shutil.copy2(tmp_path / "made" / name, site.keys / name)
    if drop_in:
        site.drop_in(DROP_IN.format(keys=site.keys))


def _problems(site: Site) -> list[tuple[str, str, str | None, str]]:
    return [f for f in site.check() if f[0] == "problem"]


def test_a_handed_over_certificate_key_of_this_authority_passes(site: Site, authority_dir: Path,
                                                                 tmp_path: Path) -> None:
    _install(site, authority_dir, tmp_path)
    assert _problems(site) == []


def test_a_certificate_key_not_handed_over_is_named(site: Site, authority_dir: Path, tmp_path: Path) -> None:
    _install(site, authority_dir, tmp_path, drop_in=False)
    problems = _problems(site)
    assert problems and problems[0][1] == "staff.certificate_key_dir"
    assert "LoadCredential=certificate-key.doc" in problems[0][3]


def test_a_certificate_key_of_another_authority_is_named(site: Site, tmp_path: Path) -> None:
    other = tmp_path / "other"
    with Authority.create(other, now_ms=NOW, server_names=["127.0.0.1"]):
        pass
    _install(site, other, tmp_path)
    [problem] = _problems(site)
    assert problem[1] == "staff.certificate_key_dir" and "does not verify under keys.root_public_key" in problem[3]
    assert problem[2] is not None and problem[2].endswith("certificate-key.doc")
