"""Streaming NIfTI/NRRD <-> .mla conversion gives exactly what the conversion in memory gives.

The in-memory results are built here the way ``convert_file`` built them before it
streamed: read the whole file (``read_nifti_parts`` ...), then ``MLArray(...).save`` or
``write_nifti(MLArray.load(...))``. Small inputs are one slab, and the files must be
the same byte for byte; with ``SLAB_BYTES`` shrunk to force many slabs, a ``.mla``
holds the same compressed chunks in another order, and NIfTI/NRRD output is unchanged.
"""

from __future__ import annotations

import gzip
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import blosc2
import nibabel as nib
import nrrd
import numpy as np
import pytest

import mlarray.convert._slabs
import mlarray.convert._stream
import mlarray.convert.files
import mlarray.storage.stream
from mlarray import MLArray
from mlarray.convert import convert_file, write_nifti, write_nrrd
from mlarray.convert._stream import convert_source
from mlarray.convert.nifti import NiftiSource, read_nifti_parts
from mlarray.convert.nrrd import NrrdSource, read_nrrd_parts
from mlarray.errors import SourceFormatError
from mlarray.storage.cparams import named_cparams as _cparams
from mlarray.validate import validate_file

WRITES: list[int] = []


@pytest.fixture(params=["one slab", "many slabs"])
def slabs(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """One slab (the default budget), or slabs one chunk thick; checks afterwards that there were that many."""
    if request.param == "many slabs":
        monkeypatch.setattr(mlarray.storage.stream, "SLAB_BYTES", 1)
    regions = mlarray.storage.stream.slab_regions
    counts: list[int] = []

    def counting(*args: Any, **kwargs: Any) -> Any:
        out = regions(*args, **kwargs)
        counts.append(len(out))
        return out

    monkeypatch.setattr(mlarray.storage.stream, "slab_regions", counting)
    for module in (mlarray.convert._slabs, mlarray.convert._stream):
        monkeypatch.setattr(module, "slab_regions", counting)
    yield str(request.param)
    assert counts, "nothing was streamed"
    if request.param == "many slabs":
        assert max(counts) > 1
    else:
        assert max(counts) == 1


def _nifti(path: Path, data: np.ndarray, *, slope: float = 1.0, inter: float = 0.0, dtype: Any = None) -> Path:
    affine = np.diag([0.8, 0.9, 1.5, 1.0])
    affine[:3, 3] = [-10.0, 20.0, 5.0]
    image = nib.Nifti1Image(data, affine)
    if dtype is not None:
        image.header.set_data_dtype(dtype)
    image.header["scl_slope"], image.header["scl_inter"] = slope, inter
    nib.save(image, path)
    return path


def _small_chunks(ndim: int) -> dict[str, Any]:
    """A layout of many small chunks, so that even a small file is many slabs."""
    return {"chunk_size": (16, 16, 8, 4, 3)[:ndim], "block_size": (8, 8, 8, 4, 3)[:ndim]}


def _in_memory_mla(src: Path, dst: Path, *, keep_raw: bool = False, **layout: Any) -> None:
    data, meta = read_nifti_parts(src, keep_raw=keep_raw)
    if "chunk_size" not in layout:
        cparams = _cparams(layout.pop("codec", None), layout.pop("clevel", None), data.dtype.itemsize)
        layout = {"patch_size": layout.pop("patch_size", "default"), "cparams": cparams}
    MLArray(data, meta=meta, **layout).save(dst)


def _same_mla(a: Path, b: Path, slabs: str) -> None:
    """Byte for byte for one slab; else the same chunks, array and header (but for the digest of the data section)."""
    if slabs == "one slab":
        assert a.read_bytes() == b.read_bytes()
        return
    x, y = blosc2.open(str(a)), blosc2.open(str(b))
    assert [x.schunk.get_chunk(i) for i in range(x.schunk.nchunks)] == [
        y.schunk.get_chunk(i) for i in range(y.schunk.nchunks)
    ]
    with MLArray.open(a) as ia, MLArray.open(b) as ib:
        assert ia.meta.model_dump(exclude={"integrity"}) == ib.meta.model_dump(exclude={"integrity"})
        assert np.array_equal(ia.to_numpy(), ib.to_numpy())


VOLUME = np.arange(70 * 60 * 50, dtype=np.int16).reshape(70, 60, 50) % 3001 - 1000

CASES = {
    "int16": ({"data": VOLUME}, {}),
    "CT scaling to int16": ({"data": VOLUME.astype(np.uint16) + 1000, "slope": 1.0, "inter": -1024.0}, {}),
    "float scaling": ({"data": VOLUME, "slope": 0.37, "inter": 2.5}, {}),
    "scaling kept raw": ({"data": VOLUME, "slope": 0.37, "inter": 2.5}, {"keep_raw": True}),
    "big-endian float32": ({"data": VOLUME.astype(">f4") / 7}, {"patch_size": 32, "codec": "zstd"}),
    "4-d": ({"data": VOLUME[:30, :20, :10, None].repeat(20, axis=3) * np.arange(20, dtype=np.int16)}, {}),
}


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_nifti_to_mla_streams_what_memory_gives(
    tmp_path: Path, one_thread: None, slabs: str, case: str, suffix: str
) -> None:
    written, options = CASES[case]
    src = _nifti(tmp_path / f"in{suffix}", **written)
    options = dict(options)
    if slabs == "one slab":
        convert_file(src, tmp_path / "streamed.mla", **options)
    else:
        options = {"keep_raw": options.get("keep_raw", False), **_small_chunks(written["data"].ndim)}
        with NiftiSource(src) as source:
            convert_source(
                source, tmp_path / "streamed.mla", _small_chunks(len(source.shape)), keep_raw=options["keep_raw"]
            )
    _in_memory_mla(src, tmp_path / "memory.mla", **options)
    _same_mla(tmp_path / "streamed.mla", tmp_path / "memory.mla", slabs)
    assert validate_file(tmp_path / "streamed.mla").valid


def test_rgb_nifti_streams_what_memory_gives(tmp_path: Path, one_thread: None, slabs: str) -> None:
    rgb = np.zeros((40, 30, 20), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    rgb["R"], rgb["G"], rgb["B"] = VOLUME[:40, :30, :20] % 256, 7, VOLUME[:40, :30, :20] % 13
    src = tmp_path / "rgb.nii"
    nib.save(nib.Nifti1Image(rgb, np.eye(4)), src)
    # the codec a conversion takes (a save of data in memory may choose another for 1-byte labels)
    layout = {"chunk_size": (16, 16, 8, 3), "block_size": (8, 8, 8, 3), "cparams": _cparams(None, None, 1)}
    with NiftiSource(src) as source:
        convert_source(source, tmp_path / "streamed.mla", layout)
    _in_memory_mla(src, tmp_path / "memory.mla", **layout)
    _same_mla(tmp_path / "streamed.mla", tmp_path / "memory.mla", slabs)
    convert_file(tmp_path / "streamed.mla", tmp_path / "back.nii")
    assert (tmp_path / "back.nii").read_bytes() == src.read_bytes()


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_mla_to_nifti_streams_what_memory_gives(tmp_path: Path, slabs: str, case: str, suffix: str) -> None:
    written, options = CASES[case]
    src = _nifti(tmp_path / "in.nii", **written)
    mla = tmp_path / "image.mla"
    _in_memory_mla(src, mla, keep_raw=bool(options.get("keep_raw")), **_small_chunks(written["data"].ndim))
    convert_file(mla, tmp_path / f"streamed{suffix}")
    write_nifti(MLArray.load(mla), tmp_path / f"memory{suffix}")
    streamed, memory = (tmp_path / f"streamed{suffix}").read_bytes(), (tmp_path / f"memory{suffix}").read_bytes()
    if suffix == ".nii.gz":
        streamed, memory = gzip.decompress(streamed), gzip.decompress(memory)
    assert streamed == memory
    assert streamed == src.read_bytes()  # and both give the source back


def test_values_edited_after_conversion_are_written_unscaled_when_streaming(tmp_path: Path, slabs: str) -> None:
    src = _nifti(tmp_path / "in.nii", data=VOLUME, slope=0.5, inter=0.25)  # stored as float32
    mla = tmp_path / "image.mla"
    _in_memory_mla(src, mla, **_small_chunks(3))
    with MLArray.open(mla, "r+") as image:
        image[69, 59, 49] = 0.3  # no raw integer gives 0.3 back
    convert_file(mla, tmp_path / "streamed.nii")
    write_nifti(MLArray.load(mla), tmp_path / "memory.nii")
    assert (tmp_path / "streamed.nii").read_bytes() == (tmp_path / "memory.nii").read_bytes()
    back = nib.load(tmp_path / "streamed.nii")
    assert back.dataobj.slope == 1.0 or np.isnan(back.dataobj.slope)
    assert back.get_fdata()[69, 59, 49] == np.float32(0.3)


# --------------------------------------------------------------------------- NRRD


def _nrrd(path: Path, data: np.ndarray, encoding: str, **fields: Any) -> Path:
    header = {"encoding": encoding, "space": "left-posterior-superior", "space origin": [1.0, 2.0, 3.0], **fields}
    header["space directions"] = np.diag([0.7, 0.8, 2.0])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*utcnow", category=DeprecationWarning)
        nrrd.write(str(path), data, header, index_order="F")
    return path


def _in_memory_from_nrrd(src: Path, dst: Path, layout: dict[str, Any]) -> None:
    data, meta = read_nrrd_parts(src)
    MLArray(data, meta=meta, **layout).save(dst)


NRRD_CASES = {
    "raw": ("raw", ".nrrd", VOLUME),
    "gzip": ("gzip", ".nrrd", VOLUME.astype(np.float32) / 3),
    "bzip2": ("bzip2", ".nrrd", VOLUME),
    "big-endian": ("gzip", ".nrrd", VOLUME.astype(">i4")),
    "detached gzip": ("gzip", ".nhdr", VOLUME.astype(np.uint8)),
    "detached raw": ("raw", ".nhdr", VOLUME),
}
ASCII = ("ascii", ".nrrd", VOLUME[:20, :20, :20])


@pytest.mark.parametrize("case", sorted(NRRD_CASES))
def test_nrrd_to_mla_streams_what_memory_gives(tmp_path: Path, one_thread: None, slabs: str, case: str) -> None:
    encoding, suffix, data = NRRD_CASES[case]
    src = _nrrd(tmp_path / f"in{suffix}", data, encoding)
    layout = _small_chunks(3) if slabs == "many slabs" else {"patch_size": "default"}
    # the codec a conversion takes (a save of data in memory may choose another for 1-byte labels)
    layout["cparams"] = _cparams(None, None, data.dtype.itemsize)
    if slabs == "one slab":
        convert_file(src, tmp_path / "streamed.mla")
    else:
        source = NrrdSource.open(src)
        assert source is not None
        with source:
            convert_source(source, tmp_path / "streamed.mla", layout)
    _in_memory_from_nrrd(src, tmp_path / "memory.mla", layout)
    _same_mla(tmp_path / "streamed.mla", tmp_path / "memory.mla", slabs)


def test_ascii_nrrd_is_read_whole(tmp_path: Path, one_thread: None) -> None:
    src = _nrrd(tmp_path / "in.nrrd", ASCII[2], "ascii")
    assert NrrdSource.open(src) is None
    convert_file(src, tmp_path / "converted.mla")
    _in_memory_from_nrrd(src, tmp_path / "memory.mla", {"patch_size": "default", "cparams": _cparams(None, None, 2)})
    assert (tmp_path / "converted.mla").read_bytes() == (tmp_path / "memory.mla").read_bytes()


def _without_timestamp(data: bytes) -> bytes:
    """An NRRD file without pynrrd's "# on <date>" comment line."""
    return b"\n".join(line for line in data.split(b"\n") if not line.startswith(b"# on "))


@pytest.mark.parametrize("case", [*sorted(NRRD_CASES), "ascii"])
def test_mla_to_nrrd_streams_what_memory_gives(tmp_path: Path, slabs: str, case: str) -> None:
    encoding, suffix, data = NRRD_CASES.get(case, ASCII)
    src = _nrrd(tmp_path / f"in{suffix}", data, encoding)
    mla = tmp_path / "image.mla"
    _in_memory_from_nrrd(src, mla, _small_chunks(3))
    (tmp_path / "streamed").mkdir()
    (tmp_path / "memory").mkdir()
    convert_file(mla, tmp_path / "streamed" / f"out{suffix}")
    write_nrrd(MLArray.load(mla), tmp_path / "memory" / f"out{suffix}")
    names = sorted(p.name for p in (tmp_path / "memory").iterdir())
    assert sorted(p.name for p in (tmp_path / "streamed").iterdir()) == names
    for name in names:
        streamed = (tmp_path / "streamed" / name).read_bytes()
        assert _without_timestamp(streamed) == _without_timestamp((tmp_path / "memory" / name).read_bytes())
    again, _ = nrrd.read(str(tmp_path / "streamed" / f"out{suffix}"), index_order="F")
    assert again.dtype == data.dtype and np.array_equal(again, data)


def test_nrrd_with_skips_streams_what_memory_gives(tmp_path: Path, one_thread: None, slabs: str) -> None:
    """Line and byte skips before the data, as pynrrd applies them (it skips ``byte skip`` bytes twice on
    compressed data: in the file and after decompression)."""
    data = VOLUME[:40, :30, :20].astype("<u2")
    payload = b"junk line\nsecond junk\n" + b"\x07" * 6 + gzip.compress(b"\x00" * 6 + data.tobytes(order="F"))
    header = (
        "NRRD0004\ntype: uint16\ndimension: 3\nsizes: 40 30 20\nendian: little\nencoding: gzip\n"
        "line skip: 2\nbyte skip: 6\n\n"
    )
    src = tmp_path / "skips.nrrd"
    src.write_bytes(header.encode() + payload)
    layout = _small_chunks(3)
    source = NrrdSource.open(src)
    assert source is not None
    with source:
        convert_source(source, tmp_path / "streamed.mla", layout)
    _in_memory_from_nrrd(src, tmp_path / "memory.mla", layout)
    _same_mla(tmp_path / "streamed.mla", tmp_path / "memory.mla", "many slabs")
    assert np.array_equal(MLArray.load(tmp_path / "streamed.mla").to_numpy(), data)


@pytest.mark.parametrize("encoding", ["raw", "gzip"])
@pytest.mark.parametrize("damage", ["short", "long"])
def test_nrrd_data_of_the_wrong_length_fail_as_in_memory(tmp_path: Path, encoding: str, damage: str) -> None:
    data = VOLUME[:40, :30, :20]
    body = data.tobytes(order="F")
    body = body[:-100] if damage == "short" else body + b"\x01\x02"
    header = f"NRRD0004\ntype: int16\ndimension: 3\nsizes: 40 30 20\nendian: little\nencoding: {encoding}\n\n"
    src = tmp_path / "bad.nrrd"
    src.write_bytes(header.encode() + (gzip.compress(body) if encoding == "gzip" else body))
    with pytest.raises(SourceFormatError):
        read_nrrd_parts(src)
    with pytest.raises(SourceFormatError):
        convert_file(src, tmp_path / "out.mla")
    assert not (tmp_path / "out.mla").exists()


@pytest.mark.parametrize(
    ("dtype", "slope", "options"),
    [("|u1", 0.5, {}), ("|u1", 0.5, {"codec": "zstd"}), ("<i2", 2.0, {"clevel": 3}), ("|u1", 0.5, {"seg": True})],
)
def test_a_scaled_source_is_compressed_by_the_values_it_stores(
    tmp_path: Path, dtype: str, slope: float, options: dict[str, Any], monkeypatch: pytest.MonkeyPatch, one_thread: None
) -> None:
    """The compression of a scaled source follows the type its physical values are stored in, streamed or not.

    A uint8 source with a slope of 0.5 is stored as float32 (a byte shuffle, not the bit
    shuffle of 1-byte data); both conversions write the same bytes.
    """
    data = np.zeros((20, 24, 18), dtype=dtype)
    data[2:8, 3:9, 4:10] = 7
    data[10:, :, 5] = 3
    image = nib.Nifti1Image(data, np.eye(4))
    image.header.set_slope_inter(slope, 0.0)
    nib.save(image, tmp_path / "a.nii")
    convert_file(tmp_path / "a.nii", tmp_path / "streamed.mla", **options)
    monkeypatch.setitem(mlarray.convert.files.SOURCES, ".nii", lambda path: None)  # read whole
    convert_file(tmp_path / "a.nii", tmp_path / "whole.mla", **options)
    assert (tmp_path / "streamed.mla").read_bytes() == (tmp_path / "whole.mla").read_bytes()
    with MLArray.open(tmp_path / "streamed.mla") as converted:
        layout = converted.meta.layout
        assert layout is not None
        expected = named_filters(converted.dtype.itemsize, options)
        assert list(layout.filters) == expected, (converted.dtype, layout)
        assert np.array_equal(converted.to_numpy(), data * np.float64(slope))


def named_filters(itemsize: int, options: dict[str, Any]) -> list[str]:
    """The filters a conversion of values of ``itemsize`` bytes records (with ``seg``, as label maps get)."""
    if options.get("seg") and itemsize == 1:
        return []
    return ["bitshuffle"] if itemsize == 1 else ["shuffle"]
