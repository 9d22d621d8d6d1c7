"""Benchmarks of mlarray against its peers (run ``python -m benchmarks.run``; never part of the tests)."""
