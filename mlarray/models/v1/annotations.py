"""Statistics, bounding boxes and layout records of the header (schema 1.x)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, model_validator

from mlarray.models.base import StrictModel

Percent = Annotated[float, Field(ge=0, le=100)]


class Stats(StrictModel):
    """Intensity statistics of the array.

    ``percentile_*`` values are computed over the voxels between the
    ``percentile_min_key``-th and ``percentile_max_key``-th percentiles (for example
    0.5 and 99.5), which is what intensity normalisation in training usually needs.
    """

    min: float | None = None
    max: float | None = None
    mean: float | None = None
    median: float | None = None
    std: Annotated[float, Field(ge=0)] | None = None
    percentile_min: float | None = None
    percentile_max: float | None = None
    percentile_mean: float | None = None
    percentile_median: float | None = None
    percentile_std: Annotated[float, Field(ge=0)] | None = None
    percentile_min_key: Percent | None = None
    percentile_max_key: Percent | None = None

    _positional: ClassVar[tuple[str, ...]] = (
        "min",
        "max",
        "mean",
        "median",
        "std",
        "percentile_min",
        "percentile_max",
        "percentile_mean",
        "percentile_median",
        "percentile_std",
        "percentile_min_key",
        "percentile_max_key",
    )

    @model_validator(mode="after")
    def _ordered(self) -> Stats:
        """Spec: ``min <= max``, ``percentile_min <= percentile_max`` and ordered percentile keys."""
        for low, high in (
            ("min", "max"),
            ("percentile_min", "percentile_max"),
            ("percentile_min_key", "percentile_max_key"),
        ):
            a, b = getattr(self, low), getattr(self, high)
            if a is not None and b is not None and a > b:
                raise ValueError(f"{low} ({a}) is greater than {high} ({b})")
        return self


class BBoxes(StrictModel):
    """Axis-aligned boxes in index space: ``bboxes[n][axis] == [min, max]`` over the spatial axes.

    ``scores`` and ``labels``, when given, have one entry per box.
    """

    bboxes: list[list[Annotated[list[float], Field(min_length=2, max_length=2)]]] = Field(
        description="Boxes as [n][spatial axes][2] (min, max) in voxel index coordinates."
    )
    scores: list[float] | None = None
    labels: list[str | int] | None = None

    _positional: ClassVar[tuple[str, ...]] = ("bboxes", "scores", "labels")

    def __init__(self, /, *args: Any, **data: Any) -> None:
        """``BBoxes(boxes, scores, labels)``: the fields may also be given positionally, in this order."""
        super().__init__(*args, **data)

    def ndim(self) -> int | None:
        """Dimensionality of the boxes (``None`` when there are no boxes)."""
        return len(self.bboxes[0]) if self.bboxes else None

    @model_validator(mode="after")
    def _consistent(self) -> BBoxes:
        """Spec: all boxes share one dimensionality, ``min <= max``, scores/labels align with boxes."""
        dims = {len(box) for box in self.bboxes}
        if len(dims) > 1:
            raise ValueError(f"boxes have different dimensionalities: {sorted(dims)}")
        if 0 in dims:
            raise ValueError("a box must have at least one axis")
        for i, box in enumerate(self.bboxes):
            for axis, (low, high) in enumerate(box):
                if low > high:
                    raise ValueError(f"box {i}, axis {axis}: min {low} is greater than max {high}")
        for name in ("scores", "labels"):
            value = getattr(self, name)
            if value is not None and len(value) != len(self.bboxes):
                raise ValueError(f"{name} has {len(value)} entries for {len(self.bboxes)} boxes")
        return self


Codec = Literal["blosclz", "lz4", "lz4hc", "zlib", "zstd"]
FilterName = Literal["shuffle", "bitshuffle", "bytedelta"]
"""Lossless filters whose partial (block-wise) reads are exact. Blosc2's ``delta`` references the
chunk's first block, and partial reads of such chunks crash or return wrong values; ``trunc_prec``
is lossy by design. Neither may be written."""


BLOSC2_CODEC_IDS = {"blosclz": 0, "lz4": 1, "lz4hc": 2, "zlib": 4, "zstd": 5}
"""python-blosc2's ``blosc2.Codec`` value of each codec name (fixed by the C-Blosc2 format)."""
BLOSC2_FILTER_IDS = {"shuffle": 1, "bitshuffle": 2, "bytedelta": 35}
"""python-blosc2's ``blosc2.Filter`` value of each filter name; ``0`` is ``NOFILTER``."""


