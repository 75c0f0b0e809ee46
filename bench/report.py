"""Render ``docs/benchmarks.md`` from ``bench/results/*.json``: ``python -m bench.report [--allow-mixed]``.

The page is regenerated whole by every run (history stays in git): where the
results come from (each file's provenance: commit and diff, machine, load,
command; see ``bench.provenance``), the targets with what was measured, one
section per benchmark, and what bounds each result now, written from the
run's own numbers and profiles. Every figure on the page comes from a result
file. Results of different commits, trees, machines or modes, results
measured while the tree changed, and results without provenance are refused
(exit 2, nothing written) unless ``--allow-mixed``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .fleet import REPO
from .provenance import command_line, identity
from .report_format import fmt, met, nproc, other_cores, profile_table
from .report_gateway import gateway_section, gateway_targets
from .report_instances import instances_section, scale_postgres_section
from .report_usb import usb_big_section, usb_durable_section, usb_targets

__all__ = ["ReportRefused", "check_results", "load_results", "render", "write_report"]

RESULTS = REPO / "bench" / "results"
DOC = REPO / "docs" / "benchmarks.md"
# Other programs using more cores than this on average during a run make the page say "loaded machine".
LOADED_OTHER_CORES = 0.25


def _targets(
    gw: dict[str, Any] | None,
    usb: dict[str, Any] | None,
    scale: dict[str, Any] | None,
    store_bytes: dict[str, Any] | None = None,
) -> list[str]:
    rows = ["| target | measured (and what bounds it) | |", "| --- | --- | --- |"]
    if gw:
        rows += gateway_targets(gw)
    if usb:
        r = usb["cold"]["ratio_pull_to_hash"]
        rows.append(f"| USB pull >= 0.5 x read+hash of the image | {r:.3f} x ({fmt(usb['cold']['pull_mb_per_s'], 1)} "
                    f"vs {fmt(usb['cold']['hash_mb_per_s'])} MB/s, cold cache) | {met(r >= 0.5)} |")
    if scale:
        t = scale["gateway_throughput_ratio_last_to_empty"]
        s = scale["store_throughput_ratio_last_to_empty"]
        last = scale["steps"][-1]["stored_sheets"]
        first_g, last_g = scale["steps"][0]["gateway"], scale["steps"][-1]["gateway"]
        rows.append(f"| no measurable slow-down, empty vs {last:,} sheets | store alone x{s:.2f}; gateway "
                    f"throughput x{t:.2f}, p99 x{scale['gateway_p99_ratio_last_to_empty']:.2f} (other programs' "
                    f"CPU {fmt(other_cores(first_g), 2)} -> {fmt(other_cores(last_g), 2)} cores) | "
                    f"store {met(s >= 0.9)} / "
                    f"gateway {met(t >= 0.9)} |")
    if store_bytes:
        r = store_bytes["ratio_sheets_rowid_to_without_rowid"]
        rows.append(f"| `sheets` as a rowid table about halves it (issue 19, item 8) | x{r:.2f} "
                    f"({fmt(store_bytes['layouts']['without_rowid']['sheets_bytes_per_sheet'])} -> "
                    f"{fmt(store_bytes['layouts']['rowid']['sheets_bytes_per_sheet'])} bytes per sheet) | "
                    f"{met(r <= 0.6)} |")
    return rows


def _usb(usb: dict[str, Any]) -> list[str]:
    cold, warm = usb["cold"], usb["warm"]
    out = [
        "## 2. USB pull",
        "",
        f"An export volume image of {usb['sheets']:,} household sheets ({usb['batches']} batches, "
        f"{usb['image_bytes'] / 1e6:.1f} MB, written by `tablet.usb_export`), pulled by "
        "`usb_ingest.station.Station.pull_volume` (manifest and envelope signatures verified, SHA-256 against "
        "the manifest, every batch durably spooled: temp file, fsync, read back, rename, fsync directory; "
        "custody record spooled) from the call to its return, against reading the same image file and "
        f"SHA-256-ing it. Median of {usb['plan']['repeats']} runs each; cold = image dropped from the page "
        f"cache first. Every pull complete with all batches spooled: {usb['all_complete']}.",
        "",
        "| | seconds | MB/s | sheets/s |",
        "| --- | ---: | ---: | ---: |",
        f"| pull, cold | {cold['pull_s']:.3f} | {fmt(cold['pull_mb_per_s'], 1)} | {fmt(cold['pull_sheets_per_s'])} |",
        f"| read + SHA-256, cold | {cold['hash_s']:.4f} | {fmt(cold['hash_mb_per_s'])} | "
        f"{fmt(cold['hash_sheets_per_s'])} |",
        f"| pull, warm | {warm['pull_s']:.3f} | {fmt(warm['pull_mb_per_s'], 1)} | {fmt(warm['pull_sheets_per_s'])} |",
        f"| read + SHA-256, warm | {warm['hash_s']:.4f} | {fmt(warm['hash_mb_per_s'])} | "
        f"{fmt(warm['hash_sheets_per_s'])} |",
        f"| user-space FAT read + SHA-256 of every file (no verify, no spool), warm | "
        f"{usb['fat_read_warm']['seconds']:.4f} | {fmt(usb['fat_read_warm']['mb_per_s'])} | - |",
        "",
        f"Ratio pull / read+hash: **{cold['ratio_pull_to_hash']:.3f}** cold, {warm['ratio_pull_to_hash']:.3f} warm.",
        "",
        "### What bounds the USB pull now",
        "",
    ]
    if usb.get("profile"):
        out += profile_table(usb["profile"], "py-spy profile of one warm pull (stacks under `pull_volume`)")
    prof = usb.get("profile")
    if prof and prof.get("self"):
        frame, pct = prof["self"][0]
        spool = sum(p for f, p in prof["self"] if f.startswith(("Spool.", "_fsync_dir")))
        out += [
            f"In this run's profile the busiest line is `{frame}` ({fmt(pct, 1)}% of samples), and lines of the "
            f"spool (`Spool.*`, `_fsync_dir`: write, flush, read back and rename each batch) take {fmt(spool, 1)}% "
            f"of the samples, against {fmt(usb['fat_read_warm']['mb_per_s'])} MB/s for the user-space FAT read "
            "alone: the spool's durability, not the parser, bounds the pull.",
            "",
        ]
    else:
        out += ["No profile in this run (py-spy missing), so nothing here says what bounds the pull.", ""]
    return out


def _scale(scale: dict[str, Any]) -> list[str]:
    plan = scale["plan"]
    out = [
        "## 3. Scale curve",
        "",
        "One SQLite store grown step by step by direct bulk INSERTs shaped like real rows (real envelopes "
        "and sheet bodies, 10 sheets per batch, 30,000 devices interleaved; `synchronous=OFF` only for the "
        "pre-fill, the gateway reopens it durably). At each step: the real gateway process over plain HTTP, closed "
        "loop at "
        f"{plan['concurrency']} connections ({plan['duration_s']:.0f} s), and the store alone in-process "
        f"(`find_batch` + `ingest` of {plan['store_items']:,} batches by {plan['concurrency']} concurrent callers: "
        "the store's own cost, which the CPU-bound gateway would otherwise hide). The bench's rows are removed "
        "after each step.",
        "",
        "| stored sheets | DB size GB | pre-fill s | gateway batches/s | p50 ms | p99 ms | errors "
        "| gateway CPU ms/batch | other CPU | store alone batches/s (runs) | store p99 ms | mean commit group |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for st in scale["steps"]:
        g, s = st["gateway"], st["store_only"]
        cost = 1000 * g["server_cpu_share"] / g["batches_per_s"] if g.get("server_cpu_share") else None
        runs = ", ".join(fmt(x) for x in s.get("repeats_batches_per_s", []))
        out.append(
            f"| {st['stored_sheets']:,} | {st['db_bytes'] / 1e9:.2f} | {fmt(st['prefill']['seconds'])} | "
            f"{fmt(g['batches_per_s'])} | {fmt(g['latency_ms']['p50'])} | {fmt(g['latency_ms']['p99'])} | "
            f"{g['errors']} | {fmt(cost, 1)} | {fmt(other_cores(g), 2)} | {fmt(s['batches_per_s'])} ({runs}) | "
            f"{fmt(s['latency_ms']['p99'])} | {fmt(s['mean_group'])} |"
        )
    def cost(g: dict[str, Any]) -> float | None:
        return 1000 * g["server_cpu_share"] / g["batches_per_s"] if g.get("server_cpu_share") else None

    g0, g1 = scale["steps"][0]["gateway"], scale["steps"][-1]["gateway"]
    out += [
        "",
        f"Gateway CPU per batch: {fmt(cost(g0), 1)} ms empty, {fmt(cost(g1), 1)} ms at the last step, with other "
        f"programs using {fmt(other_cores(g0), 2)} and {fmt(other_cores(g1), 2)} cores of the "
        f"{nproc(scale) or '?'} at those times"
        + (
            ": the machine was quiet, so a difference here is the store's own growth (index pages that no "
            "longer fit the caches), not outside load."
            if max(other_cores(g0) or 0, other_cores(g1) or 0) < 0.1
            else ": on this shared machine a difference of that size is not separated from the outside load "
            "(the CPUs may be SMT siblings, so a busy neighbour also slows the gateway's own core); a run on "
            "a quiet machine settles it."
        ),
        "",
        f"Last step / empty: gateway throughput x{scale['gateway_throughput_ratio_last_to_empty']:.2f}, "
        f"gateway p99 x{scale['gateway_p99_ratio_last_to_empty']:.2f}, store alone "
        f"x{scale['store_throughput_ratio_last_to_empty']:.2f} (target: no measurable slow-down, read here as "
        "within 10%).",
        "",
        "What the ingest path does to the store is size-independent by construction: per batch, one lookup "
        "in the (device_id, seq) unique index, then appends to `batches`, `sheets` (primary keys grow "
        "monotonically) and `nonces`. The (device_id, seq) index takes its inserts at one leaf per active "
        "tablet (tablets interleave) and its B-tree depth grows with log n; the writer connection keeps a "
        "32 MiB page cache (SQLite's default is 2 MiB; 256 MiB was measured no faster at 2 M sheets and "
        "kept its pages resident, ADR 0014) and `batch_hash` carries no index of its own (the "
        "(device_id, seq) key already makes a batch unique). The staff dashboard of a gateway process "
        "tallies the store only after a staff page asked it, and rebuilds only while a live stream is open "
        "(none is open here). When a step above differs, look at its 'other CPU' first: the gateway is "
        "CPU-bound and gets less when other programs run.",
        "",
    ]
    last = scale["steps"][-1]
    if last["stored_sheets"]:
        out += [
            f"**Store size.** {last['stored_sheets']:,} sheets take {last['db_bytes'] / 1e9:.2f} GB: "
            f"{last['db_bytes'] / last['stored_sheets']:,.0f} bytes per stored sheet (whole database file, "
            "envelopes, indexes and all).",
            "",
        ]
    if last["stored_sheets"] < 5_000_000:
        out += [f"Quick mode stops at {scale['steps'][-1]['stored_sheets']:,} sheets; the full run goes to 5 M.", ""]
    return out


def _store_bytes(sb: dict[str, Any]) -> list[str]:
    rowid, worow, mig = sb["layouts"]["rowid"], sb["layouts"]["without_rowid"], sb["migration"]
    n = sb["plan"]["sheets"]
    out = [
        "## 4. Store layout: bytes per sheet",
        "",
        f"`bench.store_bytes`: two SQLite census stores made by the gateway's schema and pre-filled with the same "
        f"{n:,} sheets (real envelopes and sheet bodies, {fmt(sb['workload']['mean_envelope_bytes'])} bytes per "
        "envelope of 10): `sheets` as an ordinary rowid table (census store migration 4, ADR 0009) and as "
        "`WITHOUT ROWID` (stores made before 2026-11-26). Sizes from SQLite's `dbstat` "
        f"(SQLite {sb['sqlite_version']}).",
        "",
        "| layout | `sheets` + its indexes, bytes per sheet | of which | whole file, bytes per sheet |",
        "| --- | ---: | --- | ---: |",
    ]
    for name, lay in (("ordinary rowid table (now)", rowid), ("`WITHOUT ROWID` (before)", worow)):
        parts = ", ".join(f"`{k}` {fmt(v / n)}" for k, v in lay["objects"].items())
        out.append(f"| {name} | {fmt(lay['sheets_bytes_per_sheet'])} | {parts} | {fmt(lay['db_bytes_per_sheet'])} |")
    out += [
        "",
        f"Rowid / `WITHOUT ROWID`: **{sb['ratio_sheets_rowid_to_without_rowid']:.2f}** for `sheets` and its "
        f"indexes, {sb['ratio_db_rowid_to_without_rowid']:.2f} for the whole file.",
        "",
        "Migration 4 on the `WITHOUT ROWID` store (what the first start after the update does): "
        f"{mig['seconds']:.1f} s for {n:,} sheets ({fmt(mig['sheets_per_s'])} sheets/s); the file stays "
        f"{mig['db_bytes_after'] / 1e6:,.0f} MB (freed pages are reused by new rows) until a `VACUUM` makes it "
        f"{mig['db_bytes_after_vacuum'] / 1e6:,.0f} MB.",
        "",
    ]
    return out


def _web_road(w: dict[str, Any]) -> list[str]:
    web, base, store = w["web_road"], w["gateway_ingest_same_batches"], w["store"]
    return [
        "## Web road (online self-enumeration)",
        "",
        f"`bench.web_road`: {w['plan']['respondents']} respondents, {w['plan']['concurrency']} at a time, each a "
        "browser-less HTTP client (code, five question pages, submit) against the real `sanaq-selfenum` and "
        "`sanaq-gateway` processes; baseline: the same number of one-sheet batches of the same web id sent "
        "straight to the gateway, two in flight (its per-device admission limit).",
        "",
        "| | per second | p50 ms | p99 ms |",
        "| --- | ---: | ---: | ---: |",
        f"| finished questionnaires, end to end (latency: the submit request) | {fmt(web['per_s'], 1)} | "
        f"{fmt(web['submit_latency_ms']['p50'])} | {fmt(web['submit_latency_ms']['p99'])} |",
        f"| gateway batch ingest, same batches | {fmt(base['per_s'], 1)} | {fmt(base['latency_ms']['p50'])} | "
        f"{fmt(base['latency_ms']['p99'])} |",
        "",
        f"Store check: {store['web_batches']} web batches, {store['distinct_seqs']} distinct, "
        f"{store['quarantined']} quarantined ({'ok' if store['ok'] else 'FAILED'}). One web id is one device "
        "to the gateway; more throughput comes from more web services (each its own id) behind the proxy.",
        "",
    ]


class ReportRefused(Exception):
    """The results cannot share one page (mixed provenance, or none); ``problems`` says why, one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def check_results(results: dict[str, dict[str, Any]], *, allow_mixed: bool = False) -> list[str]:
    """Why these results must not share a page: missing provenance, code changed mid-run, mixed runs.

    Raises ``ReportRefused`` unless ``allow_mixed``; with it, returns the same
    lines so the page can say what was mixed.
    """
    problems = []
    groups: dict[tuple[Any, ...], list[str]] = {}
    for name, r in sorted(results.items()):
        prov = r.get("provenance")
        if not prov:
            problems.append(f"{name}: no provenance recorded (written before bench/provenance.py); "
                            f"re-run `python -m bench.{name}`")
            continue
        if prov.get("changed_during_run"):
            problems.append(f"{name}: the source tree changed while it ran")
        groups.setdefault((*identity(prov), r.get("mode")), []).append(name)
    if len(groups) > 1:
        kinds = "; ".join(f"{', '.join(names)}: {_describe_source(results[names[0]])}, {results[names[0]].get('mode')}"
                          f" mode, {_describe_machine(results[names[0]]['provenance'])}"
                          for names in groups.values())
        problems.append(f"results of different runs (commit, tree, machine or mode): {kinds}")
    if problems and not allow_mixed:
        raise ReportRefused(problems)
    return problems


