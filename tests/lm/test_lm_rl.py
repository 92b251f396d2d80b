"""REINFORCE: the estimator against the exact gradient, k3, dynamic sampling, exact resume, the CLI, DDP."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp

from hlsm.app.cli import main
from hlsm.config import ConfigError, load_toml
from hlsm.design import DesignConfig, make_design
from hlsm.errors import HLSMError
from hlsm.examples import CONFIGS
from hlsm.lm.checkpoint import load_checkpoint
from hlsm.lm.dataset import Source
from hlsm.lm.model import GPT, GPTConfig
from hlsm.lm.pg import kl_k3, loo_advantages, reinforce_loss
from hlsm.lm.records import curve_checkpoints, read_curve
from hlsm.lm.reinforce import train_rl
from hlsm.lm.rl_config import RLConfig, resolve_task
from hlsm.lm.rollout import GroupBuffer, Rollout, RolloutError, curriculum_programs, mixed_groups, round_sources
from hlsm.lm.rundir import TrainingError
from hlsm.lm.sampling import generate
from hlsm.lm.sft_config import SFTConfig
from hlsm.programs import Program
from hlsm.runtime import torch_threads
from hlsm.spec import Spec
from hlsm.stats import Accuracy

RL_TINY = CONFIGS / "rl_tiny.toml"


def rl_tiny(training: dict[str, Any] | None = None, **rl: Any) -> RLConfig:
    raw = load_toml(RL_TINY)
    raw["rl"] |= rl
    raw["training"] |= training or {}
    return RLConfig.from_dict(raw)


# ---------------------------------------------------------------------------------------------
# (a) the estimator against the exact gradient of an enumerable policy

EOS = 2
REWARD = {(2,): 0.0, (0, 0): 1.0, (0, 1): 0.0, (0, 2): 1.0, (1, 0): 0.0, (1, 1): 1.0, (1, 2): 0.0}
"""Every outcome of a 3-token policy with at most 2 new tokens after the prompt ``[0]`` (EOS = 2)."""


def _tiny_policy() -> GPT:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=3, max_len=4, n_layer=1, n_head=2, d_model=8)).double()
    with torch.no_grad():
        for p in model.parameters():  # larger weights: a policy away from uniform (p1 = .49 .35 .16)
            p.mul_(3.0)
    return model


def _exact_gradient(model: GPT) -> tuple[float, torch.Tensor]:
    """``E[r]`` and its gradient by enumerating all 7 outcomes with plain forward passes."""
    p1 = torch.softmax(model(torch.tensor([[0]]))[0, -1], -1)
    value = torch.zeros((), dtype=torch.float64)
    for seq, r in REWARD.items():
        prob = p1[seq[0]]
        if len(seq) == 2:
            prob = prob * torch.softmax(model(torch.tensor([[0, seq[0]]]))[0, -1], -1)[seq[1]]
        value = value + prob * r
    grads = torch.autograd.grad(value, list(model.parameters()))
    return float(value.detach()), torch.cat([g.reshape(-1) for g in grads])


def _estimates(model: GPT, G: int, M: int, batches: int, baseline: str) -> torch.Tensor:
    """``(batches, D)``: minus the gradient of the training loss, each over ``M`` groups of ``G``."""
    gen = torch.Generator().manual_seed(11)
    out = []
    for _ in range(batches):
        g = generate(model, torch.zeros(M * G, 1, dtype=torch.long), 2, eos_id=EOS, generator=gen)
        rewards = torch.tensor([REWARD[_outcome(row)] for row in g.new_tokens.tolist()], dtype=torch.float64)
        rewards = rewards.reshape(M, G)
        if baseline == "loo":
            adv = loo_advantages(rewards)
        elif baseline == "none":
            adv = rewards
        else:  # the group mean *including* the trace itself: biased by the factor (G - 1) / G
            adv = rewards - rewards.mean(1, keepdim=True)
        loss, _ = reinforce_loss(model, g.tokens, 1, g.mask, adv.reshape(-1))
        grads = torch.autograd.grad(-loss, list(model.parameters()))
        out.append(torch.cat([x.reshape(-1) for x in grads]))
    return torch.stack(out)


def _outcome(row: list[int]) -> tuple[int, ...]:
    return (EOS,) if row[0] == EOS else (row[0], row[1])


def test_reinforce_estimator_is_unbiased_for_the_exact_gradient() -> None:
    model = _tiny_policy()
    value, exact = _exact_gradient(model)
    assert 0.2 < value < 0.8 and exact.norm() > 0.05  # a non-trivial problem
    K, M, G = 40, 256, 4
    estimates = {b: _estimates(model, G, M, K, b) for b in ("loo", "none", "self")}
    gen = torch.Generator().manual_seed(0)
    directions = torch.cat(
        [exact[None] / exact.norm(), torch.randn(15, exact.numel(), generator=gen, dtype=torch.float64)]
    )
    directions = directions / directions.norm(dim=1, keepdim=True)

    def z_scores(est: torch.Tensor) -> torch.Tensor:
        proj = est @ directions.T  # (K, 16): K independent batch means per direction
        se = proj.std(0, unbiased=True) / math.sqrt(K)
        return (proj.mean(0) - directions @ exact) / se

    # Tolerance: each batch is the mean of M = 256 i.i.d. group estimators, so the K = 40 batch
    # values of a projection are i.i.d. with the estimator's mean; (mean - exact) / (sd / sqrt(K))
    # is t-distributed with 39 d.o.f. if the estimator is unbiased. P(|t_39| > 5) < 2e-5, so over
    # 16 directions and 2 unbiased estimators the failure budget is below 7e-4.
    for b in ("loo", "none"):
        z = z_scores(estimates[b])
        assert z.abs().max() < 5, (b, z)
    # power: the same test rejects the self-including baseline, whose mean is (G - 1) / G = 3/4 of
    # the gradient: along the gradient direction its z-score is about -(1/4) |grad| / SE
    assert z_scores(estimates["self"])[0] < -5
    # the leave-one-out baseline keeps the no-baseline estimator's mean (paired over the same samples
    # is not possible: they use the same seed, hence the same samples) and lowers its variance
    diff = (estimates["loo"] - estimates["none"]) @ directions[0]
    assert abs(float(diff.mean())) < 5 * float(diff.std()) / math.sqrt(K)
    var_loo, var_none = (float((estimates[b] @ directions[0]).var()) for b in ("loo", "none"))
    assert var_loo < var_none


def test_loo_advantages_by_hand() -> None:
    r = torch.tensor([[1.0, 0, 0, 0], [1, 1, 1, 1], [0, 1, 1, 0]])
    third = 1 / 3
    expected = torch.tensor([[1, -third, -third, -third], [0, 0, 0, 0], [-2 / 3, 2 / 3, 2 / 3, -2 / 3]])
    torch.testing.assert_close(loo_advantages(r), expected)
    with pytest.raises(ValueError, match="at least 2"):
        loo_advantages(torch.ones(3, 1))


# ---------------------------------------------------------------------------------------------
# (b) the k3 KL estimator


def test_k3_is_nonnegative_zero_at_equality_and_unbiased_for_kl() -> None:
    gen = torch.Generator().manual_seed(0)
    logp = torch.randn(1000, generator=gen, dtype=torch.float64) * 3
    ref = torch.randn(1000, generator=gen, dtype=torch.float64) * 3
    assert (kl_k3(logp, ref) >= 0).all()
    assert torch.equal(kl_k3(logp, logp), torch.zeros_like(logp))
    # E_{y ~ pi}[k3] = KL(pi || ref) exactly, for a categorical over 7 outcomes
    pi = torch.log_softmax(torch.randn(7, generator=gen, dtype=torch.float64), 0)
    rho = torch.log_softmax(torch.randn(7, generator=gen, dtype=torch.float64), 0)
    expected = (pi.exp() * (pi - rho)).sum()
    torch.testing.assert_close((pi.exp() * kl_k3(pi, rho)).sum(), expected, rtol=1e-12, atol=0)


def test_k3_gradient_is_that_of_the_reverse_kl() -> None:
    """The exact expectation over an enumerable categorical policy of the loss's k3 gradient (the
    outcome held fixed, differentiated through log pi only) equals grad KL(ref || pi), not grad KL(pi || ref)."""
    gen = torch.Generator().manual_seed(1)
    theta = torch.randn(7, generator=gen, dtype=torch.float64, requires_grad=True)
    rho = torch.log_softmax(torch.randn(7, generator=gen, dtype=torch.float64) * 2, 0)

    def grad(f: torch.Tensor) -> torch.Tensor:
        (g,) = torch.autograd.grad(f, theta)
        return g

    logp = torch.log_softmax(theta, 0)
    # E_{y ~ pi}[grad k3(y)]: the weights pi(y) are the sampling distribution, not differentiated
    estimated = grad((logp.detach().exp() * kl_k3(logp, rho)).sum())
    reverse = grad((rho.exp() * (rho - torch.log_softmax(theta, 0))).sum())  # KL(ref || pi)
    forward = grad((torch.softmax(theta, 0) * (torch.log_softmax(theta, 0) - rho)).sum())  # KL(pi || ref)
    torch.testing.assert_close(estimated, reverse, rtol=1e-12, atol=1e-12)
    assert (estimated - forward).abs().max() > 0.05  # the forward KL's gradient is a different vector


def test_kl_term_vanishes_when_the_policy_is_the_reference() -> None:
    model = _tiny_policy()
    g = generate(model, torch.zeros(8, 1, dtype=torch.long), 2, eos_id=EOS, generator=torch.Generator().manual_seed(0))
    adv = torch.zeros(8, dtype=torch.float64)
    loss, parts = reinforce_loss(model, g.tokens, 1, g.mask, adv, ref_model=model, kl_coef=1.0)
    assert parts.kl == 0.0 and float(loss.detach()) == 0.0 and parts.tokens == float(g.mask.sum())


# ---------------------------------------------------------------------------------------------
# (c) dynamic sampling


def _rollout(rewards: list[list[float]], N: int = 3, first_id: int = 0) -> Rollout:
    M, G = len(rewards), len(rewards[0])
    tokens = torch.arange(first_id, first_id + M * G)[:, None].repeat(1, 1 + N)  # row i holds its own id
    return Rollout(
        tokens,
        torch.ones(M * G, N, dtype=torch.bool),
        torch.tensor(rewards),
        torch.zeros(M, G, dtype=torch.bool),
        1,
        tuple(Program.atomic(i) for i in range(M)),
    )


def test_dynamic_sampling_drops_groups_with_all_equal_rewards() -> None:
    rewards = [[1.0, 1, 1], [0, 0, 0], [1, 0, 0], [0, 1, 1]]
    assert mixed_groups(torch.tensor(rewards)).tolist() == [False, False, True, True]
    buffer = GroupBuffer(3, pad_id=-1)
    assert buffer.add(_rollout(rewards)) == (2, 2)
    assert buffer.mixed == 2 and buffer.sampled_groups == 4 and buffer.sampled_traces == 12
    assert buffer.reward_sum == 6.0
    assert buffer.add(_rollout([[0.0, 0, 0], [1, 1, 0]], N=5, first_id=100)) == (1, 1)
    (batch,) = list(buffer.batches())
    # the kept groups, in order, with their own rows; the shorter generations padded to 5 tokens
    assert batch.tokens[:, 0].tolist() == [6, 7, 8, 9, 10, 11, 103, 104, 105]
    assert batch.tokens.shape == (9, 6) and (batch.tokens[:6, 4:] == -1).all()
    assert batch.mask.sum(1).tolist() == [3] * 6 + [5] * 3
    assert batch.rewards.tolist() == [[1, 0, 0], [0, 1, 1], [1, 1, 0]]
    assert [p.skills[0] for p in batch.programs] == [2, 3, 1]
    with pytest.raises(ValueError, match="groups of 2"):
        buffer.add(_rollout([[0.0, 1]]))


def test_curriculum_programs_and_round_sources() -> None:
    spec = Spec(alphabet=4, length=3, skills=("reverse", "shift_up", "sort", "rotate_left"), routings=("chain",))
    design = make_design(
        spec,
        DesignConfig(
            train_depth=3, deeper_depths=(4,), holdout="pairs", successors=2, n_sft=10, n_rl=6, n_unseen=10, n_deeper=5
        ),
    )
    assert design.seen_pairs is not None
    rl = design.programs("rl")
    progs = curriculum_programs(design, rl)
    pairs = {p.pairs()[0] for p in progs}
    assert pairs and all(p.depth == 2 for p in progs) and not pairs & design.seen_pairs
    assert pairs == {q for p in rl for q in p.pairs()} - design.seen_pairs
    with pytest.raises(RolloutError, match="set curriculum_fraction = 0"):
        curriculum_programs(design, [Program.atomic(0)])
    rl_src, cur = Source("rl", rl), Source("curriculum", tuple(progs))
    assert round_sources(rl_src, None, 0, 100, 0.4, (0.3, 0.7)) == [rl_src]
    assert [s.name for s in round_sources(rl_src, cur, 39, 100, 0.4, (0.3, 0.7))] == ["curriculum"]
    mixed = round_sources(rl_src, cur, 40, 100, 0.4, (0.3, 0.7))
    assert [(s.name, s.weight) for s in mixed] == [("curriculum", 0.3), ("rl", 0.7)]


def test_late_excluded_skills_leave_rl_only_as_a_first_step() -> None:
    from hlsm.lm.data import TaskFormat
    from hlsm.lm.rl_config import Task
    from hlsm.lm.rollout import rl_sources

    spec = Spec(alphabet=4, length=3, skills=("reverse", "shift_up", "sort", "rotate_left"), routings=("chain",))
    config = DesignConfig(
        train_depth=3, deeper_depths=(4,), holdout="pairs", successors=2, n_sft=10, n_rl=12, n_unseen=10, n_deeper=5
    )
    task = Task(spec, config, config, TaskFormat())
    _, _, every, _ = rl_sources(task)
    _, _, kept, _ = rl_sources(task, late_excluded=["sort"])
    sort = spec.skills.index("sort")
    assert set(kept.programs) < set(every.programs)  # a subset: the evaluation splits stay as they are
    assert kept.programs == tuple(p for p in every.programs if sort not in p.skills[1:])
    assert any(p.skills[0] == sort for p in kept.programs)  # sort is still practised as a first step
    with pytest.raises(RolloutError, match="not in the library"):
        rl_sources(task, late_excluded=["sorting"])


# ---------------------------------------------------------------------------------------------
# the config


def test_example_rl_configs_load_and_differ_only_in_the_arm() -> None:
    compound, atomic = (RLConfig.from_toml(CONFIGS / f) for f in ("rl_cpu.toml", "rl_cpu_atomic.toml"))
    assert compound.rl == atomic.rl and compound.rl.group_size == 16 and compound.rl.kl_coef == 0.05
    assert compound.design == {"rl_kind": "compound", "rl_inside": False} and atomic.design["rl_kind"] == "atomic"
    sft = SFTConfig.from_toml(CONFIGS / "sft_cpu.toml").to_dict()
    a, c = resolve_task(atomic, sft), resolve_task(compound, sft)
    assert a.design == c.design and a.rl_design.rl_kind == "atomic" and c.rl_design == c.design
    assert RLConfig.from_toml(RL_TINY).rl.budget_traces == 256


BAD_RL_CONFIGS: list[tuple[str, dict[str, Any], str]] = [
    ("unknown section", {"sft": {}}, "unknown section(s) ['sft']"),
    ("unknown key", {"rl": {"group": 4}}, "unknown key(s) ['group'] in [rl]"),
    ("wrong type", {"rl": {"kl_coef": "high"}}, "[rl] key 'kl_coef' must be of type float"),
    ("group of one", {"rl": {"group_size": 1}}, "group_size must be at least 2"),
    ("budget", {"rl": {"budget_traces": 10}}, "less than one round"),
    ("programs", {"rl": {"programs": "unseen"}}, "programs must be one of ['rl', 'sft']"),
    ("reward", {"rl": {"reward": "partial"}}, "reward must be one of ['exact', 'letters']"),
    ("curriculum", {"rl": {"curriculum_fraction": 1.0}}, "curriculum_fraction must be in [0, 1)"),
    ("design key", {"design": {"n_rll": 3}}, "unknown key(s) ['n_rll'] in [design]"),
    ("spec type", {"spec": {"alphabet": "eight"}}, "[spec] key 'alphabet' must be of type int"),
    ("format", {"format": {"plain": 1}}, "'plain' must be true or false"),
]


@pytest.mark.parametrize("case, raw, fragment", BAD_RL_CONFIGS, ids=[c[0] for c in BAD_RL_CONFIGS])
def test_rl_config_errors_are_clear(case: str, raw: dict[str, Any], fragment: str) -> None:
    with pytest.raises(HLSMError) as err:
        RLConfig.from_dict(raw)
    assert fragment in str(err.value), str(err.value)


def test_task_sections_must_match_the_checkpoint() -> None:
    sft = SFTConfig.from_toml(CONFIGS / "sft_cpu.toml").to_dict()
    same = {"spec": {"alphabet": 8, "length": 6}, "design": {"train_depth": 3, "rl_inside": True}}
    task = resolve_task(RLConfig.from_dict(same | {"format": {"slots": 4}}), sft)
    assert task.rl_design.rl_inside and not task.design.rl_inside
    for raw, fragment in [
        ({"spec": {"alphabet": 6}}, "[spec] alphabet = 6 does not match the SFT checkpoint's 8"),
        (
            {"design": {"deeper_depths": [4, 5]}},
            "[design] deeper_depths = [4, 5] does not match the SFT checkpoint's [4]",
        ),
        ({"format": {"plain": True}}, "[format] slots = none does not match the SFT checkpoint's 4"),
    ]:
        with pytest.raises(ConfigError, match="remove the key or set it to") as err:
            resolve_task(RLConfig.from_dict(raw), sft)
        assert fragment in str(err.value), str(err.value)


# ---------------------------------------------------------------------------------------------
# (d) runs: metrics, exact resume, guards


def params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_train_rl_writes_metrics_checkpoint_and_summary(sft_ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "rl"
    result = train_rl(rl_tiny({"log_every": 1}, curve=[]), sft_ckpt, out, progress=False)
    assert result.traces == 256 and result.updates >= 1 and set(result.evaluation) == {"unseen", "deeper_3"}
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train] == list(range(1, result.updates + 1)) and train[-1]["traces"] <= 256
    keys = {"reward", "adv_std", "entropy", "kl", "malformed", "mixed_fraction", "traces", "grad_norm"}
    assert keys <= set(train[0]) and all(0 <= r["mixed_fraction"] <= 1 and r["kl"] >= 0 for r in train)
    assert train[0]["kl"] == 0.0  # the first update's traces come from the reference policy itself
    assert records[-1]["kind"] == "eval" and records[-1]["step"] == result.updates
    config = json.loads((out / "config.json").read_text())
    assert config["rl"]["group_size"] == 4 and config["sft"]["training"]["steps"] == 150
    assert config["design"] == config["rl_design"] and config["init"]["kind"] == "sft"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["traces"] == 256 and summary["updates"] == result.updates
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt.step == result.updates and ckpt.extra["traces"] == 256
    assert all(torch.equal(v, ckpt.model[k]) for k, v in result.model.state_dict().items())


def test_the_learning_curve_scores_the_budget_points_and_survives_a_resume(sft_ckpt: Path, tmp_path: Path) -> None:
    """``curve = [0, 0.25, 0.5, 1]``: the SFT policy before any update, the first update at or past
    each quarter, the end; a run killed after its first update and resumed gives the same curve."""
    config = rl_tiny(curve=[1.0, 0.25, 0, 0.5], min_mixed_groups=1)
    out = tmp_path / "rl"
    result = train_rl(config, sft_ckpt, out, progress=False)
    curve = read_curve(out)
    assert [p.fraction for p in curve] == [0.0, 0.25, 0.5, 1.0]
    assert curve[0].traces == 0 and curve[-1].traces == result.traces == 256
    assert all(p.traces >= p.fraction * 256 for p in curve) and [p.traces for p in curve] == sorted(
        p.traces for p in curve
    )
    assert curve[-1].splits == {k: Accuracy(v["n"], v["accuracy"], v["se"]) for k, v in result.evaluation.items()}
    kept = curve_checkpoints(out)  # the model at every curve point, loadable as a policy
    assert [t for t, _ in kept] == sorted({p.traces for p in curve})  # points at one traces count share it
    assert load_checkpoint(kept[0][1]).step == 0 and load_checkpoint(kept[-1][1]).extra["traces"] == 256
    final = load_checkpoint(kept[-1][1]).model
    assert all(torch.equal(v, final[k]) for k, v in result.model.state_dict().items())
    other = train_rl(rl_tiny(curve=[0], lr=0.1, budget_traces=32), sft_ckpt, tmp_path / "other", progress=False)
    assert other.traces == 32 and read_curve(tmp_path / "other")[0] == curve[0]  # point 0 is the SFT policy
    killed = tmp_path / "killed"
    train_rl(config, sft_ckpt, killed, progress=False, stop_at=1)
    train_rl(config, sft_ckpt, killed, resume=True, progress=False)
    assert read_curve(killed) == curve


def test_a_rl_run_restores_the_thread_count(sft_ckpt: Path, tmp_path: Path) -> None:
    """``threads = 1`` holds during the run only: the caller's torch setting is back afterwards."""
    with torch_threads(2):
        train_rl(rl_tiny(budget_traces=32, min_mixed_groups=1), sft_ckpt, tmp_path / "rl", progress=False)
        assert torch.get_num_threads() == 2


