"""Coverage = persons counted / listed, per institution, district, region and overall.

Persons, not sheets: the census store counts each list entry once (the first
stored sheet naming it), whatever the road; further sheets for it wait in the
review queue, and the staff's decisions move or add counts
(``review.effective_persons``). Each counted entry is enumerated ``online``
(the respondent answered on the web), ``interviewed`` (a tablet, online or by
USB) or from the institution's administration ``records``. Entries counted
but not on the held list are ``off_list``; institutions with sheets but no
imported list appear with ``listed == 0`` so they are not silently left out.
An institution's region is the region of its sheets' addresses.
Residents registered on the dashboard (additions to the list) count as listed
and are also counted apart as ``additions``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Set
from dataclasses import dataclass

from .lists import RespondentList

__all__ = ["CATEGORIES", "Coverage", "CoverageLine", "compute_coverage", "coverage_csv_rows"]

NO_DISTRICT = "(no district)"
NO_REGION = "(no region)"
CATEGORIES = ("online", "interviewed", "records")


@dataclass(frozen=True, slots=True)
class CoverageLine:
    key: str  # institution code, district or region name, or "overall"
    district: str
    list_date: str | None
    listed: int
    enumerated: int
    off_list: int
    institutions: int = 1
    region: str = ""
    online: int = 0
    interviewed: int = 0
    records: int = 0
    review_open: int = 0
    additions: int = 0

    @property
    def percent(self) -> float:
        return 100.0 * self.enumerated / self.listed if self.listed else 0.0

    @property
    def persons(self) -> int:
        return self.enumerated + self.off_list


@dataclass(frozen=True, slots=True)
class Coverage:
    institutions: tuple[CoverageLine, ...]
    districts: tuple[CoverageLine, ...]
    overall: CoverageLine
    regions: tuple[CoverageLine, ...] = ()


def compute_coverage(
    lists: list[RespondentList],
    list_entries: Mapping[str, Set[str]],
    counted: Mapping[str, Mapping[str, str]],
    *,
    regions: Mapping[str, Mapping[str, str]] | None = None,
    review_open: Mapping[str, int] | None = None,
    additions: Mapping[str, Set[str]] | None = None,
) -> Coverage:
    """``counted``: institution -> entry -> category; ``regions``: institution -> entry -> region."""
    by_code = {rl.institution_code: rl for rl in lists}
    regions = regions or {}
    review_open = review_open or {}
    lines: list[CoverageLine] = []
    for code in sorted(set(by_code) | set(counted) | set(review_open)):
        listed_ids = list_entries.get(code, frozenset())
        entries = counted.get(code, {})
        seen_ids = set(entries)
        kinds = Counter(entries.values())
        rl = by_code.get(code)
        region_votes = Counter(r for r in regions.get(code, {}).values() if r)
        lines.append(
            CoverageLine(
                key=code,
                district=(rl.district or NO_DISTRICT) if rl else NO_DISTRICT,
                list_date=rl.list_date if rl else None,
                listed=len(listed_ids),
                enumerated=len(seen_ids & listed_ids),
                off_list=len(seen_ids - listed_ids),
                region=region_votes.most_common(1)[0][0] if region_votes else NO_REGION,
                online=kinds["online"],
                interviewed=kinds["interviewed"],
                records=kinds["records"],
                review_open=review_open.get(code, 0),
                additions=len((additions or {}).get(code, frozenset()) & listed_ids),
            )
        )
    return Coverage(
        tuple(lines),
        _group(lines, district=True),
        _sum("overall", "", lines),
        _group(lines, district=False),
    )


def _group(lines: list[CoverageLine], *, district: bool) -> tuple[CoverageLine, ...]:
    groups: dict[str, list[CoverageLine]] = {}
    for line in lines:
        name = line.district if district else line.region
        groups.setdefault(name, []).append(line)
    return tuple(
        _sum(name, name if district else "", group, region="" if district else name)
        for name, group in sorted(groups.items())
    )


def _sum(key: str, district: str, lines: list[CoverageLine], *, region: str = "") -> CoverageLine:
    return CoverageLine(
        key=key,
        district=district,
        list_date=None,
        listed=sum(x.listed for x in lines),
        enumerated=sum(x.enumerated for x in lines),
        off_list=sum(x.off_list for x in lines),
        institutions=len(lines),
        region=region,
        online=sum(x.online for x in lines),
        interviewed=sum(x.interviewed for x in lines),
        records=sum(x.records for x in lines),
        review_open=sum(x.review_open for x in lines),
        additions=sum(x.additions for x in lines),
    )


def coverage_csv_rows(coverage: Coverage) -> list[list[str]]:
    """Header + one row per institution, district, region, and overall (``level`` says which)."""
    header = [
        "level", "key", "district", "region", "list_date", "institutions", "listed", "enumerated", "off_list",
        "coverage", "persons", "enumerated_online", "interviewed", "administration_records", "review_open",
        "additions",
    ]  # fmt: skip
    out = [header]
    for level, group in (
        ("institution", coverage.institutions),
        ("district", coverage.districts),
        ("region", coverage.regions),
        ("overall", (coverage.overall,)),
    ):
        for x in group:
            out.append(
                [
                    level,
                    x.key,
                    x.district,
                    x.region,
                    x.list_date or "",
                    str(x.institutions),
                    str(x.listed),
                    str(x.enumerated),
                    str(x.off_list),
                    f"{x.enumerated / x.listed:.4f}" if x.listed else "",
                    str(x.persons),
                    str(x.online),
                    str(x.interviewed),
                    str(x.records),
                    str(x.review_open),
                    str(x.additions),
                ]
            )
    return out