def _short(commit: str | None) -> str:
    return commit[:12] if commit else "unknown"


def _describe_source(r: dict[str, Any]) -> str:
    prov = r.get("provenance")
    if not prov:
        return "no provenance"
    src = prov["source"]
    text = f"commit {_short(src['commit'])}"
    if src.get("dirty"):
        text += f" with uncommitted changes (diff sha256 {src['diff_sha256'][:16]})"
    gw = prov.get("gateway_source")
    if gw:
        text += f"; gateway from {gw['tree']} at {_short(gw['commit'])}" + (
            f" with uncommitted changes (diff sha256 {gw['diff_sha256'][:16]})" if gw.get("dirty") else ""
        )
    return text


def _describe_machine(prov: dict[str, Any]) -> str:
    m = prov["machine"]
    return (f"{m['nproc']} CPUs usable ({m['cpus_online']} online), {m['cpu_model']}, {m['ram_gib']} GiB RAM, "
            f"kernel {m['kernel']}, {m['implementation']} {m['python']}")


def _provenance(results: dict[str, dict[str, Any]], problems: list[str]) -> list[str]:
    """The page's header: where the figures come from, one row per result file."""
    with_prov = {n: r for n, r in sorted(results.items()) if r.get("provenance")}
    out: list[str] = []
    if problems:
        out += ["**Mixed results (`--allow-mixed`).** These results do not come from one run; compare them with "
                "care:", "", *[f"- {p}" for p in problems], ""]
    if with_prov:
        first = next(iter(with_prov.values()))
        out += [
            "| provenance | |",
            "| --- | --- |",
            f"| source | {_describe_source(first)} |",
            f"| machine | {_describe_machine(first['provenance'])} |",
            "",
        ]
    out += [
        "| result | mode | source | command | started (UTC) | s | load before: 1-min avg, busy cores "
        "| during: busy / this bench / other cores, max 1-min avg |",
        "| --- | --- | --- | --- | --- | ---: | --- | --- |",
    ]
    for name, r in sorted(results.items()):
        prov = r.get("provenance")
        if not prov:
            out.append(f"| `{name}.json` | {r.get('mode', '?')} | no provenance recorded | - | - | - | - | - |")
            continue
        before, during = prov["load"]["before"], prov["load"]["during"]
        cmd = f"`{command_line(prov['command']['argv'][1:])}`" if prov["command"]["argv"] else "?"
        if prov["command"].get("parent"):
            cmd += f" (from `{prov['command']['parent']}`)"
        out.append(
            f"| `{name}.json` | {r.get('mode', '?')} | {_describe_source(r)} | {cmd} | {prov['started_at']} | "
            f"{fmt(prov['elapsed_s'])} | {before['loadavg_1_5_15'][0]:.2f}, {fmt(before['busy_cores'], 2)} | "
            f"{fmt(during['busy_cores_mean'], 2)} / {fmt(during['own_cores_mean'], 2)} / "
            f"{fmt(during['other_cores_mean'], 2)}, {during['loadavg_1_max']:.2f} |"
        )
    out.append("")
    modes = {r.get("mode") for r in results.values()}
    if "quick" in modes:
        out += ["**Quick run** (`--quick`): smaller workloads and shorter windows than the full run "
                "(`make bench`); its figures are not comparable with a full run's.", ""]
    others = [p["load"]["during"]["other_cores_mean"] for p in (r["provenance"] for r in with_prov.values())
              if p["load"]["during"]["other_cores_mean"] is not None]
    if others and max(others) > LOADED_OTHER_CORES:
        nproc = next(iter(with_prov.values()))["provenance"]["machine"]["nproc"]
        out += [f"**Loaded machine**: other programs used up to {max(others):.2f} of the {nproc} CPUs on average "
                "during a benchmark (column 'other' above), so throughput here is lower, and latency higher, than "
                "on a quiet machine.", ""]
    return out


