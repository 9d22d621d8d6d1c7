"""NIfTI conversion keeps what the file says: vector axes, extension bytes, headers with odd but legal fields.

Regressions of the convert audit (findings 5, 8, 9, 10):

* a ``components`` axis is NIfTI dimension 5 after a length-1 dimension 4, with
  ``intent_code`` VECTOR (it was written as dimension 4, time); a ``channel`` axis stays
  dimension 4, as multi-modal NIfTI keeps channels; axis orders NIfTI would read back as
  other axes are refused;
* header extensions keep their trailing NUL bytes (nibabel strips them on reading);
* a copied header whose qform nibabel decodes only after its load-time fixes
  (negative ``pixdim``, ``qfac`` 0) is kept bit for bit;
* unused ``dim`` entries that were 0 stay 0.

Source files are written with nibabel (or patched byte by byte where nibabel writes
only the canonical form); the round trips are NIfTI -> ``.mla`` file -> NIfTI.
"""

from __future__ import annotations

import gzip
import logging
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conversion_helpers import roundtrip

import mlarray.storage.stream
from mlarray import MLArray
from mlarray.convert import convert_file, read_nifti, write_nifti
from mlarray.convert._common import b64decode, b64encode
from mlarray.errors import NotRepresentableError

nib = pytest.importorskip("nibabel")

RNG = np.random.default_rng(11)
VECTOR = 1007  # NIFTI_INTENT_VECTOR


@pytest.fixture(autouse=True)
def _quiet_nibabel() -> Iterator[None]:
    """The patched headers make nibabel log its load-time fixes; they are the point of these tests."""
    logger = logging.getLogger("nibabel.global")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)


def content(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.name.endswith(".gz") else data


def patched(path: Path, *edits: tuple[int, str, Any]) -> Path:
    """Overwrite fields of ``path`` in place: ``(offset, struct format, value)`` each."""
    raw = bytearray(path.read_bytes())
    for offset, fmt, value in edits:
        struct.pack_into(fmt, raw, offset, *(value if isinstance(value, tuple) else (value,)))
    path.write_bytes(bytes(raw))
    return path


def saved(path: Path, data: np.ndarray[Any, Any], **fields: Any) -> Path:
    """A NIfTI-1 file of ``data`` with an identity sform and qform and the given header fields."""
    image = nib.Nifti1Image(data, np.eye(4))
    for key, value in fields.items():
        image.header[key] = value
    nib.save(image, str(path))
    return path


# --------------------------------------------------------------------------- vector axes (finding 5)


def test_vector_axis_from_nrrd_becomes_nifti_dimension_5(tmp_path: Path) -> None:
    nrrd = pytest.importorskip("nrrd")
    field = RNG.random((4, 5, 6, 3)).astype(np.float32)  # a displacement field, vector last
    src = tmp_path / "field.nrrd"
    header = {
        "space": "left-posterior-superior",
        "kinds": ["domain", "domain", "domain", "vector"],
        "space directions": np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [np.nan] * 3]),
        "space origin": [0.0, 0.0, 0.0],
    }
    nrrd.write(str(src), field, header, index_order="F")
    convert_file(src, tmp_path / "field.mla")
    convert_file(tmp_path / "field.mla", tmp_path / "field.nii.gz")

    written = nib.load(str(tmp_path / "field.nii.gz"))
    assert written.header["dim"][:6].tolist() == [5, 4, 5, 6, 1, 3]
    assert int(written.header["intent_code"]) == VECTOR
    np.testing.assert_array_equal(np.asarray(written.dataobj)[:, :, :, 0, :], field)

    back = read_nifti(tmp_path / "field.nii.gz")
    assert back.meta.spatial.axis_labels == ["spatial", "spatial", "spatial", "components"]
    np.testing.assert_array_equal(back.to_numpy(), field)

    sitk = pytest.importorskip("SimpleITK")
    itk = sitk.ReadImage(str(tmp_path / "field.nii.gz"))
    assert (itk.GetDimension(), itk.GetNumberOfComponentsPerPixel()) == (3, 3)


def test_vector_axis_of_an_image_built_in_memory(tmp_path: Path) -> None:
    data = RNG.random((3, 4, 5, 2)).astype(np.float32)
    image = MLArray(data, axis_labels=["spatial", "spatial", "spatial", "components"], spacing=[1.0, 2.0, 3.0])
    write_nifti(image, tmp_path / "v.nii")
    header = nib.load(str(tmp_path / "v.nii")).header
    assert header["dim"][:6].tolist() == [5, 3, 4, 5, 1, 2]
    assert int(header["intent_code"]) == VECTOR
    back = read_nifti(tmp_path / "v.nii")
    assert back.meta.spatial.axis_labels == ["spatial", "spatial", "spatial", "components"]
    assert back.meta.spatial.spacing == [1.0, 2.0, 3.0]
    np.testing.assert_array_equal(back.to_numpy(), data)


