"""PyTorch data loading for ``.mla`` files (the ``torch`` extra).

``import mlarray`` never imports this package; ``import mlarray.torch`` needs torch:
``pip install "mlarray[torch]"``.
"""

from __future__ import annotations

try:
    import torch as _torch  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without torch
    from mlarray.errors import MissingDependencyError

    raise MissingDependencyError('mlarray.torch needs PyTorch: pip install "mlarray[torch]"', module="torch") from exc

from mlarray.torch.dataset import PatchDataset

__all__ = ["PatchDataset"]
