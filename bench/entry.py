"""The command line every benchmark module shares: ``python -m bench.NAME [--quick] [--out FILE]``."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .provenance import Recorder

__all__ = ["bench_main"]


def bench_main(
    name: str,
    make_plan: Callable[[bool], Any],
    run: Callable[[Any, Path], dict[str, Any]],
    argv: list[str] | None = None,
) -> int:
    """Parse the arguments, run in a throwaway directory, write ``bench/results/NAME.json``.

    The result carries ``provenance`` (``bench.provenance``): source commit and
    diff, machine, load before and during the run, and this exact command.
    """
    args_in = sys.argv[1:] if argv is None else list(argv)
    p = argparse.ArgumentParser(prog=f"bench.{name}")
    p.add_argument("--quick", action="store_true", help="smaller and shorter runs")
    p.add_argument("--out", type=Path, default=Path(f"bench/results/{name}.json"))
    args = p.parse_args(args_in)
    plan = make_plan(args.quick)
    recorder = Recorder([sys.executable, "-m", f"bench.{name}", *args_in])
    recorder.start()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sanaq-bench-") as tmp:
        result = run(plan, Path(tmp))
    result["elapsed_s"] = time.monotonic() - started
    result["mode"] = "quick" if args.quick else "full"
    result["provenance"] = recorder.finish()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0
