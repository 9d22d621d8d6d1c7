"""The quick passes that let an open skip the header's full walks decide exactly as the walks do."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlarray import HeaderNotJSONError
from mlarray.models.jsonvalues import _all_finite, overflowing_integers
from mlarray.storage.codec import _surely_plain, decode_header, encode_header, json_problem
from mlarray.versions import MAX_NESTING

# Values with everything the walks look for: deep nesting, lone surrogates, huge and non-finite numbers.
leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**300, max_value=10**320)
    | st.floats()
    | st.text(max_size=6)
    | st.sampled_from(["\ud800", "a\udfff", "\ud83d\ude00"])
)
values = st.recursive(
    leaves, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
)


def _nested(depth: int, leaf: Any) -> Any:
    for _ in range(depth - 1):
        leaf = [leaf]
    return {"deep": leaf}


@settings(max_examples=400)
@given(values, st.integers(min_value=0, max_value=MAX_NESTING + 3))
def test_the_finite_numbers_pass_agrees_with_the_full_walk(value: Any, depth: int) -> None:
    wrapped = _nested(depth, value) if depth else value
    full = overflowing_integers(wrapped)
    assert _all_finite(wrapped) == (full == [])


@settings(max_examples=400)
@given(values, st.integers(min_value=1, max_value=MAX_NESTING + 3))
def test_text_judged_plain_decodes_within_the_header_rules(value: Any, depth: int) -> None:
    text = json.dumps(_nested(depth, value))  # ASCII escapes: lone surrogates appear as \udxxx
    if _surely_plain(text):
        assert json_problem(json.loads(text)) is None


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (_nested(MAX_NESTING + 1, 1), "nests deeper"),
        ({"a": "\ud800"}, "lone surrogate"),
        ({"\udc00": 1}, "lone surrogate"),
    ],
)
def test_decoding_still_refuses_what_the_walk_refuses(header: dict[str, Any], message: str) -> None:
    text = json.dumps(header)
    assert json.loads(text) == header
    data = bytes([0xDB]) + len(text).to_bytes(4, "big") + text.encode()
    with pytest.raises(HeaderNotJSONError, match=message):
        decode_header(data)


def test_the_quick_pass_finds_subclassed_numbers_as_the_walk_does() -> None:
    class Big(int):
        pass

    assert not _all_finite({"a": [Big(10**400)]})
    assert overflowing_integers({"a": [Big(10**400)]})[0].loc == "a.0"
    assert _all_finite({"a": [True, 1, 2.5, None, "x"]})


def test_a_written_header_round_trips_through_the_quick_paths() -> None:
    header = {"schema_version": "1.1", "extra": {"text": "caf\u00e9 \U0001f600", "n": [1, 2.5, -3]}}
    assert decode_header(encode_header(header)) == header
