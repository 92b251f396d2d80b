"""Optional TensorBoard logging: the numbers of a run's metrics log, also as TensorBoard scalars.

``hlsm train sft|rl --tensorboard`` and ``hlsm fit --tensorboard`` open :func:`tensorboard` around
the run. While it is open, every record a training run appends to its ``metrics.jsonl``
(:func:`hlsm.lm.rundir.append_jsonl`) is written too as scalars to ``<run>/tensorboard/`` at the
record's ``step``: ``train/loss``, ``eval/splits/unseen/accuracy``, ... (every number of the record,
nested keys joined by ``/``; TensorBoard stores them as float32). A fit writes each restart's loss per
step (:func:`log_series`). Watch with ``tensorboard --logdir runs/``.

Needs the ``tensorboard`` package (``pip install 'hlsm[tensorboard]'``); nothing is imported
otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hlsm.errors import HLSMError

FOLDER = "tensorboard"
"""The folder of a run that holds its TensorBoard event files."""

_WRITERS: dict[Path, Any] | None = None
"""Open writers by run folder while :func:`tensorboard` is open; None when it is not."""


class TrackingError(HLSMError):
    """TensorBoard logging asked for without the ``tensorboard`` package."""


def _writer_class() -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise TrackingError(
            "--tensorboard needs the tensorboard package: pip install 'hlsm[tensorboard]' (or pip install tensorboard)"
        ) from None
    return SummaryWriter


@contextmanager
def tensorboard(enabled: bool = True) -> Iterator[None]:
    """While open (and ``enabled``), metrics records are mirrored to TensorBoard; the files are closed on exit."""
    global _WRITERS
    if not enabled or _WRITERS is not None:
        yield
        return
    _writer_class()  # refuse at once, before any work, when the package is missing
    _WRITERS = {}
    try:
        yield
    finally:
        writers, _WRITERS = _WRITERS, None
        for writer in writers.values():
            writer.close()


def _writer(run: Path, purge_step: int | None = None) -> Any:
    assert _WRITERS is not None
    if run not in _WRITERS:
        _WRITERS[run] = _writer_class()(log_dir=str(run / FOLDER), purge_step=purge_step)
    return _WRITERS[run]


def resumed(run: Path, step: int) -> None:
    """A run resumed from its checkpoint at ``step``: the scalars logged after it are dropped, as its
    metrics log drops them (:func:`hlsm.lm.rundir.truncate_metrics`), so no step shows twice."""
    if _WRITERS is not None and run not in _WRITERS:
        _writer(run, purge_step=step + 1)


def scalars(record: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The finite numbers of a (nested) record by ``/``-joined key (booleans and lists left out)."""
    out: dict[str, float] = {}
    for key, value in record.items():
        tag = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out |= scalars(value, f"{tag}/")
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[tag] = float(value)
    return out


def log_record(run: Path, record: Mapping[str, Any]) -> None:
    """Mirror one metrics record of ``run`` (a no-op unless :func:`tensorboard` is open)."""
    if _WRITERS is None:
        return
    step = int(record.get("step", 0))
    kind = str(record.get("kind", "metrics"))
    writer = _writer(run)
    for tag, value in scalars({k: v for k, v in record.items() if k not in ("kind", "step")}).items():
        writer.add_scalar(f"{kind}/{tag}", value, step)
    writer.flush()


def log_series(run: Path, tag: str, values: Sequence[float | None]) -> None:
    """A series (one value a step from 0) under ``tag``; None and non-finite values are skipped."""
    if _WRITERS is None:
        return
    writer = _writer(run)
    for step, value in enumerate(values):
        if value is not None and math.isfinite(value):
            writer.add_scalar(tag, float(value), step)
    writer.flush()
