"""Spec 4.4.4 checks 2-3, 4.4.6 and 4.4.7: a chunk naming a codec or filter outside the spec's
lists, marked as instrumented, of another item size than the frame's, with a filter parameter
other than the item size, or whose blocks leave bytes unowned, is refused before any decoder
sees it, by every read path.

Before these checks a chunk naming C-Blosc2's ZFP plugin (codec 6, byte 22 = 35) crashed the
process, and an instrumented chunk (byte 31 bit 0x80) read as wrong values without an error.
"""

from __future__ import annotations

import re
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import blosc2
import numpy as np
import pytest

from mlarray import MLArray
from mlarray.errors import CorruptFrameError
from mlarray.storage.codec import encode_header
from mlarray.storage.structure import CODECS, RESAVE, structure_problem
from mlarray.validate import validate_file
from mlarray.versions import HEADER_KEY

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "conformance"))
import datakit  # noqa: E402  (the conformance suite's frame helpers)

DATA = (np.arange(32 * 40 * 24, dtype=np.int16) % 251 - 100).reshape(32, 40, 24)


def _write(path: Path) -> Path:
    MLArray(DATA, chunk_size=(16, 40, 24), block_size=(8, 8, 24)).save(path)
    return path


def _first_chunk(path: Path) -> int:
    """File offset of chunk 0 (a compressed chunk: DATA has no constant chunk)."""
    with MLArray.open(path) as image:
        section = image._chunks
        assert section is not None
        entry = section.entries[0]
        start = section.layout.start
    raw = path.read_bytes()
    assert entry >= 0
    chunk_at = start + entry
    assert not raw[chunk_at + 2] & 0x02 and not raw[chunk_at + 31] & 0x70
    return chunk_at


def _codec(value: int) -> Callable[[bytearray, int], None]:
    def damage(raw: bytearray, at: int) -> None:
        raw[at + 2] = raw[at + 2] & 0x1F | value << 5
        raw[at + 22] = 35  # C-Blosc2's ZFP (rate) plugin, for codec 6

    return damage


def _byte(offset: int, value: int, *, bit: bool = False) -> Callable[[bytearray, int], None]:
    def damage(raw: bytearray, at: int) -> None:
        raw[at + offset] = raw[at + offset] | value if bit else value

    return damage


def _shuffle_meta(value: int) -> Callable[[bytearray, int], None]:
    def damage(raw: bytearray, at: int) -> None:
        slot = list(raw[at + 16 : at + 22]).index(1)  # the byte shuffle's slot
        raw[at + 24 + slot] = value

    return damage


DAMAGE: dict[str, tuple[Callable[[bytearray, int], None], str]] = {
    "instrumented": (_byte(31, 0x80, bit=True), "instrumented codec"),
    "user-defined-codec": (_codec(6), "user-defined codec"),
    "reserved-codec": (_codec(2), "codec 2"),
    "codec-7": (_codec(7), "codec 7"),
    "ndmean-filter": (_byte(21, 33), "filter code 33"),
    "user-filter": (_byte(16, 160), "filter code 160"),
    "filter-5": (_byte(18, 5), "filter code 5"),
    "item-size": (_byte(3, 1), "its item size 1 differs from the frame's|bytes between or after its blocks"),
    "shuffle-parameter": (_shuffle_meta(4), "has the item size 4, not the chunk's"),
    "unsplit": (_byte(2, 0x10, bit=True), "bytes between or after its blocks|block offset|compressed stream"),
}


@pytest.fixture
def damaged(tmp_path: Path, request: pytest.FixtureRequest) -> tuple[Path, str]:
    path = _write(tmp_path / "a.mla")
    at = _first_chunk(path)
    raw = bytearray(path.read_bytes())
    damage, message = DAMAGE[request.param]
    damage(raw, at)
    path.write_bytes(bytes(raw))
    return path, message


READ_IN_CHILD = """
import sys
from mlarray import MLArray
from mlarray.errors import CorruptFrameError
try:
    with MLArray.open(sys.argv[1]) as image:
        image[0:8, 0:8, 0:8]
except CorruptFrameError as exc:
    print("refused:", exc)
"""


