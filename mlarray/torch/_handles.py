"""A bounded, least-recently-used set of open ``MLArray`` handles for one process.

A training loader reads from hundreds or thousands of files; each open memory-mapped
``.mla`` file holds a few file descriptors, and the usual per-process limit is 1024.
Keeping every handle a worker ever opened runs out of descriptors after a few hundred
cases, so this cache keeps at most ``limit`` files open and closes the one read least
recently when it needs room. Reopening a file costs a header parse (well under a
millisecond for small headers), far less than the failure it avoids.

It knows nothing about processes or pickling: the dataset decides when a cache
belongs to another process and replaces it.
"""

from __future__ import annotations

from collections import OrderedDict

from mlarray import MLArray


class HandleCache:
    """At most ``limit`` read-only ``MLArray`` handles, closing the least recently used beyond it.

    Parameters
    ----------
    limit : int
        Most handles kept open at once (at least 1).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: OrderedDict[str, MLArray] = OrderedDict()

    def __len__(self) -> int:
        return len(self._open)

    def __contains__(self, path: object) -> bool:
        return path in self._open

    def get(self, path: str) -> MLArray:
        """The open handle of ``path``, opening it (and closing the least recently used beyond the limit)."""
        handle = self._open.get(path)
        if handle is not None:
            self._open.move_to_end(path)
            return handle
        while len(self._open) >= self.limit:
            _, oldest = self._open.popitem(last=False)
            oldest.close()
        handle = MLArray.open(path, "r")
        self._open[path] = handle
        return handle

    def forget(self) -> None:
        """Drop every handle without closing it (they belong to another process, e.g. the parent of a fork)."""
        self._open = OrderedDict()

    def close(self) -> None:
        """Close every handle this cache holds."""
        while self._open:
            _, handle = self._open.popitem(last=False)
            handle.close()
