"""SFT: overfitting, exact resume, DDP on CPU, the config file and its errors, the CLI, benchmarks."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp

from hlsm.app.bench import run_benchmark
from hlsm.app.cli import main
from hlsm.config import load_toml
from hlsm.design import DesignConfig, make_design
from hlsm.errors import HLSMError
from hlsm.examples import CONFIGS
from hlsm.lm.checkpoint import CheckpointError, load_checkpoint
from hlsm.lm.data import TaskFormat, make_tokenizer
from hlsm.lm.dataset import SourceConfig, resolve_source, sample_examples
from hlsm.lm.evaluate import greedy_exact_match
from hlsm.lm.model import GPT, GPTConfig
from hlsm.lm.presets import scale_preset
from hlsm.lm.records import read_calibration
from hlsm.lm.sft import TrainingError, lm_loss, lr_factor, train_sft
from hlsm.lm.sft_config import GateConfig, SFTConfig, TrainingConfig
from hlsm.runtime import torch_threads
from hlsm.spec import Spec

TINY = CONFIGS / "sft_tiny.toml"


def load_tiny() -> dict[str, Any]:
    """example:sft_tiny at the length these tests are written for (30 steps, a checkpoint every 10):
    the example itself trains longer, so that RL from it has groups to learn from."""
    raw = load_toml(TINY)
    raw["training"] |= {"steps": 30, "checkpoint_every": 10}
    return raw


def tiny(**training: Any) -> SFTConfig:
    raw = load_tiny()
    raw["training"] |= training
    return SFTConfig.from_dict(raw)


def params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_lm_loss_is_the_masked_mean_cross_entropy() -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, max_len=16, n_layer=1, n_head=2, d_model=16)).double()
    ids = torch.randint(11, (3, 9))
    mask = torch.rand(3, 9) < 0.5
    mask[:, 1] = True
    logp = torch.log_softmax(model(ids[:, :-1]), -1)
    terms = [-logp[b, t - 1, ids[b, t]] for b in range(3) for t in range(1, 9) if mask[b, t]]
    torch.testing.assert_close(lm_loss(model, ids, mask), torch.stack(terms).mean().float(), rtol=1e-6, atol=0)
    torch.testing.assert_close(lm_loss(model, ids, mask, 2.0), torch.stack(terms).sum().float() / 2, rtol=1e-6, atol=0)


def test_lr_schedule_warms_up_then_decays_to_the_floor() -> None:
    cfg = TrainingConfig(steps=100, warmup_steps=10, min_lr_ratio=0.1)
    factors = [lr_factor(s, cfg) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0) and factors[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:], strict=False))
    assert factors[-1] == pytest.approx(0.1, abs=1e-3)


def test_sft_overfits_a_tiny_batch() -> None:
    spec = Spec(alphabet=3, length=2, skills=("reverse", "shift_up", "sort"), routings=("chain",))
    design = make_design(spec, DesignConfig(train_depth=2, deeper_depths=(3,), n_sft=3, n_rl=0, n_unseen=0, n_deeper=0))
    fmt, tokenizer = TaskFormat(slots=2), make_tokenizer(spec)
    sources = [resolve_source(design, SourceConfig("sft"))]
    batch = sample_examples(spec, fmt, tokenizer, sources, 24, seed=0)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=len(tokenizer), max_len=32, n_layer=2, n_head=2, d_model=32))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    for _ in range(300):
        loss = lm_loss(model, batch.ids, batch.loss_mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.02
    acc = greedy_exact_match(model, spec, fmt, tokenizer, batch)
    assert acc.accuracy == 1.0 and not acc.malformed.any() and acc.n == 24
    assert all(p is not None and list(p[-1]) == a for p, a in zip(acc.predicted, batch.answers.tolist(), strict=True))


def test_train_sft_writes_metrics_checkpoint_and_summary(tmp_path: Path) -> None:
    result = train_sft(tiny(eval_every=15, eval_examples=32), tmp_path / "run", progress=False)
    out = tmp_path / "run"
    assert result.step == 30 and set(result.evaluation) == {"atomic", "unseen"}
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == [10, 20, 30]
    assert [r["step"] for r in records if r["kind"] == "eval"] == [15, 30]
    assert all(
        0 <= s["accuracy"] <= 1 and s["n"] == 32 for r in records if r["kind"] == "eval" for s in r["splits"].values()
    )
    config = json.loads((out / "config.json").read_text())
    assert config["num_params"] == result.model.num_params() and config["format"] == {"slots": 3, "echo": False}
    assert json.loads((out / "summary.json").read_text())["step"] == 30
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt.step == 30 and len(ckpt.rng) == 1
    assert all(torch.equal(v, ckpt.model[k]) for k, v in result.model.state_dict().items())
    assert not list(out.glob(".*tmp"))  # no temporary files left behind


def test_a_run_restores_the_thread_count(tmp_path: Path) -> None:
    """``threads = 1`` holds during the run only: the caller's torch setting is back afterwards."""
    with torch_threads(2):
        train_sft(tiny(steps=2, eval_every=0, checkpoint_every=2, eval_examples=4), tmp_path / "run", progress=False)
        assert torch.get_num_threads() == 2


