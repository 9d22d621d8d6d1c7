"""The napari reader: ``.mla`` files (or folders of them) as lazy layers in world coordinates.

Each file opens memory-mapped and copy-on-write (``MLArray.open(path, mmap_mode="c")``)
and that open array is the layer data: napari indexes it for the slices it shows, so only
those chunks are decompressed, and its label tools paint into chunks kept in memory (the
file is never changed; save the layer to keep the edits). Placement, contrast limits and layer type come from the
header alone; contrast limits fall back to a small bounded sample, never a full scan.
Placement is in one world frame, RAS+ (see :mod:`mlarray.frames`), so files
stored in LPS+ and in RAS+ overlay; the file's own frame travels in the layer metadata
(``coord_system``) for the writer.

The returned layer data tuples are plain Python: this module does not import napari.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from mlarray.api import MLArray
from mlarray.errors import InvalidArgumentError
from mlarray.frames import to_ras
from mlarray.jobs import is_temporary
from mlarray.models import JsonObject, is_spatial_label
from mlarray.napari._views import ByteMask, ChannelView

LayerData = tuple[Any, dict[str, Any], str]
PathOrPaths = str | Sequence[str]

SUFFIX = ".mla"
SAMPLE_BUDGET = 1 << 20
"""Most elements read to estimate contrast limits of a file without statistics."""

_UNIT_ALIASES = {"": "pixel", "mm": "millimeter", "um": "micrometer", "µm": "micrometer", "s": "second"}


def _mla_files(path: str) -> list[str] | None:
    """The ``.mla`` files ``path`` stands for, or ``None`` when it is not ours."""
    p = Path(path)
    if p.is_dir():
        found = sorted(str(f) for f in p.iterdir() if f.suffix == SUFFIX and f.is_file() and not is_temporary(f))
        return found or None
    if p.suffix == SUFFIX and p.is_file():
        return [str(p)]
    return None


def get_reader(path: PathOrPaths) -> Callable[[PathOrPaths], list[LayerData]] | None:
    """npe2 ``get_reader`` command: :func:`read` when every path is an ``.mla`` file or a folder of them.

    Only names and file types are checked here (napari expects no exception); the
    headers are read, and their errors raised, by :func:`read`.
    """
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if not paths or any(_mla_files(os.fspath(p)) is None for p in paths):
        return None
    return read


def read(path: PathOrPaths) -> list[LayerData]:
    """Open every ``.mla`` file of ``path`` memory-mapped and return its napari layers.

    A folder gives one layer (or one per channel) for each ``.mla`` file in it, in name order.

    Raises
    ------
    mlarray.errors.MLArrayError
        A file cannot be opened (its typed error, e.g. ``HeaderValidationError``), or
        holds no array (``InvalidArgumentError``).
    """
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    layers: list[LayerData] = []
    for given in paths:
        for file in _mla_files(os.fspath(given)) or [os.fspath(given)]:
            array = MLArray.open(file, mmap_mode="c")  # copy-on-write: Labels layers can be painted
            if array.shape is None:
                array.close()
                raise InvalidArgumentError("a metadata-only file has no array to show", path=file)
            layers.extend(layer_data(array, name=Path(file).stem, path=file))
    return layers


# --------------------------------------------------------------------------- geometry


def _axis_roles(array: MLArray) -> tuple[list[str], int | None]:
    """The axis labels of ``array`` (defaulted) and the index of its channel axis, if any."""
    labels = list(array.meta.spatial.axis_labels or ["spatial"] * array.ndim)
    channel = labels.index("channel") if "channel" in labels else None
    return labels, channel


def placement(array: MLArray, drop_axis: int | None = None) -> dict[str, Any]:
    """napari transform keyword arguments that put ``array`` where its header says, in RAS+.

    The header's index-to-world affine covers the spatial axes; other axes (time,
    custom) get the identity. It is first re-expressed in napari's RAS+ world when the
    header's ``coord_system`` is an orientation code (an LPS+ file has its first two
    world axes negated, as MONAI and TorchIO do); without a frame, or with a custom one,
    it is used as it is. A diagonal map with positive spacing becomes ``scale`` and
    ``translate``; anything else (rotation, flips, shear) becomes ``scale`` (the
    length of each axis' world step) and an ``affine`` holding the rest, so that
    ``affine @ diag(scale)`` is exactly the (RAS+) header matrix.
    """
    labels, _ = _axis_roles(array)
    axes = [i for i in range(array.ndim) if i != drop_axis]
    spatial = array.meta.spatial_axes() or []
    n = len(spatial)
    m = len(axes)
    if n == 0:
        return {}
    header = to_ras(array.affine, array.meta.spatial.coord_system)
    full = np.eye(m + 1)
    rows = [axes.index(a) for a in spatial]  # layer position of each spatial axis
    for k, row in enumerate(rows):
        for j, col in enumerate(rows):
            full[row, col] = header[k, j]
        full[row, m] = header[k, n]
    linear = full[:m, :m]
    if np.count_nonzero(linear - np.diag(np.diag(linear))) == 0 and np.all(np.diag(linear) > 0):
        return {"scale": np.diag(linear).tolist(), "translate": full[:m, m].tolist()}
    scale = np.linalg.norm(linear, axis=0)
    rest = full.copy()
    rest[:m, :m] = linear / scale
    return {"scale": scale.tolist(), "affine": rest}


def _napari_units(units: list[str]) -> list[str] | None:
    """The header's axis units in a form napari (pint) accepts, or ``None`` if one is unknown to pint."""
    import pint  # napari's own dependency: only imported when napari reads a file

    registry = pint.get_application_registry()  # type: ignore[no-untyped-call]
    out = []
    for unit in units:
        name = _UNIT_ALIASES.get(unit, unit)
        try:
            registry.Unit(name)
        except (pint.errors.UndefinedUnitError, ValueError, TypeError, AttributeError):
            return None
        out.append(name)
    return out


def _unique(labels: list[str]) -> list[str]:
    """napari tells axes apart by label: make repeated labels (``spatial`` x3) distinct."""
    if len(set(labels)) == len(labels):
        return labels
    return [f"{label}_{i}" if labels.count(label) > 1 else label for i, label in enumerate(labels)]


# --------------------------------------------------------------------------- intensities


def sample(array: Any, budget: int = SAMPLE_BUDGET) -> np.ndarray[Any, Any]:
    """A bounded sample of ``array``: three cross-sections through its middle, each cropped to ``budget / 3``.

    Reads at most about ``budget`` elements whatever the array size.
    """
    shape = tuple(int(s) for s in array.shape)
    if 0 in shape:
        return np.zeros(0, dtype=array.dtype)
    positions: list[int | None] = [None]
    if len(shape) > 2:
        positions = [*sorted({shape[0] // 4, shape[0] // 2, (3 * shape[0]) // 4})]
    parts = []
    for position in positions:
        rest = shape[1:] if position is not None else shape
        per_axis = max(1, int((budget / len(positions)) ** (1 / len(rest))))
        window = tuple(slice(max(0, (s - per_axis) // 2), max(0, (s - per_axis) // 2) + min(s, per_axis)) for s in rest)
        key = ((position,) if position is not None else ()) + window
        parts.append(np.asarray(array[key]).ravel())
    return np.concatenate(parts)


def contrast_limits(array: MLArray, data: Any = None) -> list[float]:
    """Display range from the header statistics, or from :func:`sample` of ``data`` when there are none."""
    stats = array.meta.stats
    if stats is not None:
        for low, high in ((stats.percentile_min, stats.percentile_max), (stats.min, stats.max)):
            if low is not None and high is not None and low < high:
                return [float(low), float(high)]
    values = sample(array if data is None else data)
    if values.dtype.kind == "b":
        return [0.0, 1.0]
    finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values
    if finite.size == 0:
        return [0.0, 1.0]
    low, high = float(finite.min()), float(finite.max())
    return [low, high] if low < high else [low, low + 1.0]


# --------------------------------------------------------------------------- layers


def layer_data(array: MLArray, name: str = "mlarray", path: str | None = None) -> list[LayerData]:
    """The napari layer data tuples of an open array (no data is read unless the header has no statistics).

    * ``is_seg`` with an integer dtype gives a ``labels`` layer, anything else ``image``;
    * a ``channel`` axis gives one layer per channel (lazy :class:`ChannelView`);
    * bounding boxes give a ``shapes`` layer (2-D) or ``vectors`` box outlines (3-D and up);
    * ``metadata`` holds ``source``, the whole header, the path and ``coord_system``, the
      file's own world frame (the writer saves the layer back in it).
    """
    labels, channel = _axis_roles(array)
    dtype = np.dtype(array.dtype)
    is_labels = bool(array.meta.is_seg) and dtype.kind in "iub"
    kind = "labels" if is_labels else "image"
    rgb = _is_rgb(array, labels, channel, kind)
    dropped = array.ndim - 1 if rgb else channel  # the colour axis of RGB has no place in napari's world
    geometry = placement(array, drop_axis=dropped)
    layer_labels = [label for i, label in enumerate(labels) if i != dropped]
    units = array.meta.spatial.axis_units
    layer_units = [u for i, u in enumerate(units) if i != dropped] if units is not None else None
    frame = array.meta.spatial.coord_system
    metadata = {
        "source": cast(JsonObject, array.meta.source).to_plain(),  # typed as the dict it was given
        "header": array.meta.to_plain(),
        "path": path,
        "coord_system": None if frame is None else str(frame),
    }
    common: dict[str, Any] = {**geometry, "axis_labels": _unique(layer_labels), "metadata": metadata}
    if rgb:
        common["rgb"] = True
    if layer_units is not None and (napari_units := _napari_units(layer_units)) is not None:
        common["units"] = napari_units
    if channel is None:
        datas: list[tuple[Any, str]] = [(array, name)]
    else:
        datas = [(ChannelView(array, channel, c), f"{name} [{c}]") for c in range(array.shape[channel])]  # type: ignore[index]
    if is_labels and dtype.kind == "b":  # napari's Labels take integers: 0 and 1, read lazily
        datas = [(ByteMask(data), layer_name) for data, layer_name in datas]
    out: list[LayerData] = []
    for number, (data, layer_name) in enumerate(datas):
        kwargs = {**common, "name": layer_name}
        if kind == "image":
            kwargs["contrast_limits"] = contrast_limits(array, data)
            if channel is not None:
                kwargs["blending"] = "translucent_no_depth" if number == 0 else "additive"
                kwargs["colormap"] = ("magenta", "green", "cyan", "yellow", "red", "blue")[number % 6]
        out.append((data, kwargs, kind))
    boxes = _box_layer(array, name, geometry, layer_labels, channel)
    if boxes is not None:
        out.append(boxes)
    return out


def _is_rgb(array: MLArray, labels: list[str], channel: int | None, kind: str) -> bool:
    """An image whose last axis is 3 or 4 colour ``components`` (what the writer makes of an RGB(A) layer)."""
    shape = array.shape or ()
    return (
        kind == "image"
        and channel is None
        and len(shape) >= 3
        and labels[-1] == "components"
        and shape[-1] in (3, 4)
        and sum(is_spatial_label(label) for label in labels) == len(shape) - 1
    )


def _box_layer(
    array: MLArray, name: str, geometry: dict[str, Any], layer_labels: list[str], channel: int | None
) -> LayerData | None:
    """Bounding boxes of the header on the image: rectangles in 2-D, the 12 edges of each box otherwise."""
    bbox = array.meta.bbox
    if bbox is None or not bbox.bboxes or any(not label.startswith("spatial") for label in layer_labels):
        return None
    features: dict[str, list[Any]] = {"index": list(range(len(bbox.bboxes)))}
    if bbox.labels is not None:
        features["label"] = [str(label) for label in bbox.labels]
    if bbox.scores is not None:
        features["score"] = list(bbox.scores)
    kwargs: dict[str, Any] = {**geometry, "name": f"{name} boxes", "edge_color": "yellow"}
    boxes = np.asarray(bbox.bboxes, dtype=np.float64)  # (boxes, axes, 2)
    if boxes.shape[1] == 2:
        rectangles = [np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]]) for (y0, y1), (x0, x1) in boxes]
        kwargs.update(shape_type="rectangle", face_color="transparent", edge_width=1, features=features)
        return (rectangles, kwargs, "shapes")
    edges = []
    edge_features: dict[str, list[Any]] = {key: [] for key in features}
    for number, box in enumerate(boxes):
        d = len(box)
        corners = np.array(np.meshgrid(*[[0, 1]] * d, indexing="ij")).reshape(d, -1).T
        for a in corners:
            for axis in range(d):
                if a[axis] == 0:
                    start = box[np.arange(d), a]
                    step = np.zeros(d)
                    step[axis] = box[axis, 1] - box[axis, 0]
                    edges.append([start, step])
                    for key in features:
                        edge_features[key].append(features[key][number])
    kwargs.update(edge_width=1, features=edge_features)
    return (np.asarray(edges), kwargs, "vectors")
