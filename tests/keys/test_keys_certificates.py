"""Certificate keys and ``sanaq-keys verify-certificate``, as an operator and a verifier run them.

Real subprocesses on a real authority directory: the ceremony writes a key
directory a service can load, certificates it issues verify offline with only
the published root key, and tampered, foreign-key and revoked certificates are
refused with the documented exit statuses (0 valid, 1 invalid, 3 revoked, 2
cannot verify).
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from keys.authority import Authority
from keys.certificates import CertificateIssuer, certificate_day, certificate_road, certificate_subject
from keys.errors import BundleError
from wire.certificate import carrier_from_text, carrier_to_text, make_certificate

from .test_keys_cli import assert_one_line_error, run, run_json

ENTRY = "AT-000123/00042"


def _issue(directory: Path, root: bytes, subject: str = f"entry:{ENTRY}") -> bytes:
    return CertificateIssuer.load(directory, root).issue(subject=subject, day="2020-10-05", road="tablet")


@pytest.fixture
def ceremony(tmp_path: Path) -> tuple[Path, Path, bytes]:
    auth = tmp_path / "authority"
    run("init", auth)
    made = run_json("certificate-key", "create", "--authority", auth, "--issuer", "staff-ATY", "--census",
                    "KZ-2020", "--out", tmp_path / "cert-staff")
    assert (made["issuer"], made["census"], made["status"]) == ("staff-ATY", "KZ-2020", "active")
    with Authority.open(auth) as a:
        root = a.root_public_key
    return auth, tmp_path / "cert-staff", root


def test_the_ceremony_writes_a_private_key_directory_a_service_loads(ceremony: tuple[Path, Path, bytes]) -> None:
    _, key_dir, root = ceremony
    assert stat.S_IMODE(key_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((key_dir / "certificate.key").stat().st_mode) == 0o600
    issuer = CertificateIssuer.load(key_dir, root)
    assert (issuer.census, issuer.key.issuer) == ("KZ-2020", "staff-ATY")
    with pytest.raises(BundleError):  # another authority's root does not certify it
        CertificateIssuer.load(key_dir, bytes(SigningKey.generate().verify_key))


def test_verify_valid_file_and_qr_text_offline(ceremony: tuple[Path, Path, bytes], tmp_path: Path) -> None:
    auth, key_dir, root = ceremony
    carrier = _issue(key_dir, root)
    (tmp_path / "c.sqc").write_bytes(carrier)
    (tmp_path / "c.txt").write_text(carrier_to_text(carrier) + "\n")
    (tmp_path / "root.pub").write_text(root.hex() + "\n")
    for source in (tmp_path / "c.sqc", tmp_path / "c.txt", carrier_to_text(carrier)):
        out = run_json("verify-certificate", source, "--authority", auth)
        assert out["status"] == "valid" and out["revocation_checked"] is True
        assert out["certificate"]["subject"] == f"entry:{ENTRY}"
        assert set(out["certificate"]) == {"census", "subject", "day", "road", "issuer", "key_id"}
    plain = run("verify-certificate", tmp_path / "c.txt", "--root-pub", tmp_path / "root.pub")
    assert plain.stdout.startswith("VALID") and "revocation not checked" in plain.stdout


@pytest.mark.parametrize("attack", ["tampered", "other-key", "garbage"])
def test_refused_certificates_exit_1_with_the_reason(
    ceremony: tuple[Path, Path, bytes], tmp_path: Path, attack: str
) -> None:
    auth, key_dir, root = ceremony
    carrier = _issue(key_dir, root)
    if attack == "tampered":  # one letter of the QR text changed: the entry number
        text = carrier_to_text(carrier)
        data = bytearray(carrier_from_text(text))
        data[data.index(b"/00042") + 5] ^= 0x01
        given, code = carrier_to_text(bytes(data)), "bad-signature"
    elif attack == "other-key":  # a genuine key document, a certificate signed by someone else's key
        key_doc_len = 25 + int.from_bytes(carrier[21:25], "big") + 64
        forged = make_certificate(census="KZ-2020", subject=f"entry:{ENTRY}", day="2020-10-05", road="tablet",
                                  certificate_key=SigningKey.generate())
        given, code = carrier_to_text(carrier[:key_doc_len] + forged), "unknown-key"
    else:
        given, code = "sanaq-cert:not base64!", "malformed"
    proc = run("verify-certificate", given, "--authority", auth, check=False)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert proc.stdout.splitlines()[0] == f"INVALID: {code}"
    assert ENTRY not in proc.stdout  # an invalid certificate shows nothing of what it claims


def test_rotate_keeps_old_certificates_valid_and_revoke_refuses_them(
    ceremony: tuple[Path, Path, bytes], tmp_path: Path
) -> None:
    auth, key_dir, root = ceremony
    old = _issue(key_dir, root)
    rotated = run_json("certificate-key", "rotate", "--authority", auth, "--issuer", "staff-ATY",
                       "--out", tmp_path / "cert-staff-2")
    new = _issue(tmp_path / "cert-staff-2", root)
    listed = {k["key_id"]: k["status"] for k in run_json("certificate-key", "list", "--authority", auth)}
    assert sorted(listed.values()) == ["active", "retired"] and listed[rotated["key_id"]] == "active"
    (tmp_path / "old.sqc").write_bytes(old)
    (tmp_path / "new.sqc").write_bytes(new)
    assert run_json("verify-certificate", tmp_path / "old.sqc", "--authority", auth)["status"] == "valid"

    run("certificate-key", "revoke", rotated["key_id"], "--authority", auth, "--reason", "laptop stolen")
    proc = run("verify-certificate", tmp_path / "new.sqc", "--authority", auth, check=False)
    assert proc.returncode == 3 and proc.stdout.startswith("REVOKED"), proc.stdout
    published = tmp_path / "published.snapshot"
    published.write_bytes((auth / "registry.snapshot").read_bytes())
    (tmp_path / "root.pub").write_text(root.hex())
    by_snapshot = run("verify-certificate", tmp_path / "new.sqc", "--root-pub", tmp_path / "root.pub",
                      "--snapshot", published, "--json", check=False)
    assert by_snapshot.returncode == 3 and json.loads(by_snapshot.stdout)["code"] == "revoked"
    assert run_json("verify-certificate", tmp_path / "old.sqc", "--authority", auth)["status"] == "valid"
    again = run("certificate-key", "revoke", rotated["key_id"], "--authority", auth, "--reason", "x", check=False)
    assert_one_line_error(again, "invalid-transition")
    no_active = run("certificate-key", "rotate", "--authority", auth, "--issuer", "staff-ATY", "--out",
                    tmp_path / "x", check=False)
    assert_one_line_error(no_active, "invalid-record")
    fresh = run_json("certificate-key", "create", "--authority", auth, "--issuer", "staff-ATY", "--census",
                     "KZ-2020", "--out", tmp_path / "cert-staff-3")
    assert fresh["status"] == "active"
    (tmp_path / "fresh.sqc").write_bytes(_issue(tmp_path / "cert-staff-3", root))
    assert run_json("verify-certificate", tmp_path / "fresh.sqc", "--authority", auth)["status"] == "valid"


def test_usage_mistakes_exit_2(ceremony: tuple[Path, Path, bytes], tmp_path: Path) -> None:
    auth, key_dir, root = ceremony
    assert run("certificate-key", "create", "--authority", auth, "--census", "KZ-2020", check=False).returncode == 2
    twice = run("certificate-key", "create", "--authority", auth, "--issuer", "staff-ATY", "--census", "KZ-2020",
                "--out", tmp_path / "again", check=False)
    assert_one_line_error(twice, "invalid-record")
    assert not (tmp_path / "again").exists()
    assert run("verify-certificate", "sanaq-cert:AAAA", check=False).returncode == 2  # no root key given
    (tmp_path / "c.sqc").write_bytes(_issue(key_dir, root))
    (tmp_path / "bad.snapshot").write_bytes(b"SNQS" + bytes(100))
    bad = run("verify-certificate", tmp_path / "c.sqc", "--authority", auth, "--snapshot", tmp_path / "bad.snapshot",
              check=False)
    assert_one_line_error(bad, "unsupported-version")


def test_issuing_inputs() -> None:
    assert [certificate_road(r) for r in ("online", "station:ST-1", "web:WEB-1")] == ["tablet", "usb", "web"]
    # 2020-09-30T19:00Z is already 1 October in Astana (UTC+6)
    assert certificate_day(1_601_492_400_000, 360) == "2020-10-01"
    assert certificate_day(1_601_492_400_000, 0) == "2020-09-30"
    assert certificate_subject(ENTRY, "x") == f"entry:{ENTRY}"
    assert certificate_subject(None, "0f8fad5b-d9cb-469f-a165-70867728950e").startswith("sheet:")
