"""Shared fixtures and hypothesis profiles (chosen by HYPOTHESIS_PROFILE: dev, ci)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import blosc2
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=60, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One Blosc2 thread: C-Blosc2 stores a chunk's blocks in the order its threads finish, so files are repeatable."""
    before = blosc2.nthreads
    blosc2.set_nthreads(1)
    yield
    blosc2.set_nthreads(before)
