"""Edge cases of the MetaImage and NRRD readers/writers: damaged compressed MetaImage data,
NRRD per-axis fields without one entry per axis, and 2-d slices written to MetaImage with
their position in a 3-d world."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlarray import MLArray
from mlarray.convert import convert_file
from mlarray.convert.metaimage import itk_to_parts, read_metaimage_parts
from mlarray.convert.nrrd import read_nrrd_parts
from mlarray.errors import MLArrayError, NotRepresentableError, SourceFormatError
from mlarray.models import Meta, Spatial

sitk = pytest.importorskip("SimpleITK")
nib = pytest.importorskip("nibabel")
nrrd = pytest.importorskip("nrrd")

# --------------------------------------------------------------------------- compressed MetaImage


def _write_mha(
    path: Path, data: np.ndarray[Any, Any], element: str, msb: bool, channels: int = 1, **extra: str
) -> None:
    """A compressed MetaImage written by hand: ``data`` in C order ``(k, j, i[, c])``, in the given byte order."""
    n = data.ndim - (channels > 1)
    sizes = " ".join(str(v) for v in reversed(data.shape[:n]))
    raw = data.astype(data.dtype.newbyteorder(">" if msb else "<")).tobytes()
    body = zlib.compress(raw)
    fields = {
        "ObjectType": "Image",
        "NDims": str(n),
        "BinaryData": "True",
        "BinaryDataByteOrderMSB": "True" if msb else "False",
        "CompressedData": "True",
        "CompressedDataSize": str(len(body)),
        "ElementSpacing": " ".join(["0.5"] * n),
        "Offset": " ".join(str(1.5 * (k + 1)) for k in range(n)),
        "DimSize": sizes,
        **({"ElementNumberOfChannels": str(channels)} if channels > 1 else {}),
        "ElementType": element,
        **extra,
    }
    data_file = fields.pop("ElementDataFile", "LOCAL")
    header = "".join(f"{key} = {value}\n" for key, value in fields.items()) + f"ElementDataFile = {data_file}\n"
    if data_file == "LOCAL":
        path.write_bytes(header.encode() + body)
    else:
        skip = int(fields.get("HeaderSize", "0"))
        path.write_bytes(header.encode())
        (path.parent / data_file).write_bytes(b"\x07" * max(skip, 0) + body)


def _itk_values(path: Path) -> tuple[np.ndarray[Any, Any], Any]:
    image = sitk.ReadImage(str(path), imageIO="MetaImageIO")
    return itk_to_parts(image, str(path))


ELEMENTS = [
    ("MET_CHAR", np.int8),
    ("MET_UCHAR", np.uint8),
    ("MET_SHORT", np.int16),
    ("MET_USHORT", np.uint16),
    ("MET_INT", np.int32),
    ("MET_UINT", np.uint32),
    ("MET_LONG", np.int32),
    ("MET_LONG_LONG", np.int64),
    ("MET_ULONG_LONG", np.uint64),
    ("MET_FLOAT", np.float32),
    ("MET_DOUBLE", np.float64),
]


@pytest.mark.parametrize(("element", "dtype"), ELEMENTS)
@pytest.mark.parametrize("msb", [False, True])
@pytest.mark.parametrize("shape_channels", [((3, 4, 5), 1), ((4, 5, 3), 3), ((3, 4, 5, 2), 2)])
def test_compressed_values_equal_simpleitk(
    tmp_path: Path, element: str, dtype: Any, msb: bool, shape_channels: tuple[tuple[int, ...], int]
) -> None:
    shape, channels = shape_channels
    rng = np.random.default_rng(7)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    if info is None:
        data = rng.normal(size=shape).astype(dtype) * 1000
    else:
        data = rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    path = tmp_path / "c.mha"
    _write_mha(path, data, element, msb, channels)
    ours, meta = read_metaimage_parts(path)
    theirs, spatial = _itk_values(path)
    assert ours.dtype == theirs.dtype and ours.dtype.isnative
    assert ours.shape == theirs.shape
    assert ours.tobytes() == theirs.tobytes()
    assert meta.spatial == spatial


@pytest.mark.parametrize("header_size", [None, 0, 11, -1])
def test_compressed_mhd_with_separate_data_file_equals_simpleitk(tmp_path: Path, header_size: int | None) -> None:
    data = np.arange(60, dtype=np.int16).reshape(3, 4, 5) - 30
    extra = {"ElementDataFile": "c.zraw"}
    if header_size is not None:
        extra["HeaderSize"] = str(header_size)
    _write_mha(tmp_path / "c.mhd", data, "MET_SHORT", False, **extra)
    if header_size == -1:  # ITK reads no compressed data "at the end of the file": left to ITK, which refuses it
        with pytest.raises(SourceFormatError):
            read_metaimage_parts(tmp_path / "c.mhd")
        return
    ours, meta = read_metaimage_parts(tmp_path / "c.mhd")
    theirs, spatial = _itk_values(tmp_path / "c.mhd")
    assert ours.tobytes() == theirs.tobytes() == np.transpose(data).tobytes()
    assert meta.spatial == spatial


def test_simpleitk_written_compressed_files_read_the_same(tmp_path: Path) -> None:
    data = np.random.default_rng(1).integers(-3000, 3000, (5, 6, 7)).astype(np.int16)
    for name in ("w.mha", "w.mhd"):
        sitk.WriteImage(sitk.GetImageFromArray(data), str(tmp_path / name), useCompression=True)
        ours, _ = read_metaimage_parts(tmp_path / name)
        assert np.array_equal(ours, np.transpose(data))


def _damaged(tmp_path: Path, name: str = "bad.mha") -> Path:
    data = np.random.default_rng(4).integers(-3000, 3000, (5, 6, 7)).astype(np.int16)
    good = tmp_path / ("good" + Path(name).suffix)
    sitk.WriteImage(sitk.GetImageFromArray(data), str(good), useCompression=True)
    target = good if name.endswith(".mha") else next(tmp_path.glob("good*.zraw"))
    raw = bytearray(target.read_bytes())
    start = raw.index(b"LOCAL\n") + 6 if name.endswith(".mha") else 0
    for j in range(start + 10, len(raw) - 4, 7):
        raw[j] ^= 0x5A
    target.write_bytes(bytes(raw))
    return good


@pytest.mark.parametrize("name", ["bad.mha", "bad.mhd"])
def test_a_damaged_zlib_stream_is_invalid_source(tmp_path: Path, name: str, capfd: pytest.CaptureFixture[str]) -> None:
    path = _damaged(tmp_path, name)
    capfd.readouterr()
    with pytest.raises(SourceFormatError) as info:
        convert_file(path, tmp_path / "out.mla")
    assert info.value.code == "INVALID_SOURCE"
    assert "damaged" in str(info.value) or "end" in str(info.value)
    assert not (tmp_path / "out.mla").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("out") or "tmp" in p.name] == []
    assert "Uncompress" not in capfd.readouterr().err  # ITK's C++ messages stay off stderr


@pytest.mark.parametrize("change", ["short", "long", "cut"])
def test_a_stream_of_the_wrong_length_is_invalid_source(tmp_path: Path, change: str) -> None:
    data = np.arange(60, dtype=np.int16).reshape(3, 4, 5)
    path = tmp_path / "w.mha"
    _write_mha(path, data, "MET_SHORT", False)
    text = path.read_bytes()
    head, body = text[: text.index(b"LOCAL\n") + 6], text[text.index(b"LOCAL\n") + 6 :]
    if change == "short":
        body = zlib.compress(np.transpose(data).tobytes()[:-2])
    elif change == "long":
        body = zlib.compress(np.transpose(data).tobytes() + b"\0\0")
    else:
        body = body[:-6]  # the stream stops before its end
    head = head.replace(b"CompressedDataSize", b"X-Size")  # take the rest of the file
    path.write_bytes(head + body)
    with pytest.raises(SourceFormatError):
        read_metaimage_parts(path)


# --------------------------------------------------------------------------- NRRD header checks

HEAD = "NRRD0004\ntype: short\ndimension: 3\nsizes: 4 5 6\nendian: little\nencoding: raw\n"

SHORT_FIELDS = {
    "kinds": "kinds: domain domain\n",
    "spacings": "spacings: 1 1\n",
    "thicknesses": "thicknesses: 1 1\n",
    "axis mins": "axis mins: 0 0\n",
    "axis maxs": "axis maxs: 1 1 1 1\n",
    "centers": "centers: cell cell\n",
    "labels": 'labels: "x" "y"\n',
    "units": 'units: "mm" "mm"\n',
    "space directions": "space: RAS\nspace directions: (1,0,0) (0,1,0)\n",
}


def _nrrd(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / (name.replace(" ", "_") + ".nrrd")
    path.write_bytes(text.encode() + b"\n" + np.arange(120, dtype=np.int16).tobytes())
    return path


@pytest.mark.parametrize("field", sorted(SHORT_FIELDS))
def test_a_per_axis_field_without_one_entry_per_axis_is_invalid_source(tmp_path: Path, field: str) -> None:
    path = _nrrd(tmp_path, field, HEAD + SHORT_FIELDS[field])
    for read in (lambda: convert_file(path, tmp_path / "o.mla"), lambda: read_nrrd_parts(path)):
        with pytest.raises(SourceFormatError, match=repr(field)) as info:
            read()
        assert info.value.code == "INVALID_SOURCE"
    assert not (tmp_path / "o.mla").exists()


@pytest.mark.parametrize("sizes", ["4 -5 6", "4 0 6", "4 5"])
def test_sizes_below_one_or_too_few_are_invalid_source(tmp_path: Path, sizes: str) -> None:
    path = _nrrd(tmp_path, "sizes", HEAD.replace("sizes: 4 5 6", f"sizes: {sizes}"))
    for read in (lambda: convert_file(path, tmp_path / "o.mla"), lambda: read_nrrd_parts(path)):
        with pytest.raises(SourceFormatError, match="'sizes'"):
            read()


def test_a_space_vector_of_the_wrong_length_is_invalid_source(tmp_path: Path) -> None:
    text = HEAD + "space: RAS\nspace directions: (1,0,0) (0,1,0) (0,0,1)\nspace origin: (1,2)\n"
    with pytest.raises(SourceFormatError, match="'space origin'"):
        read_nrrd_parts(_nrrd(tmp_path, "origin", text))


def test_well_formed_per_axis_fields_still_convert(tmp_path: Path) -> None:
    text = HEAD + 'kinds: domain domain domain\nspacings: 1 2 3\ncenters: cell cell cell\nlabels: "a" "b" "c"\n'
    data, meta = read_nrrd_parts(_nrrd(tmp_path, "fine", text))
    assert data.shape == (4, 5, 6) and meta.spatial.spacing == [1.0, 2.0, 3.0]


def test_nrrd_block_data_is_not_representable(tmp_path: Path) -> None:
    text = "NRRD0004\ntype: block\nblock size: 4\ndimension: 1\nsizes: 3\nencoding: raw\n"
    path = tmp_path / "b.nrrd"
    path.write_bytes(text.encode() + b"\n" + bytes(12))
    with pytest.raises(NotRepresentableError) as info:
        convert_file(path, tmp_path / "b.mla")
    assert info.value.code == "NOT_REPRESENTABLE"


def test_the_docs_say_what_block_data_gives() -> None:
    docs = (Path(__file__).resolve().parents[1] / "docs" / "conversion.md").read_text()
    errors = docs[docs.index("## Errors") :]
    assert "NRRD `block` data, are reported as `INVALID_SOURCE`" not in errors
    assert "NRRD `block` data" in errors[: errors.index("Nothing is written when conversion fails")]


# --------------------------------------------------------------------------- slices written to MetaImage


def _world(spatial: Any, index: tuple[int, ...]) -> np.ndarray[Any, Any]:
    n = len(index)
    d = np.asarray(spatial.direction, dtype=np.float64).reshape(n, n)
    return np.asarray(spatial.origin) + d @ (np.asarray(spatial.spacing) * np.asarray(index))


def _lps(spatial: Any, index: tuple[int, ...], z: float) -> np.ndarray[Any, Any]:
    """World of a 2-d index as a 3-d LPS point (the image's frame is RAS or LPS)."""
    xy = _world(spatial, index)
    point = np.array([xy[0], xy[1], z])
    return point * [-1, -1, 1] if spatial.coord_system == "RAS" else point


def _nifti_slice(tmp_path: Path) -> tuple[Path, float]:
    theta = 0.3
    rotation = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.75, 0.5, 2.5])
    affine[:3, 3] = [10.25, -20.5, 30.75]
    nib.save(nib.Nifti1Image(np.arange(20, dtype=np.int16).reshape(4, 5), affine), str(tmp_path / "s.nii.gz"))
    convert_file(tmp_path / "s.nii.gz", tmp_path / "s.mla")
    return tmp_path / "s.mla", 30.75


