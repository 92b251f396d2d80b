"""Determinism and kill/resume at the command line: same seed, same bytes; SIGKILL, resume, same end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from hlsm.app.cli import main
from hlsm.examples import CONFIGS, DESIGNS

ROOT = Path(__file__).resolve().parents[2]
TIMING = {"tokens_per_s", "elapsed_s", "wall_s", "seconds", "time_s"}
"""Fields that measure time, not the computation: left out of the comparisons."""


def _metrics(path: Path) -> list[dict[str, object]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


def test_simulate_is_byte_identical(tmp_path: Path) -> None:
    args = ["simulate", "--alphabet", "4", "--length", "3", "--n", "500", "--seed", "7", "--epsilon", "0.1"]
    assert main([*args, "--out", str(tmp_path / "a.jsonl")]) == 0
    assert main([*args, "--out", str(tmp_path / "b.jsonl")]) == 0
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert main([*args[:-4], "--seed", "8", "--epsilon", "0.1", "--out", str(tmp_path / "c.jsonl")]) == 0
    assert (tmp_path / "a.jsonl").read_bytes() != (tmp_path / "c.jsonl").read_bytes()


def test_fit_metrics_are_identical(tmp_path: Path) -> None:
    design = str(DESIGNS / "fit_control.toml")
    for name in ("a", "b"):
        assert main(["fit", "--design", design, "--out", str(tmp_path / name), "--quiet"]) == 0
    a, b = ((tmp_path / n / "metrics.json").read_text() for n in ("a", "b"))
    assert a == b.replace(str(tmp_path / "b"), str(tmp_path / "a"))


def _train(out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "hlsm.app.cli",
        "train",
        "sft",
        "--config",
        str(CONFIGS / "sft_tiny.toml"),
        "--out",
        str(out),
    ]


def test_training_is_deterministic_and_survives_sigkill(tmp_path: Path) -> None:
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(_train(whole), check=True, env=env, capture_output=True)
    again = tmp_path / "again"
    subprocess.run(_train(again), check=True, env=env, capture_output=True)
    assert _metrics(whole / "metrics.jsonl") == _metrics(again / "metrics.jsonl")
    # SIGKILL once the first checkpoint (step 10 of 30) is on disk, then resume
    proc = subprocess.Popen(_train(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if (killed / "checkpoint.pt").exists():
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "training ended before it could be killed"
    assert not (killed / "summary.json").exists()
    subprocess.run([*_train(killed), "--resume"], check=True, env=env, capture_output=True)
    train_rows = [r for r in _metrics(whole / "metrics.jsonl") if r.get("kind") == "train"]
    resumed_rows = [r for r in _metrics(killed / "metrics.jsonl") if r.get("kind") == "train"]
    # rows logged after the last checkpoint and before the kill are logged again after the resume
    last = {r["step"]: r for r in resumed_rows}
    assert [last[r["step"]] for r in train_rows] == train_rows
    a = {k: v for k, v in json.loads((whole / "summary.json").read_text()).items() if k not in TIMING}
    b = {k: v for k, v in json.loads((killed / "summary.json").read_text()).items() if k not in TIMING}
    assert a == b
