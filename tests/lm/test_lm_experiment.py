"""Experiment runner: the cache shares and skips runs, arms are paired."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hlsm.lm.experiment import Arm, ExperimentError, run_arm
from hlsm.lm.presets import scale_preset
from hlsm.lm.summary import summarise
from hlsm.runtime import torch_threads


def test_arm_rejects_unknown_rl_keys() -> None:
    with pytest.raises(ExperimentError, match="rl_kind"):
        Arm("bad", rl={"budget": 1})


def test_runs_are_cached_shared_and_paired(tmp_path: Path) -> None:
    scale = scale_preset("tiny")
    sft = run_arm(Arm("sft"), scale, 0, tmp_path)
    rl = run_arm(Arm("rl", rl={"rl_kind": "compound"}), scale, 0, tmp_path)
    runs = sorted(p.name for p in tmp_path.iterdir())
    assert [r[:3] for r in runs] == ["rl-", "sft"]  # one SFT run, shared by both arms
    ckpt = Path(sft["run"]) / "checkpoint.pt"
    stamp = ckpt.stat().st_mtime_ns
    again = run_arm(Arm("sft again"), scale, 0, tmp_path)
    assert ckpt.stat().st_mtime_ns == stamp and again["splits"] == sft["splits"]  # skipped, not retrained
    results = {"sft": {0: sft}, "rl": {0: rl}}
    summary = summarise(results, {"unseen": ("unseen", None), "absent": ("deeper_9", None)}, [("rl", "sft")]).to_dict()
    assert set(summary["summary"]["rl"]) == {"unseen"}  # splits missing from the design are left out
    paired = summary["contrasts"]["rl - sft"]["unseen"]["per_seed"]["0"]
    assert paired["n"] == scale.eval_examples


def test_an_arm_restores_the_thread_count(tmp_path: Path) -> None:
    """The tiny scale's ``threads = 1`` holds while the arm runs; the caller's setting is back afterwards."""
    with torch_threads(2):
        run_arm(Arm("sft"), scale_preset("tiny"), 0, tmp_path)
        assert torch.get_num_threads() == 2
