"""Property tests: any valid array and header survive every write/read path exactly."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import given
from strategies import image_case

from mlarray import Meta, MLArray
from mlarray.models import parse_header
from mlarray.storage import decode_header, encode_header

WRITER_OWNED = ("writer", "layout", "integrity")


def _user_part(meta: Meta) -> dict[str, Any]:
    data = meta.model_dump(mode="json")
    for key in WRITER_OWNED:
        data.pop(key)
    return data


def _build(case: dict[str, Any]) -> MLArray:
    kwargs = dict(case["kwargs"])
    meta = kwargs.pop("meta")
    spatial = meta.pop("spatial")
    image = MLArray(case["data"], meta=Meta(**meta), **kwargs)
    image.meta.spatial.coord_system = spatial["coord_system"]
    return image


@given(image_case())
def test_save_load_open_round_trip_is_exact(case: dict[str, Any]) -> None:
    image = _build(case)
    expected_header = _user_part(image.meta)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "case.mla"
        image.save(path)
        for loaded in (MLArray(path), MLArray.load(path)):
            out = loaded.to_numpy()
            assert out.dtype == case["data"].dtype.newbyteorder("<") or out.dtype == case["data"].dtype
            np.testing.assert_array_equal(out, case["data"])
            assert _user_part(loaded.meta) == expected_header
        with MLArray.open(path, mmap_mode="r") as mapped:
            np.testing.assert_array_equal(mapped[...], case["data"])
            index = tuple(slice(0, max(1, s // 2)) for s in case["data"].shape)
            np.testing.assert_array_equal(mapped[index], case["data"][index])
            assert _user_part(mapped.meta) == expected_header
        # Re-saving a loaded file keeps everything, including the layout.
        again = Path(tmp) / "again.mla"
        first = MLArray(path)
        first.save(again)
        second = MLArray(again)
        assert second.meta.layout == first.meta.layout
        assert _user_part(second.meta) == expected_header


@given(image_case())
def test_header_bytes_round_trip_exactly(case: dict[str, Any]) -> None:
    meta = _build(case).meta
    raw = encode_header(meta.model_dump(mode="json"))
    decoded = parse_header(decode_header(raw))
    assert decoded == meta
    assert decoded.model_dump(mode="json") == meta.model_dump(mode="json")
