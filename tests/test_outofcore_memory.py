"""Files several times larger than the memory limit convert, relayout and validate (RLIMIT_AS in a subprocess).

The inputs are generated slab by slab (a cheap pattern that also compresses well), so the
test process itself never holds one either. Each conversion runs under
:func:`memlimit.run_limited` with a budget of ``BUDGET`` bytes above the interpreter's
baseline, and the result is compared with the source slab by slab.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest
from memlimit import run_limited

from mlarray import MLArray
from mlarray.convert._stream import save_slabs, template
from mlarray.models import Meta
from mlarray.validate import validate_file

MiB = 1 << 20
BUDGET = 128 * MiB
SHAPE = (512, 512, 800)  # int16: 400 MiB, 3.1 times the budget
SETUP = "import numpy, blosc2, nibabel, nrrd, mlarray, mlarray.convert"


def pattern(region: tuple[slice, ...]) -> np.ndarray:
    """The voxels of ``region`` of the test volume: ``7 i + 3 j + k`` as int16 (wrapping)."""
    i, j, k = np.ogrid[region[0], region[1], region[2]]
    return (7 * i + 3 * j + k).astype(np.int16)


@pytest.fixture(scope="module")
def big_mla(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "big.mla"
    image = template(
        SHAPE, "<i2", Meta(spatial={"spacing": [0.5, 0.5, 1.0]}, source={"id": 7}), {"patch_size": "default"}
    )
    save_slabs(path, image, pattern)
    return path


def same_as_pattern(path: Path, step: int = 64) -> bool:
    """Compare a file with the pattern, ``step`` planes at a time (never the whole array in memory)."""
    with MLArray.open(path) as image:
        assert image.shape == SHAPE
        return all(
            np.array_equal(
                image[i : i + step],
                pattern((slice(i, min(i + step, SHAPE[0])), slice(0, SHAPE[1]), slice(0, SHAPE[2]))),
            )
            for i in range(0, SHAPE[0], step)
        )


def write_nifti_pattern(path: Path) -> Path:
    """An int16 NIfTI of the pattern, written one plane at a time (``.nii.gz`` through nibabel's gzip opener)."""
    import nibabel as nib
    from nibabel.openers import ImageOpener

    header = nib.Nifti1Header()
    header.set_data_shape(SHAPE)
    header.set_data_dtype(np.int16)
    header.set_sform(np.diag([0.5, 0.5, 1.0, 1.0]), code=1)
    with ImageOpener(path, "wb") as f:
        header.write_to(f)
        f.write(b"\0" * (int(header["vox_offset"]) - f.tell()))
        for k in range(SHAPE[2]):
            f.write(pattern((slice(0, SHAPE[0]), slice(0, SHAPE[1]), slice(k, k + 1))).tobytes(order="F"))
    return path


def nifti_same_as_pattern(path: Path, step: int = 50) -> bool:
    """Compare a NIfTI file with the pattern ``step`` planes at a time (read forward, also from gzip)."""
    import nibabel as nib

    image = nib.load(path, mmap=False, keep_file_open=True)
    assert image.shape == SHAPE and image.get_data_dtype() == np.int16
    full = (slice(0, SHAPE[0]), slice(0, SHAPE[1]))
    return all(
        np.array_equal(image.dataobj[..., k : k + step], pattern((*full, slice(k, min(k + step, SHAPE[2])))))
        for k in range(0, SHAPE[2], step)
    )


def convert_limited(src: Path, dst: Path) -> int:
    """``convert_file(src, dst)`` under the budget; returns the peak memory it added."""
    run = run_limited(
        "from mlarray.convert import convert_file\nconvert_file(src, dst)\nresult = 'ok'",
        budget=BUDGET,
        setup=SETUP,
        variables={"src": str(src), "dst": str(dst)},
    )
    assert run.result == "ok"
    assert run.peak_over_baseline < BUDGET
    return run.peak_over_baseline


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nifti_larger_than_the_memory_limit_converts(tmp_path: Path, suffix: str) -> None:
    src = write_nifti_pattern(tmp_path / f"big{suffix}")
    out = tmp_path / "big.mla"
    convert_limited(src, out)
    src.unlink()
    assert validate_file(out).valid
    with MLArray.open(out) as image:
        assert image.spacing == [0.5, 0.5, 1.0]
        assert image.meta.source["format"] == "nifti"
    assert same_as_pattern(out)


@pytest.mark.parametrize("suffix", [".nii.gz"])
def test_mla_larger_than_the_memory_limit_converts_to_nifti(big_mla: Path, tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"big{suffix}"
    convert_limited(big_mla, out)
    assert nifti_same_as_pattern(out)


def write_nrrd_pattern(path: Path) -> Path:
    """A gzip-encoded int16 NRRD of the pattern, compressed one plane at a time (level 1: quick)."""
    header = (
        "NRRD0004\ntype: int16\ndimension: 3\nsizes: {} {} {}\nendian: little\nencoding: gzip\n"
        "space: left-posterior-superior\nspace directions: (0.5,0,0) (0,0.5,0) (0,0,1)\n\n"
    ).format(*SHAPE)
    compressor = zlib.compressobj(1, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    with open(path, "wb") as f:
        f.write(header.encode())
        for k in range(SHAPE[2]):
            plane = pattern((slice(0, SHAPE[0]), slice(0, SHAPE[1]), slice(k, k + 1)))
            f.write(compressor.compress(plane.tobytes(order="F")))
        f.write(compressor.flush())
    return path


def test_gzip_nrrd_larger_than_the_memory_limit_converts(tmp_path: Path) -> None:
    src = write_nrrd_pattern(tmp_path / "big.nrrd")
    out = tmp_path / "big.mla"
    convert_limited(src, out)
    assert validate_file(out).valid
    with MLArray.open(out) as image:
        assert image.spacing == [0.5, 0.5, 1.0]
        assert image.meta.source["header"]["encoding"] == "gzip"
    assert same_as_pattern(out)


def test_mla_larger_than_the_memory_limit_converts_to_nrrd(big_mla: Path, tmp_path: Path) -> None:
    out = tmp_path / "big.nrrd"
    convert_limited(big_mla, out)  # gzip, level 9 (pynrrd's)
    import nrrd

    with open(out, "rb") as f:
        header = nrrd.read_header(f)
        start = f.tell()
    assert header["encoding"] == "gzip" and list(header["sizes"]) == list(SHAPE)
    from mlarray.convert._slabs import nrrd_stream

    stream = nrrd_stream(str(out), header, start, np.dtype("<i2"))
    assert stream is not None
    with stream:
        full = (slice(0, SHAPE[0]), slice(0, SHAPE[1]))
        for k in range(0, SHAPE[2], 50):
            region = (*full, slice(k, min(k + 50, SHAPE[2])))
            assert np.array_equal(stream.read(region), pattern(region))
        stream.check_end()


def test_relayout_of_a_file_larger_than_the_memory_limit(big_mla: Path, tmp_path: Path) -> None:
    out = tmp_path / "relayout.mla"
    run = run_limited(
        "from mlarray.convert import convert_file\nconvert_file(src, dst, patch_size=64, codec='lz4')\nresult = 'ok'",
        budget=BUDGET,
        setup=SETUP,
        variables={"src": str(big_mla), "dst": str(out)},
    )
    assert run.result == "ok"
    assert run.peak_over_baseline < BUDGET
    assert validate_file(out).valid
    with MLArray.open(out) as image:
        assert image.meta.layout is not None and image.meta.layout.codec == "lz4"
        assert image.meta.source == {"id": 7}
        assert image.spacing == [0.5, 0.5, 1.0]
    assert same_as_pattern(out)


def test_the_in_memory_relayout_would_not_fit(big_mla: Path, tmp_path: Path) -> None:
    """The limit is real: loading the whole array runs out of it."""
    with pytest.raises(MemoryError):
        run_limited(
            "from mlarray import MLArray\nresult = int(MLArray.load(src).to_numpy()[0, 0, 0])",
            budget=BUDGET,
            setup=SETUP,
            variables={"src": str(big_mla)},
        )


def test_running_out_of_memory_is_a_resource_limit_not_a_damaged_file(tmp_path: Path) -> None:
    """Below one slab's memory: RESOURCE_LIMIT (a MemoryError), not INVALID_SOURCE or WRITE_FAILED; nothing left."""
    src = write_nifti_pattern(tmp_path / "big.nii")
    out = tmp_path / "out" / "x.mla"
    out.parent.mkdir()
    code = (
        "from mlarray.convert import convert_file\n"
        "try:\n"
        "    convert_file(src, dst, patch_size=64)\n"
        "    result = 'converted'\n"
        "except mlarray.MLArrayError as exc:\n"
        "    result = [type(exc).__name__, exc.code, isinstance(exc, MemoryError)]"
    )
    run = run_limited(code, budget=24 * MiB, setup=SETUP, variables={"src": str(src), "dst": str(out)})
    assert run.result == ["ResourceLimitError", "RESOURCE_LIMIT", True]
    assert list(out.parent.iterdir()) == []  # no output, no temporary file


def test_migration_of_a_legacy_file_larger_than_the_memory_limit(tmp_path: Path) -> None:
    import gzip
    import pickle

    import blosc2

    old = tmp_path / "legacy.mla"
    nd = blosc2.empty(SHAPE, dtype=np.int16, chunks=(32, 512, 800), urlpath=str(old), mode="w")
    for i in range(0, SHAPE[0], 32):  # written slab by slab, like the earlier implementation's files
        nd[i : i + 32] = pattern((slice(i, i + 32), slice(0, SHAPE[1]), slice(0, SHAPE[2])))
    nd.schunk.vlmeta["mlarray"] = gzip.compress(pickle.dumps({"spacing": (0.5, 0.5, 1.0), "meta": {"id": 7}}))
    del nd
    new = tmp_path / "migrated.mla"
    run = run_limited(
        "from mlarray.legacy.migrate import migrate_file\nmigrate_file(src, dst)\nresult = 'ok'",
        budget=BUDGET,
        setup=SETUP + ", mlarray.legacy.migrate",
        variables={"src": str(old), "dst": str(new)},
    )
    assert run.result == "ok"
    assert run.peak_over_baseline < BUDGET
    assert validate_file(new).valid
    with MLArray.open(new) as image:
        assert image.spacing == [0.5, 0.5, 1.0]
    assert same_as_pattern(new)


def test_validation_does_not_expand_special_chunks(tmp_path: Path) -> None:
    """A 256 MiB chunk of zeros (a 700-byte file) is settled by its checks, not expanded in memory.

    Chunks stored with blocks are still decompressed one at a time; a special entry or a
    special-value chunk stands for one value, which spec 4.4.3 defines completely.
    """
    path = tmp_path / "zeros.mla"
    with MLArray.create(path, (16384, 16384), np.uint8, chunk_size=(16384, 16384), block_size=(64, 16384)):
        pass  # never written: one chunk of zeros, an index entry
    assert path.stat().st_size < 4096
    run = run_limited(
        "from mlarray.validate import validate_file\nresult = validate_file(path).code",
        budget=128 << 20,  # half the chunk: expanding it cannot fit
        setup="import mlarray.validate",
        variables={"path": str(path)},
    )
    assert run.result is None  # valid