def render(results: dict[str, dict[str, Any]], problems: list[str] | None = None) -> str:
    """The page for ``results`` (``check_results`` first: this does not refuse anything)."""
    gw, usb, scale = results.get("gateway_ingest"), results.get("usb_pull"), results.get("scale_curve")
    out = [
        "# Benchmarks",
        "",
        "Generated by `python -m bench.report` from `bench/results/*.json` (`python -m bench.run_all` runs the "
        "benchmarks, then the report). Every run overwrites this page; its history is in git. Everything runs on "
        "127.0.0.1 in throwaway directories; load generator and servers share the machine's CPUs. Every figure "
        "below comes from the result files named here.",
        "",
        *_provenance(results, problems or []),
        "## Targets",
        "",
        *_targets(gw, usb, scale, results.get("store_bytes")),
        *usb_targets(results.get("usb_durable"), results.get("usb_big")),
        "",
    ]
    if gw:
        out += gateway_section(gw)
    if usb:
        out += _usb(usb)
    if results.get("usb_durable"):
        out += usb_durable_section(results["usb_durable"])
    if results.get("usb_big"):
        out += usb_big_section(results["usb_big"])
    if scale:
        out += _scale(scale)
        if scale.get("postgres"):
            out += scale_postgres_section(scale)
    if results.get("instances"):
        out += instances_section(results["instances"])
    if results.get("store_bytes"):
        out += _store_bytes(results["store_bytes"])
    if results.get("web_road"):
        out += _web_road(results["web_road"])
    took = sum(r.get("elapsed_s", 0.0) for r in results.values())
    out += [
        "## Running",
        "",
        "`make bench` (full) or `make bench QUICK=1` (`python -m bench.run_all --quick`), from the repository "
        f"root; the benchmarks on this page took {took:,.0f} s together. "
        "One benchmark: `python -m "
        "bench.gateway_ingest|usb_pull|usb_durable|usb_big|scale_curve|instances|web_road|store_bytes [--quick]`, "
        "then "
        "`python -m bench.report` to rebuild this page; it refuses results of different commits, trees or "
        "machines, or without provenance, unless given `--allow-mixed`. py-spy (optional) adds the profiles. "
        "`SANAQ_BENCH_GATEWAY_SRC=DIR` runs the gateway from another source tree (A/B of a change; recorded in "
        "the provenance).",
        "",
    ]
    return "\n".join(out)