def test_a_channel_axis_is_dimension_4_as_multi_modal_nifti_keeps_channels(tmp_path: Path) -> None:
    data = RNG.random((3, 4, 5, 2)).astype(np.float32)
    image = MLArray(data, axis_labels=["spatial", "spatial", "spatial", "channel"], spacing=[1.0, 2.0, 3.0])
    write_nifti(image, tmp_path / "c.nii")
    header = nib.load(str(tmp_path / "c.nii")).header
    assert header["dim"][:5].tolist() == [4, 3, 4, 5, 2] and int(header["intent_code"]) == 0
    back = read_nifti(tmp_path / "c.nii")
    assert back.meta.spatial.axis_labels == ["spatial", "spatial", "spatial", "temporal"]
    np.testing.assert_array_equal(back.to_numpy(), data)


def test_a_source_intent_code_is_kept(tmp_path: Path) -> None:
    data = RNG.random((3, 4, 5)).astype(np.float32)
    src = saved(tmp_path / "stat.nii", data, intent_code=5)  # NIFTI_INTENT_TTEST on the 3-d source
    meta = read_nifti(src).meta.model_copy(deep=True)
    meta.spatial.axis_labels = ["spatial", "spatial", "spatial", "components"]
    write_nifti(MLArray(np.stack([data, data], axis=-1), meta=meta), tmp_path / "out.nii")
    header = nib.load(str(tmp_path / "out.nii")).header
    assert header["dim"][:6].tolist() == [5, 3, 4, 5, 1, 2]
    assert int(header["intent_code"]) == 5


@pytest.mark.parametrize(
    ("shape", "intent", "labels"),
    [
        ((3, 4, 5, 1, 3), 0, ["spatial", "spatial", "spatial", "components"]),  # no intent: none is added
        ((3, 4, 5, 1, 6), 1005, ["spatial", "spatial", "spatial", "components"]),  # NIFTI_INTENT_SYMMATRIX
        ((3, 4, 5, 2, 3), VECTOR, ["spatial", "spatial", "spatial", "temporal", "components"]),
        ((3, 4, 5, 1, 2, 2), 0, ["spatial", "spatial", "spatial", "components", "non_spatial"]),
    ],
)
def test_nifti_with_a_5th_dimension_round_trips_byte_for_byte(
    tmp_path: Path, shape: tuple[int, ...], intent: int, labels: list[str]
) -> None:
    data = RNG.random(shape).astype(np.float32)
    src = saved(tmp_path / "src.nii", data, intent_code=intent)
    image, out = roundtrip(src, tmp_path)
    assert image.meta.spatial.axis_labels == labels
    np.testing.assert_array_equal(image.to_numpy().reshape(shape), data)
    assert out.read_bytes() == src.read_bytes()


def test_vector_nifti_streams_in_slabs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mlarray.storage.stream, "SLAB_BYTES", 1)
    data = RNG.integers(-1000, 1000, (6, 5, 4, 1, 3)).astype(np.int16)
    src = saved(tmp_path / "src.nii.gz", data, intent_code=VECTOR)
    image, out = roundtrip(src, tmp_path, "back.nii.gz")
    np.testing.assert_array_equal(image.to_numpy(), data[:, :, :, 0, :])
    np.testing.assert_array_equal(image.to_numpy(), read_nifti(src).to_numpy())
    assert content(out) == content(src)


def test_a_time_axis_of_length_1_before_components_is_written_as_before(tmp_path: Path) -> None:
    """An image read by an earlier version keeps its length-1 time axis; it is the same file."""
    data = RNG.random((3, 4, 5, 1, 3)).astype(np.float32)
    labels = ["spatial", "spatial", "spatial", "temporal", "components"]
    write_nifti(MLArray(data, axis_labels=labels), tmp_path / "old.nii")
    header = nib.load(str(tmp_path / "old.nii")).header
    assert header["dim"][:6].tolist() == [5, 3, 4, 5, 1, 3]
    np.testing.assert_array_equal(read_nifti(tmp_path / "old.nii").to_numpy(), data[:, :, :, 0, :])


