"""Hostile and broken files: opening never runs code, never follows other paths, and fails typed."""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path
from typing import Any

import blosc2
import msgpack
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import mlarray
from mlarray import Meta, MLArray
from mlarray.errors import (
    CorruptFrameError,
    ForbiddenMetalayerError,
    FrameMismatchError,
    HeaderEncodingError,
    HeaderNotJSONError,
    HeaderTooLargeError,
    HeaderValidationError,
    MissingHeaderError,
    MLArrayError,
    NotAFrameError,
    TruncatedFileError,
    UnsafeLegacyFileError,
    UnsupportedVersionError,
)
from mlarray.storage import encode_header, read_header
from mlarray.versions import MAX_HEADER_BYTES

MARKER_ENV = "MLARRAY_HOSTILE_MARKER"


class _Exploit:
    """Unpickling this runs code: it would create the marker file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (open, (self.marker, "w"))


def _frame(path: Path, vlmeta: dict[str, bytes] | None = None, meta: dict[str, bytes] | None = None) -> Path:
    data = np.arange(60, dtype=np.int16).reshape(3, 4, 5)
    nd = blosc2.asarray(data, urlpath=str(path), mode="w", meta=meta)
    for key, raw in (vlmeta or {}).items():
        nd.schunk.vlmeta.set_vlmeta(key, raw, typesize=1)
    del nd
    return path


def _valid_header(**changes: Any) -> dict[str, Any]:
    header: dict[str, Any] = {"schema_version": "1.0", "array": {"shape": [3, 4, 5], "dtype": "<i2"}}
    header.update(changes)
    return header


def _expect(path: Path, error: type[MLArrayError]) -> MLArrayError:
    for call in (read_header, MLArray.open, MLArray.load, MLArray):
        with pytest.raises(error) as info:
            call(path)
        assert info.value.code == error.code
    from mlarray.validate import validate_file

    report = validate_file(path)
    assert not report.valid and report.code == error.code
    return info.value


def test_a_plain_header_file_opens(tmp_path: Path) -> None:
    path = _frame(tmp_path / "ok.mla", {"mlarray": encode_header(_valid_header())})
    np.testing.assert_array_equal(MLArray(path).to_numpy(), np.arange(60).reshape(3, 4, 5))


def test_pickle_header_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Exploit(str(marker)))
    for raw in (payload, gzip.compress(payload), msgpack.packb(gzip.compress(payload))):
        path = _frame(tmp_path / "pickle.mla", {"mlarray": raw})
        with pytest.raises(HeaderEncodingError):  # the storage layer only reads current headers
            read_header(path)
        # The API recognises the earlier implementation's encoding and refuses the global without running it.
        for call in (MLArray.open, MLArray.load, MLArray):
            with pytest.raises(UnsafeLegacyFileError):
                call(path)
        from mlarray.validate import validate_file

        assert validate_file(path).code == "UNSAFE_LEGACY"
    assert not marker.exists()


def test_msgpack_extension_object_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    ext = msgpack.packb(msgpack.ExtType(42, pickle.dumps(_Exploit(str(marker)))))
    _expect(_frame(tmp_path / "ext.mla", {"mlarray": ext}), HeaderEncodingError)
    # blosc2's own msgpack encoding of a tuple or a map are also not a JSON string header
    _expect(_frame(tmp_path / "map.mla", {"mlarray": msgpack.packb({"schema_version": "1.0"})}), HeaderEncodingError)
    assert not marker.exists()


@pytest.mark.parametrize("layer", ["b2o", "proxy-source", "anything"])
def test_foreign_metalayers_are_refused_before_blosc2_sees_the_file(tmp_path: Path, layer: str) -> None:
    other = tmp_path / "other.b2nd"
    blosc2.asarray(np.ones(3), urlpath=str(other), mode="w")
    value = msgpack.packb({"kind": "proxy", "urlpath": str(other)})
    path = _frame(tmp_path / "meta.mla", {"mlarray": encode_header(_valid_header())}, meta={layer: value})
    atimes = os.stat(other).st_atime_ns
    _expect(path, ForbiddenMetalayerError)
    assert os.stat(other).st_atime_ns == atimes


def test_oversized_header_is_refused(tmp_path: Path) -> None:
    big = msgpack.packb(" " * (MAX_HEADER_BYTES + 10))
    _expect(_frame(tmp_path / "big.mla", {"mlarray": big}), HeaderTooLargeError)


def test_missing_header_and_plain_blosc2_files(tmp_path: Path) -> None:
    _expect(_frame(tmp_path / "none.mla"), MissingHeaderError)
    _expect(_frame(tmp_path / "other-key.mla", {"other": encode_header(_valid_header())}), MissingHeaderError)


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (msgpack.packb("not json"), HeaderNotJSONError),
        (msgpack.packb("[1, 2]"), HeaderNotJSONError),
        (msgpack.packb('{"schema_version": "1.0", "x": NaN}'), HeaderNotJSONError),
        (msgpack.packb('{"a": 1, "a": 2}'), HeaderNotJSONError),
        (b"\xa3\xff\xfe\xfd", HeaderEncodingError),
        (b"\xa5abc", HeaderEncodingError),
        (msgpack.packb('{"schema_version": "2.0"}'), UnsupportedVersionError),
        (msgpack.packb('{"schema_version": "1.0", "spatial": {"spacing": [-1, 1, 1]}}'), HeaderValidationError),
        (msgpack.packb('{"schema_version": "1.0", "array": {"shape": [3, 4, 6], "dtype": "<i2"}}'), FrameMismatchError),
        (msgpack.packb('{"schema_version": "1.0", "array": {"shape": [3, 4, 5], "dtype": "<u2"}}'), FrameMismatchError),
        (msgpack.packb('{"schema_version": "1.0", "array": null}'), FrameMismatchError),
    ],
)
def test_header_decoding_errors(tmp_path: Path, raw: bytes, error: type[MLArrayError]) -> None:
    _expect(_frame(tmp_path / "h.mla", {"mlarray": raw}), error)


def test_not_a_frame_truncated_and_trailing_bytes(tmp_path: Path) -> None:
    good = tmp_path / "good.mla"
    MLArray(np.arange(1000, dtype=np.float32).reshape(10, 100)).save(good)
    data = good.read_bytes()
    cases = {
        "empty.mla": (b"", NotAFrameError),
        "text.mla": (b"hello world, this is not a blosc2 frame at all", NotAFrameError),
        "npy.mla": (b"\x93NUMPY" + bytes(200), NotAFrameError),
        "pickle.mla": (pickle.dumps({"a": 1}), NotAFrameError),
        "half.mla": (data[: len(data) // 2], TruncatedFileError),
        "tail.mla": (data[:-1], TruncatedFileError),
        "extra.mla": (data + b"\0", CorruptFrameError),
    }
    for name, (content, error) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        _expect(path, error)


def test_every_truncation_fails_typed(tmp_path: Path) -> None:
    good = tmp_path / "good.mla"
    MLArray(np.arange(600, dtype=np.int16).reshape(6, 100), chunk_size=(2, 100), block_size=(1, 50)).save(good)
    data = good.read_bytes()
    bad = tmp_path / "cut.mla"
    for length in range(0, len(data), 7):
        bad.write_bytes(data[:length])
        with pytest.raises(MLArrayError):
            MLArray(bad)


def test_errors_subclass_the_builtins_users_catch(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        MLArray(tmp_path / "absent.mla")
    with pytest.raises(ValueError):
        MLArray(tmp_path / "wrong.nii")
    assert issubclass(mlarray.ReadOnlyError, PermissionError)


def _patch_b2nd(path: Path, old: bytes, new: bytes) -> None:
    data = path.read_bytes()
    start = data.index(b"b2nd")
    at = data.index(old, start)
    path.write_bytes(data[:at] + new + data[at + len(old) :])


def test_hostile_declared_shapes_and_chunks_are_refused_before_allocation(tmp_path: Path) -> None:
    import struct

    from mlarray.errors import ResourceLimitError

    for shape_value, error in ((10**15, (ResourceLimitError, CorruptFrameError)), (7, (CorruptFrameError,))):
        path = tmp_path / "big.mla"
        MLArray(np.zeros((3, 4, 5), np.int16), chunk_size=(3, 4, 5), block_size=(3, 4, 5)).save(path)
        # b2nd stores the first dimension as msgpack int64 (0xd3 + 8 bytes big-endian)
        _patch_b2nd(path, b"\xd3" + struct.pack(">q", 3), b"\xd3" + struct.pack(">q", shape_value))
        for call in (read_header, MLArray.open, MLArray):
            with pytest.raises(error):
                call(path)
    path = tmp_path / "chunks.mla"
    MLArray(np.zeros((3, 4, 5), np.int16), chunk_size=(3, 4, 5), block_size=(3, 4, 5)).save(path)
    _patch_b2nd(path, b"\xd2" + struct.pack(">i", 4), b"\xd2" + struct.pack(">i", 2**30))
    with pytest.raises((ResourceLimitError, CorruptFrameError)):
        read_header(path)


def test_reads_larger_than_memory_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlarray import reading
    from mlarray.errors import ResourceLimitError

    path = tmp_path / "m.mla"
    MLArray(np.zeros((50, 50, 50), np.float64)).save(path)
    monkeypatch.setattr(reading, "memory_limit", lambda: 100_000)  # pretend the machine has 100 kB
    image = MLArray.open(path)
    assert image[0:2, 0:2, 0:2].shape == (2, 2, 2)
    with pytest.raises(ResourceLimitError) as info:
        image[...]
    assert isinstance(info.value, MemoryError) and info.value.code == "RESOURCE_LIMIT"
    for key in ((slice(None), slice(None)), slice(0, 40), (slice(None), np.newaxis)):  # fast path and probe
        with pytest.raises(ResourceLimitError):
            image[key]
    assert image[0, 0:10, 3].shape == (10,)
    with pytest.raises(ResourceLimitError):
        MLArray.load(path)


_index = st.one_of(
    st.integers(-60, 60),
    st.builds(
        slice, st.none() | st.integers(-70, 70), st.none() | st.integers(-70, 70), st.sampled_from([None, 1, 2, -1, -3])
    ),
)


@given(shape=st.lists(st.integers(0, 50), min_size=1, max_size=4), key=st.lists(_index, max_size=4))
def test_the_cheap_result_shape_agrees_with_numpy(shape: list[int], key: list[object]) -> None:
    from mlarray.reading import result_shape as _result_shape

    probe = np.lib.stride_tricks.as_strided(np.zeros(1, np.uint8), shape=tuple(shape), strides=(0,) * len(shape))
    try:
        expected = probe[tuple(key)].shape
    except IndexError:
        return  # an out-of-range integer: the array itself raises
    assert _result_shape(tuple(shape), tuple(key)) in (expected, None)
    if len(key) <= len(shape):
        assert _result_shape(tuple(shape), tuple(key)) == expected


def test_a_failing_write_is_typed_and_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from mlarray.errors import WriteFailedError
    from mlarray.storage import io

    path = tmp_path / "keep.mla"
    MLArray(np.arange(10)).save(path)
    before = path.read_bytes()

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(io.blosc2, "asarray", full_disk)  # python-blosc2's writer
    monkeypatch.setattr(io, "write_array", full_disk)  # the parallel writer (mlarray.storage.compress)
    with pytest.raises(WriteFailedError) as info:
        MLArray(np.arange(1000)).save(path)
    assert isinstance(info.value, OSError) and "No space left" in str(info.value)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["keep.mla"]


def test_a_really_full_disk(tmp_path: Path) -> None:
    """On a 256 kB tmpfs (needs root's mount; the simulated test above always runs)."""
    import subprocess

    from mlarray.errors import WriteFailedError

    mount = tmp_path / "tiny"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (not root); the simulated full-disk test covers the behaviour")
    try:
        path = mount / "a.mla"
        MLArray(np.arange(100)).save(path)
        before = path.read_bytes()
        noise = np.random.default_rng(0).random((200, 200, 20))
        with pytest.raises(WriteFailedError):
            MLArray(noise).save(path)
        assert path.read_bytes() == before and os.listdir(mount) == ["a.mla"]
    finally:
        import gc

        gc.collect()
        subprocess.run(["umount", "-l", str(mount)], check=True)


def test_nesting_deeper_than_the_limit_is_not_json(tmp_path: Path) -> None:
    from mlarray.versions import MAX_NESTING

    ok = '{"schema_version": "1.0", "array": {"shape": [3, 4, 5], "dtype": "<i2"}, "extra": {"a": %s}}'
    # the header object is level 1, "extra" level 2, so MAX_NESTING - 2 more arrays are allowed
    deepest = "[" * (MAX_NESTING - 2) + "]" * (MAX_NESTING - 2)
    path = _frame(tmp_path / "deep-ok.mla", {"mlarray": msgpack.packb(ok % deepest)})
    assert read_header(path).meta.extra["a"] is not None
    too_deep = "[" * (MAX_NESTING - 1) + "]" * (MAX_NESTING - 1)
    _expect(_frame(tmp_path / "deep.mla", {"mlarray": msgpack.packb(ok % too_deep)}), HeaderNotJSONError)
    hostile = "[" * 100_000 + "]" * 100_000
    _expect(_frame(tmp_path / "hostile.mla", {"mlarray": msgpack.packb(ok % hostile)}), HeaderNotJSONError)


def test_lone_surrogates_and_overflowing_integers(tmp_path: Path) -> None:
    base = '{"schema_version": "1.0", "array": {"shape": [3, 4, 5], "dtype": "<i2"}, %s}'
    for body in ('"extra": {"a": "\\ud800"}', '"source": {"\\udc00": 1}'):
        _expect(_frame(tmp_path / "s.mla", {"mlarray": msgpack.packb(base % body)}), HeaderNotJSONError)
    paired = _frame(tmp_path / "pair.mla", {"mlarray": msgpack.packb(base % '"extra": {"a": "\\ud83d\\ude00"}')})
    assert read_header(paired).meta.extra["a"] == "\U0001f600"
    huge = '"extra": {"a": 1' + "0" * 400 + "}"
    error = _expect(_frame(tmp_path / "int.mla", {"mlarray": msgpack.packb(base % huge)}), HeaderValidationError)
    assert isinstance(error, HeaderValidationError) and error.problems[0].code == "not_finite"


def _b2nd_patched(path: Path, old: bytes, new: bytes) -> Path:
    data = path.read_bytes()
    at = data.index(old, data.index(b"b2nd"))
    path.write_bytes(data[:at] + new + data[at + len(old) :])
    return path


def test_b2nd_metalayer_rules(tmp_path: Path) -> None:
    import struct

    def fresh(name: str) -> Path:
        path = tmp_path / name
        MLArray(np.zeros((3, 4, 5), np.int16), chunk_size=(3, 4, 5), block_size=(3, 4, 5)).save(path)
        return path

    # dtype_format 1 instead of 0 (the byte before the dtype string's str32 marker)
    _expect(
        _b2nd_patched(fresh("fmt.mla"), b"\x00\xdb\x00\x00\x00\x03<i2", b"\x01\xdb\x00\x00\x00\x03<i2"),
        CorruptFrameError,
    )
    # a float (msgpack float64, same width as int64) instead of an integer shape entry
    float_shape = b"\xcb" + struct.pack(">d", 3.0)
    _expect(_b2nd_patched(fresh("float.mla"), b"\xd3" + struct.pack(">q", 3), float_shape), CorruptFrameError)
    for bad in (b"< 2", b"<i+", b"<\xd9\xa2"):
        _expect(
            _b2nd_patched(fresh("dtype.mla"), b"\xdb\x00\x00\x00\x03<i2", b"\xdb\x00\x00\x00\x03" + bad),
            CorruptFrameError,
        )


def test_trailer_fingerprint_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "fp.mla"
    data = np.arange(60, dtype=np.int16).reshape(3, 4, 5)
    MLArray(data).save(path)
    raw = bytearray(path.read_bytes())
    assert raw[-18] == 0xD8
    raw[-17] = 0xFF  # the fingerprint type byte: a msgpack timestamp to a naive decoder
    path.write_bytes(bytes(raw))
    np.testing.assert_array_equal(MLArray(path).to_numpy(), data)


def test_special_value_header_chunks_are_corrupt(tmp_path: Path) -> None:
    import blosc2

    for fill in ("zeros", "value"):
        holder = blosc2.zeros((50,), dtype="u1") if fill == "zeros" else blosc2.full((50,), 7, dtype="u1")
        special = holder.schunk.get_chunk(0)
        path = tmp_path / f"{fill}.mla"
        MLArray(np.arange(60, dtype=np.int16).reshape(3, 4, 5)).save(path)
        nd = blosc2.open(str(path), mode="a")
        nd.schunk.vlmeta.set_vlmeta("mlarray", b"\0", typesize=1)
        del nd
        data = path.read_bytes()
        regular = blosc2.compress2(b"\0", typesize=1)
        assert data.count(regular) == 1
        # swap the header chunk for a special-value chunk, fixing the bin32 length and frame sizes
        path.write_bytes(data)
        _swap_header_chunk(path, regular, special)
        assert "special-value" in str(_expect(path, CorruptFrameError))


def _swap_header_chunk(path: Path, old: bytes, new: bytes) -> None:
    import struct

    data = path.read_bytes()
    at = data.index(b"\xc6" + struct.pack(">I", len(old)) + old)
    delta = len(new) - len(old)
    data = data[:at] + b"\xc6" + struct.pack(">I", len(new)) + new + data[at + 5 + len(old) :]
    frame_size = struct.unpack(">Q", data[16:24])[0] + delta
    data = data[:16] + struct.pack(">Q", frame_size) + data[24:]
    trailer_len = struct.unpack(">I", data[-22:-18])[0] + delta
    data = data[:-22] + struct.pack(">I", trailer_len) + data[-18:]
    path.write_bytes(data)


def test_leftover_trailer_bytes_and_overflow_in_unknown_members(tmp_path: Path) -> None:
    path = tmp_path / "t.mla"
    MLArray(np.arange(60, dtype=np.int16).reshape(3, 4, 5)).save(path)
    raw = bytearray(path.read_bytes())
    trailer_len = int.from_bytes(raw[-22:-18], "big")
    start = len(raw) - trailer_len
    assert raw[start] == 0x94  # fixarray of 4: version, layers, trailer_len, fingerprint
    raw[start] = 0x93  # claim 3 elements: the fingerprint becomes leftover bytes
    path.write_bytes(bytes(raw))
    _expect(path, CorruptFrameError)

    base = '{"schema_version": "1.9", "array": {"shape": [3, 4, 5], "dtype": "<i2"}, "future": {"x": 1e400}}'
    _expect(_frame(tmp_path / "inf.mla", {"mlarray": msgpack.packb(base)}), HeaderValidationError)


def test_a_lone_surrogate_in_a_member_name_is_refused_when_it_is_set(tmp_path: Path) -> None:
    """Values with a lone surrogate were refused at once; names passed and failed every later dump, untyped."""
    for build in (
        lambda: Meta(extra={"\udc00": 1}),
        lambda: Meta(source={"ok": {"\ud800x": [1]}}),
        lambda: Meta().source.update({"\ud800": 1}),
    ):
        with pytest.raises(HeaderValidationError, match="lone surrogate") as caught:
            build()
        assert caught.value.code == "HEADER_INVALID"
    path = tmp_path / "y.mla"
    MLArray(np.zeros(4, np.uint8)).save(path)
    before = path.read_bytes()
    with MLArray.open(path, mmap_mode="r+") as image:
        with pytest.raises(HeaderValidationError):
            image.meta.source["\ud800k"] = 1
        assert "\ud800k" not in image.meta.source
    assert path.read_bytes() == before
