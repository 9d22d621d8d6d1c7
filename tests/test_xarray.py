"""The xarray backend: ``xarray.open_dataarray(path, engine="mlarray")`` is lazy, exact and placed in the world."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
from hypothesis import given
from hypothesis import strategies as st

from mlarray import MLArray
from mlarray.xarray import MLArrayBackendEntrypoint, aligned_axes, dimension_names


def _write(path: Path, data: np.ndarray[Any, Any], **kwargs: Any) -> Path:
    MLArray(data, **kwargs).save(path)
    return path


@pytest.fixture
def volume(tmp_path: Path) -> tuple[Path, np.ndarray[Any, Any]]:
    data = np.arange(2 * 7 * 9 * 11, dtype=np.int16).reshape(2, 7, 9, 11) - 500
    path = _write(
        tmp_path / "scan.mla",
        data,
        spacing=[2.5, 0.75, 0.5],
        origin=[-10.0, 4.0, 100.0],
        axis_labels=["channel", "spatial_z", "spatial_y", "spatial_x"],
        meta={"patient": "anon", "scanner": {"kv": 120}},
        chunk_size=(1, 4, 4, 8),
        block_size=(1, 2, 2, 4),
    )
    image = MLArray.open(path, "r+")
    image.meta.spatial.axis_units = ["", "mm", "mm", "mm"]
    image.meta.extra = {"split": "train", "folds": [1, 2]}
    image.meta.is_seg = False
    image.close()
    return path, data


def test_the_backend_is_registered_and_guesses_mla_paths(volume: tuple[Path, np.ndarray[Any, Any]]) -> None:
    path, data = volume
    assert "mlarray" in xr.backends.list_engines()
    entry = MLArrayBackendEntrypoint()
    assert entry.guess_can_open(str(path)) and entry.guess_can_open(path) and not entry.guess_can_open("A.MLA")
    assert not entry.guess_can_open("scan.nc") and not entry.guess_can_open(b"bytes")
    assert entry.description and entry.url
    with xr.open_dataarray(path) as guessed:  # no engine=: guessed from the suffix
        assert np.array_equal(guessed.values, data)


def test_dataarray_values_dims_coordinates_and_attrs(volume: tuple[Path, np.ndarray[Any, Any]]) -> None:
    path, data = volume
    with xr.open_dataarray(path, engine="mlarray") as da:
        assert da.name == "image" and da.dims == ("channel", "spatial_z", "spatial_y", "spatial_x")
        assert da.dtype == data.dtype and da.shape == data.shape
        assert "channel" not in da.coords  # non-spatial axes get no coordinate
        assert np.array_equal(da["spatial_z"].values, -10.0 + 2.5 * np.arange(7))
        assert np.array_equal(da["spatial_y"].values, 4.0 + 0.75 * np.arange(9))
        assert np.array_equal(da["spatial_x"].values, 100.0 + 0.5 * np.arange(11))
        assert da["spatial_x"].attrs["units"] == "mm" and da["spatial_x"].attrs["world_axis"] == 2
        assert da.attrs["spacing"] == [2.5, 0.75, 0.5] and da.attrs["origin"] == [-10.0, 4.0, 100.0]
        assert da.attrs["world_coordinates"] is True and da.attrs["is_seg"] is False
        assert da.attrs["source"] == {"patient": "anon", "scanner": {"kv": 120}}
        assert da.attrs["extra"] == {"split": "train", "folds": [1, 2]}
        assert np.array_equal(np.asarray(da.attrs["affine"]), MLArray.open(path).affine)
        assert da.encoding["preferred_chunks"] == {"channel": 1, "spatial_z": 4, "spatial_y": 4, "spatial_x": 8}
        assert np.array_equal(da.values, data)


@pytest.mark.parametrize(
    "key",
    [
        (0, slice(1, 6), slice(None, None, 2), -1),
        (slice(None), slice(None, None, -1), 3, slice(9, 1, -3)),
        (1, [4, 0, 4, 2], slice(2, 5), [10, 0]),
        (Ellipsis, 5),
        (slice(None), slice(7, 7)),  # empty
    ],
)
def test_lazy_indexing_equals_numpy(volume: tuple[Path, np.ndarray[Any, Any]], key: tuple[Any, ...]) -> None:
    path, data = volume
    with xr.open_dataarray(path, engine="mlarray") as da:
        picked = da[key]
        outer = data
        for axis, part in reversed(list(enumerate(key))):  # xarray indexes lists orthogonally, NumPy does not
            if isinstance(part, list):
                outer = np.take(outer, part, axis=axis)
                key = key[:axis] + (slice(None),) + key[axis + 1 :]
        expected = outer[key]
        assert picked.shape == expected.shape and np.array_equal(picked.values, expected)


def test_vectorized_and_label_selection_equal_numpy(volume: tuple[Path, np.ndarray[Any, Any]]) -> None:
    path, data = volume
    with xr.open_dataarray(path, engine="mlarray") as da:
        zi = xr.DataArray([0, 6, 3], dims="points")
        xi = xr.DataArray([10, 2, 5], dims="points")
        assert np.array_equal(da.isel(channel=1, spatial_z=zi, spatial_x=xi).values, data[1, [0, 6, 3], :, [10, 2, 5]])
        chosen = da.sel(spatial_z=-5.0, spatial_x=slice(101.0, 103.0))
        assert np.array_equal(chosen.values, data[:, 2, :, 2:7])


def test_dask_chunks_follow_the_file_chunks(volume: tuple[Path, np.ndarray[Any, Any]]) -> None:
    """``chunks={}`` makes one Dask chunk per file chunk; the threaded scheduler reads them concurrently."""
    path, data = volume
    with xr.open_dataarray(path, engine="mlarray", chunks={}) as da:
        assert da.chunks == ((1, 1), (4, 3), (4, 4, 1), (8, 3))
        assert np.array_equal(da.compute(scheduler="threads").values, data)
        assert int(da.sum().compute(scheduler="threads")) == int(data.sum())


def test_drop_variables_follows_xarrays_contract(volume: tuple[Path, np.ndarray[Any, Any]]) -> None:
    path, data = volume
    with xr.open_dataset(path, engine="mlarray", drop_variables="image") as ds:
        assert list(ds.data_vars) == [] and set(ds.coords) == {"spatial_z", "spatial_y", "spatial_x"}
    with xr.open_dataset(path, engine="mlarray", drop_variables=["spatial_y", "nothing"]) as ds:
        assert set(ds.coords) == {"spatial_z", "spatial_x"} and np.array_equal(ds["image"].values, data)


def test_oblique_volumes_keep_the_affine_and_get_index_coordinates(tmp_path: Path) -> None:
    c, s = np.cos(0.3), np.sin(0.3)
    direction = [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]
    data = np.random.default_rng(1).random((4, 5, 6)).astype(np.float32)
    path = _write(tmp_path / "oblique.mla", data, spacing=[1.0, 2.0, 3.0], origin=[1, 2, 3], direction=direction)
    with xr.open_dataarray(path, engine="mlarray") as da:
        assert da.dims == ("dim_0", "dim_1", "dim_2") and da.attrs["world_coordinates"] is False
        for dim, n in zip(da.dims, data.shape, strict=True):
            assert da[dim].dtype == np.int64 and np.array_equal(da[dim].values, np.arange(n))
        assert np.array_equal(np.asarray(da.attrs["affine"]), MLArray.open(path).affine)
        assert np.array_equal(da.values, data)


def test_direction_residues_below_the_tolerance_still_count_as_aligned(tmp_path: Path) -> None:
    e = 1e-9
    direction = [[1.0, -e, 0.0], [e, 1.0, 0.0], [0.0, 0.0, 1.0]]
    path = _write(tmp_path / "almost.mla", np.zeros((3, 4, 5), np.uint8), direction=direction)
    with xr.open_dataarray(path, engine="mlarray") as da:
        assert da.attrs["world_coordinates"] is True
    with xr.open_dataarray(path, engine="mlarray", tolerance=0.0) as exact:
        assert exact.attrs["world_coordinates"] is False


def test_dimension_names() -> None:
    assert dimension_names(None, 3) == ["dim_0", "dim_1", "dim_2"]
    assert dimension_names(["channel", "spatial", "spatial"], 3) == ["channel", "spatial_1", "spatial_2"]
    assert dimension_names(["spatial_1", "spatial", "spatial"], 3) == ["dim_0", "dim_1", "spatial_2"]  # a collision
    assert dimension_names(["t", "spatial_y", "spatial_x"], 3) == ["t", "spatial_y", "spatial_x"]
    assert dimension_names(["x", "x", "x_1", "dim_1"], 4) == ["x_0", "dim_1", "dim_2", "dim_3"]  # fallbacks unique


def test_metadata_only_files_open_as_an_empty_dataset(tmp_path: Path) -> None:
    MLArray(None, spacing=[1.0, 2.0]).save(tmp_path / "meta.mla")
    with xr.open_dataset(tmp_path / "meta.mla", engine="mlarray") as ds:
        assert list(ds.variables) == [] and ds.attrs["metadata_only"] is True


def test_datasets_pickle_and_reopen(volume: tuple[Path, np.ndarray[Any, Any]]) -> None:
    import pickle

    path, data = volume
    with xr.open_dataarray(path, engine="mlarray") as da:
        again = pickle.loads(pickle.dumps(da))
        assert np.array_equal(again[1, 2].values, data[1, 2])
        again.close()


def test_a_dataarray_opened_by_a_relative_path_unpickles_in_another_working_directory(
    volume: tuple[Path, np.ndarray[Any, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pickle holds the absolute path: another process in another directory reads the same file."""
    import pickle

    path, data = volume
    monkeypatch.chdir(path.parent)
    elsewhere = path.parent / "elsewhere"
    elsewhere.mkdir()
    with xr.open_dataarray(path.name, engine="mlarray") as da:
        assert da.encoding["source"] == str(path)  # absolute, as xarray's own backends give it
        pickled = path.parent / "da.pkl"
        pickled.write_bytes(pickle.dumps(da))
    code = (
        "import pickle, sys; import numpy as np; "
        "d = pickle.loads(open(sys.argv[1], 'rb').read()); "
        "print(int(np.asarray(d.values, dtype=np.int64).sum()), d.encoding['source'])"
    )
    out = subprocess.run([sys.executable, "-c", code, str(pickled)], cwd=elsewhere, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    total, source = out.stdout.split()
    assert int(total) == int(data.astype(np.int64).sum()) and source == str(path)
    monkeypatch.chdir(elsewhere)  # and in this process, after a chdir
    again = pickle.loads(pickled.read_bytes())
    assert np.array_equal(again[1, 2].values, data[1, 2])
    again.close()


def test_importing_mlarray_does_not_import_xarray() -> None:
    code = "import sys, mlarray, mlarray.api, mlarray.stats; print('xarray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _signed_permutation(draw: st.DrawFn, n: int) -> np.ndarray[Any, Any]:
    order = draw(st.permutations(range(n)))
    signs = draw(st.lists(st.sampled_from([-1.0, 1.0]), min_size=n, max_size=n))
    out = np.zeros((n, n))
    for k, j in enumerate(order):
        out[j, k] = signs[k]
    return out


@st.composite
def aligned_geometry(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(1, 3))
    shape = draw(st.lists(st.integers(1, 6), min_size=n, max_size=n))
    finite = {"allow_nan": False, "allow_infinity": False}
    spacing = draw(st.lists(st.floats(1e-3, 1e3, **finite), min_size=n, max_size=n))
    origin = draw(st.lists(st.floats(-1e4, 1e4, **finite), min_size=n, max_size=n))
    return {"shape": shape, "spacing": spacing, "origin": origin, "direction": _signed_permutation(draw, n)}


@given(aligned_geometry())
def test_world_coordinates_are_the_world_positions_of_the_voxels(tmp_path_factory: Any, case: dict[str, Any]) -> None:
    """Any spacing, origin and permuted/flipped direction: each coordinate is where its voxels are in the world."""
    path = tmp_path_factory.mktemp("geo") / "g.mla"
    shape = case["shape"]
    data = np.arange(int(np.prod(shape)), dtype=np.int32).reshape(shape)
    MLArray(data, spacing=case["spacing"], origin=case["origin"], direction=case["direction"].tolist()).save(path)
    affine = MLArray.open(path).affine
    n = len(shape)
    with xr.open_dataarray(path, engine="mlarray") as da:
        assert da.attrs["world_coordinates"] is True
        for k, dim in enumerate(da.dims):
            j = int(np.flatnonzero(case["direction"][:, k])[0])
            coord = da[dim]
            assert coord.attrs["world_axis"] == j
            for i, value in enumerate(coord.values.tolist()):
                assert value == affine[j, k] * i + affine[j, n]  # exact: the voxel's world position on axis j
                index = np.zeros(n + 1)
                index[k], index[n] = i, 1.0
                world = affine @ index
                assert world[j] == pytest.approx(value, rel=1e-12, abs=1e-9)
                others = [r for r in range(n) if r != j]
                assert np.allclose(world[others], affine[others, n], rtol=0, atol=1e-9)  # other world axes fixed
            if case["direction"][j, k] < 0 and len(coord) > 1:
                assert np.all(np.diff(coord.values) < 0)  # a flip makes the coordinate decrease
        assert np.array_equal(da.values, data)


@given(st.integers(2, 4), st.floats(0.05, 1.5))
def test_rotations_are_oblique(n: int, angle: float) -> None:
    rotation = np.eye(n + 1)
    c, s = np.cos(angle), np.sin(angle)
    rotation[0:2, 0:2] = [[c, -s], [s, c]]
    assert aligned_axes(rotation) is None
    flips = np.eye(n + 1)
    flips[:n, :n] = -np.eye(n)[::-1]  # axis k moves along world axis n-1-k, backwards
    assert aligned_axes(flips) == list(reversed(range(n)))


def test_index_lists_read_only_the_rows_they_pick(
    volume: tuple[Path, np.ndarray[Any, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, data = volume
    keys: list[Any] = []
    real = MLArray.__getitem__
    monkeypatch.setattr(MLArray, "__getitem__", lambda self, key: keys.append(key) or real(self, key))
    with xr.open_dataarray(path, engine="mlarray") as da:
        picked = da.isel(channel=1, spatial_x=[10, 2, 5]).values  # an integer, a slice between, a list
        np.testing.assert_array_equal(picked, data[1][:, :, [10, 2, 5]])
        np.testing.assert_array_equal(da.isel(spatial_z=[0, 6]).values, data[:, [0, 6]])
    assert any(isinstance(part, np.ndarray) for key in keys for part in key)  # the list reached the file read
    assert not any(part == slice(0, 7, 1) for key in keys for part in key if isinstance(part, slice))


def test_an_axis_labelled_image_keeps_the_data_variable(tmp_path: Path) -> None:
    data = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    path = _write(tmp_path / "a.mla", data, axis_labels=["image", "spatial_y", "spatial_x"])
    with xr.open_dataset(path, engine="mlarray") as ds:
        assert list(ds.data_vars) == ["image_data"]
    with xr.open_dataarray(path, engine="mlarray") as da:
        np.testing.assert_array_equal(da.values, data)
        assert da.dims[0] == "image"


def test_decoding_options_are_accepted_and_change_nothing(volume: tuple[Path, np.ndarray[Any, Any]]) -> None:
    path, data = volume
    options = {"mask_and_scale": True, "decode_times": True, "decode_coords": "all", "use_cftime": False}
    with xr.open_dataarray(path, engine="mlarray", **options) as da:
        np.testing.assert_array_equal(da.values, data)


def test_a_file_replaced_by_another_shape_is_file_changed(tmp_path: Path) -> None:
    from mlarray import FileChangedError

    path = _write(tmp_path / "a.mla", np.zeros((3, 4), np.float32))
    da = xr.open_dataarray(path, engine="mlarray")
    da.close()  # the next read opens the file again
    _write(path, np.zeros((5, 5), np.float32))
    with pytest.raises(FileChangedError):
        da.values  # noqa: B018


def test_open_mfdataset_keeps_at_most_xarrays_file_cache_open(tmp_path: Path) -> None:
    """Every dataset kept its file open (two descriptors each): open_mfdataset over ~500+ files died with
    "Too many open files" under ulimit -n 1024 (audit scale). xarray's file_cache_maxsize bounds them."""
    files = []
    for i in range(40):
        files.append(tmp_path / f"c{i:02d}.mla")
        MLArray(np.full((4, 5, 6), i, np.int16), spacing=(1.0, 1.0, 1.0)).save(files[-1])

    def open_mla() -> int:  # descriptors on this test's files (earlier tests' handles may hold others)
        links = (os.path.realpath(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd"))
        return sum(1 for target in links if target.startswith(str(tmp_path.resolve())) and target.endswith(".mla"))

    with (
        xr.set_options(file_cache_maxsize=6),
        xr.open_mfdataset(files, engine="mlarray", combine="nested", concat_dim="case") as ds,
    ):
        assert open_mla() <= 2 * 6
        values = ds["image"].compute(scheduler="threads")
        assert open_mla() <= 2 * 6
        np.testing.assert_array_equal(values.max(axis=(1, 2, 3)), np.arange(40))
        again = ds["image"].isel(case=3).values  # a file closed by the budget opens again
        assert int(again.max()) == 3
    assert open_mla() == 0