def _nrrd_slice(tmp_path: Path) -> tuple[Path, float]:
    header = {
        "space": "right-anterior-superior",
        "space directions": np.array([[0.0, 0.8, 0.0], [-0.6, 0.0, 0.0]]),
        "space origin": np.array([5.0, -7.0, -12.5]),
    }
    nrrd.write(str(tmp_path / "s.nrrd"), np.arange(12, dtype=np.float32).reshape(3, 4), header, index_order="F")
    convert_file(tmp_path / "s.nrrd", tmp_path / "s.mla")
    return tmp_path / "s.mla", -12.5


@pytest.mark.parametrize("make", [_nifti_slice, _nrrd_slice])
def test_a_slice_keeps_its_3d_position_in_metaimage(tmp_path: Path, make: Any) -> None:
    mla, z = make(tmp_path)
    image = MLArray.load(mla)
    assert image.shape is not None and len(image.shape) == 2
    convert_file(mla, tmp_path / "s.mha")
    itk = sitk.ReadImage(str(tmp_path / "s.mha"))
    assert itk.GetSize() == (*image.shape, 1)
    for index in [(0, 0), (image.shape[0] - 1, 0), (1, image.shape[1] - 1)]:
        point = itk.TransformIndexToPhysicalPoint((*index, 0))
        assert np.allclose(point, _lps(image.meta.spatial, index, z), rtol=0, atol=1e-9)
    assert np.array_equal(sitk.GetArrayFromImage(itk)[0].T, image.to_numpy())
    # and back: the 2-d image, its geometry (in LPS), and the position for the next export
    convert_file(tmp_path / "s.mha", tmp_path / "back.mla")
    back = MLArray.load(tmp_path / "back.mla")
    assert back.shape == image.shape and np.array_equal(back.to_numpy(), image.to_numpy())
    assert back.meta.spatial.axis_labels == ["spatial", "spatial"] and back.meta.spatial.coord_system == "LPS"
    for index in [(0, 0), (2, 3)]:
        expected = _lps(image.meta.spatial, index, z)[:2]
        assert np.allclose(_world(back.meta.spatial, index), expected, rtol=0, atol=1e-9)
    assert back.meta.source is not None and np.asarray(back.meta.source["world"])[2, 3] == z
    convert_file(tmp_path / "back.mla", tmp_path / "again.nii.gz")
    assert nib.load(str(tmp_path / "again.nii.gz")).affine[2, 3] == pytest.approx(z, abs=1e-5)
    convert_file(tmp_path / "back.mla", tmp_path / "again.mha")
    assert sitk.ReadImage(str(tmp_path / "again.mha")).GetOrigin()[2] == z
    convert_file(tmp_path / "back.mla", tmp_path / "again.nrrd")
    assert nrrd.read_header(str(tmp_path / "again.nrrd"))["mlarray_space_origin"].endswith(f",{z!r})")
    # an uncompressed copy (streamed path otherwise) reads back the same
    plain = sitk.ReadImage(str(tmp_path / "s.mha"))
    sitk.WriteImage(plain, str(tmp_path / "plain.mhd"), useCompression=False)
    convert_file(tmp_path / "plain.mhd", tmp_path / "plain.mla")
    again = MLArray.load(tmp_path / "plain.mla")
    assert again.shape == image.shape and again.meta.spatial == back.meta.spatial


