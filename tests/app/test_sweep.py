"""`hlsm sweep` (hlsm.app.sweep): grids, overrides, local and Ray backends, resumption, failing cells."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from hlsm.app.cli import main
from hlsm.app.sweep import cell_id, cells, load_grid, run_sweep
from hlsm.config import ConfigError, apply_overrides
from hlsm.examples import DESIGNS

DESIGN = DESIGNS / "fit_control.toml"


def _grid(tmp_path: Path, backend: str = "local", workers: int = 1, extra: str = "") -> Path:
    path = tmp_path / "grid.toml"
    path.write_text(
        f'[sweep]\nkind = "fit"\nbase = "{DESIGN}"\nout = "{tmp_path / "out"}"\nbackend = "{backend}"\n'
        f'workers = {workers}\n[grid]\n"fit.seed" = [0, 1]\n"fit.lr" = [0.05, inf]\n"fit.steps" = [40]\n' + extra
    )
    return path


def test_cells_and_overrides() -> None:
    grid = {"b.y": [1, 2], "a": ["u"]}
    assert cells(grid) == [{"a": "u", "b.y": 1}, {"a": "u", "b.y": 2}]
    assert cell_id({"a": 1, "b": 2}) == cell_id({"b": 2, "a": 1}) != cell_id({"a": 1, "b": 3})
    base = {"fit": {"seed": 0}, "spec": {"alphabet": 3}}
    out = apply_overrides(base, {"fit.seed": 4, "nuts.run": True})
    assert out == {"fit": {"seed": 4}, "spec": {"alphabet": 3}, "nuts": {"run": True}} and base["fit"]["seed"] == 0
    with pytest.raises(ConfigError, match="not a table"):
        apply_overrides({"fit": 3}, {"fit.seed": 1})
    quoted = apply_overrides({"grid": {"fit.seed": [0, 1]}}, {'grid."fit.seed"': [3]})  # a key with a dot
    assert quoted == {"grid": {"fit.seed": [3]}}


def test_local_sweep_reports_failures_and_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    grid = _grid(tmp_path)
    assert main(["sweep", "--grid", str(grid)]) == 2  # a failed cell fails the sweep
    captured = capsys.readouterr()
    assert "4 cells: 2 ran, 0 already done, 2 failed" in captured.out and "diverged" in captured.out
    assert "2 of 4 cells failed" in captured.err
    rows = json.loads((tmp_path / "out" / "results.json").read_text())
    done = [r for r in rows if r["status"] == "done"]
    assert {r["fit.seed"] for r in done} == {0, 1} and all(r["fit.lr"] == 0.05 for r in done)
    assert all(r["free_symbols"] == 2 for r in done)  # the control design leaves two symbols free
    header = (tmp_path / "out" / "results.csv").read_text().splitlines()[0]
    assert header.startswith("cell,fit.lr,fit.seed,fit.steps,status")
    # a rerun skips the finished cells and retries the failed ones
    assert main(["sweep", "--grid", str(grid)]) == 2
    assert "0 ran, 2 already done, 2 failed" in capsys.readouterr().out
    again = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [r["objective"] for r in again if r["status"] == "cached"] == [r["objective"] for r in done]


@pytest.mark.parametrize(
    ("extra", "match"),
    [('"fit.concentration" = [0.5]\n', "concentration must be"), ('"fit.stepz" = [3]\n', "stepz")],
)
def test_a_bad_cell_stops_the_sweep_before_any_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str, match: str
) -> None:
    """A value the config refuses, or a misspelt key, in any cell: nothing runs and nothing is written."""
    assert main(["sweep", "--grid", str(_grid(tmp_path, extra=extra))]) == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_local_pool_of_two_workers(tmp_path: Path) -> None:
    section = load_grid(_grid(tmp_path, workers=2))
    _, rows = run_sweep(section)
    assert [r["status"] for r in rows].count("done") == 2


@pytest.mark.ray
def test_ray_backend(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    # one good and one failing cell: Ray starts locally, runs both as tasks, and is shut down
    section = replace(load_grid(_grid(tmp_path, backend="ray")), grid={"fit.seed": [0], "fit.lr": [0.05, float("inf")]})
    section = replace(section, grid={**section.grid, "fit.steps": [40]})
    _, rows = run_sweep(section)
    assert [r["status"] for r in rows] == ["done", "failed"] and "diverged" in rows[1]["error"]
    (tmp_path / "serial").mkdir()
    serial = replace(load_grid(_grid(tmp_path / "serial")), grid=section.grid)
    _, local = run_sweep(serial)
    assert [r.get("objective") for r in rows] == [r.get("objective") for r in local]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('[sweep]\nkind = "fit"\n', "needs a \\[grid\\] table"),
        ('[sweep]\nkind = "nope"\nbase = "x"\n[grid]\n"a" = [1]\n', "kind must be one of"),
        ('[sweep]\nkind = "fit"\n[grid]\n"a" = [1]\n', "base is missing"),
        ('[sweep]\nkind = "fit"\nbase = "missing.toml"\n[grid]\n"a" = [1]\n', "missing.toml"),
        ('[sweep]\nkind = "fit"\nbase = "x"\n[grid]\n"a" = 1\n', "non-empty list"),
        ('[sweep]\nkind = "fit"\nbackend = "slurm"\nbase = "x"\n[grid]\n"a" = [1]\n', "backend must be one of"),
        ('[swep]\n[grid]\n"a" = [1]\n', "unknown section"),
    ],
)
def test_bad_grid_files(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "grid.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_grid(path)


def test_set_overrides_the_grid_file_identify_and_export_designs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--set on the three commands that read a design or grid file, validated like the file."""
    grid = _grid(tmp_path)
    argv = ["sweep", "--grid", str(grid), "--set", 'grid."fit.lr"=[0.05]', "--set", 'grid."fit.seed"=[3]']
    assert main(argv) == 0  # the diverging lr and the two seeds of the file replaced: one cell, which runs
    rows = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [(r["fit.seed"], r["fit.lr"], r["status"]) for r in rows] == [(3, 0.05, "done")]
    capsys.readouterr()
    assert main(["identify", "--design", str(DESIGN), "--json"]) == 0
    full = json.loads(capsys.readouterr().out)["traces"]
    assert main(["identify", "--design", str(DESIGN), "--json", "--set", "data.inputs=2"]) == 0
    assert json.loads(capsys.readouterr().out)["traces"] < full
    assert main(["identify", "--design", str(DESIGN), "--set", "data.inputs=0"]) == 2  # validated like the file
    assert "[data] inputs must be" in capsys.readouterr().err
    design = tmp_path / "d.toml"
    design.write_text(
        '[spec]\nalphabet = 3\nlength = 3\nskills = ["reverse", "sort"]\nroutings = ["chain"]\n[design]\n'
        "train_depth = 2\ndeeper_depths = [3]\nn_sft = 2\nn_rl = 2\nn_unseen = 1\nn_deeper = 1\n"
    )
    out = tmp_path / "export"
    argv = ["export", "--design", str(design), "--format", "trl", "--out", str(out), "--set", "design.n_rl=1"]
    assert main(argv) == 0
    assert json.loads((out / "export.json").read_text())["train"] == {"rl": 1}
