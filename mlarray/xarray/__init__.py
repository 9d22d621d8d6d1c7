"""xarray integration: ``xarray.open_dataarray("scan.mla", engine="mlarray")``.

The backend is registered through xarray's ``xarray.backends`` entry point, so
installing ``mlarray[xarray]`` is all it takes; this package need not be imported. It
gives a lazy DataArray named ``image`` whose dimension names come from the axis labels,
with world coordinates for volumes whose axes are aligned with the world axes
(identity, permuted or flipped directions) and index coordinates plus the full affine
for oblique ones. The rules are in :mod:`mlarray.xarray._coords` and
``docs/guide/xarray.md``. Importing this package imports xarray; ``import mlarray`` does not.
"""

try:
    import xarray  # noqa: F401 - the extra this package needs
except ImportError as exc:
    from mlarray.errors import MissingDependencyError

    raise MissingDependencyError('mlarray.xarray needs xarray: pip install "mlarray[xarray]"', module="xarray") from exc

from mlarray.xarray._backend import VARIABLE, MLArrayBackendArray, MLArrayBackendEntrypoint, open_mla_dataset
from mlarray.xarray._coords import DEFAULT_TOLERANCE, aligned_axes, dimension_names

__all__ = [
    "DEFAULT_TOLERANCE",
    "VARIABLE",
    "MLArrayBackendArray",
    "MLArrayBackendEntrypoint",
    "aligned_axes",
    "dimension_names",
    "open_mla_dataset",
]