@pytest.mark.parametrize(
    "extra",
    [
        ["non_spatial"],  # would read back as time
        ["my_label"],
        ["components", "temporal"],  # time comes before the vector dimension
        ["temporal", "non_spatial"],  # would read back with a length-1 components axis
        ["temporal", "temporal"],
        ["components", "channel"],
    ],
)
def test_axes_nifti_would_read_as_other_axes_are_refused(tmp_path: Path, extra: list[str]) -> None:
    image = MLArray(np.zeros((2, 3, 4) + (2,) * len(extra), np.float32), axis_labels=["spatial"] * 3 + extra)
    with pytest.raises(NotRepresentableError):
        write_nifti(image, tmp_path / "x.nii")
    assert not (tmp_path / "x.nii").exists()


# --------------------------------------------------------------------------- extensions (finding 8)


def extension_block(path: Path) -> bytes:
    """The bytes from the end of the header's four flag bytes to ``vox_offset`` (.nii, NIfTI-1, little-endian)."""
    raw = content(path)
    offset = int(struct.unpack_from("<f", raw, 108)[0])
    return raw[352:offset]


@pytest.mark.parametrize("ending", [".nii", ".nii.gz"])
def test_extension_bytes_are_kept_with_their_trailing_nuls(tmp_path: Path, ending: str) -> None:
    image = nib.Nifti1Image(np.arange(24, dtype=np.int16).reshape(2, 3, 4), np.eye(4))
    afni = b"<?xml version='1.0' ?>\n<" + b"\x00"  # 24 text bytes and AFNI's NUL terminator: esize 48
    binary = b"\x01\x02\x00\x00\x00\x00\x00\x00"  # a binary extension ending in zeros: esize 16
    image.header.extensions.append(nib.nifti1.Nifti1Extension(4, afni))
    image.header.extensions.append(nib.nifti1.Nifti1Extension(40, binary))
    src = tmp_path / f"src{ending}"
    nib.save(image, str(src))
    mla, out = roundtrip(src, tmp_path, f"back{ending}")
    block = extension_block(src)
    entries = mla.meta.source["extensions"]
    assert [(e["code"], e["esize"]) for e in entries] == [(4, 48), (40, 16)]
    assert b64decode(entries[0]["content_base64"]) == block[8:48]
    assert b64decode(entries[0]["content_base64"]).startswith(afni)
    assert b64decode(entries[1]["content_base64"]) == binary
    assert content(out) == content(src)


@pytest.mark.parametrize("version", [1, 2])
def test_big_endian_extensions_are_kept(tmp_path: Path, version: int) -> None:
    image_class = nib.Nifti2Image if version == 2 else nib.Nifti1Image
    header = image_class.header_class(endianness=">")
    image = image_class(np.arange(24, dtype=">i2").reshape(2, 3, 4), np.eye(4), header=header)
    image.header.extensions.append(nib.nifti1.Nifti1Extension(4, b"x" * 8 + b"\x00"))  # esize 32; 16 without the NUL
    src = tmp_path / "src.nii"
    nib.save(image, str(src))
    mla, out = roundtrip(src, tmp_path)
    assert mla.meta.source["extensions"][0]["esize"] == 32
    assert out.read_bytes() == src.read_bytes()


@pytest.mark.filterwarnings("ignore:Extension size is not a multiple of 16")  # nibabel's warning on reading
def test_an_extension_size_that_is_no_multiple_of_16_is_written_as_stored(tmp_path: Path) -> None:
    src = saved(tmp_path / "src.nii", np.arange(24, dtype=np.uint8).reshape(2, 3, 4))
    raw = src.read_bytes()
    text = b"comment\x00\x00 x\x00\x00"  # 13 bytes: esize 21
    record = struct.pack("<ii", 8 + len(text), 6) + text
    rebuilt = bytearray(raw[:348] + b"\x01\x00\x00\x00" + record + raw[352:])
    struct.pack_into("<f", rebuilt, 108, 352.0 + len(record))  # vox_offset after the record
    src.write_bytes(bytes(rebuilt))
    mla, out = roundtrip(src, tmp_path)
    assert mla.meta.source["extensions"][0]["esize"] == 21
    assert out.read_bytes() == src.read_bytes()


