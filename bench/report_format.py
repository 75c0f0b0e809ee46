"""Number formatting and derived figures shared by the sections of ``docs/benchmarks.md``."""

from __future__ import annotations

from typing import Any

__all__ = ["fmt", "met", "nproc", "other_cores", "profile_table"]


def fmt(x: float | None, digits: int = 0) -> str:
    if x is None:
        return "-"
    return f"{x:,.{digits}f}"


def met(ok: bool | None) -> str:
    return "-" if ok is None else ("**met**" if ok else "**missed**")


def nproc(result: dict[str, Any]) -> int | None:
    """CPUs the benchmark could use, from its provenance (None when it has none)."""
    n = result.get("provenance", {}).get("machine", {}).get("nproc")
    return int(n) if n is not None else None


def other_cores(r: dict[str, Any]) -> float | None:
    """Cores used by other programs during the window (the machine's busy time less server and generator)."""
    parts = (r.get("machine_cpu_share"), r.get("server_cpu_share"), r.get("generator_cpu_share"))
    if any(x is None for x in parts):
        return None
    return max(0.0, parts[0] - parts[1] - parts[2])  # type: ignore[operator]


def profile_table(prof: dict[str, Any], title: str) -> list[str]:
    out = [f"{title} ({prof['samples']:,} samples; self = innermost frame with its line, inclusive = anywhere "
           "on the stack):", "", "| self | % | | inclusive | % |", "| --- | ---: | --- | --- | ---: |"]
    own, inc = prof["self"][:10], prof["inclusive"][:10]
    for i in range(max(len(own), len(inc))):
        a = own[i] if i < len(own) else ("", None)
        b = inc[i] if i < len(inc) else ("", None)
        out.append(f"| `{a[0]}` | {fmt(a[1], 1)} | | `{b[0]}` | {fmt(b[1], 1)} |")
    return [*out, ""]