class Layout(StrictModel):
    """How the writer laid the array out: what it chose, so re-saving can keep it."""

    strategy: Literal["patch", "manual", "blosc2"] = Field(
        description="'patch': derived from patch_size; 'manual': given chunk/block sizes; "
        "'blosc2': chosen by Blosc2 itself."
    )
    chunk_size: list[Annotated[int, Field(ge=1)]]
    block_size: list[Annotated[int, Field(ge=1)]]
    patch_size: list[Annotated[int, Field(ge=1)]] | None = None
    codec: Codec = "lz4"
    clevel: Annotated[int, Field(ge=0, le=9)] = 5
    filters: list[FilterName] = Field(default_factory=list)

    @property
    def cparams(self) -> dict[str, int | list[int]]:
        """Compression parameters as python-blosc2 takes them (mlarray 0.0.x's ``meta.blosc2.cparams``).

        For example ``{"codec": 2, "clevel": 5, "filters": [1]}``: the integer codes of
        ``blosc2.Codec`` and ``blosc2.Filter`` (``[0]``: no filter), so
        ``blosc2.CParams(**layout.cparams)`` or ``MLArray(..., cparams=layout.cparams)``
        compress the same way. A new dict on every access: changing it changes nothing.
        """
        filters = [BLOSC2_FILTER_IDS[name] for name in self.filters] or [0]
        return {"codec": BLOSC2_CODEC_IDS[self.codec], "clevel": self.clevel, "filters": filters}

    @property
    def dparams(self) -> dict[str, int]:
        """``{"nthreads": 1}``: the header records no decompression parameters; this is ``MLArray.open``'s default."""
        return {"nthreads": 1}

    @model_validator(mode="after")
    def _consistent(self) -> Layout:
        """Spec: chunk and block have the same length; each block fits in its chunk."""
        if len(self.chunk_size) != len(self.block_size):
            raise ValueError("chunk_size and block_size must have the same length")
        for axis, (c, b) in enumerate(zip(self.chunk_size, self.block_size, strict=True)):
            if b > c:
                raise ValueError(f"axis {axis}: block size {b} is larger than chunk size {c}")
        return self


class Integrity(StrictModel):
    """Digest of the frame's data section, written on save and refreshed on ``close()``.

    The data section is every byte of the file from the end of the Blosc2 frame header
    (``header_size``) to the start of the frame trailer (``frame_size - trailer_len``):
    the compressed chunks and the chunk index. It does not contain the mlarray header,
    so rewriting the header never invalidates it; any change to the array data does.
    """

    algorithm: Literal["sha256"] = "sha256"
    digest: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] = Field(
        description="Lower-case hex SHA-256 of the frame's data section."
    )


MAX_CLASS_INDICES = 10_000
"""Most voxel indices ``class_locations`` may hold per class (spec 5.11); nnU-Net samples as many."""


class ClassLocation(StrictModel):
    """One class of a label map: its voxel count and a random sample of its voxels (schema 1.1)."""

    label: int = Field(description="The label value.")
    count: Annotated[int, Field(ge=1)] = Field(description="Number of voxels with this label.")
    indices: list[Annotated[int, Field(ge=0)]] = Field(
        max_length=MAX_CLASS_INDICES,
        description="Sampled voxels as flat C-order indices over the spatial axes, strictly increasing.",
    )

    @model_validator(mode="after")
    def _sample(self) -> ClassLocation:
        """Spec: ``indices`` are strictly increasing and no more than ``count``."""
        if len(self.indices) > self.count:
            raise ValueError(f"label {self.label}: {len(self.indices)} indices for {self.count} voxels")
        if any(a >= b for a, b in zip(self.indices, self.indices[1:], strict=False)):
            raise ValueError(f"label {self.label}: indices must be strictly increasing")
        return self


class ClassLocations(StrictModel):
    """Where the foreground of a label map is (schema 1.1): per class, a count and a bounded voxel sample.

    Patch samplers centre patches on voxels of a chosen class without a pass over the
    label map. ``indices`` are flat indices in C order over the spatial axes (for spatial
    shape ``(X, Y, Z)``, voxel ``(x, y, z)`` is ``(x * Y + y) * Z + z``).
    """

    classes: list[ClassLocation] = Field(description="One entry per label present, each label once.")

    @model_validator(mode="after")
    def _unique(self) -> ClassLocations:
        """Spec: each label appears once."""
        labels = [c.label for c in self.classes]
        if len(set(labels)) != len(labels):
            raise ValueError("a label appears more than once in class_locations.classes")
        return self
