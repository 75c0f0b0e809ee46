"""The gateway's two sheet validators (compiled fast path, reference for reasons) agree on every sheet."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.sheets import SheetValidator
from tablet.generator import KindMix, generate_sheets

VALIDATOR = SheetValidator()
SHEETS = generate_sheets(11, 40, device_id="TAB-0001") + generate_sheets(
    12, 20, device_id="TAB-0001", mix=KindMix.only(hospital=1, boarding_school=1)
)

LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.text(max_size=40))


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    target = doc
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return doc


def test_generated_sheets_are_valid_for_both() -> None:
    for sheet in SHEETS:
        assert VALIDATOR.reason(sheet) is None
        assert not list(VALIDATOR._validator.iter_errors(sheet))


@settings(max_examples=300, deadline=None)
@given(index=st.integers(0, len(SHEETS) - 1), pick=st.integers(0, 10_000), leaf=LEAVES)
def test_fast_and_reference_validators_agree_on_mutated_sheets(index: int, pick: int, leaf: Any) -> None:
    sheet = copy.deepcopy(SHEETS[index])
    paths = _paths(sheet)
    mutated = _set(sheet, paths[pick % len(paths)], leaf)
    if not isinstance(mutated, dict):
        assert VALIDATOR.reason(mutated) == "sheet is not a JSON object"
        return
    reference_ok = not list(VALIDATOR._validator.iter_errors(mutated))
    assert VALIDATOR._fast.is_valid(mutated) == reference_ok
    assert (VALIDATOR.reason(mutated) is None) == reference_ok
