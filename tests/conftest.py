"""Shared test fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hlsm.runtime import torch_threads


@pytest.fixture(autouse=True)
def _one_thread_for_lm_tests(request: pytest.FixtureRequest) -> Iterator[None]:
    """Transformer tests run torch on one thread: tiny models gain nothing from intra-op threads and
    lose much when other processes share the two cores."""
    if request.path.name.startswith("test_lm_"):
        with torch_threads(1):
            yield
    else:
        yield
