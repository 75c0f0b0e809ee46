"""The gateway-ingest part of ``docs/benchmarks.md``: its targets (met/missed, with what bounds each) and section.

Reads ``bench/results/gateway_ingest.json`` as ``bench.gateway_ingest`` writes
it: per transport (``tls`` as deployed, ``plain``) a list of levels, each with
the bare aiohttp server and the gateway under the same generator; the paced
(open-loop) TLS run; the in-process crypto ceiling. Every figure printed is one
of those or arithmetic on them.
"""

from __future__ import annotations

from typing import Any

from .report_format import fmt, met, nproc, other_cores, profile_table

__all__ = ["gateway_section", "gateway_targets", "workers_target"]

# A process using at least this share of a core is taken as bound by its CPU.
_CPU_BOUND = 0.85


def _cpu_ms(r: dict[str, Any]) -> float | None:
    """Server CPU milliseconds per batch in the window."""
    share, rate = r.get("server_cpu_share"), r.get("batches_per_s")
    return 1000 * share / rate if share and rate else None


def bound_by(r: dict[str, Any], cpus: int | None, processes: int = 1) -> str:
    """What limited a closed-loop run, from the CPU it and its neighbours used in the window."""
    server, gen, machine = r.get("server_cpu_share"), r.get("generator_cpu_share"), r.get("machine_cpu_share")
    other = other_cores(r)
    if server is None:
        return "not determined (too few CPU samples in the window)"
    if server is not None and server >= _CPU_BOUND * processes:
        loop = " (one process, one event loop)" if processes == 1 else ""
        return f"the server's CPU: {server:.2f} cores{loop}, {fmt(_cpu_ms(r), 2)} ms per batch"
    if machine is not None and cpus and machine >= _CPU_BOUND * cpus:
        return (f"the machine's {cpus} CPUs: server {fmt(server, 2)}, generator {fmt(gen, 2)}, "
                f"other programs {fmt(other, 2)} cores")
    if gen is not None and gen >= _CPU_BOUND:
        return f"the load generator's CPU ({gen:.2f} cores)"
    return (f"no CPU (server {fmt(server, 2)}, generator {fmt(gen, 2)} cores): waiting, e.g. on the store's "
            "commits")


def _budget_left(bare: dict[str, Any], steps_ms: float, crypto_ms: float) -> str:
    """What the 0.5 x crypto-ceiling budget leaves once bare aiohttp's own CPU per request and the steps are paid."""
    bare_ms = _cpu_ms(bare)
    if bare_ms is None:
        return ""
    left = 2 * crypto_ms - steps_ms - bare_ms
    return (f". Bare aiohttp alone spends {bare_ms:.2f} ms of server CPU per request over the same TLS; with the "
            f"steps that leaves {left:.2f} ms per batch for the store's commit, logging and everything else")


def _levels(gw: dict[str, Any], transport: str) -> list[dict[str, Any]]:
    levels: list[dict[str, Any]] = gw["transports"][transport]["levels"]
    return levels


