"""``hlsm sweep --grid FILE``: a grid of designs or training configs, one results table.

A grid file is TOML::

    [sweep]
    kind = "fit"                             # fit (hlsm fit) | identify | sft (hlsm train sft)
    base = "example:fit_control"             # the design or config every cell starts from
    out = "runs/sweep"
    backend = "local"                        # local: a process pool; ray: Ray tasks
    workers = 2                              # local: processes
    address = ""                             # ray: a cluster address ("" starts Ray on this machine)

    [grid]                                   # dotted keys into the base file; every combination runs
    "fit.seed" = [0, 1, 2]
    "fit.concentration" = [1.5, 2.0]

Each cell runs in ``out/cells/<id>/`` (``id`` is a hash of its overrides) and writes
``result.json`` when it finishes: a rerun skips finished cells and retries failed ones. A failing
cell records its error in ``error.json`` and does not stop the others. The table of every cell
(overrides, status, scalar results) is written to ``out/results.csv`` and ``out/results.json``.

With ``backend = "ray"`` (``pip install 'hlsm[ray]'``) each cell is a Ray task: ``address = ""``
starts a local Ray instance; give ``"auto"`` or ``"ray://head:10001"`` to use a running cluster,
whose workers must have ``hlsm`` installed and see ``base`` and ``out`` at the same paths.
Plugins (``--plugin FILE``, ``hlsm.modules`` entry points) are loaded in every worker process
before its first cell; on a cluster the plugin files, too, must be at the same paths.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import math
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hlsm.config import ConfigError, apply_overrides, build_dataclass, check_sections, load_toml
from hlsm.errors import HLSMError
from hlsm.io import write_json, write_text
from hlsm.limits import check_count
from hlsm.lock import writing
from hlsm.parallel import Backend, BackendKind, ParallelError, Runner
from hlsm.runfolder import SWEEP_CELL, TRAINING, RunFolder

MAX_CELLS = 1_000
"""Most cells one grid file may ask for (each is a full run: a larger sweep is several files)."""

Kind = Literal["fit", "identify", "sft"]
KINDS: tuple[str, ...] = typing.get_args(Kind)


class SweepError(HLSMError):
    """A grid that cannot be run; the message names the fix."""


@dataclass(frozen=True)
class SweepSection:
    """The ``[sweep]`` section of a grid file."""

    kind: Kind = "fit"
    base: str = ""
    out: str = "runs/sweep"
    backend: BackendKind = "local"
    workers: int = 2
    address: str = ""
    grid: dict[str, list[Any]] = field(default_factory=dict)


def load_grid(path: str | Path, overrides: Mapping[str, Any] | None = None) -> SweepSection:
    """Read and validate a grid file (``overrides``, ``--set``, set first); ``base`` and ``out`` are
    taken relative to the working directory."""
    raw = load_toml(path, overrides)
    check_sections(raw, ("sweep", "grid"), f"grid file '{path}'")
    grid = raw.get("grid", {})
    if not grid:
        raise ConfigError(f"grid file '{path}' needs a [grid] table of dotted keys to lists of values")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"[grid] '{key}' in '{path}' must be a non-empty list of values")
    section = build_dataclass(SweepSection, {**raw.get("sweep", {}), "grid": grid}, "sweep")
    if not section.base:
        raise ConfigError(f"[sweep] base is missing in '{path}': the design or config file every cell starts from")
    if section.workers < 1:
        raise ConfigError(f"[sweep] workers must be >= 1, got {section.workers}")
    size = math.prod(len(v) for v in section.grid.values())
    check_count(
        f"grid file '{path}': cells ({' x '.join(str(len(v)) for v in section.grid.values())})", size, MAX_CELLS,
        "split the grid into several files, or give fewer values per key",
    )  # fmt: skip
    load_toml(section.base)  # fail now, with the file's name, rather than in every cell
    return section


def cells(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values: ``[{dotted key: value}]`` in a stable order."""
    keys = sorted(grid)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(grid[k] for k in keys))]


def cell_id(overrides: dict[str, Any]) -> str:
    return hashlib.blake2b(json.dumps(overrides, sort_keys=True).encode(), digest_size=5).hexdigest()


def _scalars(record: Any, prefix: str = "") -> dict[str, Any]:
    """The numbers, strings and booleans of a nested mapping, flattened to dotted keys."""
    out: dict[str, Any] = {}
    if isinstance(record, dict):
        for k, v in record.items():
            out.update(_scalars(v, f"{prefix}{k}."))
    elif isinstance(record, (int, float, str, bool)) or record is None:
        out[prefix[:-1]] = record
    return out


