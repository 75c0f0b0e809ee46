"""``make demo`` under a umask of 000 leaves nothing that holds keys or sheets readable by others.

The real demo runs (real gateway, tablets and USB station processes) into a
temporary ``$SANAQ_DEMO_DIR``; then every directory must be 0700 and every file
0600, except public material the key tools write 0644 on purpose (public keys,
certificates, signed snapshots and bundle metadata), which sits in 0700
directories anyway, and the station's ``status.json``, which the technicians'
group may read (``usb_ingest.status.STATUS_MODE``) and which holds no personal data.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from usb_ingest.status import STATUS_MODE

REPO = Path(__file__).resolve().parents[2]
PUBLIC = (".pub", ".crt", ".snapshot", "provisioning.json", "authority.json", "gateway.json", "certificate-key.doc")


def test_demo_run_is_private_under_umask_000(tmp_path: Path) -> None:
    run = tmp_path / "demo-run"
    env = {**os.environ, "SANAQ_DEMO_DIR": str(run)}
    done = subprocess.run([sys.executable, "-m", "scripts.demo"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300, check=False, preexec_fn=lambda: os.umask(0))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert (run / "gateway-state" / "census.db").exists()
    # the one count and the certificates (issue 17, item 6), as the demo prints them
    assert "review cases: 1\n" in done.stdout
    assert "AL-000001/00001: answered online and interviewed on a tablet, 1 person counted" in done.stdout
    pdfs = sorted((run / "certificates").glob("certificates-*.pdf"))
    assert [p.name for p in pdfs] == [f"certificates-AL-00000{n}.pdf" for n in (1, 2, 3)]
    assert all(p.read_bytes().startswith(b"%PDF") for p in pdfs)
    loose = {}
    for path in [run, *run.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        public = not path.is_dir() and path.name.endswith(PUBLIC) and mode == 0o644
        public = public or (path.name == "status.json" and mode == STATUS_MODE)
        if mode != (0o700 if path.is_dir() else 0o600) and not public:
            loose[str(path.relative_to(run))] = oct(mode)
    assert loose == {}
