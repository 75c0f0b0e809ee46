"""The USB road's big-tablet and durability rows and sections of ``docs/benchmarks.md`` (issue 20, item 5).

From ``bench/results/usb_durable.json`` (``bench.usb_durable``) and
``bench/results/usb_big.json`` (``bench.usb_big``); every figure comes from
those files.
"""

from __future__ import annotations

from typing import Any

from .report_format import fmt, met

__all__ = ["usb_big_section", "usb_durable_section", "usb_targets"]


def _largest(big: dict[str, Any]) -> dict[str, Any]:
    return max(big["sizes"], key=lambda r: r["sheets"])


def _index_kib_per_batch(big: dict[str, Any]) -> float | None:
    """Peak RSS growth per batch file between the smallest and the largest size (the per-file index)."""
    sizes = sorted(big["sizes"], key=lambda r: r["batches"])
    if len(sizes) < 2 or sizes[-1]["batches"] == sizes[0]["batches"]:
        return None
    grow = sizes[-1]["peak_rss_mib"] - sizes[0]["peak_rss_mib"]
    return grow * 1024 / (sizes[-1]["batches"] - sizes[0]["batches"])


def usb_targets(durable: dict[str, Any] | None, big: dict[str, Any] | None) -> list[str]:
    """Rows of the Targets table (target | measured, and what bounds it | met)."""
    rows = []
    if durable:
        r = durable["ratio_pull_to_copy"]
        rows.append(
            f"| durable USB pull >= 0.5 x a durable copy of the same bytes (issue 20) | {r:.2f} x "
            f"({fmt(durable['pull']['mb_per_s'], 1)} vs {fmt(durable['durable_copy']['mb_per_s'], 1)} MB/s, "
            f"cold, {durable['plan']['sheets']:,} sheets); bound by the disk flush: one `syncfs` per group, with "
            f"groups of 1 x{durable['ratio_groups_of_1_to_copy']:.2f} | {met(r >= 0.5)} |"
        )
    if big:
        x = _largest(big)
        svc = x.get("service")
        if svc:
            grew = (svc["peak_rss_mib"] - svc["rest_rss_mib"]) if svc["peak_rss_mib"] and svc["rest_rss_mib"] else None
            per = _index_kib_per_batch(big)
            rows.append(
                f"| big tablet pulled in bounded memory: service's peak RSS - rest <= `pull_memory_bound` (ADR 0007; "
                f"{x['sheets']:,} sheets here, full run 50,000) | +{fmt(grew, 1)} MiB ({fmt(svc['rest_rss_mib'])} -> "
                f"{fmt(svc['peak_rss_mib'])} MiB) against +{fmt(svc['bound_mib'], 1)} MiB; grows with the batch "
                f"files ({fmt(per, 1)} KiB each, the per-file index), not with the bytes | "
                f"{met(svc['within_bound'])} |"
            )
            rows.append(
                f"| first batch stored by the gateway before the pull ends ({x['sheets']:,} sheets) | "
                f"{fmt(svc['first_stored_s'], 2)} s after the plug, pull {fmt(svc['pull_s'], 1)} s; bound by "
                f"the first group (128 batches) being read and sealed with one flush, then one request | "
                f"{met(svc['first_stored_before_pull_end'])} |"
            )
    return rows


def usb_durable_section(d: dict[str, Any]) -> list[str]:
    rows = [("pull, groups of 128 / 16 MiB (shipped)", d["pull"]), ("pull, groups of 1", d["pull_groups_of_1"]),
            ("durable copy (read, write, one syncfs)", d["durable_copy"])]
    return [
        "## USB pull against a durable copy",
        "",
        f"`bench.usb_durable`: an export image of {d['plan']['sheets']:,} household sheets ({d['batches']} batches, "
        f"{d['batch_bytes'] / 1e6:.1f} MB of files) pulled by `Station.pull_volume` from a fresh state directory, "
        "against a durable copy of the same files (same FAT reader, written into an empty directory on the spool's "
        "filesystem, one `syncfs`, one directory fsync: the physical limit of a durable pull on this disk). Cold "
        f"cache, runs alternated, median of {d['plan']['repeats']}. Every pull complete: {d['all_complete']}.",
        "",
        "| | seconds | MB/s | sheets/s |",
        "| --- | ---: | ---: | ---: |",
        *[f"| {name} | {r['seconds']:.3f} | {fmt(r['mb_per_s'], 1)} | {fmt(r['sheets_per_s'])} |" for name, r in rows],
        "",
        f"Ratio pull / durable copy: **{d['ratio_pull_to_copy']:.2f}** (groups of 1: "
        f"{d['ratio_groups_of_1_to_copy']:.2f}).",
        "",
    ]


def usb_big_section(big: dict[str, Any]) -> list[str]:
    out = [
        "## Big tablets on the USB road",
        "",
        "`bench.usb_big`: export images of household sheets, 10 per batch, written by the tablet's writer. "
        "Pull only: the real `sanaq-usb-ingest pull --no-forward` process (seconds to exit, to its first sealed "
        "group, peak RSS as `VmHWM`). With the service: the real `sanaq-usb-ingest run` in the tests' umockdev "
        "bed, the image plugged as a USB stick once it is ready, forwarding to a real gateway process (plain "
        "HTTP, SQLite) while it pulls; the gateway's store polled every 5 ms; times from the plug. Every pull "
        "complete and every "
        f"batch stored: {big['all_complete']}.",
        "",
        "| sheets | batches | image MB | pull only, s | first group sealed, s | peak RSS, MiB | service: first "
        "batch stored, s from plug | pull ended, s | all stored, s | RSS rest -> peak, MiB | bound, + MiB |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for r in sorted(big["sizes"], key=lambda r: r["sheets"]):
        s = r.get("service") or {}
        out.append(
            f"| {r['sheets']:,} | {r['batches']:,} | {r['image_bytes'] / 1e6:.1f} | {r['seconds']:.2f} | "
            f"{fmt(r['first_sealed_s'], 2)} | {fmt(r['peak_rss_mib'])} | {fmt(s.get('first_stored_s'), 2)} | "
            f"{fmt(s.get('pull_s'), 1)} | {fmt(s.get('all_stored_s'), 1)} | {fmt(s.get('rest_rss_mib'))} -> "
            f"{fmt(s.get('peak_rss_mib'))} | {fmt(s.get('bound_mib'), 1)} |"
        )
    per = _index_kib_per_batch(big)
    out += [
        "",
        f"What grows is the per-file index: {fmt(per, 1)} KiB of peak RSS per batch file between the sizes, "
        "never the bytes taken (ADR 0007 states the bound). The first stored batch waits for its group of 128 "
        "to be read, verified and sealed (one flush), then one request and the gateway's commit; the rest of "
        "the pull overlaps with forwarding.",
        "",
    ]
    return out
