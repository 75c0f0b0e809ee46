"""Reproducible benchmarks, each measuring the project against a baseline in the same run.

``python -m bench.run_all [--quick]`` runs them all, writes ``bench/results/*.json``
and regenerates ``docs/benchmarks.md``. Everything runs on 127.0.0.1 in
throwaway directories; nothing here is imported by the programs.
"""

__all__: list[str] = []
