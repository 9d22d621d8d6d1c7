"""MetaImage -> .mla slab by slab (mlarray.convert.metaimage.MetaImageSource) against the whole-file path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from memlimit import run_limited

from mlarray import MLArray
from mlarray.convert import convert_file
from mlarray.convert import metaimage as mi
from mlarray.convert._stream import convert_source
from mlarray.convert.metaimage import MetaImageSource, read_metaimage_parts
from mlarray.storage import stream

sitk = pytest.importorskip("SimpleITK")


def write_image(path: Path, data: np.ndarray[Any, Any], compress: bool = False, vector: bool = False) -> None:
    """``data`` in file axis order (i, j, k) written by SimpleITK with an oblique geometry."""
    n = data.ndim - (1 if vector else 0)
    buffer = np.ascontiguousarray(np.transpose(data, [*range(n)][::-1] + ([n] if vector else [])))
    image = sitk.GetImageFromArray(buffer, isVector=vector)
    image.SetSpacing([0.7, 0.9, 2.5][:n])
    image.SetOrigin([-10.0, 4.5, 30.0][:n])
    if n == 3:
        c, s = np.cos(0.3), np.sin(0.3)
        image.SetDirection([c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0])
    sitk.WriteImage(image, str(path), useCompression=compress)


@pytest.mark.parametrize("ending", [".mha", ".mhd"])
@pytest.mark.parametrize("dtype", ["<i2", "<f4", "|u1"])
def test_streamed_conversion_equals_the_whole_file_one(
    tmp_path: Path, ending: str, dtype: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(4)
    data = (rng.normal(size=(37, 29, 45)) * 60).astype(dtype)
    src = tmp_path / f"scan{ending}"
    write_image(src, data)
    source = MetaImageSource.open(src)
    assert source is not None and source.shape == data.shape and source.dtype == data.dtype
    reads: list[Any] = []
    real = MetaImageSource.read
    monkeypatch.setattr(MetaImageSource, "read", lambda self, region: reads.append(region) or real(self, region))
    monkeypatch.setattr(stream, "SLAB_BYTES", 1)  # slabs one chunk thick
    layout = {"chunk_size": (16, 16, 8), "block_size": (8, 8, 8)}
    with source:
        convert_source(source, tmp_path / "streamed.mla", layout)
    assert len(reads) > 1, "the file was not read slab by slab"
    whole, meta = read_metaimage_parts(src)
    MLArray(whole, meta=meta, **layout).save(tmp_path / "whole.mla")
    with MLArray.open(tmp_path / "streamed.mla") as a, MLArray.open(tmp_path / "whole.mla") as b:
        assert a.to_numpy().tobytes() == b.to_numpy().tobytes() == data.tobytes()
        assert a.dtype == b.dtype
        assert a.meta.spatial == b.meta.spatial
        assert a.meta.source == b.meta.source


def test_compressed_and_vector_files_are_read_whole(tmp_path: Path) -> None:
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    write_image(tmp_path / "z.mha", data, compress=True)
    assert mi.is_compressed(str(tmp_path / "z.mha"))
    assert MetaImageSource.open(tmp_path / "z.mha") is None
    write_image(tmp_path / "v.mha", np.zeros((4, 5, 6, 3), np.float32), vector=True)
    assert MetaImageSource.open(tmp_path / "v.mha") is None
    convert_file(tmp_path / "z.mha", tmp_path / "z.mla")  # the whole-file path still converts them
    assert np.array_equal(MLArray.load(tmp_path / "z.mla").to_numpy(), data)


def test_a_truncated_data_file_is_a_source_format_error(tmp_path: Path) -> None:
    from mlarray.errors import SourceFormatError

    write_image(tmp_path / "t.mhd", np.ones((20, 20, 20), np.int16))
    raw = next(p for p in tmp_path.iterdir() if p.suffix == ".raw")
    raw.write_bytes(raw.read_bytes()[:-3000])
    with pytest.raises(SourceFormatError):
        convert_file(tmp_path / "t.mhd", tmp_path / "t.mla")
    assert not (tmp_path / "t.mla").exists()


def test_a_large_metaimage_converts_in_bounded_memory(tmp_path: Path) -> None:
    """256 MiB of int16 under an address-space cap far below the array (the whole-file path needs it all)."""
    src = tmp_path / "big.mhd"
    shape = (512, 512, 512)
    header = src.with_suffix(".raw")
    with open(header, "wb") as f:  # written plane by plane: the test itself stays small
        plane = (np.arange(512 * 512, dtype=np.int16) % 700).reshape(512, 512)
        for k in range(shape[2]):
            f.write((plane + k).tobytes())
    src.write_text(
        "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
        "CompressedData = False\nTransformMatrix = 1 0 0 0 1 0 0 0 1\nOffset = 0 0 0\n"
        "ElementSpacing = 1 1 1\nDimSize = 512 512 512\nElementType = MET_SHORT\nElementDataFile = big.raw\n"
    )
    run = run_limited(
        "convert_file(src, dst)",
        # Address space below the 256 MiB the whole-file path needs for the image alone. It peaks
        # near 175 MiB, plus what thread stacks glibc caches, which varies with load (C-Blosc2 makes
        # threads per compression context): 192 MiB failed twice on a busy machine.
        budget=240 << 20,
        setup="import SimpleITK; from mlarray.convert import convert_file",
        variables={"src": str(src), "dst": str(tmp_path / "big.mla")},
    )
    assert run.peak_over_baseline < 192 << 20  # the array alone is 256 MiB
    with MLArray.open(tmp_path / "big.mla") as out:
        assert out.shape == shape
        assert np.array_equal(out[:, :, 300], plane.T + 300)
