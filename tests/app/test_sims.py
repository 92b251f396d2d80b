"""Every experiment of hlsm.sims runs with a tiny config; an experiment missing from this list fails the test."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import hlsm.sims
from hlsm.app.reproduce import EXPERIMENTS, ON_REQUEST
from hlsm.lm.presets import SCALES, scale_preset
from hlsm.sims._common import ArmConfig
from tests.conftest import TINY_REPRODUCTION

SIMS = Path(hlsm.sims.__file__).parent

TINY: dict[str, dict[str, Any]] = {
    "verify_claims": {"designs": 2, "stress_designs": 1, "budget_designs": 1, "budgets": (0, 1), "finite_designs": 1},
    "finding1_rl_data": {"scale": "tiny"},
    "finding2_interfaces": {"scale": "tiny"},
    "finding2_absent_skill": {"scale": "tiny"},
    "dose_response": {"scale": "tiny"},
    "finding3_rl_support": {"scale": "tiny"},
    "finding4_sft_coverage": {"scale": "tiny"},
    "learning_curves": {"scale": "tiny"},
    "probe_transformer": {"scale": "tiny", "examples": 8, "replicates": 3},
    "three_views": {"scale": "tiny", "fit_steps": 60, "fit_restarts": 2},
    "vi_vs_checker": {"designs": 2, "steps": 60, "restarts": 2},
    "vi_at_scale": {"traces": 256, "rl_traces": 8, "restarts": 2, "steps": 40, "candidates": 5},
    "trace_distributions": {"n_sft": 12, "n_rl": 6, "n_unseen": 6, "n_deeper": 4, "traces_per_split": 400},
}


def load(name: str) -> ModuleType:
    return importlib.import_module(f"hlsm.sims.{name}")


def test_every_sim_is_listed() -> None:
    scripts = {p.stem for p in SIMS.glob("*.py") if not p.stem.startswith("_")}
    assert scripts == set(TINY), f"add a tiny config for {scripts - set(TINY)} (or remove {set(TINY) - scripts})"


def _check_outputs(out: Path) -> None:
    config = json.loads((out / "config.json").read_text())
    assert config["out"] == str(out)
    assert (out / "results.json").stat().st_size > 0
    assert list(out.glob("*.png"))


@pytest.mark.parametrize("name", sorted(set(TINY) - set(TINY_REPRODUCTION)))
def test_sim_runs(name: str, tmp_path: Path) -> None:
    module = load(name)
    assert module.__doc__ and "claim" in module.__doc__.lower()
    cfg = module.Config(**TINY[name], out=str(tmp_path / name))
    module.main(cfg)
    _check_outputs(tmp_path / name)


@pytest.mark.parametrize("name", TINY_REPRODUCTION)
def test_sim_runs_in_the_shared_tiny_reproduction(name: str, tiny_reproduction: tuple[Path, Path, Any]) -> None:
    """These ran once for the session, as ``hlsm reproduce --scale tiny`` runs them: their tiny preset
    is the config this file lists."""
    module = load(name)
    assert module.__doc__ and "claim" in module.__doc__.lower()
    assert module.Config.preset("tiny") == module.Config(**TINY[name])
    _check_outputs(tiny_reproduction[0] / name)


@pytest.mark.parametrize("name", sorted(EXPERIMENTS + ON_REQUEST))
def test_sim_presets_build(name: str) -> None:
    """Every scale's preset of every experiment of `hlsm reproduce` builds (gpu cannot run here): the
    tiny preset is a reduction, not the cpu run under another name, and a transformer experiment
    trains what the scale registry says at each scale (its seeds and its model)."""
    module = load(name)
    presets = {scale: module.Config.preset(scale) for scale in SCALES}
    assert all(type(p) is module.Config for p in presets.values())
    assert presets["tiny"] != presets["cpu"]
    if isinstance(presets["cpu"], ArmConfig):
        for scale, preset in presets.items():
            trained, _, _ = preset.setup()
            registry = scale_preset(scale)
            assert trained.seeds == registry.seeds and trained.sft.model == registry.sft.model
            assert trained.rl.rl.budget_traces == registry.rl.rl.budget_traces
    if name == "three_views":
        for scale in SCALES:
            assert module.views_scale(scale).sft.spec.num_states == 64


def test_experiment_scales_build() -> None:
    gpu = scale_preset("gpu")
    assert len(gpu.seeds) == 5 and gpu.eval_examples == 2048 and gpu.sft.training.device == "auto"
    assert scale_preset("cpu").sft.training.device == "cpu"
