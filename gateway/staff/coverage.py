"""Coverage = enumerated / listed, per institution, per district and overall.

An entry counts as enumerated when at least one stored sheet answers it
(``respondent_list_entry``), whatever the number of sheets (revisits count
once). Sheets naming entries that are not on the held list are counted apart
as ``off_list``; institutions with sheets but no imported list appear with
``listed == 0`` so they are not silently left out. Residents registered on the
dashboard (additions to the list) count as listed and are also counted apart
as ``additions``.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass

from .lists import RespondentList

__all__ = ["Coverage", "CoverageLine", "compute_coverage", "coverage_csv_rows"]

NO_DISTRICT = "(no district)"


@dataclass(frozen=True, slots=True)
class CoverageLine:
    key: str  # institution code, district name, or "overall"
    district: str
    list_date: str | None
    listed: int
    enumerated: int
    off_list: int
    institutions: int = 1
    additions: int = 0

    @property
    def percent(self) -> float:
        return 100.0 * self.enumerated / self.listed if self.listed else 0.0


@dataclass(frozen=True, slots=True)
class Coverage:
    institutions: tuple[CoverageLine, ...]
    districts: tuple[CoverageLine, ...]
    overall: CoverageLine


def compute_coverage(
    lists: list[RespondentList],
    list_entries: Mapping[str, Set[str]],
    seen: Mapping[str, Set[str]],
    additions: Mapping[str, Set[str]] | None = None,
) -> Coverage:
    by_code = {rl.institution_code: rl for rl in lists}
    lines: list[CoverageLine] = []
    for code in sorted(set(by_code) | set(seen)):
        listed_ids = list_entries.get(code, frozenset())
        seen_ids = seen.get(code, frozenset())
        rl = by_code.get(code)
        lines.append(
            CoverageLine(
                key=code,
                district=(rl.district or NO_DISTRICT) if rl else NO_DISTRICT,
                list_date=rl.list_date if rl else None,
                listed=len(listed_ids),
                enumerated=len(seen_ids & listed_ids),
                off_list=len(seen_ids - listed_ids),
                additions=len((additions or {}).get(code, frozenset()) & listed_ids),
            )
        )
    districts: dict[str, list[CoverageLine]] = {}
    for line in lines:
        districts.setdefault(line.district, []).append(line)
    district_lines = tuple(_sum(name, name, group) for name, group in sorted(districts.items()))
    return Coverage(tuple(lines), district_lines, _sum("overall", "", lines))


def _sum(key: str, district: str, lines: list[CoverageLine]) -> CoverageLine:
    return CoverageLine(
        key=key,
        district=district,
        list_date=None,
        listed=sum(x.listed for x in lines),
        enumerated=sum(x.enumerated for x in lines),
        off_list=sum(x.off_list for x in lines),
        institutions=len(lines),
        additions=sum(x.additions for x in lines),
    )


def coverage_csv_rows(coverage: Coverage) -> list[list[str]]:
    """Header + one row per institution, per district, and overall (``level`` says which)."""
    header = ["level", "key", "district", "list_date", "institutions", "listed", "enumerated", "off_list", "coverage",
              "additions"]
    out = [header]
    for level, group in (
        ("institution", coverage.institutions),
        ("district", coverage.districts),
        ("overall", (coverage.overall,)),
    ):
        for x in group:
            out.append(
                [
                    level,
                    x.key,
                    x.district,
                    x.list_date or "",
                    str(x.institutions),
                    str(x.listed),
                    str(x.enumerated),
                    str(x.off_list),
                    f"{x.enumerated / x.listed:.4f}" if x.listed else "",
                    str(x.additions),
                ]
            )
    return out
