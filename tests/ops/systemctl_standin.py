"""A stand-in for ``systemctl`` in the guide's blocks: starts, restarts and stops a real sanaq-gateway process.

Only what the guide's blocks call: ``enable --now``/``start``/``restart``/``stop`` of
``sanaq-gateway`` and ``daemon-reload`` (nothing to do here). The process runs
as ``LoadCredential=`` would hand it its keys: ``$CREDENTIALS_DIRECTORY`` is
``$KEYS``, read at each start. ``start`` returns once the gateway printed its
listening line (READY=1 under systemd), or fails with the gateway's output.
State (pid, logs) lives in ``$OPS_TEST_STATE``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

_START_DEADLINE_S = 60.0
_STOP_DEADLINE_S = 45.0


def _state() -> Path:
    return Path(os.environ["OPS_TEST_STATE"])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "\nState:\tZ" in status.read_text())


def stop() -> None:
    pid_file = _state() / "gateway.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text())
    pid_file.unlink()
    if not _alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + _STOP_DEADLINE_S
    while _alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            sys.exit("systemctl stand-in: the gateway did not stop on SIGTERM")
        time.sleep(0.05)


def start() -> None:
    state = _state()
    n = len(list(state.glob("gateway-*.err")))
    err = state / f"gateway-{n}.err"
    env = dict(os.environ, CREDENTIALS_DIRECTORY=os.environ["KEYS"])
    with (state / f"gateway-{n}.log").open("wb") as out, err.open("wb") as errf:
        proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--config", os.environ["CONFIG"]],
                                stdout=out, stderr=errf, env=env, start_new_session=True)
    (state / "gateway.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + _START_DEADLINE_S
    while b"sanaq-gateway: listening" not in err.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"systemctl stand-in: sanaq-gateway did not start:\n{err.read_text()}")
        time.sleep(0.05)


def main(argv: list[str]) -> None:
    words = [a for a in argv if not a.startswith("--")]
    if words == ["daemon-reload"]:
        return
    if len(words) != 2 or words[1] not in ("sanaq-gateway", "sanaq-gateway.service"):
        sys.exit(f"systemctl stand-in: not supported: {argv}")
    verb = words[0]
    if verb == "enable" and "--now" not in argv:
        return
    if verb not in ("stop", "restart", "start", "enable"):
        sys.exit(f"systemctl stand-in: not supported: {argv}")
    stop()
    if verb != "stop":
        start()


if __name__ == "__main__":
    main(sys.argv[1:])