def test_rl_resume_continues_exactly(sft_ckpt: Path, tmp_path: Path) -> None:
    """N updates in one go == k updates, stop ("kill" after a save), resume to N: identical parameters."""
    cfg = rl_tiny(budget_traces=1024, min_mixed_groups=1)
    whole = train_rl(cfg, sft_ckpt, tmp_path / "whole", progress=False)
    assert whole.updates >= 5
    part = train_rl(cfg, sft_ckpt, tmp_path / "part", progress=False, stop_at=3)
    assert part.updates == 3 and load_checkpoint(tmp_path / "part" / "checkpoint.pt").step == 3
    with (tmp_path / "part" / "metrics.jsonl").open("a") as f:  # logged after the checkpoint, then killed
        f.write(json.dumps({"kind": "train", "step": 4, "reward": 9.9}) + "\n")
    resumed = train_rl(cfg, sft_ckpt, tmp_path / "part", resume=True, progress=False)
    assert (resumed.updates, resumed.traces) == (whole.updates, whole.traces)
    a, b = params(whole.model), params(resumed.model)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    def strip(path: Path) -> list[dict[str, Any]]:
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        return [{k: v for k, v in r.items() if k not in ("traces_per_s", "elapsed_s")} for r in rows]

    assert strip(tmp_path / "part" / "metrics.jsonl") == strip(tmp_path / "whole" / "metrics.jsonl")


