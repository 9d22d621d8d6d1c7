"""Wrong arguments to the public API: typed errors before anything is written, images left as they were.

Found by the argument audit (each case failed on the code before its fix).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mlarray
from mlarray import InvalidArgumentError, MLArray
from mlarray.stats import annotate


@pytest.mark.parametrize("dparams", ["abc", 4, [1], {"bogus": 1}, {"nthreads": 0}, {"nthreads": True}])
def test_bad_dparams_are_refused_before_a_file_is_touched(tmp_path: Path, dparams: Any) -> None:
    path = tmp_path / "v.mla"
    MLArray(np.arange(24, dtype=np.int16).reshape(2, 3, 4)).save(path)
    before = path.read_bytes()
    with pytest.raises(InvalidArgumentError, match="dparams"):
        MLArray.create(path, (2, 3, 4), np.int16, fill_value=7, dparams=dparams)  # replaced the file, then failed
    assert path.read_bytes() == before
    for call in (
        lambda: MLArray.open(path, "r+", dparams=dparams),  # was CORRUPT_FRAME for a valid file
        lambda: MLArray.load(path, dparams=dparams),
        lambda: MLArray(np.zeros((2, 2)), dparams=dparams),
        lambda: MLArray(np.zeros((2, 2))).compress(dparams=dparams),
    ):
        with pytest.raises(InvalidArgumentError, match="dparams"):
            call()
    assert MLArray.load(path, dparams={"nthreads": 2}).to_numpy().sum() == sum(range(24))


def test_a_failed_compress_leaves_the_image_as_it_was(tmp_path: Path) -> None:
    image = MLArray(np.arange(64, dtype=np.float32).reshape(4, 4, 4))
    for bad in ({"block_size": [0, 1, 1]}, {"patch_size": "abc"}, {"cparams": {"codec": "nope"}}):
        with pytest.raises(InvalidArgumentError):
            image.compress(**bad)
    image.save(tmp_path / "v.mla")  # failed forever after the first bad call
    image.compress()
    np.testing.assert_array_equal(MLArray.load(tmp_path / "v.mla").to_numpy(), image.to_numpy())


def test_affine_none_clears_the_geometry_as_the_other_setters_do() -> None:
    image = MLArray(np.zeros((2, 3, 4)), spacing=(1, 2, 3), origin=(4, 5, 6))
    image.affine = None  # was IndexError
    assert image.spacing is None and image.origin is None
    np.testing.assert_array_equal(image.affine, np.eye(4))


@pytest.mark.parametrize("shape", [{4, 3, 2}, True, {1: 2}, (2, True), "23"])
def test_shapes_numpy_refuses_are_refused(tmp_path: Path, shape: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="shape"):
        mlarray.zeros(shape)
    with pytest.raises(InvalidArgumentError, match="shape"):
        MLArray.create(tmp_path / "v.mla", shape)
    assert not list(tmp_path.iterdir())


def test_a_path_with_a_nul_character_is_refused_before_writing(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="NUL"):
        MLArray(np.zeros((2, 2))).save(str(tmp_path / "a\0b.mla"))
    with pytest.raises(InvalidArgumentError, match="NUL"):
        MLArray.create(str(tmp_path / "a\0b.mla"), (2, 2))
    assert not list(tmp_path.iterdir())  # a temporary file named 'a' stayed


def test_annotate_refuses_a_seg_that_is_not_a_bool() -> None:
    labels = MLArray(np.array([[0, 1], [2, 2]], dtype=np.uint8))
    with pytest.raises(InvalidArgumentError, match="seg"):
        annotate(labels, seg="no")  # computed label boxes, then recorded is_seg=False
    assert annotate(labels, seg=np.bool_(True)).is_seg is True


def test_full_refuses_fill_values_the_dtype_cannot_hold() -> None:
    """As ``MLArray.create`` does: NumPy wraps np.int64(300) to 44 in uint8 and makes 1e300 infinite in float32."""
    for value, dtype in ((np.int64(300), np.uint8), (1e300, np.float32), (-1, np.uint16)):
        with pytest.raises(InvalidArgumentError, match="fill_value"):
            mlarray.full(3, value, dtype=dtype)
        with pytest.raises(InvalidArgumentError, match="fill_value"):
            mlarray.full_like(np.zeros(3, dtype), value)
    np.testing.assert_array_equal(mlarray.full(3, np.int64(200), dtype=np.uint8).to_numpy(), [200] * 3)
    assert mlarray.full((2, 2), 2.5).dtype == np.float64 and mlarray.full(2, True).dtype == np.bool_


def test_a_typo_in_a_header_member_is_a_typed_error() -> None:
    from mlarray.errors import HeaderTypeError

    image = MLArray(np.zeros((2, 2)))
    with pytest.raises(HeaderTypeError, match="is_sg"):
        image.meta.is_sg = True  # type: ignore[attr-defined]
    with pytest.raises(HeaderTypeError, match="spacings"):
        image.meta.spatial.spacings = [1.0, 1.0]  # type: ignore[attr-defined]
    assert "is_sg" not in image.meta.to_plain()


@pytest.mark.parametrize("geometry", [{"spacing": 2.0}, {"origin": 0}, {"direction": 1.0}, {"affine": 1.0}])
def test_a_scalar_geometry_in_the_constructor_is_the_setters_typed_error(geometry: dict[str, Any]) -> None:
    from mlarray import HeaderValidationError

    with pytest.raises(HeaderValidationError, match=next(iter(geometry))):
        MLArray(np.zeros((2, 3, 4)), **geometry)


@pytest.mark.parametrize(
    ("name", "sizes"),
    [("chunk_size", [2**63, 2, 2]), ("chunk_size", [2**40, 2, 2]), ("chunk_size", [2**20, 2**10, 2**10])]
    + [("block_size", [2**62, 2, 2]), ("block_size", [2**28, 1, 1])],
)
def test_layout_arguments_blosc2_cannot_store_are_refused_where_given(
    tmp_path: Path, name: str, sizes: list[int]
) -> None:
    """They failed as WRITE_FAILED at save (meant for disk errors) and leaked OverflowError from compress."""
    array = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(InvalidArgumentError, match=name):
        MLArray(array, **{name: sizes})
    image = MLArray(array)
    with pytest.raises(InvalidArgumentError, match=name):
        image.compress(**{name: sizes})
    image.save(tmp_path / "a.mla")  # the failed compress left nothing behind
    assert np.array_equal(MLArray.load(tmp_path / "a.mla").to_numpy(), array)


def test_bad_layout_arguments_fail_in_the_constructor_not_at_a_later_save(tmp_path: Path) -> None:
    array = np.zeros((4, 4, 4), np.int16)
    for bad in ({"block_size": [0, 1, 1]}, {"chunk_size": [2, 2]}, {"cparams": {"codec": "nope"}}):
        with pytest.raises(InvalidArgumentError):
            MLArray(array, **bad)
    assert MLArray(array, chunk_size=[4, 4, 4], block_size=[2, 2, 2]).shape == (4, 4, 4)
    # a patch size follows the spatial axes, which may be labelled after the image is made
    image = MLArray(np.zeros((2, 8, 8, 8), np.int16), patch_size=(4, 4, 4))
    image.axis_labels = ["channel", "spatial", "spatial", "spatial"]
    image.save(tmp_path / "c.mla")
    layout = MLArray.open(tmp_path / "c.mla").meta.layout
    assert layout is not None and layout.patch_size == [4, 4, 4]


def test_shapes_too_large_in_bytes_are_invalid_arguments(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="bytes"):
        MLArray.create(tmp_path / "c.mla", (2**40, 2**20))
    assert not list(tmp_path.iterdir())
    for call in (lambda: mlarray.zeros((2**62,)), lambda: mlarray.full((2**61,), 1.0)):
        with pytest.raises(InvalidArgumentError, match="bytes"):
            call()
    with pytest.raises(InvalidArgumentError, match="elements"):
        mlarray.linspace(0, 1, 2**63)
    with pytest.raises(InvalidArgumentError, match="integer"):
        mlarray.linspace(0, 1, 2.5)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["off", "no", "yes", "1", b"true"])
def test_is_seg_refuses_text(text: Any) -> None:
    """Pydantic's lax mode read "off" as False, "yes" as True."""
    image = MLArray(np.zeros(3, np.uint8))
    with pytest.raises(mlarray.errors.HeaderTypeError, match="is_seg"):
        image.meta.is_seg = text
    with pytest.raises(mlarray.errors.HeaderTypeError, match="is_seg"):
        mlarray.Meta(is_seg=text)
    assert image.meta.is_seg is None
    for flag, expected in ((np.True_, True), (1, True), (0, False), (False, False)):
        image.meta.is_seg = flag
        assert image.meta.is_seg is expected


