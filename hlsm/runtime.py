"""Process-level settings that entry points and heavy library calls scope explicitly."""

from __future__ import annotations

import contextlib
import io
import math
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

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


class _Lines(io.TextIOBase):
    """Where a progress bar writes off a terminal: a refresh becomes one plain line (no carriage returns
    to garble a log file), at most one per ``interval`` seconds besides the first and the last (the
    bar's close writes a newline, which lets the last state through)."""

    def __init__(self, stream: TextIO, interval: float) -> None:
        self.stream, self.interval = stream, interval
        self.last = -math.inf
        self.pending = ""

    def write(self, text: str) -> int:
        line = text.replace("\r", "").replace("\x1b[A", "").strip()
        now = time.monotonic()
        if line and now - self.last >= self.interval:
            self.stream.write(line + "\n")
            self.last, self.pending = now, ""
        elif line:
            self.pending = line
        elif "\n" in text and self.pending:  # the bar closed: its final state
            self.stream.write(self.pending + "\n")
            self.pending = ""
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


PLAIN_INTERVAL_S = 30.0
"""Seconds between progress lines when stderr is not a terminal (a log, CI)."""


def progress_bar(**kwargs: Any) -> Any:
    """A ``tqdm`` bar on stderr: live on a terminal; off one (a log, a pipe, CI), a plain line at the
    start, every :data:`PLAIN_INTERVAL_S` seconds and at the end. The one progress bar of the package."""
    from tqdm import tqdm

    stream = sys.stderr
    if not (hasattr(stream, "isatty") and stream.isatty()):
        kwargs = {"mininterval": PLAIN_INTERVAL_S, "maxinterval": PLAIN_INTERVAL_S, "ascii": True, "ncols": 100,
                  **kwargs, "file": _Lines(stream, PLAIN_INTERVAL_S), "dynamic_ncols": False}  # fmt: skip
    return tqdm(**kwargs)


def seconds(fn: Callable[[], Any]) -> float:
    """Wall-clock seconds one call of ``fn`` takes (the benchmarks' timer)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
