"""Experiment runner: the cache shares and skips runs, arms are paired."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from hlsm.lm.experiment import Arm, CalibrationError, ExperimentError, run_arm, run_experiment
from hlsm.lm.presets import scale_preset
from hlsm.lm.sft_config import GateConfig
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


def test_stages_on_two_workers_give_the_serial_results(tmp_path: Path) -> None:
    """run_experiment on a pool of 2 (SFT stage, RL stage, evaluation stage) trains each shared run
    once and gives, arm by arm and seed by seed, what run_arm gives in this process."""
    scale = replace(scale_preset("tiny"), seeds=(0, 1), workers=2)
    arms = (Arm("sft"), Arm("rl", rl={"rl_kind": "compound"}), Arm("rl again", rl={"rl_kind": "compound"}))
    pooled = run_experiment(arms, scale, tmp_path / "pool")
    assert len(list((tmp_path / "pool").glob("sft-*"))) == 2 and len(list((tmp_path / "pool").glob("rl-*"))) == 2
    serial = replace(scale, workers=1)
    for arm in arms:
        for seed in scale.seeds:
            alone = run_arm(arm, serial, seed, tmp_path / "serial")
            got = pooled[arm.name][seed]
            assert got["splits"] == alone["splits"] and got["curve"] == alone["curve"]
            assert got["calibration"] == alone["calibration"] and got["calibration"]["passed"]
    assert pooled["rl"][0]["curve"] and pooled["sft"][0]["curve"] == []


def test_an_experiment_names_every_refused_seed_before_any_rl(tmp_path: Path) -> None:
    scale = scale_preset("tiny")
    gate = GateConfig(seen=1.0, atomic=1.0, every=0, examples=8)
    scale = replace(scale, seeds=(0, 1), sft=replace(scale.sft, gate=gate))
    with pytest.raises(CalibrationError) as info:
        run_experiment((Arm("sft"), Arm("rl", rl={"rl_kind": "compound"})), scale, tmp_path)
    message = str(info.value)
    assert "arm 'sft', seed 0" in message and "arm 'rl', seed 1" in message and "did not pass" in message
    assert not list(tmp_path.glob("rl-*"))


def test_a_setting_added_later_keeps_older_cache_folders_at_its_default() -> None:
    from hlsm.lm.experiment import _hash, _key, arm_rl_config, arm_sft_config, rl_run_path, sft_run_path
    from hlsm.lm.rundir import ADDED_AT_DEFAULT, comparable

    scale = scale_preset("cpu")
    sft = arm_sft_config(scale, Arm("sft"), 0).to_dict()
    rl_config = arm_rl_config(scale, Arm("rl", rl={"rl_kind": "compound", "rl_inside": False}), 0)
    assert rl_config is not None
    rl = rl_config.to_dict()
    for record in (sft, rl):  # a record written before the settings existed hashes as it did then
        older = {k: dict(v) if isinstance(v, dict) else v for k, v in record.items()}
        for section, name in ADDED_AT_DEFAULT:
            older.get(section, {}).pop(name, None)
        assert _hash(_key(record)) == _hash(_key(older))
        assert comparable(record) == comparable(older)  # and a checkpoint written then resumes
    assert "held_out_atomic" in sft["design"] and "reward" in rl["rl"]
    changed = {**sft, "design": {**sft["design"], "held_out_atomic": True}}
    assert _hash(_key(changed)) != _hash(_key(sft))
    changed = {**rl, "rl": {**rl["rl"], "reward": "letters"}}
    assert _hash(_key(changed)) != _hash(_key(rl))
    assert comparable(changed) != comparable(rl)
    # the folder names the cpu scale's runs had when docs/results.md was generated: a new setting that
    # is not registered in ADDED_AT_DEFAULT changes them (and orphans every cached run)
    sft_run = sft_run_path(arm_sft_config(scale, Arm("sft"), 0), "cache")
    assert sft_run.name == "sft-6cc5330540"
    assert rl_run_path(rl_config, sft_run, "cache").name == "rl-eb1a74e7b8"