def test_a_vector_slice_keeps_its_position(tmp_path: Path) -> None:
    header = {
        "space": "right-anterior-superior",
        "kinds": ["domain", "domain", "vector"],
        "space directions": np.array([[0.5, 0.0, 0.0], [0.0, 0.5, 0.0], [np.nan, np.nan, np.nan]]),
        "space origin": np.array([1.0, 2.0, -44.0]),
    }
    data = np.arange(60, dtype=np.float32).reshape(4, 5, 3)
    nrrd.write(str(tmp_path / "v.nrrd"), data, header, index_order="F")
    convert_file(tmp_path / "v.nrrd", tmp_path / "v.mla")
    source = MLArray.load(tmp_path / "v.mla")
    assert source.meta.spatial.axis_labels == ["spatial", "spatial", "components"]
    convert_file(tmp_path / "v.mla", tmp_path / "v.mha")
    itk = sitk.ReadImage(str(tmp_path / "v.mha"))
    assert itk.GetSize() == (4, 5, 1) and itk.GetNumberOfComponentsPerPixel() == 3
    assert itk.GetOrigin() == (-1.0, -2.0, -44.0)
    convert_file(tmp_path / "v.mha", tmp_path / "v2.mla")
    back = MLArray.load(tmp_path / "v2.mla")
    assert back.shape == source.shape and np.array_equal(back.to_numpy(), data)
    assert back.meta.spatial.axis_labels == ["spatial", "spatial", "components"]


