"""Run every benchmark and rebuild docs/benchmarks.md: ``python -m bench.run_all [--quick] [--only NAME ...]``.

Each benchmark runs in its own interpreter (``python -m bench.<name>``), so one
cannot leave state (logging configuration, threads, open databases) for the
next; each writes ``bench/results/<name>.json`` with its provenance
(``bench.provenance``; the result names this command as its parent). The old
result of a benchmark is removed before it runs, so a failed benchmark leaves
no stale figures; results of benchmarks not run (``--only``) stay, and the
report refuses them when they come from another commit unless
``--allow-mixed``. The full run's 5 M-sheet pre-fill writes ~30 GB to the
temp directory (removed at the end); ``--quick`` runs smaller workloads for
shorter windows.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time

from .fleet import REPO
from .provenance import PARENT_ENV
from .report import RESULTS, ReportRefused, write_report

__all__ = ["BENCHMARKS", "main"]

BENCHMARKS = ("gateway_ingest", "usb_pull", "scale_curve", "web_road", "store_bytes", "usb_durable", "usb_big",
              "instances")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.run_all", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller and shorter runs")
    p.add_argument("--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS))
    p.add_argument("--allow-mixed", action="store_true",
                   help="let the report combine these results with older ones of another commit (bench.report)")
    args = p.parse_args(argv)
    env = {**os.environ, PARENT_ENV: shlex.join(["python", "-m", "bench.run_all", *(sys.argv[1:] if argv is None
                                                                                    else argv)])}
    RESULTS.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    failed = []
    for name in args.only:
        began = time.monotonic()
        print(f"== bench.{name}{' (quick)' if args.quick else ''}", flush=True)
        out = RESULTS / f"{name}.json"
        out.unlink(missing_ok=True)
        argv_ = [sys.executable, "-m", f"bench.{name}", "--out", str(out)]
        if args.quick:
            argv_.append("--quick")
        code = subprocess.run(argv_, cwd=REPO, env=env, check=False).returncode
        print(f"== bench.{name}: exit {code} after {time.monotonic() - began:.0f} s", flush=True)
        if code != 0:
            failed.append(name)
    try:
        doc = write_report(allow_mixed=args.allow_mixed)
    except ReportRefused as e:
        for line in e.problems:
            print(f"== bench.report refused: {line}", file=sys.stderr)
        return 1
    print(f"== {doc} written; total {time.monotonic() - started:.0f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
