"""Access codes: format, check character, keyed hash; minting from a first-stage list, slips, revoke, reissue."""

from __future__ import annotations

import math
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from keys.access_codes import (
    ALPHABET,
    CODE_SYMBOLS,
    code_hash,
    derive_draft_key,
    format_code,
    mint_code,
    normalise_code,
)
from keys.errors import AccessCodeError

from .bed import INSTITUTION, LIST_CSV, Env, Gateway, selfenum_config


def test_codes_carry_at_least_80_random_bits_from_an_unambiguous_alphabet() -> None:
    assert len(set(ALPHABET)) == 32 and not set(ALPHABET) & set("01IO")
    assert (CODE_SYMBOLS - 1) * math.log2(len(ALPHABET)) >= 80
    codes = {mint_code() for _ in range(2000)}
    assert len(codes) == 2000 and all(len(c) == CODE_SYMBOLS for c in codes)
    assert all(normalise_code(c) == c for c in codes)


def test_grouped_for_reading_aloud_and_forgiving_input() -> None:
    code = mint_code()
    shown = format_code(code)
    assert [len(g) for g in shown.split("-")] == [4, 4, 4, 4, 4]
    assert normalise_code(shown.lower()) == code
    assert normalise_code("  " + " ".join(shown.split("-")) + " ") == code
    latin_to_cyrillic = str.maketrans("ABEKMHPCTX", "\u0410\u0412\u0415\u041a\u041c\u041d\u0420\u0421\u0422\u0425")
    assert normalise_code(shown.translate(latin_to_cyrillic)) == code


def test_every_single_symbol_error_is_caught_by_the_check_character() -> None:
    for _ in range(20):
        code = mint_code()
        for pos in range(CODE_SYMBOLS):
            for ch in ALPHABET:
                if ch != code[pos]:
                    with pytest.raises(AccessCodeError):
                        normalise_code(code[:pos] + ch + code[pos + 1:])


def test_most_swapped_neighbours_are_caught() -> None:
    caught = total = 0
    for _ in range(300):
        code = mint_code()
        for pos in range(CODE_SYMBOLS - 1):
            if code[pos] == code[pos + 1]:
                continue
            total += 1
            swapped = code[:pos] + code[pos + 1] + code[pos] + code[pos + 2:]
            try:
                normalise_code(swapped)
            except AccessCodeError:
                caught += 1
    assert caught / total > 0.95


@pytest.mark.parametrize("text", ["", "ABCD", "0" * 20, "I" * 20, "2" * 21, "2" * 200, "2222-2222-2222-2222-222O"])
def test_not_codes(text: str) -> None:
    with pytest.raises(AccessCodeError):
        normalise_code(text)


def test_stored_form_is_a_keyed_hash_and_the_draft_key_needs_the_code() -> None:
    code = mint_code()
    p1, p2 = os.urandom(32), os.urandom(32)
    assert code_hash(p1, code) != code_hash(p2, code) and code not in code_hash(p1, code)
    assert len(code_hash(p1, code)) == 64
    salt = os.urandom(32)
    assert derive_draft_key(code, salt) == derive_draft_key(code, salt) != derive_draft_key(mint_code(), salt)
    with pytest.raises(ValueError):
        code_hash(b"short", code)


def _cli(config_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "selfenum", *args, "--config", str(config_path)],
                          capture_output=True, text=True, check=False)


def _write_config(config: Any, path: Path) -> Path:
    path.write_text(
        f'web_bundle = "{config.web_bundle}"\nstate_dir = "{config.state_dir}"\ngateway_url = "{config.gateway_url}"\n'
        '[server]\nport = 0\npublic_url = "https://sanaq.example/"\n', encoding="utf-8")
    return path


