"""The sections of ``docs/benchmarks.md`` for several gateway instances on PostgreSQL (``bench.instances``) and
the PostgreSQL scale curve (``bench.scale_curve``'s ``postgres`` part)."""

from __future__ import annotations

from typing import Any

from .report_format import fmt, nproc, other_cores

__all__ = ["instances_section", "scale_postgres_section"]


def instances_section(r: dict[str, Any]) -> list[str]:
    plan, pg = r["plan"], r.get("postgres", {})
    out = [
        "## Several gateway instances on one PostgreSQL",
        "",
        f"`bench.instances`: N real `sanaq-gateway serve` processes over TLS on one PostgreSQL "
        f"{pg.get('server_version', '?')} database (throwaway cluster, `fsync` {pg.get('fsync', '?')}, "
        f"`synchronous_commit` {pg.get('synchronous_commit', '?')}, `shared_buffers` "
        f"{pg.get('shared_buffers', '?')}); the workload split by device, one load generator per instance, all "
        f"at once, closed loop, {plan['concurrency']} connections in total, {plan['duration_s']:.0f} s. After "
        "each row the instances are SIGKILLed and the database compared with the answers.",
        "",
        "| instances | total batches/s | per instance batches/s | per instance vs one | worst p99 ms | errors "
        "| gateway cores | machine cores busy | stored = acknowledged | receipts valid |",
        "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for run in r["runs"]:
        per = ", ".join(fmt(s["batches_per_s"]) for s in run["per_instance"])
        st = run["store"]
        out.append(
            f"| {run['instances']} | {fmt(run['total_batches_per_s'])} | {per} | "
            f"{fmt(run.get('per_instance_vs_one'), 2)} | {fmt(run['worst_p99_ms'])} | {run['errors']} | "
            f"{fmt(run['gateway_cores'], 2)} | {fmt(run['machine_cores'], 2)} | "
            f"{'yes' if st['db_equals_acknowledged'] else '**no**'} | {st['receipts_valid']}/{st['receipts_checked']} |"
        )
    exhausted = [run["instances"] for run in r["runs"] if any(s["workload_exhausted"] for s in run["per_instance"])]
    if exhausted:
        out += ["", f"**Workload exhausted** at {', '.join(map(str, exhausted))} instance(s): a generator ran out of "
                "envelopes before its window ended, so that row is a lower bound."]
    cpus = nproc(r)
    busy = max((run["machine_cores"] or 0.0) for run in r["runs"]) if r["runs"] else 0.0
    out += [
        "",
        f"What bounds it: this machine has {cpus or '?'} CPUs for the instances, their load generators and "
        "PostgreSQL together"
        + (
            f", and the machine was busy (up to {fmt(busy, 2)} cores, other programs included) while the gateways used "
            f"{fmt(max(run['gateway_cores'] for run in r['runs']), 2)}: the rows measure a shared machine, not "
            "what an instance on a machine of its own does. On separate machines each instance adds its cores."
            if cpus and busy >= 0.9 * cpus
            else "; a row where the machine is busy measures the machine, not the instances."
        ),
        "",
    ]
    return out


def scale_postgres_section(scale: dict[str, Any]) -> list[str]:
    pg = scale["postgres"]
    plan = scale["plan"]
    out = [
        "### Scale curve on PostgreSQL",
        "",
        "The same steps on one PostgreSQL database (the test suite's throwaway cluster), pre-filled server-side "
        "with rows shaped like the SQLite pre-fill (the real envelopes and sheet bodies, 10 sheets per batch, "
        "30,000 devices interleaved): the real gateway process on it over plain HTTP, closed loop at "
        f"{plan['concurrency']} connections, and the store alone in-process (`PostgresStore.find_batch` + "
        "`ingest`).",
        "",
        "| stored sheets | DB size GB | pre-fill s | gateway batches/s | p50 ms | p99 ms | errors "
        "| gateway CPU ms/batch | other CPU | store alone batches/s (runs) | store p99 ms | stored = acknowledged |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for st in pg["steps"]:
        g, s = st["gateway"], st["store_only"]
        cost = 1000 * g["server_cpu_share"] / g["batches_per_s"] if g.get("server_cpu_share") else None
        runs = ", ".join(fmt(x) for x in s.get("repeats_batches_per_s", []))
        out.append(
            f"| {st['stored_sheets']:,} | {st['db_bytes'] / 1e9:.2f} | {fmt(st['prefill']['seconds'])} | "
            f"{fmt(g['batches_per_s'])} | {fmt(g['latency_ms']['p50'])} | {fmt(g['latency_ms']['p99'])} | "
            f"{g['errors']} | {fmt(cost, 1)} | {fmt(other_cores(g), 2)} | {fmt(s['batches_per_s'])} ({runs}) | "
            f"{fmt(s['latency_ms']['p99'])} | "
            f"{'yes' if g['store']['db_equals_acknowledged'] else '**no**'} |"
        )
    out += [
        "",
        f"Last step / empty on PostgreSQL: gateway throughput x{fmt(pg['gateway_throughput_ratio_last_to_empty'], 2)}, "
        f"gateway p99 x{fmt(pg['gateway_p99_ratio_last_to_empty'], 2)}, store alone "
        f"x{fmt(pg['store_throughput_ratio_last_to_empty'], 2)}. 'Other CPU' is what other programs, PostgreSQL "
        "included, used of the machine during the gateway's window.",
        "",
    ]
    last = pg["steps"][-1]["stored_sheets"]
    if last < 5_000_000:
        out += [f"Quick mode stops at {last:,} sheets on PostgreSQL; the full run goes to 5 M.", ""]
    return out