@pytest.mark.parametrize("geometry", [{"spacing": []}, {"origin": []}, {"affine": [[1.0]]}])
def test_an_empty_geometry_is_refused_as_the_setters_refuse_it(geometry: dict[str, Any]) -> None:
    """It made every axis non-spatial; ``image.spacing = []`` was already refused."""
    with pytest.raises(mlarray.HeaderValidationError, match="empty"):
        MLArray(np.zeros((4, 5, 6), np.float32), **geometry)


def test_helpers_raise_typed_errors(tmp_path: Path) -> None:
    from mlarray import frames, jobs

    labels = MLArray(np.array([[0, 1], [1, 2]], np.uint8))
    calls = [
        lambda: annotate(np.zeros((2, 2))),  # type: ignore[arg-type]
        lambda: annotate(labels, with_class_locations=True, max_per_class=None),  # type: ignore[arg-type]
        lambda: annotate(labels, max_total=1.5),  # type: ignore[arg-type]
        lambda: annotate(labels, seed=-1),
        lambda: frames.change_frame(np.eye(4), ("L", "P", "S"), "RAS"),  # type: ignore[arg-type]
        lambda: frames.change_frame(np.eye(4), 3, "RAS"),  # type: ignore[arg-type]
        lambda: jobs.run_each(str, [1, 2], lost=lambda i, m: m, jobs=2.5),  # type: ignore[arg-type]
        lambda: jobs.run_each(str, [1, 2], lost=lambda i, m: m, jobs=None),  # type: ignore[arg-type]
        lambda: jobs.run_each(str, [1, 2], lost=lambda i, m: m, jobs=True),
        lambda: mlarray.stats.update_stats(None),  # type: ignore[arg-type]
    ]
    for call in calls:
        with pytest.raises(InvalidArgumentError):
            call()
    assert jobs.run_each(str, [1, 2], lost=lambda i, m: m, jobs=np.int64(1)) == ["1", "2"]
    assert labels.meta.bbox is None  # nothing was annotated