@pytest.mark.parametrize("damaged", list(DAMAGE), indirect=True)
def test_every_read_path_refuses_the_chunk(damaged: tuple[Path, str]) -> None:
    path, message = damaged
    # first in a child process: a regression here would crash the process, not raise
    child = subprocess.run([sys.executable, "-c", READ_IN_CHILD, str(path)], capture_output=True, text=True)
    assert child.returncode == 0 and "refused:" in child.stdout and re.search(message, child.stdout), child
    reads: list[Callable[[MLArray], Any]] = [
        lambda image: image[0:8, 0:8, 0:8],  # the short patch path (a box, one thread)
        lambda image: image[3],  # an integer key: the general path
        lambda image: image[0:16:2, 1, ::-1],  # steps and negative steps
        lambda image: image.read((slice(0, 8), slice(0, 8), slice(0, 8)), out=np.empty((8, 8, 8), np.int16)),
        lambda image: image[...],  # the whole array
    ]
    for read in reads:
        with MLArray.open(path) as image, pytest.raises(CorruptFrameError, match=message):
            read(image)
    with MLArray.open(path, dparams={"nthreads": 2}) as image, pytest.raises(CorruptFrameError, match=message):
        image[0:8, 0:8, 0:8]  # several threads: the general path
    with pytest.raises(CorruptFrameError, match=message):
        MLArray.load(path)
    assert validate_file(path).code == "CORRUPT_FRAME"
    with MLArray.open(path) as image:  # the other chunk is sound and still reads
        assert np.array_equal(image[16:32, :, :], DATA[16:32])


@pytest.mark.parametrize("damaged", ["instrumented", "reserved-codec", "ndmean-filter"], indirect=True)
def test_the_damaged_file_is_refused_by_name(damaged: tuple[Path, str]) -> None:
    """The error names the chunk and says what it names, so a user knows it is not a bit flip in the data."""
    path, message = damaged
    with MLArray.open(path) as image, pytest.raises(CorruptFrameError) as info:
        image[...]
    assert "chunk 0" in str(info.value) and message in str(info.value) and str(path) in str(info.value)


def _header_chunk_at(raw: bytes) -> int:
    """File offset of the mlarray header chunk (the content of the ``mlarray`` vlmetalayer)."""
    frame_size = struct.unpack(">Q", raw[16:24])[0]
    trailer_len = struct.unpack(">I", raw[frame_size - 22 : frame_size - 18])[0]
    trailer = raw[frame_size - trailer_len :]
    found = [k for k in range(len(trailer) - 32) if trailer[k] == 0x05 and trailer[k + 2] & 0x05 == 0x05]
    assert found, "no Blosc chunk header in the trailer"
    return frame_size - trailer_len + found[0]


def test_the_header_chunk_is_held_to_the_same_lists(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.mla")
    raw = bytearray(path.read_bytes())
    at = _header_chunk_at(bytes(raw))
    assert raw[at + 2] >> 5 in CODECS  # sanity: the chunk found is a Blosc chunk of a listed codec
    raw[at + 2] = raw[at + 2] & 0x1F | 6 << 5
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptFrameError, match="header chunk is malformed .*user-defined codec"):
        MLArray.open(path)
    assert validate_file(path).code == "CORRUPT_FRAME"


@pytest.mark.parametrize("damaged", ["user-defined-codec", "user-filter"], indirect=True)
def test_a_refused_codec_or_filter_says_how_to_make_the_file_readable(damaged: tuple[Path, str]) -> None:
    path, _ = damaged
    with MLArray.open(path) as image, pytest.raises(CorruptFrameError) as refused:
        image[0:8, 0:8, 0:8]
    assert str(refused.value).count("save the data again with a codec and filters of spec 4.4.7") == 1
    assert validate_file(path).problems[0].message.count("save the data again") == 1


