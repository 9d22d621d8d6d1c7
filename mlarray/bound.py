"""List views of header fields whose every mutation is validated before it is kept.

``image.spacing[1] = 5.3`` goes through :class:`BoundList`: the new list is handed to
a ``commit`` callback that validates the whole header and raises if it is invalid;
only then does the view change. So an invalid edit never reaches the header, and
nothing invalid can later be written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, SupportsIndex


class BoundList(list[Any]):
    """A ``list`` copy of a header field whose mutations are validated and committed."""

    def __init__(self, values: Iterable[Any], commit: Callable[[list[Any]], None]) -> None:
        super().__init__(values)
        self._commit = commit

    def _apply(self, change: Callable[[list[Any]], Any]) -> Any:
        candidate = _plain(self)
        result = change(candidate)
        self._commit(candidate)
        super().clear()
        super().extend(candidate)
        return result

    def __setitem__(self, index: Any, value: Any) -> None:
        self._apply(lambda c: c.__setitem__(index, value))

    def __delitem__(self, index: Any) -> None:
        self._apply(lambda c: c.__delitem__(index))

    def append(self, value: Any) -> None:
        self._apply(lambda c: c.append(value))

    def extend(self, values: Iterable[Any]) -> None:
        self._apply(lambda c: c.extend(values))

    def insert(self, index: SupportsIndex, value: Any) -> None:
        self._apply(lambda c: c.insert(index, value))

    def pop(self, index: SupportsIndex = -1) -> Any:
        return self._apply(lambda c: c.pop(index))

    def remove(self, value: Any) -> None:
        self._apply(lambda c: c.remove(value))

    def clear(self) -> None:
        self._apply(lambda c: c.clear())

    def reverse(self) -> None:
        self._apply(lambda c: c.reverse())

    def sort(self, *args: Any, **kwargs: Any) -> None:
        self._apply(lambda c: c.sort(*args, **kwargs))

    def __iadd__(self, values: Iterable[Any]) -> BoundList:  # type: ignore[misc]
        self.extend(values)
        return self

    def __imul__(self, n: SupportsIndex) -> BoundList:
        self._apply(lambda c: c.__imul__(n))
        return self


def _plain(values: list[Any]) -> list[Any]:
    return [_plain(v) if isinstance(v, list) else v for v in values]


def bound_matrix(rows: list[list[float]], commit: Callable[[list[Any]], None]) -> BoundList:
    """A matrix view whose rows are bound lists too: ``image.direction[0][1] = x`` is validated."""

    def row_commit(i: int) -> Callable[[list[Any]], None]:
        def apply(new_row: list[Any]) -> None:
            matrix = [list(r) for r in rows]
            matrix[i] = new_row
            commit(matrix)
            rows[i] = list(new_row)

        return apply

    return BoundList([BoundList(row, row_commit(i)) for i, row in enumerate(rows)], commit)
