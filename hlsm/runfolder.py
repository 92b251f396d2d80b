"""The run folder: one convention for every job that writes a folder of results.

Training runs (``hlsm train``), fits (``hlsm fit``), sweep cells, the experiments of
``hlsm reproduce`` and the runs of the experiment cache all write a :class:`RunFolder`:

- ``config.json`` — what the run was asked to do, written when it starts;
- ``metrics.jsonl`` — its log, one JSON object a line (training runs);
- a **state** file — what an interrupted run resumes from (``checkpoint.pt``, ``fit_state.pt``);
- a **result** file — written last and atomically, so that its presence means the run finished
  (``summary.json``, ``metrics.json``, a sweep cell's ``result.json``, an experiment's done marker);
- its **lock** — :func:`hlsm.lock.writing` on the folder for as long as a process writes it.

The kinds in use are :data:`TRAINING`, :data:`FIT`, :data:`SWEEP_CELL` and :func:`experiment`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hlsm.errors import HLSMError
from hlsm.io import write_json
from hlsm.lock import writing

CONFIG_NAME = "config.json"
METRICS_NAME = "metrics.jsonl"


@dataclass(frozen=True)
class Kind:
    """What a kind of run folder holds: its state file (None: a run that cannot resume midway), its
    result file and what the folder is called in messages and its lock."""

    state: str | None
    result: str
    what: str


TRAINING = Kind("checkpoint.pt", "summary.json", "run folder")
FIT = Kind("fit_state.pt", "metrics.json", "fit folder")
SWEEP_CELL = Kind(None, "result.json", "sweep cell")


def experiment(scale: str) -> Kind:
    """An experiment of ``hlsm reproduce`` at ``scale``: finished when its done marker (the wall time) is there."""
    return Kind(None, f".done-{scale}.json", "experiment folder")


@dataclass(frozen=True)
class RunFolder:
    """One run's folder of ``kind``; nothing is created until the run starts."""

    path: Path
    kind: Kind

    @property
    def state(self) -> Path | None:
        return None if self.kind.state is None else self.path / self.kind.state

    @property
    def result(self) -> Path:
        return self.path / self.kind.result

    @property
    def metrics(self) -> Path:
        return self.path / METRICS_NAME

    def finished(self) -> bool:
        """Whether the run wrote its result."""
        return self.result.exists()

    def resumable(self) -> bool:
        """Whether an interrupted (or finished) run left its state to resume from."""
        return self.state is not None and self.state.exists()

    def check_resume(self, resume: bool, error: Callable[[str], HLSMError], *, overwrite: bool = False) -> None:
        """Refuse ``--resume`` on a folder with no state, and (unless ``overwrite``) a fresh start over one
        that has it; the message names the folder and the fix, as ``error``."""
        name = self.kind.state
        if resume and not self.resumable():
            raise error(f"--resume given but '{self.path}' holds no {name}; start without --resume")
        if not resume and not overwrite and self.resumable():
            raise error(f"'{self.path}' already holds a run ({name}); pass --resume or choose another --out")

    def lock(self, *, wait: bool = False) -> AbstractContextManager[None]:
        """Hold the folder's lock while writing it (:func:`hlsm.lock.writing`)."""
        return writing(self.path, self.kind.what, wait=wait)

    def start(self, config: dict[str, Any]) -> None:
        """A fresh start: the folder made, a stale metrics log and result dropped, ``config.json`` written."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.metrics.unlink(missing_ok=True)
        self.result.unlink(missing_ok=True)
        write_json(self.path / CONFIG_NAME, config)

    def write_result(self, record: dict[str, Any], *, indent: int | None = 2) -> None:
        """Write the result (atomically): from here on the run counts as finished."""
        write_json(self.result, record, indent=indent)

    def read_result(self) -> dict[str, Any]:
        record: dict[str, Any] = json.loads(self.result.read_text())
        return record
