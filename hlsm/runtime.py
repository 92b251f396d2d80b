"""Process-level settings that entry points and heavy library calls scope explicitly."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(count)``, then restore the previous setting.

    ``count=None`` leaves torch's setting alone (a run whose config gives no thread count).

    The identifiability checker issues thousands of small tensor operations; on a shared 2-core
    machine intra-op threads only add contention (measured: 0.3 s with one thread, 14 s with two
    while another process was busy), so it runs single-threaded.
    """
    if count is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