def gateway_targets(gw: dict[str, Any]) -> list[str]:
    """Rows of the targets table (| target | measured, and what bounds it | met? |)."""
    cpus = nproc(gw)
    procs = gw.get("gateway_processes", 1)
    tls = _levels(gw, "tls")
    at = tls[0]
    g, bare = at["gateway"], at["http_ceiling"]
    n = at["concurrency"]
    ratio = at["ratio_gateway_to_http_ceiling"]
    ceiling = gw["crypto_ceiling"]
    steps_rate = ceiling["with_receipt_and_schema_batches_per_s_per_core"]  # verify, open, validate, sign
    steps_ms = 1000 / steps_rate
    rows = [
        f"| gateway >= 0.5 x bare aiohttp, TLS, {n} connections (same TLS, runner settings, requests, generator) "
        f"| {fmt(ratio, 3)} x ({fmt(g['batches_per_s'])} vs {fmt(bare['batches_per_s'])} batches/s). Gateway "
        f"bound by {bound_by(g, cpus, procs)}; bare server bound by {bound_by(bare, cpus)}. Out of reach here: "
        f"the per-batch steps alone (verify, open, validate, sign receipt; {steps_ms:.2f} ms in-process) allow "
        f"{fmt(steps_rate)} batches/s per core, {steps_rate / bare['batches_per_s']:.2f} x the bare rate; half "
        f"the bare rate needs {0.5 * bare['batches_per_s'] / steps_rate:.1f} cores of those steps alone "
        f"(this machine: {cpus} CPUs, the generator included) "
        f"| {met(None if ratio is None else ratio >= 0.5)} |",
    ]
    crypto = ceiling["crypto_batches_per_s_per_core"]
    xc = at.get("ratio_gateway_to_crypto_ceiling_x_cores")
    cores = at.get("cores_used")
    crypto_ms = ceiling["crypto_us_per_batch"] / 1000
    cpu_ms = _cpu_ms(g)
    rest = None if cpu_ms is None else f"{cpu_ms - steps_ms:.2f}"
    rows.append(
        f"| gateway >= 0.5 x (crypto ceiling per core x cores used), TLS, {n} connections | {fmt(xc, 3)} x "
        f"({fmt(g['batches_per_s'])} vs {fmt(crypto)} x {fmt(cores, 2)} cores). The gateway spends "
        f"{fmt(cpu_ms, 2)} ms of CPU per batch, of which the cryptography is {crypto_ms:.2f} ms, the per-batch "
        f"steps {steps_ms:.2f} ms (cryptography, sheet validation, receipt) and the rest, {rest} ms, TLS, HTTP "
        f"and the store's commits; 0.5 x needs {2 * crypto_ms:.2f} ms in all{_budget_left(bare, steps_ms, crypto_ms)} "
        f"| {met(None if xc is None else xc >= 0.5)} |"
    )
    paced = gw["paced"]
    p99 = paced["latency_ms"]["p99"]
    rows.append(
        f"| open-loop p99 <= 50 ms at half the saturated rate, TLS, {paced['concurrency']} connections "
        f"| {fmt(p99, 1)} ms at {fmt(paced['offered_rate'])} batches/s offered ({failures(paced)} errors, "
        f"{paced.get('shed', 0)} shed) | {met(p99 <= 50 and failures(paced) == 0 and not paced.get('shed'))} |"
    )
    top = max(tls, key=lambda x: x["concurrency"])
    rss = top["gateway"]["server_peak_rss_mb"]
    reached = top["concurrency"] >= 1024
    rows.append(f"| peak RSS <= 250 MB per process at 1,024 connections, TLS | {fmt(rss)} MB (VmHWM) at "
                f"{top['concurrency']:,} connections{'' if reached else ' (1,024 not measured)'} "
                f"| {met(rss <= 250 if reached else None)} |")
    rows.append(workers_target(gw))
    runs_all = [x["gateway"] for t in ("tls", "plain") for x in _levels(gw, t)] + [paced]
    errors = sum(failures(r) for r in runs_all)
    shed = sum(r.get("shed", 0) for r in runs_all)
    requests = sum(r["requests"] for r in runs_all)
    statuses: dict[str, int] = {}
    for r in runs_all:
        for code, count in r["statuses"].items():
            if code != "200":
                statuses[code] = statuses.get(code, 0) + count
    what = ", ".join(f"{count:,} x {code}" for code, count in sorted(statuses.items()))
    shed_text = f"; {shed:,} answers were 503 + Retry-After (load shedding), waited out and sent again"
    rows.append(f"| zero errors | {errors:,} errors in {requests:,} gateway requests (every run)"
                f"{f'; final answers other than 200: {what}' if what else ''}{shed_text if shed else ''}"
                f" | {met(errors == 0)} |")
    runs = [x["gateway"] for t in ("tls", "plain") for x in _levels(gw, t)] + [paced]
    durable = all(r["store"]["db_equals_acknowledged"] and r["store"]["receipts_valid"] == r["store"]
                  ["receipts_checked"] for r in runs)
    rows.append(f"| receipts only after durable commit | after SIGKILL, stored rows == 200 answers in every run; "
                f"{sum(r['store']['receipts_valid'] for r in runs)} sampled receipts valid | {met(durable)} |")
    plain = _levels(gw, "plain")
    if plain:
        p = plain[0]
        rows.append(f"| (plain HTTP, second row, not a target) gateway / bare aiohttp at {p['concurrency']} "
                    f"connections | {fmt(p['ratio_gateway_to_http_ceiling'], 3)} x "
                    f"({fmt(p['gateway']['batches_per_s'])} vs {fmt(p['http_ceiling']['batches_per_s'])} "
                    f"batches/s) | - |")
    return rows