def load_results(results_dir: Path = RESULTS) -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(results_dir.glob("*.json"))}


def write_report(doc: Path = DOC, results_dir: Path = RESULTS, *, allow_mixed: bool = False) -> Path:
    """Render ``results_dir`` into ``doc``; raises ``ReportRefused`` (and writes nothing) for mixed results."""
    results = load_results(results_dir)
    problems = check_results(results, allow_mixed=allow_mixed)
    doc.write_text(render(results, problems))
    return doc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="bench.report",
        description="Render docs/benchmarks.md from bench/results/*.json. Exit 0 written, 2 refused (the reasons "
        "on stderr, the page untouched).",
    )
    p.add_argument("--results", type=Path, default=RESULTS, help="directory of result files (bench/results)")
    p.add_argument("--doc", type=Path, default=DOC, help="page to write (docs/benchmarks.md)")
    p.add_argument(
        "--allow-mixed",
        action="store_true",
        help="render results of different commits, trees, machines or modes, or without provenance, on one "
        "page (the page then lists what is mixed)",
    )
    args = p.parse_args(argv)
    try:
        print(write_report(args.doc, args.results, allow_mixed=args.allow_mixed))
    except ReportRefused as e:
        for line in e.problems:
            print(f"bench.report: refused: {line}", file=sys.stderr)
        print("bench.report: nothing written; re-run the benchmarks or pass --allow-mixed", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
