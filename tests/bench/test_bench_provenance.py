"""Provenance of benchmark results, and the report that refuses to mix or to print unprovenanced figures.

The report is run as a real process (``python -m bench.report``) on result
files in a temporary directory; provenance is recorded by the real
``Recorder`` through ``bench_main``, on this repository and on a scratch git
repository whose tree the test changes.
"""

from __future__ import annotations

import copy
import importlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bench.entry import bench_main
from bench.provenance import REPO, Recorder, identity, source_state
from bench.report import ReportRefused, check_results
from bench.run_all import BENCHMARKS

RESULTS = REPO / "bench" / "results"
# Figures the old page printed although no benchmark produced them (issue 19, item 4).
SCRATCH = ("558/531/555", "0.09-0.19", "0.31-0.61", "4,190", "2,108", "7.2 ms to 0.30 ms")


def git(tree: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=tree, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(scope="module")
def provenance() -> dict[str, Any]:
    rec = Recorder([sys.executable, "-m", "bench.example", "--quick"], period_s=0.2, before_window_s=0.2)
    rec.start()
    t0 = time.process_time()
    while time.process_time() - t0 < 1.2:  # burn a little CPU so "this bench" has something to count
        sum(range(10_000))
    return rec.finish()


def result_of(name: str, prov: dict[str, Any] | None, mode: str = "full") -> dict[str, Any]:
    """A real committed result body (usb_pull, scale_curve) with ``prov`` attached."""
    body = json.loads((RESULTS / f"{name}.json").read_text())
    body.pop("provenance", None)
    body["mode"] = mode
    if prov is not None:
        body["provenance"] = copy.deepcopy(prov)
    return body


def report(results: dict[str, dict[str, Any]], tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str],
                                                                                         Path]:
    rdir = tmp_path / "results"
    rdir.mkdir(exist_ok=True)
    for name, body in results.items():
        (rdir / f"{name}.json").write_text(json.dumps(body))
    page = tmp_path / "benchmarks.md"
    page.write_text("the previous page\n")
    done = subprocess.run(
        [sys.executable, "-m", "bench.report", "--results", str(rdir), "--doc", str(page), *extra],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )
    return done, page


def test_the_recorder_records_commit_tree_machine_load_and_command(provenance) -> None:
    src = provenance["source"]
    assert src["commit"] == git(REPO, "rev-parse", "HEAD")
    outputs = (":(exclude)bench/results", ":(exclude)docs/benchmarks.md")
    assert src["dirty"] == bool(git(REPO, "status", "--porcelain", "--", ".", *outputs))
    assert (src["diff_sha256"] is not None) == src["dirty"]
    assert provenance["changed_during_run"] is False
    assert provenance["command"]["argv"] == [sys.executable, "-m", "bench.example", "--quick"]
    m = provenance["machine"]
    assert m["nproc"] >= 1 and m["cpus_online"] >= m["nproc"] and m["cpu_model"] and m["kernel"]
    before, during = provenance["load"]["before"], provenance["load"]["during"]
    assert len(before["loadavg_1_5_15"]) == 3 and before["busy_cores"] >= 0
    # the machine's busy cores include this benchmark's own, up to sampling noise (two clocks, two reads)
    assert during["samples"] >= 5 and during["busy_cores_mean"] + 0.05 >= during["own_cores_mean"] > 0
    assert during["own_cores_mean"] * provenance["elapsed_s"] >= 1.0  # the 1.2 s of CPU burnt (1 tick granular)
    assert provenance["started_at"] <= provenance["finished_at"] and provenance["elapsed_s"] >= 1.0


def test_every_benchmark_writes_its_result_with_provenance(tmp_path: Path, monkeypatch) -> None:
    for name in BENCHMARKS:  # each benchmark's main goes through bench_main, which records provenance
        module = importlib.import_module(f"bench.{name}")
        assert module.bench_main is bench_main, name
    monkeypatch.setenv("SANAQ_BENCH_PARENT_COMMAND", "python -m bench.run_all --quick")
    out = tmp_path / "tiny.json"
    assert bench_main("tiny", lambda quick: {"quick": quick}, lambda plan, tmp: {"plan": plan},
                      ["--quick", "--out", str(out)]) == 0
    written = json.loads(out.read_text())
    assert written["plan"] == {"quick": True} and written["mode"] == "quick"
    prov = written["provenance"]
    assert prov["command"]["argv"] == [sys.executable, "-m", "bench.tiny", "--quick", "--out", str(out)]
    assert prov["command"]["parent"] == "python -m bench.run_all --quick"
    assert prov["source"]["commit"] == git(REPO, "rev-parse", "HEAD")