def workers_target(gw: dict[str, Any]) -> str:
    """The row "throughput per core no lower with N processes than with one" from the ``workers`` run."""
    target = "| throughput per core no lower with N processes than with one"
    w = gw.get("workers")
    if not w:
        return f"{target} | not measured: this result has no run with server.workers > 1 | - |"
    n = w["n"]
    if n < 2:
        return f"{target} | not measured: the machine gives this process {n} CPU | - |"
    one, many = w["one"], w["many"]
    per_one, per_many = w["batches_per_s_per_core_one"], w["batches_per_s_per_core_many"]
    ratio = w["per_core_ratio"]
    pairs = w.get("pair_ratios") or []
    of_pairs = (f" (the median of {len(pairs)} alternated pairs: " + ", ".join(fmt(r, 3) for r in pairs) + ")"
                if len(pairs) > 1 else "")
    return (
        f"{target} (TLS, {w['concurrency']} connections, workers = {n} vs 1) | {fmt(per_many)} vs {fmt(per_one)} "
        f"batches/s per core used ({fmt(ratio, 3)} x{of_pairs}): {fmt(many['batches_per_s'])} batches/s on "
        f"{fmt(many['server_cpu_share'], 2)} cores vs {fmt(one['batches_per_s'])} on "
        f"{fmt(one['server_cpu_share'], 2)}; {many['errors']} errors. With N workers bound by "
        f"{bound_by(many, nproc(gw), n)} | {met(None if ratio is None else ratio >= 1.0)} |"
    )


def _run_row(transport: str, n: int, name: str, r: dict[str, Any]) -> str:
    lat = r["latency_ms"]
    return (
        f"| {transport} | {n} | {name} | {fmt(r['batches_per_s'])} | {fmt(r['sheets_per_s'])} | "
        f"{fmt(lat['p50'], 1)} | {fmt(lat['p95'], 1)} | {fmt(lat['p99'], 1)} | {failures(r)}"
        f"{f' ({shed:,} shed)' if (shed := r.get('shed', 0)) else ''} | {fmt(r['server_peak_rss_mb'])} | "
        f"{fmt(r['server_cpu_share'], 2)} | {fmt(_cpu_ms(r), 2)} | "
        f"{fmt(r['generator_cpu_share'], 2)} | {fmt(other_cores(r), 2)} |"
    )


def failures(r: dict[str, Any]) -> int:
    """Final answers that are neither 200 nor a 503 + Retry-After the generator was still waiting out.

    Results from before the generator retried (no ``failures`` key) count every non-200 answer.
    """
    return int(r.get("failures", r["errors"]))