def test_mint_from_a_list_writes_slips_and_stores_only_hashes(env: Env, gw: Gateway, tmp_path: Path) -> None:
    config = selfenum_config(env, tmp_path / "se", gw.url)
    cfg = _write_config(config, tmp_path / "selfenum.toml")
    listing = tmp_path / "list.csv"
    listing.write_text(LIST_CSV, encoding="utf-8")
    slips = tmp_path / "slips"
    proc = _cli(cfg, "codes", "mint", "--list", str(listing), "--slips", str(slips),
                "--institution-kind", "childrens_home", "--worker-id", "W-17")
    assert proc.returncode == 0, proc.stderr
    pdf = slips / f"slips-{INSTITUTION}.pdf"
    assert stat.S_IMODE(pdf.stat().st_mode) == 0o600
    text = "".join(page.extract_text() for page in PdfReader(pdf).pages)
    assert "Жұмабаева" in text and f"{INSTITUTION}/00003" in text and "Перепись населения онлайн" in text
    printed = [normalise_code(w) for w in text.split() if len(w) == 24 and w.count("-") == 4]
    assert len(printed) == 3
    assert not any(c in proc.stdout + proc.stderr for c in printed)  # codes only on the slips
    db = sqlite3.connect(config.state_dir / "selfenum.db")
    stored = db.execute("SELECT code_hash FROM codes WHERE status = 'active'").fetchall()
    assert len(stored) == 3 and not any(c in db.execute("SELECT * FROM codes").fetchall().__repr__()
                                        for c in printed)
    again = _cli(cfg, "codes", "mint", "--list", str(listing), "--slips", str(tmp_path / "slips2"),
                 "--institution-kind", "childrens_home", "--worker-id", "W-17")
    assert again.returncode == 0 and "minted 0 code(s)" in again.stdout
    # Reissue: the old code stops working, the new one is the entry's only active code.
    entry = f"{INSTITUTION}/00002"
    re = _cli(cfg, "codes", "reissue", entry, "--slips", str(tmp_path / "one"), "--institution-kind", "childrens_home",
              "--worker-id", "W-17")
    assert re.returncode == 0, re.stderr
    rows = db.execute("SELECT status FROM codes WHERE entry_id = ? ORDER BY issued_at_ms, rowid", (entry,)).fetchall()
    assert sorted(r[0] for r in rows) == ["active", "revoked"]
    assert _cli(cfg, "codes", "revoke", entry).returncode == 0
    active = db.execute("SELECT count(*) FROM codes WHERE entry_id = ? AND status = 'active'", (entry,)).fetchone()
    assert active == (0,)
    missing = _cli(cfg, "codes", "revoke", entry)
    assert missing.returncode == 2 and "no active code" in missing.stderr


@pytest.mark.parametrize(("csv_text", "message"), [
    ("institution_code,entry_id\nAB-000001,1\n", "header"),
    (LIST_CSV.replace("AB-000001,2", "AB-00001,2"), "institution code"),
    (LIST_CSV + f"{INSTITUTION},1,2026-06-01,X,Y,,1990-01-01\n", "twice"),
    (LIST_CSV.replace("Petrov,Ivan", ",Ivan"), "surname"),
])
def test_a_bad_list_mints_nothing(env: Env, gw: Gateway, tmp_path: Path, csv_text: str, message: str) -> None:
    config = selfenum_config(env, tmp_path / "se", gw.url)
    cfg = _write_config(config, tmp_path / "selfenum.toml")
    listing = tmp_path / "list.csv"
    listing.write_text(csv_text, encoding="utf-8")
    proc = _cli(cfg, "codes", "mint", "--list", str(listing), "--slips", str(tmp_path / "s"),
                "--institution-kind", "childrens_home", "--worker-id", "W-17")
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "s").exists()


def test_a_household_based_list_mints_one_code_per_household(env: Env, gw: Gateway, tmp_path: Path) -> None:
    config = selfenum_config(env, tmp_path / "se", gw.url)
    cfg = _write_config(config, tmp_path / "selfenum.toml")
    listing = tmp_path / "list.csv"
    header, *rows = LIST_CSV.splitlines()
    listing.write_text("\n".join([header + ",household", rows[0] + ",H-1", rows[1] + ",H-1", rows[2] + ","]) + "\n",
                       encoding="utf-8")
    proc = _cli(cfg, "codes", "mint", "--list", str(listing), "--slips", str(tmp_path / "s"),
                "--institution-kind", "childrens_home", "--worker-id", "W-17")
    assert proc.returncode == 0, proc.stderr
    text = "".join(page.extract_text() for page in PdfReader(tmp_path / "s" / f"slips-{INSTITUTION}.pdf").pages)
    assert len([w for w in text.split() if len(w) == 24 and w.count("-") == 4]) == 2
    db = sqlite3.connect(config.state_dir / "selfenum.db")
    e1, e2, e3 = (f"{INSTITUTION}/{i:05d}" for i in (1, 2, 3))
    assert db.execute("SELECT entry_id, members FROM codes ORDER BY entry_id").fetchall() == [
        (e1, f'["{e1}", "{e2}"]'), (e3, None)]
    # re-issuing a member's code re-issues the household's: both members keep one active code
    assert _cli(cfg, "codes", "reissue", e2, "--slips", str(tmp_path / "one"), "--institution-kind",
                "childrens_home", "--worker-id", "W-17").returncode == 0
    assert db.execute("SELECT members, status FROM codes WHERE entry_id = ? ORDER BY rowid", (e1,)).fetchall() == [
        (f'["{e1}", "{e2}"]', "revoked"), (f'["{e1}", "{e2}"]', "active")]
    assert _cli(cfg, "codes", "revoke", e2).returncode == 0
    assert db.execute("SELECT count(*) FROM codes WHERE status = 'active'").fetchone() == (1,)
