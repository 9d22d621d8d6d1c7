"""What the chunks of a read stand for, before any is decoded (the read paths' shared first step).

A chunk either stands for one value (an index entry for zeros or NaN, spec 4.4.2, or a
special chunk, 4.4.4: nothing to decode) or is stored data C-Blosc2 decodes. These
functions tell them apart for :mod:`mlarray.storage.fastread` and
:mod:`mlarray.storage.patchread`, with NumPy over all the chunks of a read at once
(:func:`chunk_values`) or for one chunk (:func:`special_entry`, :func:`stored_chunk`,
:func:`special_chunk`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from mlarray.storage.selection import shared_groups
from mlarray.storage.structure import ENTRY_NAN, ENTRY_ZEROS, SPECIAL_NAN, SPECIAL_VALUE, SPECIAL_ZERO

GetChunk = Callable[[int], Any]
"""A chunk's stored bytes by its number (any buffer; errors are the caller's)."""
Specials = Callable[["np.ndarray[Any, Any]"], "tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]] | None"]
"""For checked stored chunks, their special kinds and value-run bytes, all at once (see
:meth:`~mlarray.storage.chunks.DataSection.special_values`)."""


def special_entry(entry: int, dtype: np.dtype[Any], fail: Callable[[str], Exception]) -> Any:
    """The value a zeros/NaN index entry stands for (spec 4.4.2)."""
    if entry == ENTRY_ZEROS:
        return 0
    if entry == ENTRY_NAN and dtype.kind == "f":
        return np.nan
    raise fail(f"the index entry {entry & (2**64 - 1):#x}")


def stored_chunk(raw: Any, fail: Callable[[str], Exception]) -> tuple[np.ndarray[Any, Any], int]:
    """A chunk's stored bytes (any buffer) as uint8, and its special kind (0: data C decodes; spec 4.4.4)."""
    data = raw if isinstance(raw, np.ndarray) else np.frombuffer(raw, dtype=np.uint8)
    if len(data) < 32:
        raise fail("it is shorter than a chunk header")
    return data, int(data[31]) >> 4 & 0x07


def special_chunk(kind: int, data: np.ndarray[Any, Any], dtype: np.dtype[Any], fail: Callable[[str], Exception]) -> Any:
    """The value a special chunk of ``kind`` stands for (spec 4.4.4)."""
    if kind == SPECIAL_ZERO:
        return 0
    if kind == SPECIAL_NAN and dtype.kind == "f":
        return np.nan
    if kind == SPECIAL_VALUE and len(data) >= 32 + dtype.itemsize:
        return data[32 : 32 + dtype.itemsize].view(dtype)[0]
    raise fail(f"a special chunk of kind {kind}")


def chunk_values(
    numbers: np.ndarray[Any, Any],
    entries: np.ndarray[Any, Any],
    get_chunk: GetChunk,
    dtype: np.dtype[Any],
    fail: Callable[[int, str], Exception],
    specials: Specials | None = None,
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], list[tuple[np.ndarray[Any, Any], Any]]]:
    """What the chunks ``numbers`` (distinct) stand for, with NumPy rather than a loop per chunk.

    Returns, by position in ``numbers``: whether the chunk stands for one value (a zeros/NaN
    index entry, spec 4.4.2, or a special chunk, 4.4.4), that value's bytes (a row of
    ``dtype.itemsize`` bytes, zero elsewhere), and the chunks C-Blosc2 must decode, as
    groups of positions sharing one index entry (so the same stored bytes) with those
    bytes. ``get_chunk`` is asked once per distinct entry, in the order of ``numbers``, so
    an error names the first chunk it concerns; ``fail(number, what)`` makes the errors.
    A frame may declare millions of chunks, all pointing at one stored chunk, or millions
    of value runs: where ``specials`` tells the kinds and values of the stored chunks at
    once, the chunks it settles are not asked for one by one.
    """
    count = len(numbers)
    known = np.zeros(count, dtype=bool)
    values = np.zeros((count, dtype.itemsize), dtype=np.uint8)
    regular: list[tuple[np.ndarray[Any, Any], Any]] = []
    wanted = entries[numbers]
    special = wanted < 0
    if special.any():
        zeros = wanted == ENTRY_ZEROS
        nans = (wanted == ENTRY_NAN) if dtype.kind == "f" else np.zeros_like(zeros)
        bad = special & ~(zeros | nans)
        if bad.any():
            k = int(np.argmax(bad))
            raise fail(int(numbers[k]), f"the index entry {int(wanted[k]) & (2**64 - 1):#x}")
        if nans.any():
            values[nans] = np.frombuffer(np.array(np.nan, dtype=dtype).tobytes(), dtype=np.uint8)
        known |= special
    stored = np.flatnonzero(~special)
    shared = shared_groups(wanted[stored])
    if shared is None and specials is not None and len(stored):
        stored = _settle_specials(stored, numbers, values, known, dtype, specials)
    groups: Any = stored[:, None] if shared is None else [stored[g] for g in shared]  # usually one chunk per entry
    for members in groups:
        number = int(numbers[members[0]])
        data, kind = stored_chunk(get_chunk(number), functools.partial(fail, number))
        if not kind:
            regular.append((members, data))
            continue
        value = special_chunk(kind, data, dtype, functools.partial(fail, number))
        values[members] = np.frombuffer(np.asarray(value, dtype=dtype).tobytes(), dtype=np.uint8)
        known[members] = True
    return known, values, regular


def _settle_specials(
    stored: np.ndarray[Any, Any],
    numbers: np.ndarray[Any, Any],
    values: np.ndarray[Any, Any],
    known: np.ndarray[Any, Any],
    dtype: np.dtype[Any],
    specials: Specials,
) -> np.ndarray[Any, Any]:
    """Note the values of the special chunks among positions ``stored`` at once; return the
    other positions (chunks to decode, and any kind to refuse, for the loop to raise)."""
    found = specials(numbers[stored])
    if found is None:
        return stored
    kinds, rows = found
    if rows.shape != (len(stored), dtype.itemsize):
        return stored
    nans = (kinds == SPECIAL_NAN) & (dtype.kind == "f")
    runs = kinds == SPECIAL_VALUE
    if nans.any():
        values[stored[nans]] = np.frombuffer(np.array(np.nan, dtype=dtype).tobytes(), dtype=np.uint8)
    values[stored[runs]] = rows[runs]
    settled = (kinds == SPECIAL_ZERO) | nans | runs
    known[stored[settled]] = True
    rest: np.ndarray[Any, Any] = stored[~settled]
    return rest