def test_resume_continues_exactly(tmp_path: Path) -> None:
    """N steps in one go == k steps, stop ("kill" after a save), resume to N: identical parameters."""
    raw = load_tiny()
    raw["model"]["dropout"] = 0.1  # dropout draws from the torch RNG: its state must be restored too
    raw["training"] |= {"steps": 20, "checkpoint_every": 4, "eval_every": 6, "log_every": 3}
    cfg = SFTConfig.from_dict(raw)
    whole = train_sft(cfg, tmp_path / "whole", progress=False)
    part = train_sft(cfg, tmp_path / "part", progress=False, stop_at=7)
    assert part.step == 7 and load_checkpoint(tmp_path / "part" / "checkpoint.pt").step == 7
    with (tmp_path / "part" / "metrics.jsonl").open("a") as f:  # logged after the checkpoint, then killed
        f.write(json.dumps({"kind": "train", "step": 8, "loss": 9.9}) + "\n")
    resumed = train_sft(cfg, tmp_path / "part", resume=True, progress=False)
    assert resumed.step == 20
    a, b = params(whole.model), params(resumed.model)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.evaluation == whole.evaluation

    def strip(path: Path) -> list[dict[str, Any]]:
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        return [{k: v for k, v in r.items() if k not in ("tokens_per_s", "elapsed_s")} for r in rows]

    assert strip(tmp_path / "part" / "metrics.jsonl") == strip(tmp_path / "whole" / "metrics.jsonl")


def test_run_folder_guards(tmp_path: Path) -> None:
    cfg = tiny(steps=4, checkpoint_every=2, eval_every=0)
    with pytest.raises(TrainingError, match="holds no checkpoint.pt; start without --resume"):
        train_sft(cfg, tmp_path / "new", resume=True, progress=False)
    train_sft(cfg, tmp_path / "run", progress=False)
    with pytest.raises(TrainingError, match="already holds a run .*pass --resume or choose another --out"):
        train_sft(cfg, tmp_path / "run", progress=False)
    with pytest.raises(TrainingError, match="written with a different config"):
        train_sft(tiny(steps=4, checkpoint_every=2, eval_every=0, lr=1e-3), tmp_path / "run", resume=True)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        train_sft(cfg, tmp_path / "bad", resume=True)


# ---------------------------------------------------------------------------------------------
# DDP on CPU (gloo, 2 processes)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ddp_worker(rank: int, world: int, port: int, raw: dict[str, Any], out: str, results: str) -> None:
    os.environ |= {"WORLD_SIZE": str(world), "RANK": str(rank), "LOCAL_RANK": str(rank)}
    os.environ |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    torch.set_num_threads(1)
    result = train_sft(SFTConfig.from_dict(raw), out, progress=False)
    torch.save(result.model.state_dict(), Path(results) / f"rank{rank}.pt")
    (Path(results) / f"calibration{rank}.json").write_text(
        json.dumps(result.calibration and result.calibration.to_dict())
    )


