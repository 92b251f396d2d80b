"""What do trace distributions under the HLSM look like for the default supports?

For the default library (``A = 8, n = 6``, 24 skills, 10 routings) and the default support design
(:class:`hlsm.DesignConfig`: training depth 3, deeper depths 4 and 5), this script simulates each
split (``sft``, ``rl``, ``unseen``, ``deeper``) for both RL arms (``rl_kind = "compound"`` and
``"atomic"``) and measures, per split:

- module usage: the share of steps that use each skill and each routing (atomic steps use no
  routing), and its total-variation distance to the SFT split's;
- the depth distribution of the traces;
- answer entropy: for each program, ``inputs_per_program`` uniform inputs ``x_0`` are run and the
  empirical entropy (bits) of the answer ``x_L`` given the program is computed, with the fraction of
  distinct answers; both are averaged over the split's programs. The plug-in entropy is capped at
  ``log2(inputs_per_program)``: a program that is a bijection of ``x_0`` reaches the cap, a program
  with many-to-one skills (sort, fill, running max, ...) falls below it;
- how the corruption rate ``epsilon`` (a step's output is uniform on ``X`` with this probability)
  changes the answers: entropy, distinct fraction, and the fraction of answers that differ from the
  noiseless answer on the same input (at most ``1 - (1 - epsilon)^L``; a later many-to-one step can
  mask an earlier corruption).

Claims checked (descriptive premises of the C5 protocol, ``theory/``): SFT covers every skill and
routing; the held-out splits use the same modules at similar frequencies as SFT, so they differ from
it in composition only; atomic RL (``rl_kind = "atomic"``) uses no routing at all, so it cannot
supply routing information (C3). Module usage and depth do not depend on ``epsilon``: programs are
drawn before the corruption.

Both arms share one seed, so their SFT splits are equal; :func:`hlsm.make_design` draws the unseen
and deeper splits after the RL split, so those are different draws in the two arms (with
``holdout = "programs"`` the atomic arm's unseen split is the compound arm's RL split). The figures
show the compound arm's splits plus the atomic arm's RL split; ``results.json`` holds both arms.

Writes ``runs/trace_distributions/`` (or ``--out``): ``config.json``, ``results.json``, and the figures
``module_usage.png`` and ``answer_statistics.png``, drawn from ``results.json`` only.

Usage: ``python -m hlsm.sims.trace_distributions [--scale tiny|cpu|gpu] [--out DIR]``
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from hlsm.app.report import markdown_table
from hlsm.design import SPLITS, DesignConfig, RLKind, make_design
from hlsm.io import write_json, write_text
from hlsm.programs import Program
from hlsm.runtime import torch_threads
from hlsm.simulate import simulate, summarize
from hlsm.spec import Spec

from ._common import preset_from_command_line

ARMS: tuple[RLKind, ...] = ("compound", "atomic")


@dataclass(frozen=True)
class Config:
    """Sizes of the run; ``preset`` gives the three standard scales."""

    n_sft: int = 200
    n_rl: int = 100
    n_unseen: int = 100
    n_deeper: int = 100
    train_depth: int = 3
    deeper_depths: tuple[int, ...] = (4, 5)
    traces_per_split: int = 20_000
    inputs_per_program: int = 512
    epsilons: tuple[float, ...] = (0.0, 0.01, 0.05, 0.1, 0.2)
    seed: int = 0
    threads: int = 1
    out: str = "runs/trace_distributions"

    @classmethod
    def preset(cls, scale: str) -> Config:
        """``"tiny"`` (the test suite, about a second), ``"cpu"`` (the default design, well under 30 s
        on one core) or ``"gpu"`` (more traces and inputs per program; still CPU work)."""
        if scale == "tiny":
            return cls(n_sft=12, n_rl=6, n_unseen=6, n_deeper=4, traces_per_split=400)
        if scale == "cpu":
            return cls()
        if scale == "gpu":
            epsilons = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
            return cls(traces_per_split=200_000, inputs_per_program=4096, epsilons=epsilons)
        raise ValueError(f"unknown preset '{scale}'; use tiny, cpu or gpu")

    def design(self, rl_kind: RLKind) -> DesignConfig:
        return DesignConfig(
            train_depth=self.train_depth,
            deeper_depths=self.deeper_depths,
            n_sft=self.n_sft,
            n_rl=self.n_rl,
            n_unseen=self.n_unseen,
            n_deeper=self.n_deeper,
            rl_kind=rl_kind,
            seed=self.seed,
        )


def _frequencies(counts: dict[str, int]) -> dict[str, float]:
    total = sum(counts.values())
    return {k: (v / total if total else 0.0) for k, v in counts.items()}


def _tv(p: dict[str, float], q: dict[str, float]) -> float | None:
    """Total-variation distance of two frequency tables (None when either is empty)."""
    if not sum(p.values()) or not sum(q.values()):
        return None
    return 0.5 * sum(abs(p[k] - q[k]) for k in p)


def _entropy_bits(codes: torch.Tensor) -> float:
    """Plug-in entropy (bits) of the empirical distribution of ``codes``."""
    _, counts = torch.unique(codes, return_counts=True)
    prob = counts.double() / counts.sum()
    return float(-(prob * prob.log2()).sum())


def answer_statistics(
    spec: Spec, programs: Sequence[Program], inputs: int, epsilon: float, seed: int
) -> dict[str, list[float]]:
    """Per program: answer entropy (bits), distinct-answer fraction, and the fraction of answers that
    the corruption changed, each over ``inputs`` uniform ``x_0`` (the same inputs for every epsilon)."""
    entropy, distinct, changed = [], [], []
    for i, p in enumerate(programs):
        noisy = simulate(spec, [p], inputs, seed + i, epsilon=epsilon)
        answers = spec.encode(noisy.states[:, p.depth])
        entropy.append(_entropy_bits(answers))
        distinct.append(len(torch.unique(answers)) / inputs)
        if epsilon > 0:
            clean = simulate(spec, [p], inputs, seed + i, epsilon=0.0)
            assert torch.equal(clean.states[:, 0], noisy.states[:, 0])  # same x_0 by construction
            changed.append(float((spec.encode(clean.states[:, p.depth]) != answers).double().mean()))
        else:
            changed.append(0.0)
    return {"entropy_bits": entropy, "distinct_fraction": distinct, "changed_fraction": changed}


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def split_statistics(spec: Spec, programs: Sequence[Program], split: str, cfg: Config, seed: int) -> dict[str, Any]:
    """Module usage, depth and answer statistics of one split's programs."""
    corpus = simulate(spec, programs, cfg.traces_per_split, seed, split=split)
    summary = summarize(corpus)
    many_to_one = [sum(not spec.skill_modules[k].bijective for k in p.skills) for p in programs]
    answers: dict[str, Any] = {}
    per_program: dict[str, Any] = {"many_to_one": many_to_one}
    for eps in cfg.epsilons:
        stats = answer_statistics(spec, programs, cfg.inputs_per_program, eps, seed * 7919)
        answers[str(eps)] = {
            "entropy_bits": _mean(stats["entropy_bits"]),
            "entropy_bits_sd": float(torch.tensor(stats["entropy_bits"]).std()) if len(programs) > 1 else 0.0,
            "distinct_fraction": _mean(stats["distinct_fraction"]),
            "changed_fraction": _mean(stats["changed_fraction"]),
        }
        if eps == cfg.epsilons[0]:
            per_program["entropy_bits"] = [round(v, 4) for v in stats["entropy_bits"]]
            per_program["epsilon"] = eps
    depths = [p.depth for p in programs]
    return {
        "programs": len(programs),
        "traces": summary["traces"],
        "skills": _frequencies(summary["skills"]),
        "routings": _frequencies(summary["routings"]),
        "skills_unused": [k for k, v in summary["skills"].items() if v == 0],
        "routings_unused": [k for k, v in summary["routings"].items() if v == 0],
        "depth": _frequencies(summary["depth"]),
        "mean_depth": _mean(depths),
        "many_to_one_fraction": _mean([float(c > 0) for c in many_to_one]),
        "answers": answers,
        "per_program": per_program,
    }