def test_rl_run_guards(sft_ckpt: Path, tmp_path: Path) -> None:
    cfg = rl_tiny()
    with pytest.raises(TrainingError, match="holds no checkpoint.pt; start without --resume"):
        train_rl(cfg, sft_ckpt, tmp_path / "new", resume=True, progress=False)
    train_rl(cfg, sft_ckpt, tmp_path / "run", progress=False, stop_at=1)
    with pytest.raises(TrainingError, match="already holds a run"):
        train_rl(cfg, sft_ckpt, tmp_path / "run", progress=False)
    with pytest.raises(TrainingError, match="different config or --init"):
        train_rl(rl_tiny(lr=1e-4), sft_ckpt, tmp_path / "run", resume=True, progress=False)
    # the atomic arm: RL prompts are atomic programs, evaluation splits are the SFT design's
    atomic = RLConfig.from_dict({**load_toml(RL_TINY), "design": {"rl_kind": "atomic"}})
    result = train_rl(atomic, sft_ckpt, tmp_path / "atomic", progress=False)
    config = json.loads((tmp_path / "atomic" / "config.json").read_text())
    assert config["rl_design"]["rl_kind"] == "atomic" and config["design"]["rl_kind"] == "compound"
    assert result.traces == 256


# ---------------------------------------------------------------------------------------------
# (e) the CLI: train rl, evaluate, bad inputs


