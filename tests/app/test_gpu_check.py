"""scripts/gpu_check.sh in its tiny setting on the CPU: every step runs and the summary holds them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # about a minute: five processes
def test_gpu_check_runs_on_cpu_in_its_tiny_setting(tmp_path: Path) -> None:
    env = os.environ | {
        "OUT": str(tmp_path / "check"), "DEVICE": "cpu", "SCALE": "tiny", "SIZE": "0.2M", "MODELS": "2",
        "SEEDS": "0 1", "BUDGET": "128", "N": "4", "PYTHON": sys.executable,
    }  # fmt: skip
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh")], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((tmp_path / "check" / "summary.json").read_text())
    assert summary["finding1_exit"] == 0 and summary["seeds"] == [0, 1] and summary["size"] == "0.2M"
    bench = summary["bench"]
    assert [(b["benchmark"], b["models"]) for b in bench] == [("train", 1), ("train", 2), ("rl", 1), ("rl", 2)]
    assert all(0 < b["fraction_of_peak"] < 1 and b["params"] > 200_000 for b in bench)
    assert bench[0]["mfu"] is not None
    finding1 = json.loads((tmp_path / "check" / "finding1" / "results.json").read_text())
    assert finding1["settings"]["seeds"] == [0, 1] and finding1["settings"]["rl"]["rl"]["budget_traces"] == 128
    assert finding1["settings"]["sft"]["model"]["d_model"] == 96  # the ladder's 0.2M model, not tiny's