def run(cfg: Config) -> dict[str, Any]:
    """Compute every statistic (no drawing)."""
    spec = Spec()
    arms: dict[str, Any] = {}
    for arm in ARMS:
        design = make_design(spec, cfg.design(arm))
        splits = {
            split: split_statistics(spec, design.programs(split), split, cfg, cfg.seed * 1000 + 10 * i + 1)
            for i, split in enumerate(SPLITS)
        }
        for row in splits.values():
            row["skill_tv_to_sft"] = _tv(row["skills"], splits["sft"]["skills"])
            row["routing_tv_to_sft"] = _tv(row["routings"], splits["sft"]["routings"])
        arms[arm] = {"design": design.config.to_dict() if design.config else None, "splits": splits}
    return {
        "spec": spec.to_dict(),
        "epsilons": list(cfg.epsilons),
        "inputs_per_program": cfg.inputs_per_program,
        "entropy_cap_bits": math.log2(cfg.inputs_per_program),
        "state_space_bits": math.log2(spec.num_states),
        "arms": arms,
    }


def figure_series(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The five series the figures show: the compound arm's splits plus the atomic arm's RL split."""
    compound, atomic = results["arms"]["compound"]["splits"], results["arms"]["atomic"]["splits"]
    return {
        "sft": compound["sft"],
        "rl (compound)": compound["rl"],
        "rl (atomic)": atomic["rl"],
        "unseen": compound["unseen"],
        "deeper": compound["deeper"],
    }


def draw(results_path: Path) -> list[Path]:
    """Draw the figures from the saved ``results.json``."""
    from hlsm.app.plots import plot_answer_statistics, plot_module_usage

    results = json.loads(results_path.read_text())
    series = figure_series(results)
    out = results_path.parent
    a, n = results["spec"]["alphabet"], results["spec"]["length"]
    return [
        plot_module_usage(
            series, out / "module_usage.png", title=f"Module usage per split (default library, A={a}, n={n})"
        ),
        plot_answer_statistics(
            series,
            results["epsilons"],
            results["entropy_cap_bits"],
            out / "answer_statistics.png",
            title=f"Depth and answers per split ({results['inputs_per_program']} inputs per program)",
        ),
    ]


def main(cfg: Config) -> dict[str, Any]:
    out = Path(cfg.out)
    start = time.perf_counter()
    with torch_threads(cfg.threads):
        results = run(cfg)
    results["wall_s"] = round(time.perf_counter() - start, 2)
    write_json(out / "config.json", asdict(cfg))
    write_json(out / "results.json", results)
    draw(out / "results.json")
    write_text(out / "report.md", report(json.loads((out / "results.json").read_text())))
    return results


def report(results: dict[str, Any]) -> str:
    """The markdown section of ``docs/results.md`` (from the saved results only)."""
    eps = list(next(iter(next(iter(results["arms"].values()))["splits"].values()))["answers"])
    rows = []
    for arm, data in results["arms"].items():
        for split, row in data["splits"].items():
            answers = row["answers"]
            rows.append(
                (arm, split, row["programs"], f"{row['mean_depth']:.2f}", f"{row['many_to_one_fraction']:.2f}")
                + tuple(f"{answers[e]['entropy_bits']:.2f}" for e in (eps[0], eps[-1]))
                + (
                    f"{answers[eps[0]]['distinct_fraction']:.2f}",
                    len(row["skills_unused"]) + len(row["routings_unused"]),
                )
            )
    return "\n".join(
        [
            "## Trace distributions of the default supports (`sims/trace_distributions.py`)\n",
            "What the simulator produces for the default library (A = 8, n = 6, 24 skills, 10 routings): the",
            "supports' depth, the share of programs with a many-to-one skill, and the answer entropy given the",
            f"program (bits, cap {results['entropy_cap_bits']:.0f}) without and with corruption eps = {eps[-1]}.",
            "Read it for: which modules a split leaves unused (atomic RL uses no routing), and how much",
            "many-to-one skills, rather than corruption, lower what an answer reveals about its input.\n",
            markdown_table(
                (
                    "RL arm",
                    "split",
                    "programs",
                    "mean depth",
                    "many-to-one share",
                    f"entropy eps={eps[0]}",
                    f"entropy eps={eps[-1]}",
                    "distinct answers",
                    "modules unused",
                ),
                rows,
            ),
            "\n![module usage](module_usage.png)\n\n![answer statistics](answer_statistics.png)\n",
        ]
    )


if __name__ == "__main__":
    res = main(preset_from_command_line(Config, __doc__))
    for arm, data in res["arms"].items():
        print(f"== rl_kind = {arm}")
        for split, row in data["splits"].items():
            eps = ", ".join(f"eps={e}: {v['entropy_bits']:.2f} bits" for e, v in row["answers"].items())
            head = f"  {split:<7} {row['programs']:>4} programs, mean depth {row['mean_depth']:.2f}"
            print(f"{head}; answer entropy {eps}")
    print(f"wall {res['wall_s']} s")