def test_a_slice_without_a_3d_world_stays_2d(tmp_path: Path) -> None:
    spatial = Spatial(spacing=[1.0, 2.0], origin=[3.0, 4.0], direction=[[1.0, 0.0], [0.0, 1.0]], coord_system="LPS")
    image = MLArray(np.ones((3, 4), np.uint8), meta=Meta(spatial=spatial))
    image.save(tmp_path / "plain.mla")
    convert_file(tmp_path / "plain.mla", tmp_path / "plain.mha")
    itk = sitk.ReadImage(str(tmp_path / "plain.mha"))
    assert itk.GetDimension() == 2 and itk.GetOrigin() == (3.0, 4.0)
    data, meta = read_metaimage_parts(tmp_path / "plain.mha")
    assert data.shape == (3, 4) and "world" not in (meta.source or {})


def test_a_3d_one_slice_file_from_elsewhere_stays_3d(tmp_path: Path) -> None:
    itk = sitk.GetImageFromArray(np.zeros((1, 4, 3), np.int16))
    itk.SetOrigin((1.0, 2.0, 3.0))
    sitk.WriteImage(itk, str(tmp_path / "one.mha"))
    data, meta = read_metaimage_parts(tmp_path / "one.mha")
    assert data.shape == (3, 4, 1) and meta.spatial.origin == [1.0, 2.0, 3.0]


