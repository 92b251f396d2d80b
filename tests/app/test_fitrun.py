"""`hlsm fit` (hlsm.app.fitrun): outputs, the control design's diagnostics, NUTS export, bad input, divergence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hlsm.app.cli import main
from hlsm.examples import DESIGNS

SPEC_TEXT = """
[spec]
alphabet = 3
length = 2
skills = ["reverse", "shift_up", "shift_down"]
routings = ["chain", "restart"]
"""


def _design(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "design.toml"
    path.write_text(SPEC_TEXT + body)
    return path


def test_control_design_flags_free_symbols(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["fit", "--design", str(DESIGNS / "fit_control.toml"), "--out", str(out), "--quiet"]) == 0
    for name in ("params.pt", "metrics.json", "tables.png", "elbo.png", "predictive.png"):
        assert (out / name).stat().st_size > 0
    metrics = json.loads((out / "metrics.json").read_text())
    symbols = metrics["symbols"]
    # shift_down never appears and restart only at step 1: both free for the checker and the fit
    free = {s for s, row in symbols.items() if not row["identified"]}
    assert {symbols[s]["true"] for s in free} == {"shift_down", "restart"}
    assert all(row["checker"] == row["identified"] for row in symbols.values())
    assert metrics["confusion"]["agreement"] == 1.0
    assert 0 < metrics["confusion"]["both"] < metrics["confusion"]["total"]
    assert "symbols not identified by the fit" in capsys.readouterr().out
    saved = torch.load(out / "params.pt")
    assert len(saved["restarts"]) == 4 and saved["restarts"][0]["alpha"].shape == (3, 3)


def test_nuts_section_writes_posterior(tmp_path: Path) -> None:
    design = _design(
        tmp_path,
        """
[sft]
atomic = true
programs = ["chain:reverse > restart:shift_up"]
[candidates]
programs = ["restart:shift_up > chain:reverse"]
[fit]
traces = 60
steps = 50
restarts = 2
tables = "library"
[nuts]
run = true
warmup = 20
samples = 20
""",
    )
    out = tmp_path / "run"
    assert main(["fit", "--design", str(design), "--out", str(out), "--quiet"]) == 0
    import arviz as az  # noqa: PLC0415

    idata = az.from_netcdf(out / "posterior.nc")
    assert idata.posterior["alpha"].shape[:2] == (2, 20)
    nuts = json.loads((out / "metrics.json").read_text())["nuts"]
    assert set(nuts["summary"]) >= {"alpha", "beta"} and "tv_mean" in nuts["versus_fit"]


def test_divergence_saves_state_and_names_parameter(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    design = _design(
        tmp_path,
        "[sft]\natomic = true\n[candidates]\ndepth = 2\n[fit]\ntraces = 30\nsteps = 5\nrestarts = 1\nlr = inf\n",
    )
    out = tmp_path / "run"
    assert main(["fit", "--design", str(design), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "diverged at step 1" in err and "non-finite values in alpha" in err and "diverged.pt" in err
    state = torch.load(out / "diverged.pt")
    assert state["step"] == 1 and "alpha" in state["bad"] and not torch.isfinite(state["logits"]["alpha"]).all()
    assert not (out / "metrics.json").exists()


def test_bad_fit_section(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    design = _design(tmp_path, '[sft]\natomic = true\n[candidates]\ndepth = 2\n[fit]\ntables = "free"\n')
    assert main(["fit", "--design", str(design), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert "tables must be 'dense' or 'library'" in capsys.readouterr().err
    design.write_text(SPEC_TEXT + "[sft]\natomic = true\n[candidates]\ndepth = 2\n[fit]\nstep = 3\n")
    assert main(["fit", "--design", str(design), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert "step" in capsys.readouterr().err


@pytest.mark.slow
def test_default_identifiable_design_recovers_modules(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["fit", "--design", str(DESIGNS / "fit_tiny.toml"), "--out", str(out), "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    rec = metrics["recovery"]
    assert rec["matched_tv_max"] <= 0.05
    assert rec["skill_binding_accuracy"] == 1.0 and rec["routing_binding_accuracy"] == 1.0
    assert all(row["identified"] for row in metrics["symbols"].values())
    assert metrics["confusion"]["agreement"] == 1.0


def test_killed_fit_resumes_to_the_same_result(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    body = (
        '[sft]\natomic = true\nprograms = ["chain:reverse > restart:shift_up"]\n[candidates]\ndepth = 2\n'
        '[fit]\ntraces = 0\ndata_weight = 1000\ntables = "library"\nsteps = 1500\nrestarts = 3\ntol = 0\n'
    )
    design = _design(tmp_path, body.replace("tol = 0\n", ""))
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert main(["fit", "--design", str(design), "--out", str(whole), "--quiet"]) == 0
    cmd = [sys.executable, "-m", "hlsm", "fit", "--design", str(design), "--out", str(killed), "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = killed / "fit_state.pt"
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if state.exists() and torch.load(state, weights_only=False)["done"]:
            os.kill(proc.pid, signal.SIGKILL)  # at least one restart finished, the next one is running
            break
        time.sleep(0.05)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the fit ended before it could be killed; make it longer"
    assert not (killed / "metrics.json").exists()
    assert main(["fit", "--design", str(design), "--out", str(killed), "--quiet", "--resume"]) == 0
    a = json.loads((whole / "metrics.json").read_text())
    b = json.loads((killed / "metrics.json").read_text())
    assert a["restarts"] == b["restarts"] and a["candidates"] == b["candidates"] and a["symbols"] == b["symbols"]


def test_scalable_fit_prints_the_json_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The at-scale path (no tables built, the view on random inputs) on a design small enough to check."""
    design = _design(
        tmp_path,
        """
[sft]
atomic = true
programs = ["chain:reverse > restart:shift_up", "restart:shift_down > chain:reverse"]
[rl]
programs = ["chain:shift_up > chain:shift_down"]
exposure = "answer"
[candidates]
programs = ["restart:shift_up > chain:shift_down", "chain:shift_down > restart:reverse"]
[fit]
traces = 200
rl_traces = 40
objective = "scalable"
tables = "library"
steps = 300
restarts = 2
confident = 0.75
view_inputs = 9
""",
    )
    out = tmp_path / "run"
    assert main(["fit", "--design", str(design), "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["binding_accuracy"] == 1.0
    assert summary["checker_agreement"] == 1.0 and summary["candidates"] == 2
    assert summary["interval_width"] == 0.0  # |X| = 9: every term is exact
    assert abs(summary["epsilon"] - 0.05) < 0.05
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["traces"] == 240 and all(r["interval_width"] == 0.0 for r in metrics["restarts"])
    assert (out / "tables.png").stat().st_size > 0