def test_only_the_listed_filter_codes_pass() -> None:
    """Every code in a filter slot: the spec's list passes, everything else is named."""
    clean = blosc2.compress2(DATA.tobytes(), typesize=2, clevel=5)
    for code in range(256):
        chunk = bytearray(clean)
        chunk[19] = code
        if code in (34, 35):  # bytedelta: its parameter is the item size, always written
            assert structure_problem(bytes(chunk)) == f"filter {code} in slot 3 has the item size 0, not the chunk's"
            chunk[27] = chunk[3]
        problem = structure_problem(bytes(chunk))
        if code in (0, 1, 2, 3, 4, 34, 35, 36):
            assert problem is None, (code, problem)
        else:
            assert problem == f"filter code {code}, which .mla files may not use; {RESAVE}"


@pytest.mark.parametrize(
    "filters",
    [
        [blosc2.Filter.SHUFFLE],
        [blosc2.Filter.BITSHUFFLE],
        [blosc2.Filter.DELTA, blosc2.Filter.SHUFFLE],
        [blosc2.Filter.TRUNC_PREC],
        [blosc2.Filter.SHUFFLE, blosc2.Filter.BYTEDELTA],
        [blosc2.Filter.INT_TRUNC],
    ],
)
@pytest.mark.parametrize(
    "codec", [blosc2.Codec.BLOSCLZ, blosc2.Codec.LZ4, blosc2.Codec.LZ4HC, blosc2.Codec.ZLIB, blosc2.Codec.ZSTD]
)
def test_chunks_python_blosc2_writes_with_listed_codecs_and_filters_pass(codec: Any, filters: list[Any]) -> None:
    meta = [0] * len(filters)
    data = DATA
    if blosc2.Filter.TRUNC_PREC in filters:  # a filter for floats, with the bits to keep
        meta[filters.index(blosc2.Filter.TRUNC_PREC)] = 8
        data = DATA.astype(np.float32)
    if blosc2.Filter.INT_TRUNC in filters:  # the low bits to drop
        meta[filters.index(blosc2.Filter.INT_TRUNC)] = 4
    cparams = blosc2.CParams(codec=codec, typesize=data.itemsize, filters=filters, filters_meta=meta, blocksize=4096)
    chunk = blosc2.compress2(data.tobytes(), cparams=cparams)
    assert structure_problem(chunk) is None
    decoded = blosc2.decompress2(chunk)
    lossy = {blosc2.Filter.TRUNC_PREC, blosc2.Filter.INT_TRUNC} & set(filters)
    assert len(decoded) == data.nbytes and (lossy or decoded == data.tobytes())


@pytest.mark.parametrize("ext_type", [0xFF, 0x80, 0x7F, 0x00])
def test_frame_header_ext_objects_of_any_type_are_skipped(tmp_path: Path, ext_type: int) -> None:
    """Spec 4.2: readers skip ext values; msgpack libraries read type -1 as a timestamp and refuse negative types."""
    path = _write(tmp_path / "a.mla")
    raw = bytearray(path.read_bytes())
    at = datakit.frame_element_at(bytes(raw), 12)  # the filter pipeline, a fixext16
    assert raw[at] == 0xD8
    raw[at + 1] = ext_type
    path.write_bytes(bytes(raw))
    with MLArray.open(path) as image:  # our own reader needs nothing from that element
        assert np.array_equal(image[...], DATA)
    broken = tmp_path / "b.mla"  # a frame python-blosc2 writes, with an invalid header
    nd = blosc2.asarray(DATA, urlpath=str(broken), mode="w")
    header = {"schema_version": "1.0", "array": {"shape": list(DATA.shape), "dtype": "<i2"}, "is_seg": "yes"}
    nd.schunk.vlmeta.set_vlmeta(HEADER_KEY, encode_header(header), typesize=1)
    del nd
    raw = bytearray(broken.read_bytes())
    at = datakit.frame_element_at(bytes(raw), 12)
    raw[at + 1] = ext_type
    broken.write_bytes(bytes(raw))
    assert validate_file(broken).code == "HEADER_INVALID"  # not CORRUPT_FRAME: the frame header decoded
