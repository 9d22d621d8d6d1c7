"""Which read path a test runs through: the compiled block loop, its NumPy stand-in, or python-blosc2."""

from __future__ import annotations

import pytest

from mlarray.storage import blockcopy, fastread

ENGINES = ("compiled", "numpy", "blosc2")


def select_engine(name: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Route one-thread patch reads through ``name`` for the rest of the test.

    ``compiled`` and ``numpy`` take our own read path (``numpy`` without the compiled loop,
    whose stand-in is NumPy copies); ``blosc2`` leaves every patch read to python-blosc2's
    slicing. The compiled loop must be built in the test environment.
    """
    if name == "blosc2":
        monkeypatch.setattr(fastread, "PATCH_THREADS_MIN", 1 << 30)  # no thread count qualifies
        return name
    if not fastread.available():
        pytest.skip(f"fast path unavailable: {fastread.STATUS}")
    monkeypatch.setattr(fastread, "PATCH_THREADS_MIN", 1)
    if name == "numpy":
        monkeypatch.setattr(blockcopy, "HELPER", None)
    else:
        assert blockcopy.HELPER is not None, f"the test environment must build the compiled loop: {blockcopy.STATUS}"
    return name