def _run_fit(raw: dict[str, Any], out: Path) -> dict[str, Any]:
    from hlsm.app.fitrun import run_fit

    metrics = run_fit(raw, out, progress=False)
    best = metrics.restarts[metrics.best]
    confusion = metrics.confusion or {}
    recovery = metrics.recovery.to_dict()
    return {
        "objective": best.objective,
        "spread": metrics.spread,
        **_scalars({"recovery": {k: v for k, v in recovery.items() if not isinstance(v, list)}}),
        "agreement": confusion.get("agreement"),
        "free_symbols": sum(not view.identified for view in metrics.symbols.values()),
    }


def _run_identify(raw: dict[str, Any], out: Path) -> dict[str, Any]:
    from hlsm.app.designfile import parse_design
    from hlsm.identify.checker import identify

    design = parse_design(raw, "the design mapping")
    result = identify(design.spec, design.corpus(), design.candidates, "lib", horizon=design.horizon).to_dict()
    write_json(out / "identify.json", result)
    return {"generalisation_set_size": result["generalisation_set_size"], "unseen_total": result["unseen_total"]}


def _run_sft(raw: dict[str, Any], out: Path) -> dict[str, Any]:
    from hlsm.lm.sft import train_sft
    from hlsm.lm.sft_config import SFTConfig

    result = train_sft(SFTConfig.from_dict(raw), out, resume=RunFolder(out, TRAINING).resumable(), progress=False)
    return {"step": result.step, **_scalars({"evaluation": result.evaluation})}


def _check_design(raw: dict[str, Any]) -> None:
    from hlsm.app.designfile import parse_design
    from hlsm.app.fitrun import FitSection, NutsSection, fit_config

    design = parse_design(raw, "the cell's design")
    fit_config(build_dataclass(FitSection, design.sections.get("fit", {}), "fit"))
    build_dataclass(NutsSection, design.sections.get("nuts", {}), "nuts")


def _check_sft(raw: dict[str, Any]) -> None:
    from hlsm.lm.sft_config import SFTConfig

    SFTConfig.from_dict(raw)


CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "fit": _check_design,
    "identify": _check_design,
    "sft": _check_sft,
}
"""Every cell's config is validated by these before any cell runs (a misspelt grid key stops the sweep)."""

RUNNERS: dict[str, Callable[[dict[str, Any], Path], dict[str, Any]]] = {
    "fit": _run_fit,
    "identify": _run_identify,
    "sft": _run_sft,
}


def run_cell(kind: str, base: dict[str, Any], overrides: dict[str, Any], folder: str) -> dict[str, Any]:
    """Run one cell (in any process); returns its row. Errors are caught and recorded, not raised."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    row: dict[str, Any] = {"cell": out.name, **overrides}
    try:
        result = RUNNERS[kind](apply_overrides(base, overrides), out)
    except HLSMError as err:  # bad input in a cell is reported and the sweep goes on; anything else is a bug
        error = {"error": f"{type(err).__name__}: {err}"}
        write_json(out / "error.json", error)
        return {**row, "status": "failed", **error}
    (out / "error.json").unlink(missing_ok=True)
    RunFolder(out, SWEEP_CELL).write_result(result)
    return {**row, "status": "done", **result}


def run_sweep(section: SweepSection) -> tuple[Path, list[dict[str, Any]]]:
    """Run every unfinished cell of the grid and write the results table; returns its path and rows."""
    base = load_toml(section.base)
    out = Path(section.out)
    with writing(out, "sweep folder"):
        rows: dict[str, dict[str, Any]] = {}
        jobs = []
        for overrides in cells(section.grid):
            folder = out / "cells" / cell_id(overrides)
            try:  # a key that cannot be set, or a value the config refuses, stops the sweep before it starts
                CHECKS[section.kind](apply_overrides(base, overrides))
            except HLSMError as err:
                raise SweepError(f"grid cell {overrides}: {err}") from None
            cell = RunFolder(folder, SWEEP_CELL)
            if cell.finished():
                rows[folder.name] = {"cell": folder.name, **overrides, "status": "cached", **cell.read_result()}
            else:
                jobs.append((section.kind, base, overrides, str(folder.resolve())))
        ran: list[dict[str, Any]] = []
        if jobs:
            backend = Backend(section.backend, section.workers if section.backend == "local" else 1, section.address)
            try:
                with Runner(backend) as runner:
                    ran = runner.map(run_cell, jobs)
            except ParallelError as err:
                raise SweepError(str(err)) from None
        rows.update({r["cell"]: r for r in ran})
        ordered = [rows[cell_id(o)] for o in cells(section.grid)]
        write_json(out / "results.json", ordered)
        write_text(out / "results.csv", _csv(ordered))
        return out / "results.csv", ordered


def _csv(rows: list[dict[str, Any]]) -> str:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
