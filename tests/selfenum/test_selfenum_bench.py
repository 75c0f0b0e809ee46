"""bench.web_road still runs against the code it measures (quick plan, tiny), and its report section renders."""

from __future__ import annotations

from pathlib import Path

from bench.report import render
from bench.web_road import WebPlan, run_web_road


def test_web_road_bench_runs_and_checks_the_store(tmp_path: Path) -> None:
    result = run_web_road(WebPlan(respondents=6, concurrency=3), tmp_path)
    assert result["store"] == {"web_batches": 12, "distinct_seqs": 12, "quarantined": 0, "ok": True}
    assert result["web_road"]["questionnaires"] == 6 and result["web_road"]["per_s"] > 0
    page = render({"web_road": result}, "quick")
    assert "## Web road (online self-enumeration)" in page and "12 web batches" in page