def gateway_section(gw: dict[str, Any]) -> list[str]:
    cc = gw["crypto_ceiling"]
    us = cc["us_per_batch"]
    wl = gw["workload"]
    cpus = nproc(gw)
    out = [
        "## 1. Gateway ingest, over TLS as deployed and over plain HTTP",
        "",
        f"Workload: {wl['batches']:,} envelopes of 10 household sheets from `tablet.generator` "
        f"(mean envelope {fmt(wl['mean_envelope_bytes'])} bytes) for {gw['plan']['devices']:,} enrolled tablets, "
        "sent seq-major so no tablet has two batches in flight. Load generator: `bench.loadgen` in its own "
        "process, aiohttp keep-alive connections (connector limit = concurrency), every request signed "
        "(RFC 9421, own nonce) before the timed window; over TLS it trusts only the census CA, as a tablet. "
        "A `503` with `Retry-After` (every ingest slot busy: the gateway sheds load) is waited out and sent "
        "again with a fresh signature, as a tablet does (`tablet.sync_policy.RetryPolicy`: the `Retry-After` "
        "plus full jitter); latency runs from a request's first attempt to its final answer. The errors column "
        "counts final answers that are neither 200 nor such a 503 still being waited out when the run ended; "
        "the answers shed are counted beside it. "
        f"TLS: {gw['transports']['tls']['description']}. "
        f"Server: the real `python -m gateway serve` process ({gw.get('gateway_processes', 1)} process), "
        f"{gw['store']}, a fresh store per run, log level info (to /dev/null). Bare aiohttp: `bench.http_ceiling` "
        "started on the same `gateway.toml` (same certificate and TLS context, same `AppRunner`/`TCPSite` "
        "settings and body cap; its handler only reads the body and answers), the same generator and requests. "
        f"Closed loop for {gw['plan']['duration_s']:.0f} s after at least {gw['plan']['warmup_s']:.0f} s of "
        "warm-up (longer at more connections: the first wave of requests must drain). CPU columns are cores used "
        "(1.0 = one core busy) by the server, by the generator and by other programs during the window.",
        "",
        "| transport | connections | server | batches/s | sheets/s | p50 ms | p95 ms | p99 ms | errors "
        "| peak RSS MB | server CPU | server CPU ms/batch | generator CPU | other CPU |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for transport in ("tls", "plain"):
        for lv in _levels(gw, transport):
            out.append(_run_row(transport, lv["concurrency"], "bare aiohttp", lv["http_ceiling"]))
            out.append(_run_row(transport, lv["concurrency"], "sanaq-gateway", lv["gateway"]))
    w = gw.get("workers")
    if w and "many" in w:
        out.append(_run_row("tls", w["concurrency"], f"sanaq-gateway, workers = {w['n']}", w["many"]))
    p = gw["paced"]
    out.append(_run_row("tls", p["concurrency"], f"sanaq-gateway, open loop at {fmt(p['offered_rate'])}/s", p))
    out += [
        "",
        "| transport | connections | gateway / bare aiohttp | gateway / crypto ceiling (one core) "
        "| cores used by the gateway | gateway / (crypto ceiling x cores used) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for transport in ("tls", "plain"):
        for lv in _levels(gw, transport):
            out.append(f"| {transport} | {lv['concurrency']} | {fmt(lv['ratio_gateway_to_http_ceiling'], 3)} | "
                       f"{fmt(lv['ratio_gateway_to_crypto_ceiling'], 3)} | {fmt(lv.get('cores_used'), 2)} | "
                       f"{fmt(lv.get('ratio_gateway_to_crypto_ceiling_x_cores'), 3)} |")
    out += [
        "",
        "Closed-loop latency is queueing: with every connection busy, latency ~ connections / throughput "
        "(Little's law), so its p99 says how saturated the server is. The open-loop row (requests scheduled at "
        "half the closed-loop TLS throughput at its connections, latency from the scheduled time) is the latency "
        "of a busy but unsaturated gateway.",
        "",
        *_tls_cost(gw),
        "Crypto ceiling per core (in-process, same envelopes, microseconds per batch of 10 sheets):",
        "",
        "| step | us/batch |",
        "| --- | ---: |",
        f"| request signature verify (RFC 9421 parse, Content-Digest, Ed25519) | {fmt(us['request_verify'])} |",
        f"| envelope decode + verify (SHA-256, Ed25519) | {fmt(us['envelope_verify'])} |",
        f"| open (X25519 sealed box + canonical JSON decode, sheet bytes cut from the plaintext) | {fmt(us['open'])} |",
        f"| **crypto ceiling** = the three above: **{fmt(cc['crypto_batches_per_s_per_core'])} batches/s per core** "
        f"| {fmt(cc['crypto_us_per_batch'])} |",
        f"| receipt signing (not in the ceiling) | {fmt(us['receipt_sign'])} |",
        f"| sheet schema + cross-field validation (`SheetValidator.sort` on the sealed sheet bytes, not in the "
        "ceiling) "
        f"| {fmt(us['schema_validate'])} |",
        "",
        "Durability check after each gateway run (killed with SIGKILL once every answer was in):",
        "",
        "| run | 200 answers | stored batches | stored sheets | set equal | receipts valid/checked | exit |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    runs = [(f"{t} {lv['concurrency']} conns", lv["gateway"]) for t in ("tls", "plain") for lv in _levels(gw, t)]
    for name, r in [*runs, ("tls open loop", p)]:
        s = r["store"]
        out.append(f"| {name} | {s['acknowledged']:,} | {s['db_batches']:,} | {s['db_sheets']:,} | "
                   f"{s['db_equals_acknowledged']} | {s['receipts_valid']}/{s['receipts_checked']} | "
                   f"{r['exit_code']} |")
    out += ["", *_bounds(gw, cpus)]
    return out


def _tls_cost(gw: dict[str, Any]) -> list[str]:
    """TLS against plain HTTP at the concurrencies measured both ways: throughput and server CPU per batch."""
    plain = {lv["concurrency"]: lv for lv in _levels(gw, "plain")}
    rows = []
    for lv in _levels(gw, "tls"):
        other = plain.get(lv["concurrency"])
        if other is None:
            continue
        for name, key in (("bare aiohttp", "http_ceiling"), ("sanaq-gateway", "gateway")):
            t, h = lv[key], other[key]
            t_ms, h_ms = _cpu_ms(t), _cpu_ms(h)
            extra = t_ms - h_ms if t_ms is not None and h_ms is not None else None
            rows.append(f"| {lv['concurrency']} | {name} | {fmt(h['batches_per_s'])} | {fmt(t['batches_per_s'])} "
                        f"| {fmt(h_ms, 2)} | {fmt(t_ms, 2)} | {fmt(extra, 2)} |")
    if not rows:
        return []
    return [
        "What TLS costs (same generator and requests; CPU per batch of the server process):",
        "",
        "| connections | server | plain batches/s | TLS batches/s | plain ms/batch | TLS ms/batch "
        "| TLS extra ms/batch |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
        *rows,
        "",
    ]


def _bounds(gw: dict[str, Any], cpus: int | None) -> list[str]:
    cc = gw["crypto_ceiling"]
    us = cc["us_per_batch"]
    at = _levels(gw, "tls")[0]
    g = at["gateway"]
    ms = _cpu_ms(g)
    crypto_ms = cc["crypto_us_per_batch"] / 1000
    rest = ms - crypto_ms - (us["receipt_sign"] + us["schema_validate"]) / 1000 if ms is not None else None
    out = [
        "### What bounds the gateway now",
        "",
        f"Over TLS at {at['concurrency']} connections the gateway is bound by "
        f"{bound_by(g, cpus, gw.get('gateway_processes', 1))}. Of its {fmt(ms, 2)} ms of CPU per batch, the "
        f"cryptography measured in-process is {crypto_ms:.2f} ms, receipt signing {us['receipt_sign'] / 1000:.2f} "
        f"ms and `SheetValidator.sort` {us['schema_validate'] / 1000:.2f} ms; the remaining {fmt(rest, 2)} ms is "
        "the HTTP and TLS stack, the request handling around the steps, the store job and logging (the profile "
        "below splits it).",
        "",
    ]
    prof = g.get("profile")
    if prof:
        out += profile_table(prof, f"py-spy profile of the gateway process, TLS, {at['concurrency']} connections")
    out += [
        "**Memory.** Peak RSS grows with the number of requests in flight (each holds its body, the decoded "
        "sheets and its store job until the group commit).",
        "",
    ]
    return out