def test_the_source_state_tells_dirty_trees_apart(tmp_path: Path) -> None:
    tree = tmp_path / "repo"
    (tree / "bench" / "results").mkdir(parents=True)
    (tree / "docs").mkdir()
    git(tree.parent, "init", "-q", str(tree))
    (tree / "code.py").write_text("x = 1\n")
    (tree / "bench" / "results" / "a.json").write_text("{}\n")
    (tree / "docs" / "benchmarks.md").write_text("page\n")
    git(tree, "add", "-A")
    git(tree, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    clean = source_state(tree)
    assert clean["commit"] == git(tree, "rev-parse", "HEAD") and clean["dirty"] is False
    assert clean["diff_sha256"] is None
    (tree / "bench" / "results" / "a.json").write_text('{"new": 1}\n')  # the bench's own outputs
    (tree / "docs" / "benchmarks.md").write_text("new page\n")
    (tree / "bench" / "results" / "b.json").write_text("{}\n")
    assert source_state(tree)["dirty"] is False
    (tree / "code.py").write_text("x = 2\n")
    two = source_state(tree)
    (tree / "code.py").write_text("x = 3\n")
    three = source_state(tree)
    assert two["dirty"] and three["dirty"] and two["diff_sha256"] != three["diff_sha256"]
    (tree / "code.py").write_text("x = 1\n")
    (tree / "new_module.py").write_text("y = 1\n")
    untracked = source_state(tree)
    assert untracked["dirty"] and untracked["untracked_files"] == 1
    (tree / "new_module.py").write_text("y = 2\n")
    assert source_state(tree)["diff_sha256"] != untracked["diff_sha256"]
    (tmp_path / "plain").mkdir()
    assert source_state(tmp_path / "plain")["commit"] is None


def test_a_result_without_provenance_is_refused_and_the_page_left_alone(provenance, tmp_path: Path) -> None:
    results = {"usb_pull": result_of("usb_pull", None), "scale_curve": result_of("scale_curve", provenance)}
    done, page = report(results, tmp_path)
    assert done.returncode == 2
    assert "usb_pull: no provenance recorded" in done.stderr and "nothing written" in done.stderr
    assert page.read_text() == "the previous page\n"


def test_results_of_different_commits_are_refused_unless_allowed(provenance, tmp_path: Path) -> None:
    other = copy.deepcopy(provenance)
    other["source"]["commit"] = "0" * 40
    results = {"usb_pull": result_of("usb_pull", provenance), "scale_curve": result_of("scale_curve", other)}
    done, page = report(results, tmp_path)
    assert done.returncode == 2 and "results of different runs" in done.stderr
    assert "commit 000000000000" in done.stderr and f"commit {provenance['source']['commit'][:12]}" in done.stderr
    assert page.read_text() == "the previous page\n"

    done, page = report(results, tmp_path, "--allow-mixed")
    assert done.returncode == 0, done.stderr
    text = page.read_text()
    assert "**Mixed results (`--allow-mixed`).**" in text and "commit 000000000000" in text
    assert "## 2. USB pull" in text and "## 3. Scale curve" in text


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda p: p["source"].update(dirty=True, diff_sha256="ab" * 32), "results of different runs"),
        (lambda p: p["machine"].update(cpu_model="Another CPU"), "results of different runs"),
        (lambda p: p.update(gateway_source={"tree": "/x", "commit": "1" * 40, "dirty": False,
                                            "diff_sha256": None}), "results of different runs"),
        (lambda p: p.update(changed_during_run=True), "the source tree changed while it ran"),
    ],
)
def test_other_differences_of_provenance_are_refused_too(provenance, change, reason) -> None:
    other = copy.deepcopy(provenance)
    change(other)
    results = {"usb_pull": result_of("usb_pull", provenance), "scale_curve": result_of("scale_curve", other)}
    with pytest.raises(ReportRefused) as refused:
        check_results(results)
    assert any(reason in p for p in refused.value.problems)
    assert check_results(results, allow_mixed=True) == refused.value.problems


def test_quick_and_full_results_do_not_share_a_page(provenance) -> None:
    results = {"usb_pull": result_of("usb_pull", provenance, "quick"),
               "scale_curve": result_of("scale_curve", provenance, "full")}
    with pytest.raises(ReportRefused):
        check_results(results)


def test_one_run_renders_with_its_provenance_and_no_scratch_figures(provenance, tmp_path: Path) -> None:
    loaded = copy.deepcopy(provenance)
    loaded["load"]["during"]["other_cores_mean"] = 0.8
    results = {"usb_pull": result_of("usb_pull", loaded, "quick"), "scale_curve": result_of("scale_curve", loaded,
                                                                                             "quick")}
    assert identity(results["usb_pull"]["provenance"]) == identity(results["scale_curve"]["provenance"])
    done, page = report(results, tmp_path)
    assert done.returncode == 0, done.stderr
    text = page.read_text()
    assert f"commit {provenance['source']['commit'][:12]}" in text
    assert "| `-m bench.example --quick` |" in text and provenance["started_at"] in text
    assert provenance["machine"]["cpu_model"] in text
    assert "**Quick run**" in text and "**Loaded machine**: other programs used up to 0.80" in text
    assert "Mixed results" not in text
    for figure in SCRATCH:
        assert figure not in text, figure


def test_the_renderer_holds_no_scratch_figures() -> None:
    source = (REPO / "bench" / "report.py").read_text()
    for figure in ("558/531/555", "0.09-0.19", "4,190", "2,108"):
        assert figure not in source

