"""The napari plugin of mlarray: open ``.mla`` files lazily, placed in their world coordinates.

napari finds the plugin through the ``napari.manifest`` entry point, which names the
npe2 manifest ``napari.yaml`` beside this module. The reader hands napari the open,
memory-mapped :class:`~mlarray.MLArray` itself, so napari decompresses only the chunks
of the slices it shows. The writer saves Image and Labels layers as ``.mla``.

Nothing here imports napari or npe2: napari imports this package, not the other way
round, and ``import mlarray`` never pulls napari in. Only the public mlarray API is used.
"""

from mlarray.napari._reader import get_reader, layer_data, read
from mlarray.napari._views import ChannelView
from mlarray.napari._writer import write_image, write_labels

__all__ = ["ChannelView", "get_reader", "layer_data", "read", "write_image", "write_labels"]