def test_cli_train_rl_then_evaluate(sft_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "rl"
    assert main(["train", "rl", "--config", str(RL_TINY), "--init", str(sft_ckpt), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "sampled traces; outputs in" in printed and (out / "summary.json").exists()
    updates = json.loads((out / "summary.json").read_text())["updates"]
    assert ("no update: in every sampled group all traces scored alike" in printed) == (updates == 0)
    report = tmp_path / "eval.json"
    assert main(["evaluate", "--ckpt", str(out), "--examples", "16", "--out", str(report)]) == 0
    printed = capsys.readouterr().out
    for fragment in ("rl checkpoint", "seen", "unseen", "deeper_3", "atomic", "unseen  pair steps", "checker (H-lib"):
        assert fragment in printed, printed
    results = json.loads(report.read_text())
    assert set(results) == {"settings", "checker", "splits", "steps_held_out"}
    assert {"seen", "unseen", "deeper_3", "atomic"} <= set(results["splits"])
    unseen = results["splits"]["unseen"]
    assert {"n", "accuracy", "se", "malformed", "strata", "steps", "examples"} <= set(unseen)
    assert unseen["n"] == 16 and len(unseen["examples"]) == 16
    assert {"identified", "not_identified", "without_low_entropy"} == set(unseen["strata"])


def _toml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_configs_that_disagree_with_the_checkpoint_are_refused(
    sft_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The two refusals that need a trained checkpoint; every other bad input is a case of
    tests/app/test_bad_input.py (the exit-2 contract's one table)."""
    out = tmp_path / "out"
    spec = _toml(tmp_path / "s.toml", "[spec]\nlength = 4\n")
    assert main(["train", "rl", "--config", str(spec), "--out", str(out), "--init", str(sft_ckpt)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hlsm train: error: ") and "does not match the SFT" in err[0], err
    assert not out.exists()
    report = tmp_path / "e.json"
    bad_design = _toml(tmp_path / "d.toml", "[spec]\nalphabet = 4\n")
    assert main(["evaluate", "--ckpt", str(sft_ckpt), "--design", str(bad_design), "--out", str(report)]) == 2
    assert "differs from the checkpoint's" in capsys.readouterr().err and not report.exists()


# ---------------------------------------------------------------------------------------------
# (g) DDP on CPU (gloo, 2 processes)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ddp_worker(rank: int, world: int, port: int, raw: dict[str, Any], init: str, out: str, results: str) -> None:
    os.environ |= {"WORLD_SIZE": str(world), "RANK": str(rank), "LOCAL_RANK": str(rank)}
    os.environ |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    torch.set_num_threads(1)
    result = train_rl(RLConfig.from_dict(raw), init, out, progress=False)
    torch.save({"state": result.model.state_dict(), "updates": result.updates}, Path(results) / f"rank{rank}.pt")


def test_ddp_rl_on_cpu_ranks_end_identical(sft_ckpt: Path, tmp_path: Path) -> None:
    raw = load_toml(RL_TINY)
    raw["rl"] |= {"budget_traces": 128, "min_mixed_groups": 1}
    raw["training"] |= {"eval_examples": 8}
    args = (2, _free_port(), raw, str(sft_ckpt), str(tmp_path / "ddp"), str(tmp_path))
    mp.spawn(_ddp_worker, args=args, nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["updates"] == r1["updates"] >= 1
    assert all(torch.equal(r0["state"][k], r1["state"][k]) for k in r0["state"])
    ckpt = load_checkpoint(tmp_path / "ddp" / "checkpoint.pt")
    assert len(ckpt.rng) == 2 and ckpt.extra["traces"] == 128
    assert all(torch.equal(ckpt.model[k], r0["state"][k]) for k in ckpt.model)


# ---------------------------------------------------------------------------------------------
# slow: a run killed by SIGKILL


@pytest.mark.slow
def test_a_killed_rl_run_resumes_to_the_same_parameters(sft_ckpt: Path, tmp_path: Path) -> None:
    config = tmp_path / "rl.toml"
    text = RL_TINY.read_text().replace("budget_traces = 256", "budget_traces = 40960")
    text = text.replace("checkpoint_every = 2", "checkpoint_every = 1").replace("eval_every = 2", "eval_every = 0")
    config.write_text(text)
    cmd = [sys.executable, "-m", "hlsm", "train", "rl", "--config", str(config), "--init", str(sft_ckpt), "--out"]
    proc = subprocess.Popen([*cmd, str(tmp_path / "killed")], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    ckpt = tmp_path / "killed" / "checkpoint.pt"
    deadline = time.monotonic() + 120
    while not ckpt.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = load_checkpoint(ckpt)
    assert 0 < killed.extra["traces"] < 40960
    subprocess.run([*cmd, str(tmp_path / "killed"), "--resume"], check=True, capture_output=True, timeout=600)
    subprocess.run([*cmd, str(tmp_path / "whole")], check=True, capture_output=True, timeout=600)
    a = load_checkpoint(tmp_path / "killed" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")
    assert a.step == b.step and a.extra["traces"] == b.extra["traces"]
    assert all(torch.equal(a.model[k], b.model[k]) for k in a.model)


def test_the_tiny_examples_make_real_updates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """example:sft_tiny as shipped, then example:rl_tiny from it: RL finds groups to learn from (a
    smoke test that does the thing, not only the path)."""
    sft, rl = tmp_path / "sft", tmp_path / "rl"
    assert main(["train", "sft", "--config", "example:sft_tiny", "--out", str(sft)]) == 0
    assert main(["train", "rl", "--config", "example:rl_tiny", "--init", str(sft), "--out", str(rl)]) == 0
    assert json.loads((rl / "summary.json").read_text())["updates"] >= 1
    assert "no update" not in capsys.readouterr().out