def test_errors_stay_typed(tmp_path: Path) -> None:
    path = _damaged(tmp_path)
    with pytest.raises(MLArrayError):
        read_metaimage_parts(path)


@pytest.mark.parametrize("shape", [(7,), (1, 1, 6), (2, 3, 4)])
def test_compressed_arrays_are_writable(tmp_path: Path, shape: tuple[int, ...]) -> None:
    _write_mha(tmp_path / "w.mha", np.arange(np.prod(shape), dtype=np.int16).reshape(shape), "MET_SHORT", False)
    data, _ = read_metaimage_parts(tmp_path / "w.mha")
    assert data.flags.writeable and data.shape == shape[::-1]


def test_a_slice_whose_source_third_axis_is_oblique_gets_an_orthogonal_one(tmp_path: Path) -> None:
    affine = np.array([[0.5, 0.0, 0.3, 4.0], [0.0, 0.5, 0.0, 5.0], [0.0, 0.0, 2.5, -6.0], [0, 0, 0, 1.0]])
    nib.save(nib.Nifti1Image(np.ones((3, 4), np.int16), affine), str(tmp_path / "o.nii"))
    convert_file(tmp_path / "o.nii", tmp_path / "o.mla")
    convert_file(tmp_path / "o.mla", tmp_path / "o.mha")
    itk = sitk.ReadImage(str(tmp_path / "o.mha"))
    assert itk.GetOrigin() == (-4.0, -5.0, -6.0)
    assert np.allclose(np.asarray(itk.GetDirection()).reshape(3, 3), np.diag([-1.0, -1.0, 1.0]))
    assert itk.GetSpacing()[2] == pytest.approx(np.hypot(0.3, 2.5))
    assert np.allclose(itk.TransformIndexToPhysicalPoint((2, 3, 0)), (-5.0, -6.5, -6.0))