def test_ddp_on_cpu_ranks_agree_with_each_other_and_with_one_process(tmp_path: Path) -> None:
    """Two ranks and one process end with the same parameters; the gate (checked at step 4 of 6,
    passable) stops every rank at the same step, with rank 0's scores shared to rank 1."""
    raw = load_tiny()
    raw["training"] |= {"steps": 6, "checkpoint_every": 3, "eval_every": 0, "eval_examples": 8}
    raw["gate"] = {"seen": 0.0, "atomic": 0.0, "every": 4, "examples": 8}
    mp.spawn(_ddp_worker, args=(2, _free_port(), raw, str(tmp_path / "ddp"), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert all(torch.equal(r0[k], r1[k]) for k in r0)
    c0, c1 = (json.loads((tmp_path / f"calibration{r}.json").read_text()) for r in (0, 1))
    assert c0 == c1 and c0["passed"] and c0["step"] == 4
    ckpt = load_checkpoint(tmp_path / "ddp" / "checkpoint.pt")
    assert ckpt.step == 4 and len(ckpt.rng) == 2 and all(torch.equal(ckpt.model[k], r0[k]) for k in r0)
    # each rank trained on half of the same global batch: the same update as one process on all of it
    single = train_sft(SFTConfig.from_dict(raw), tmp_path / "single", progress=False)
    for k, v in single.model.state_dict().items():
        torch.testing.assert_close(r0[k], v, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# the config file


def test_example_configs_load() -> None:
    cpu = SFTConfig.from_toml(CONFIGS / "sft_cpu.toml")
    assert cpu.spec.num_skills == 12 and cpu.spec.routings == ("chain",) and cpu.format == TaskFormat(4, False)
    assert [s.weight for s in cpu.data] == [0.2, 0.3, 0.4, 0.1] and cpu.training.steps == 4000
    assert [s.name for s in cpu.eval_sets] == ["unseen"] and cpu.gate == GateConfig(0.95, 0.98, 200, 256)
    assert cpu.model.gpt(vocab_size=40, max_len=48).d_model == 96
    assert scale_preset("cpu").sft == cpu and scale_preset("gpu").sft.model.d_model == 128  # one preset, one name
    small = SFTConfig.from_dict(load_tiny())
    assert SFTConfig.from_dict(json.loads(json.dumps(small.to_dict()))) == small
    plain = SFTConfig.from_dict({"format": {"plain": True, "echo": True}})
    assert plain.format == TaskFormat(slots=None, echo=True) and plain.eval_sets == plain.data


BAD_CONFIGS: list[tuple[str, dict[str, Any], str]] = [
    ("unknown section", {"optimizer": {}}, "unknown section(s) ['optimizer']"),
    ("unknown key", {"training": {"step": 3}}, "unknown key(s) ['step'] in [training]"),
    ("wrong type", {"training": {"steps": "ten"}}, "[training] key 'steps' must be of type int, got 'ten'"),
    ("bad value", {"training": {"steps": 0}}, "[training]: steps must be at least 1"),
    ("bad betas", {"training": {"betas": [0.9]}}, "betas must be two numbers"),
    ("model", {"model": {"d_model": 30, "n_head": 4}}, "[model]: d_model=30 must split into n_head=4 heads"),
    ("format", {"format": {"slots": 0}}, "[format]: slots must be at least 1"),
    ("format both", {"format": {"plain": True, "slots": 3}}, "either plain = true or slots"),
    ("section type", {"training": 3}, "[training] must be a table"),
    ("data table", {"data": {"name": "x"}}, "[[data]] must be an array of tables"),
    ("data empty", {"data": []}, "[[data]] lists no source"),
    ("data key", {"data": [{"name": "x", "split": "sft", "wieght": 1}]}, "unknown key(s) ['wieght'] in [data #1]"),
    ("data value", {"data": [{"name": "x", "programs": "pairs"}]}, "[data #1]: source 'x': programs must be one of"),
    ("eval dup", {"eval": [{"name": "x"}, {"name": "x"}]}, "[[eval]] names must be unique; repeated: ['x']"),
    ("spec", {"spec": {"skills": ["reverse", "nope"]}}, "unknown skill 'nope'"),
    ("design", {"design": {"train_depth": 0}}, "train_depth must be at least 1"),
]


@pytest.mark.parametrize("case, raw, fragment", BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_config_errors_are_clear(case: str, raw: dict[str, Any], fragment: str) -> None:
    with pytest.raises(HLSMError) as err:
        SFTConfig.from_dict(raw)
    assert fragment in str(err.value), str(err.value)


def _toml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_cli_train_sft(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    args = ["train", "sft", "--config", str(TINY), "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert f"trained 200 steps; outputs in {out}" in printed and "atomic" in printed
    assert (out / "checkpoint.pt").exists() and (out / "metrics.jsonl").exists()
    assert main(args) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0  # nothing left to do
    # --set changes the file's values; a resume with other values is refused, as a changed file is
    shorter = tmp_path / "shorter"
    assert main([*args[:-1], str(shorter), "--set", "training.steps=12", "--set", "training.seed=3"]) == 0
    saved = json.loads((shorter / "config.json").read_text())["training"]
    assert saved["steps"] == 12 and saved["seed"] == 3
    assert f"trained 12 steps; outputs in {shorter}" in capsys.readouterr().out
    assert main([*args[:-1], str(shorter), "--resume", "--set", "training.seed=4"]) == 2
    assert "different config" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# benchmarks


def test_lm_benchmarks_run_and_report_a_ratio() -> None:
    sample = run_benchmark("sample", n=4, new_tokens=8, progress=False)
    assert sample["ratio"] > 0 and sample["new_tokens"] == 8
    train = run_benchmark("train", n=8, steps=4, scale="tiny", progress=False)
    assert train["ratio"] == 1.0 and train["tokens_per_s"] > 0 and train["mfu"] is None and train["models"] == 1
    assert run_benchmark("train", n=4, steps=1, scale="tiny", peak_tflops=1.0, progress=False)["mfu"] > 0
    stacked = run_benchmark("train", n=4, steps=4, scale="tiny", models=3, progress=False)
    assert stacked["models"] == 3 and stacked["ratio"] > 0 and stacked["faster"] in ("stacked", "alone")
    rl = run_benchmark("rl", n=4, group_size=2, rounds=1, scale="tiny", progress=False)
    assert rl["ratio"] == 1.0 and rl["rl_traces_per_s"] > 0 and rl["prompts"] == 4
    rl2 = run_benchmark("rl", n=4, group_size=2, rounds=1, scale="tiny", models=2, progress=False)
    assert rl2["models"] == 2 and rl2["ratio"] > 0 and rl2["alone_rl_traces_per_s"] > 0
    for result in (sample, train, stacked, rl, rl2):  # model FLOPs against the matmul rate measured in the same run
        assert result["matmul_peak_gflops"] > 0 and 0 < result["fraction_of_peak"] < 1
        assert result["fraction_of_peak"] == pytest.approx(
            result["achieved_gflops"] / result["matmul_peak_gflops"], rel=1e-2
        )
    with pytest.raises(HLSMError, match="benchmark 'simulate' has no option\\(s\\) --device"):
        run_benchmark("simulate", device="cpu")


# ---------------------------------------------------------------------------------------------
# slow: the CPU recipe, and a run killed by SIGKILL


@pytest.mark.slow
def test_cpu_config_learns_the_atomic_skills(tmp_path: Path) -> None:
    """The cpu scale's SFT config passes its calibration gate (seen >= 95%, atomic >= 98%) within its cap."""
    result = train_sft(SFTConfig.from_toml(CONFIGS / "sft_cpu.toml"), tmp_path / "cpu", progress=False)
    assert result.calibration is not None and result.calibration.passed
    assert result.calibration.atomic >= 0.98 and result.calibration.seen >= 0.95 and result.step < 4000


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_same_parameters(tmp_path: Path) -> None:
    raw = load_tiny()
    raw["training"] |= {"steps": 400, "checkpoint_every": 20, "eval_every": 0}
    config = tmp_path / "run.toml"
    lines = []
    for section in ("spec", "design", "format", "model", "training"):
        lines.append(f"[{section}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in raw[section].items()]
    for table in ("data", "eval"):
        for src in raw[table]:
            lines.append(f"[[{table}]]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in src.items()]
    config.write_text("\n".join(lines) + "\n")
    cmd = [sys.executable, "-m", "hlsm", "train", "sft", "--config", str(config), "--out"]
    proc = subprocess.Popen([*cmd, str(tmp_path / "killed")], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    ckpt = tmp_path / "killed" / "checkpoint.pt"
    deadline = time.monotonic() + 120
    while not ckpt.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step = load_checkpoint(ckpt).step
    assert 0 < step < 400
    subprocess.run([*cmd, str(tmp_path / "killed"), "--resume"], check=True, capture_output=True, timeout=600)
    subprocess.run([*cmd, str(tmp_path / "whole")], check=True, capture_output=True, timeout=600)
    a = load_checkpoint(tmp_path / "killed" / "checkpoint.pt").model
    b = load_checkpoint(tmp_path / "whole" / "checkpoint.pt").model
    assert all(torch.equal(a[k], b[k]) for k in a)


def _gated(seen: float, atomic: float, every: int = 10, **training: Any) -> SFTConfig:
    raw = load_tiny()
    raw["training"] |= training
    raw["gate"] = {"seen": seen, "atomic": atomic, "every": every, "examples": 16}
    return SFTConfig.from_dict(raw)


def test_the_gate_stops_a_calibrated_run_at_its_first_passing_check(tmp_path: Path) -> None:
    """Thresholds of 0 pass at the first check: the run stops there, checkpoint, summary and
    calibration record all at that step; the config round-trips with its gate."""
    config = _gated(0.0, 0.0)
    assert SFTConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    result = train_sft(config, tmp_path / "run", progress=False)
    out = tmp_path / "run"
    assert result.step == 10 and result.calibration is not None and result.calibration.passed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["step"] == 10 and summary["calibration"]["passed"] and summary["calibration"]["steps_cap"] == 30
    assert load_checkpoint(out / "checkpoint.pt").step == 10
    gates = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if '"gate"' in x]
    assert [g["step"] for g in gates] == [10] and set(gates[0]["splits"]) == {"seen", "atomic"}
    assert read_calibration(out) == result.calibration


def test_an_uncalibrated_checkpoint_is_refused_by_rl_and_by_an_experiment(tmp_path: Path) -> None:
    """Impossible thresholds: SFT runs to its cap and records the failure; RL refuses the checkpoint
    with the numbers and the fix (unless allow_uncalibrated); an experiment arm stops before RL."""
    from hlsm.lm.experiment import Arm, CalibrationError, run_arm
    from hlsm.lm.presets import scale_preset
    from hlsm.lm.reinforce import train_rl
    from hlsm.lm.rl_config import RLConfig

    out = tmp_path / "sft"
    result = train_sft(_gated(1.0, 1.0, every=10), out, progress=False)  # 30 steps cannot reach 100%
    calibration = read_calibration(out)
    assert calibration is not None and not calibration.passed and calibration.step == 30 == result.step
    assert json.loads((out / "summary.json").read_text())["step"] == 30  # a finished (failed) run
    raw = load_toml(CONFIGS / "rl_tiny.toml")
    with pytest.raises(TrainingError, match=r"did not pass its calibration gate: seen .*% \(>= 100%\).*raise"):
        train_rl(RLConfig.from_dict(raw), out, tmp_path / "rl", progress=False)
    assert not (tmp_path / "rl").exists()
    raw["rl"] |= {"allow_uncalibrated": True, "budget_traces": 32}
    assert train_rl(RLConfig.from_dict(raw), out, tmp_path / "rl", progress=False).traces == 32

    scale = scale_preset("tiny")
    scale = replace(scale, sft=replace(scale.sft, gate=GateConfig(seen=1.0, atomic=1.0, every=0, examples=16)))
    with pytest.raises(CalibrationError, match="arm 'rl', seed 0: SFT run .* did not pass"):
        run_arm(Arm("rl", rl={"rl_kind": "compound"}), scale, 0, tmp_path / "cache")
    assert [p.name[:4] for p in (tmp_path / "cache").iterdir()] == ["sft-"]  # no RL run was started
