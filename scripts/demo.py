"""``make demo``: the whole job end to end on the embedded default (SQLite), with real processes.

1. a census authority is created (root, data and receipt keys, census CA),
   three tablets and one Department ingest station are enrolled;
2. the gateway starts over HTTPS with the CA-issued certificate, on SQLite,
   with its staff dashboard (an administrator is created first);
3. the dashboard imports the first-stage respondent lists of the tablets'
   institutions (scripts/demo_count.py);
4. a respondent answers online on the self-enumeration web service (road
   ``web:WEB-AST-01``, scripts/demo_selfenum.py): entry 1 of TAB-0001's list;
5. each tablet syncs once to fetch its assignments, then fills household
   sheets and interviews entries of its list (``fill --entry``); TAB-0001 is
   warned that entry 1 was enumerated online and interviews it anyway;
6. two tablets sync online (receipts verified); the third has no coverage: it
   exports a USB volume image, and the station pulls it in user space,
   verifies, spools and forwards it;
7. what arrived is printed from the census store: batches, persons counted
   (each list entry once, whatever the road) and the review cases (the online
   answer and the tablet interview of the same person: one case), and the
   dashboard's coverage CSV; then the gateway stops.

Everything lives in ``demo-run/`` (or ``$SANAQ_DEMO_DIR``), recreated each time, mode
0700 under a umask of 077: it holds keys and census sheets. Only 127.0.0.1 is used.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from runtime.private_files import make_private_dir

ROOT = Path(__file__).resolve().parent.parent
RUN = Path(os.environ.get("SANAQ_DEMO_DIR") or ROOT / "demo-run")
BIN = Path(sys.executable).parent
ENTRIES = 8  # first-stage list entries per institution


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def run(*args: str, quiet: bool = False) -> str:
    result = subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"demo: `{' '.join(args[:2])}` failed with exit code {result.returncode}")
    if not quiet and result.stdout.strip():
        print(result.stdout.rstrip())
    return result.stdout


def start_gateway(keys: Path) -> tuple[subprocess.Popen[str], str]:
    config = RUN / "gateway.toml"
    config.write_text(
        f'database = "sqlite:///{RUN / "gateway-state" / "census.db"}"\n'
        "[server]\nhost = \"127.0.0.1\"\nport = 0\n"
        f'tls_cert = "{keys / "gateway-tls.crt"}"\ntls_key = "{keys / "gateway-tls.key"}"\n'
        "[keys]\n"
        f'root_public_key_file = "{keys / "root.pub"}"\ndata_key = "{keys / "data.key"}"\n'
        f'receipt_key = "{keys / "gateway.key"}"\nbootstrap_snapshot = "{keys / "registry.snapshot"}"\n'
        f'[staff]\ncertificate_key_dir = "{keys / "certificate-key"}"\n'
    )
    log = (RUN / "gateway.log").open("w")
    proc = subprocess.Popen(
        [str(BIN / "sanaq-gateway"), "serve", "--config", str(config)],
        stdout=log, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    if "listening" not in line:
        raise SystemExit(f"demo: gateway did not start: {line}{proc.stderr.read()}")
    address = line.rsplit(" on ", 1)[1].strip()
    port = address.rsplit(":", 1)[1]
    return proc, f"https://localhost:{port}"


def main() -> int:
    if RUN.exists():
        shutil.rmtree(RUN)
    os.umask(0o077)  # every file the demo and its programs make holds keys, sheets or their configuration
    make_private_dir(RUN)  # 0700: the demo's keys, outboxes and census.db live here
    authority = RUN / "authority"
    step("census authority: root, data and receipt keys, census CA")
    run("sanaq-keys", "init", str(authority), "--server-name", "localhost", "--server-name", "127.0.0.1")
    keys = RUN / "gateway-keys"
    run("sanaq-keys", "export-gateway", "--authority", str(authority), "--out", str(keys))
    run("sanaq-keys", "certificate-key", "create", "--authority", str(authority), "--issuer", "staff-ALMATY",
        "--census", "KZ-2020", "--out", str(keys / "certificate-key"), quiet=True)

    step("gateway: HTTPS with the census CA certificate, SQLite store, staff dashboard")
    from scripts.demo_count import make_admin  # noqa: PLC0415 - needs the venv

    make_private_dir(RUN / "gateway-state")
    password = make_admin(RUN / "gateway-state" / "staff.db", RUN / "dashboard-admin.password")
    print(f"dashboard administrator: admin (password in {RUN / 'dashboard-admin.password'})")
    gateway, url = start_gateway(keys)
    try:
        return demo_with_gateway(authority, url, password)
    finally:
        gateway.send_signal(signal.SIGTERM)
        code = gateway.wait(timeout=60)
        print(f"\n== gateway stopped (exit {code}); logs in {RUN / 'gateway.log'}")


def demo_with_gateway(authority: Path, url: str, password: str) -> int:
    from keys.tls import client_ssl_context  # noqa: PLC0415 - needs the venv
    from scripts.demo_count import Dashboard, list_csv, show_count  # noqa: PLC0415

    step("enroll three tablets and one Department ingest station")
    tablets = ["TAB-0001", "TAB-0002", "TAB-0003"]
    institutions = [f"AL-00000{n}" for n in range(1, len(tablets) + 1)]
    (RUN / "bundles").mkdir()
    (RUN / "tablets").mkdir()
    for n, device in enumerate(tablets, start=1):
        run("sanaq-keys", "enroll-tablet", "--authority", str(authority), "--device-id", device,
            "--usb-serial", f"R52N{n:06d}", "--institution", institutions[n - 1], "--worker-id", f"W-{n:04d}",
            "--gateway-url", url, "--out", str(RUN / "bundles" / device), quiet=True)
    run("sanaq-keys", "enroll-station", "--authority", str(authority), "--station-id", "ST-ALMATY-01",
        "--gateway-url", url, "--out", str(RUN / "bundles" / "ST-ALMATY-01"), quiet=True)
    run("sanaq-keys", "list", "--authority", str(authority))
    snapshot = authority / "registry.snapshot"
    push_snapshot(url, snapshot)

    step("first-stage lists: the dashboard imports the respondent lists of the tablets' institutions")
    dashboard = Dashboard(url, client_ssl_context(RUN / "gateway-keys" / "ca.crt"), password)
    lists = list_csv(institutions, ENTRIES)
    print(f"{', '.join(institutions)}: {dashboard.run(dashboard.import_lists(lists))}")

    step("online self-enumeration: a respondent answers on the web service, the sheet goes to the gateway")
    from scripts.demo_selfenum import online_road  # noqa: PLC0415 - needs the venv, like push_snapshot

    online_road(RUN, BIN, authority, url, run=run, push_snapshot=push_snapshot)

    step("tablets fetch their assignments (each its institution's list), fill households, interview entries")
    for n, device in enumerate(tablets, start=1):
        home = RUN / "tablets" / device
        run("sanaq-tablet", "--home", str(home), "init", "--bundle", str(RUN / "bundles" / device), quiet=True)
        run("sanaq-tablet", "--home", str(home), "sync", quiet=True)  # issued in the office: fetches the list
        run("sanaq-tablet", "--home", str(home), "fill", "--seed", str(n), "--count", str(10 * n),
            "--mix", "household=1", quiet=True)
    home = RUN / "tablets" / "TAB-0001"
    run("sanaq-tablet", "--home", str(home), "list")
    warned = subprocess.run([str(BIN / "sanaq-tablet"), "--home", str(home), "fill", "--entry", "1"],
                            capture_output=True, text=True, check=False)
    print(f"$ sanaq-tablet fill --entry 1  -> exit {warned.returncode}: {warned.stderr.strip()}")
    run("sanaq-tablet", "--home", str(home), "fill", "--entry", "1", "--anyway")
    for n, device in enumerate(tablets, start=1):
        for entry in range(2, ENTRIES + 1 - n):
            run("sanaq-tablet", "--home", str(RUN / "tablets" / device), "fill", "--entry", str(entry), quiet=True)

    step("online road: two tablets sync by themselves")
    for device in tablets[:2]:
        run("sanaq-tablet", "--home", str(RUN / "tablets" / device), "sync", "--max-per-batch", "10")

    step("USB road: TAB-0003 has no coverage; it exports a volume, the station pulls it")
    home = RUN / "tablets" / "TAB-0003"
    image = RUN / "TAB-0003-export.img"
    run("sanaq-tablet", "--home", str(home), "pack", "--max-per-batch", "10", quiet=True)
    run("sanaq-tablet", "--home", str(home), "export-usb", "--out", str(image))
    station_config = RUN / "usb-ingest.toml"
    station_config.write_text(
        f'station_bundle = "{RUN / "bundles" / "ST-ALMATY-01"}"\n'
        f'state_dir = "{RUN / "station-state"}"\n'
    )
    run("sanaq-usb-ingest", "pull", str(image), "--config", str(station_config))
    step("TAB-0003 syncs later: its sync state shows the USB road delivered everything")
    run("sanaq-tablet", "--home", str(home), "sync")

    step("what arrived in the census store")
    show_store(RUN / "gateway-state" / "census.db")
    step("one count: each listed respondent once, whatever the road")
    persons, cases = show_count(RUN / "gateway-state" / "census.db")
    summary, coverage = dashboard.run(dashboard.coverage())
    csv_path = RUN / "coverage.csv"
    csv_path.write_text(coverage, encoding="utf-8")
    print(f"dashboard: {summary['coverage']['enumerated']} of {summary['coverage']['listed']} listed respondents"
          f" enumerated, {summary['coverage']['review_open']} review case(s) open at {url}/staff/review")
    print(f"coverage CSV ({csv_path}):")
    for line in coverage.splitlines():
        if line.startswith(("level,", "institution,", "overall,")):
            print(f"  {line}")
    if cases != 1 or summary["coverage"]["persons"] != persons:
        raise SystemExit(f"demo: expected one review case and the dashboard's persons ({persons}) to agree")

    step("participation certificates: each institution's responsible worker prints them from the dashboard")
    out = RUN / "certificates"
    make_private_dir(out)
    for institution in institutions:
        pdf = dashboard.run(dashboard.certificates_pdf(institution))
        path = out / f"certificates-{institution}.pdf"
        path.write_bytes(pdf)
        print(f"{institution}: {path} ({len(pdf)} bytes, one signed certificate with its QR code per respondent)")
    print(f"participation certificates written to {out}; check one offline with"
          " `sanaq-keys verify-certificate QR-TEXT --authority DIR` or on the self-enumeration site's /certificate")
    return 0


def push_snapshot(url: str, snapshot: Path) -> None:
    """PUT the newly published snapshot to the gateway; its root signature is the authorisation."""
    from keys.tls import client_ssl_context  # noqa: PLC0415 - after setup, inside the venv

    request = urllib.request.Request(  # noqa: S310 - https URL built above
        f"{url}/v1/registry", data=snapshot.read_bytes(), method="PUT",
        headers={"Content-Type": "application/vnd.sanaq.snapshot"},
    )
    context = client_ssl_context(RUN / "gateway-keys" / "ca.crt")
    with urllib.request.urlopen(request, context=context, timeout=30) as answer:  # noqa: S310
        print(f"gateway accepted registry snapshot version {json.loads(answer.read())['version']}")


def show_store(db: Path) -> None:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "SELECT device_id, road, count(*), sum(sheets_accepted), sum(sheets_quarantined), min(seq), max(seq)"
            " FROM batches GROUP BY device_id, road ORDER BY device_id"
        ).fetchall()
        print(f"{'device':<10} {'road':<20} {'batches':>7} {'sheets':>6} {'quarant.':>8} {'seqs':>8}")
        for device, road, n, sheets, quarantined, lo, hi in rows:
            print(f"{device:<10} {road:<20} {n:>7} {sheets:>6} {quarantined:>8} {lo:>3}..{hi:<3}")
        custody = conn.execute("SELECT station_id, device_id, batch_count FROM custody").fetchall()
        for station, device, n in custody:
            print(f"custody: {station} pulled {n} batches of {device}")
        events = conn.execute("SELECT count(*) FROM security_events").fetchone()[0]
        print(f"security events: {events}")
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        print(f"integrity_check: {integrity}")
    print(f"census store: {db}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    started = time.monotonic()
    code = main()
    print(f"\ndemo finished in {time.monotonic() - started:.1f} s")
    sys.exit(code)
