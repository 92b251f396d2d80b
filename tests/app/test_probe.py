"""`hlsm probe` on a tiny trained checkpoint: outputs, the records read the model's own states, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hlsm.app.cli import main
from hlsm.app.probe import GROUPS, analyse
from hlsm.infer.context import simulate_planted
from hlsm.lm.policy import load_policy
from hlsm.lm.probe import ProbeTraces, sample_traces
from hlsm.programs import Program


@pytest.fixture
def sft_run(sft_ckpt: Path) -> Path:
    return sft_ckpt  # the shared tiny SFT run (tests/conftest.py)


def test_probe_writes_its_outputs(sft_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "probe"
    args = ["probe", "--ckpt", str(sft_run), "--out", str(out), "--examples", "16", "--replicates", "3"]
    assert main(args) == 0
    result = json.loads((out / "probe.json").read_text())
    assert result["checkpoint"]["kind"] == "sft" and result["records"] > 0
    assert set(result["groups"]) <= set(GROUPS) and "first" in result["groups"]
    # an under-trained model explains few steps: the index is undefined (null) where none is explained
    assert all(g["entanglement"] is None or 0 <= g["entanglement"] <= 1 for g in result["groups"].values())
    assert all(0 <= g["unexplained"] <= 1 for g in result["groups"].values())
    assert (out / "bindings.png").stat().st_size > 0 and "Probe of a sft" in (out / "probe.md").read_text()
    assert "entanglement" in capsys.readouterr().out
    assert main([*args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["records"] == result["records"]


def test_sampled_traces_start_at_the_prompt_and_follow_the_model(sft_run: Path) -> None:
    policy = load_policy(sft_run)
    traces = sample_traces(policy, examples=8, seed=1, splits=["seen"])
    assert len(traces) == 16 and set(traces.mode) == {"greedy", "sample"} and set(traces.split) == {"seen"}
    for program, states, complete in zip(traces.programs, traces.states, traces.complete, strict=True):
        assert 1 <= len(states) <= program.depth + 1 and complete == (len(states) == program.depth + 1)
    again = sample_traces(policy, examples=8, seed=1, splits=["seen"])
    assert again.states == traces.states  # deterministic in the seed
    with pytest.raises(ValueError, match="no split"):
        sample_traces(policy, splits=["nope"])


def test_analyse_finds_a_planted_substitution(sft_run: Path) -> None:
    """The probe's analysis on traces written by a planted binding (no model): the substitution is named."""
    policy = load_policy(sft_run)
    spec = policy.spec
    programs = policy.sft_programs()
    compound = [p for p in programs if p.depth > 1]
    s, c = compound[0].steps[1][1], compound[0].steps[0][1]
    other = (s + 1) % spec.num_skills
    atoms = [Program.atomic(k) for k in range(spec.num_skills)] * 4  # the symbols' own skills dominate the pool
    drawn, states = simulate_planted(spec, compound + atoms, 900, 0, planted={(s, c): other}, epsilon=0.05)
    traces = ProbeTraces(
        tuple(drawn),
        tuple(tuple(tuple(x) for x in t) for t in states),
        (True,) * len(drawn),
        ("seen",) * len(drawn),
        ("greedy",) * len(drawn),
        frozenset(p for q in compound for p in q.pairs()),
    )
    result = analyse(spec, traces, replicates=3)
    subs = [b for b in result["bindings"] if b["substitution"]]
    assert [(b["symbol"], b["context"], b["skill"]) for b in subs] == [
        (spec.skill_symbols[s], spec.skill_symbols[c], spec.skills[other])
    ]
    assert result["groups"]["seen"]["entanglement"] > 0


def test_probe_bad_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", "--ckpt", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err


def test_probe_refuses_examples_it_cannot_hold_before_sampling(
    sft_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "probe"
    assert main(["probe", "--ckpt", str(sft_run), "--examples", "1000000000000", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--examples 1,000,000,000,000 traces per split and mode would take about" in err
    assert "use fewer --examples" in err and not out.exists()