def test_to_dask_with_chunks_dask_cannot_use() -> None:
    pytest.importorskip("dask")
    with pytest.raises(InvalidArgumentError, match="chunks"):
        MLArray(np.zeros(3)).to_dask(0)
    assert MLArray(np.arange(6.0)).to_dask(2).compute().tolist() == list(range(6))


def test_bytes_paths_and_file_objects(tmp_path: Path) -> None:
    import io
    import os

    path = tmp_path / "a.mla"
    MLArray(np.arange(6.0)).save(path)
    assert MLArray(os.fsencode(path)).to_numpy().tolist() == list(range(6))  # as MLArray.load takes it
    with open(path, "rb") as handle:
        pass
    for call in (lambda: MLArray.open(handle), lambda: MLArray.load(handle)):
        with pytest.raises(InvalidArgumentError, match="closed"):
            call()
    with pytest.raises(InvalidArgumentError, match="file object"):
        MLArray(np.zeros(3)).save(io.BytesIO())  # type: ignore[arg-type]


def test_a_layout_of_more_chunks_than_a_file_may_hold_is_refused_before_writing(tmp_path: Path) -> None:
    """save started a write of 2**24 + 1 one-byte chunks (hours) of a file every reader refuses (audit scale)."""
    from mlarray.errors import ResourceLimitError
    from mlarray.versions import MAX_CHUNKS

    path = tmp_path / "many.mla"
    with pytest.raises(ResourceLimitError, match="more than a file may hold"):
        MLArray(np.zeros(MAX_CHUNKS + 1, np.uint8), chunk_size=(1,), block_size=(1,)).save(path)
    with pytest.raises(ResourceLimitError):
        MLArray.create(path, (MAX_CHUNKS + 1,), np.uint8, chunk_size=(1,), block_size=(1,))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("depth", [70, 400, 5000])
def test_metadata_nested_beyond_the_limit_is_header_invalid_at_any_depth(tmp_path: Path, depth: int) -> None:
    """A few hundred levels gave a bare RecursionError (on save, then on assignment) instead of HEADER_INVALID."""
    from mlarray.errors import HeaderValidationError

    nested: Any = 1
    for level in range(depth):
        nested = {"k": nested} if level % 2 else [nested]  # objects and arrays, as JSON nests them
    image = MLArray(np.zeros(3))
    with pytest.raises(HeaderValidationError, match="nests deeper than 64 levels"):
        image.meta.source["deep"] = nested
    with pytest.raises(HeaderValidationError):
        mlarray.Meta(extra={"deep": nested})
    assert "deep" not in image.meta.source
    image.save(tmp_path / "a.mla")  # the image is as it was


def test_storage_options_of_the_wrong_type_are_an_invalid_argument() -> None:
    """``storage_options="abc"`` was a RemoteError (an OSError: "cannot open the URL") for a wrong argument."""
    for call in (
        lambda: MLArray.open("memory://x/a.mla", storage_options="abc"),  # type: ignore[arg-type]
        lambda: MLArray.load("memory://x/a.mla", storage_options=[("a", 1)]),  # type: ignore[arg-type]
        lambda: MLArray(np.zeros(3)).save("memory://x/a.mla", storage_options="abc"),  # type: ignore[arg-type]
    ):
        with pytest.raises(InvalidArgumentError, match="storage_options must be a dict"):
            call()


BROKEN_BACKEND = """
import sys
from mlarray.convert._common import require
from mlarray.errors import MissingDependencyError
try:
    require("nibabel", "scan.nii")
except MissingDependencyError as exc:
    print(exc.code, exc)
"""


def test_an_optional_backend_that_fails_to_import_is_a_missing_dependency(tmp_path: Path) -> None:
    """nibabel 5.0 under NumPy 2 raises AttributeError on import: it came out untyped (MLARRAY_ERROR)."""
    import os
    import subprocess
    import sys

    (tmp_path / "nibabel").mkdir()
    (tmp_path / "nibabel" / "__init__.py").write_text('raise AttributeError("np.sctypes was removed")\n')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-c", BROKEN_BACKEND], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("MISSING_DEPENDENCY ")
    assert "cannot be imported (AttributeError: np.sctypes was removed)" in result.stdout
    assert 'pip install --upgrade "mlarray[convert]"' in result.stdout
