"""Run every benchmark and rebuild docs/benchmarks.md: ``python -m bench.run_all [--quick] [--only NAME ...]``.

Each benchmark runs in its own interpreter (``python -m bench.<name>``), so one
cannot leave state (logging configuration, threads, open databases) for the
next; each writes ``bench/results/<name>.json``. Full mode takes about 6-8
minutes on 2 cores (the 5 M-sheet pre-fill writes ~30 GB to the temp
directory, removed at the end), ``--quick`` about 2.5.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from .fleet import REPO
from .report import RESULTS, write_report

__all__ = ["BENCHMARKS", "main"]

BENCHMARKS = ("gateway_ingest", "usb_pull", "scale_curve", "web_road")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.run_all", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller and shorter runs (~2.5 min)")
    p.add_argument("--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS))
    args = p.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    failed = []
    for name in args.only:
        began = time.monotonic()
        print(f"== bench.{name}{' (quick)' if args.quick else ''}", flush=True)
        argv_ = [sys.executable, "-m", f"bench.{name}", "--out", str(RESULTS / f"{name}.json")]
        if args.quick:
            argv_.append("--quick")
        code = subprocess.run(argv_, cwd=REPO, check=False).returncode
        print(f"== bench.{name}: exit {code} after {time.monotonic() - began:.0f} s", flush=True)
        if code != 0:
            failed.append(name)
    doc = write_report("quick" if args.quick else "full")
    print(f"== {doc} written; total {time.monotonic() - started:.0f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