def test_extensions_of_older_mla_files_are_written_as_before(tmp_path: Path) -> None:
    """``.mla`` files written before ``esize`` was kept hold nibabel's stripped content: padded as nibabel pads."""
    image = nib.Nifti1Image(np.arange(24, dtype=np.int16).reshape(2, 3, 4), np.eye(4))
    image.header.extensions.append(nib.nifti1.Nifti1Extension(4, b"<?xml version='1.0' ?>\n<\x00"))
    image.header.extensions.append(nib.nifti1.Nifti1Extension(6, b"sixteen bytes ok"))
    src = tmp_path / "src.nii"
    nib.save(image, str(src))
    mla = read_nifti(src)
    mla.meta.source["extensions"] = [  # the earlier form
        {"code": 4, "content_base64": b64encode(b"<?xml version='1.0' ?>\n<")},
        {"code": 6, "content_base64": b64encode(b"sixteen bytes ok")},
    ]
    mla.save(tmp_path / "old.mla")
    convert_file(tmp_path / "old.mla", tmp_path / "out.nii")
    block = extension_block(tmp_path / "out.nii")
    expected = struct.pack("<ii", 32, 4) + b"<?xml version='1.0' ?>\n<" + bytes(0)
    expected += struct.pack("<ii", 32, 6) + b"sixteen bytes ok" + bytes(8)
    assert block == expected
    exts = nib.load(str(tmp_path / "out.nii")).header.extensions
    assert [(int(e.get_code()), e.get_content()) for e in exts] == [
        (4, b"<?xml version='1.0' ?>\n<"),
        (6, b"sixteen bytes ok"),
    ]
    np.testing.assert_array_equal(np.asarray(nib.load(str(tmp_path / "out.nii")).dataobj), mla.to_numpy())


# --------------------------------------------------------------------------- geometry check (finding 9)


@pytest.mark.parametrize(
    "case",
    ["qform, negative pixdim", "qform, qfac 0", "no codes, negative pixdim", "both, negative pixdim"],
)
def test_header_with_fields_nibabel_fixes_on_load_is_kept(tmp_path: Path, case: str) -> None:
    image = nib.Nifti1Image(np.arange(24, dtype=np.int16).reshape(2, 3, 4), None)
    zooms = np.diag([0.8, 0.9, 2.5, 1.0])
    image.set_qform(zooms, 0 if case.startswith("no codes") else 1)
    image.set_sform(zooms if case.startswith("both") else None, 1 if case.startswith("both") else 0)
    src = tmp_path / "src.nii"
    nib.save(image, str(src))
    if "negative pixdim" in case:
        patched(src, (80, "<3f", (-0.8, 0.9, 2.5)))  # pixdim[1:4]: old tools write signed sizes; nibabel reads abs
    else:
        patched(src, (76, "<f", 0.0))  # pixdim[0] (qfac) 0: nibabel reads it as 1
    assert int(nib.load(str(src)).header["qform_code"]) == (0 if case.startswith("no codes") else 1)
    mla, out = roundtrip(src, tmp_path)
    assert mla.meta.spatial.spacing == pytest.approx([0.8, 0.9, 2.5])
    assert out.read_bytes() == src.read_bytes()


def test_a_changed_geometry_is_still_written(tmp_path: Path) -> None:
    image = nib.Nifti1Image(np.arange(24, dtype=np.int16).reshape(2, 3, 4), None)
    image.set_qform(np.diag([0.8, 0.9, 2.5, 1.0]), 1)
    image.set_sform(None, 0)
    src = tmp_path / "src.nii"
    nib.save(image, str(src))
    patched(src, (80, "<f", -0.8))
    mla = read_nifti(src)
    mla.meta.spatial.spacing = [2.0, 0.9, 2.5]
    write_nifti(mla, tmp_path / "out.nii")
    np.testing.assert_allclose(nib.load(str(tmp_path / "out.nii")).affine, np.diag([2.0, 0.9, 2.5, 1.0]), atol=1e-6)


# --------------------------------------------------------------------------- unused dim entries (finding 10)


@pytest.mark.parametrize(("shape", "unused"), [((5, 6, 7), (0, 0, 0, 0)), ((5, 6, 7, 2), (0, 0, 0))])
def test_unused_dims_keep_their_values(tmp_path: Path, shape: tuple[int, ...], unused: tuple[int, ...]) -> None:
    src = saved(tmp_path / "src.nii", np.arange(np.prod(shape), dtype=np.int16).reshape(shape))
    patched(src, (40 + 2 * (len(shape) + 1), f"<{len(unused)}h", unused))  # dim[k] at byte 40 + 2k
    assert nib.load(str(src)).header["dim"].tolist()[len(shape) + 1 :] == list(unused)
    _, out = roundtrip(src, tmp_path)
    assert out.read_bytes() == src.read_bytes()


def test_unused_dims_follow_a_new_shape(tmp_path: Path) -> None:
    src = saved(tmp_path / "src.nii", np.arange(210, dtype=np.int16).reshape(5, 6, 7))
    patched(src, (48, "<4h", (0, 0, 0, 0)))
    image = read_nifti(src)
    cropped = MLArray(image.to_numpy()[:, :, :3], meta=image.meta.model_copy(deep=True))
    write_nifti(cropped, tmp_path / "out.nii")
    assert nib.load(str(tmp_path / "out.nii")).header["dim"].tolist() == [3, 5, 6, 3, 1, 1, 1, 1]
