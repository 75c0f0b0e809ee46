"""bench.store_bytes runs end to end on a tiny store and its figures come out of its own measurement."""

from __future__ import annotations

from pathlib import Path

from bench.report import render
from bench.store_bytes import StoreBytesPlan, run_store_bytes


def test_store_bytes_measures_both_layouts_and_the_migration(tmp_path: Path) -> None:
    result = run_store_bytes(StoreBytesPlan(sheets=3_000, pool=12), tmp_path, log=lambda *_: None)
    rowid, worow = result["layouts"]["rowid"], result["layouts"]["without_rowid"]
    assert worow["without_rowid"] is True and rowid["without_rowid"] is False
    assert set(rowid["objects"]) == {"sheets", "sheets_institution", "sqlite_autoindex_sheets_1"}
    assert set(worow["objects"]) == {"sheets", "sheets_institution"}  # the key is the table itself
    assert rowid["sheets_bytes_per_sheet"] < worow["sheets_bytes_per_sheet"]
    assert result["ratio_sheets_rowid_to_without_rowid"] == rowid["sheets_bytes_per_sheet"] / worow[
        "sheets_bytes_per_sheet"]
    mig = result["migration"]
    assert mig["now_without_rowid"] is False and mig["seconds"] > 0
    assert mig["sheets_bytes_per_sheet_after"] < worow["sheets_bytes_per_sheet"]
    assert mig["db_bytes_after_vacuum"] <= mig["db_bytes_after"]
    page = render({"store_bytes": {**result, "mode": "quick"}})
    assert "## 4. Store layout: bytes per sheet" in page
    assert f"{rowid['sheets_bytes_per_sheet']:,.0f}" in page and f"{worow['sheets_bytes_per_sheet']:,.0f}" in page
