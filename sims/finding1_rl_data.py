"""Does RL on compound programs outside the SFT support beat RL on atomic programs, at equal budget?

Claim tested (the paper's claims 3 and 4, docs/index.md; published figure at depth L = 4, trained at L = 3: SFT
4.8%, SFT + RL atomic 14.8%, SFT + RL compound 42.6%): after SFT on golden traces of seen skill
pairs, REINFORCE on compound programs that use unseen pairs (outside the SFT support) raises greedy
accuracy on unseen compositions at the training depth and on deeper programs, while REINFORCE on
isolated atomic programs, at the same budget of sampled traces, does not. By hypothesis class (at
the design's population limit, where SFT shows every atom on every input): H-lib and H-tab both
identify every symbol from the atoms alone, so every composition is determined after SFT and
neither predicts any difference between the RL arms; a learner with one table per (symbol,
predecessor) pair, which neither class is, predicts a gain where RL practises pairs SFT did not
show.

Three arms per seed from one shared SFT run (:mod:`hlsm.lm.experiment`): SFT alone, SFT + RL atomic,
SFT + RL compound outside. Splits: seen and unseen depth-L compositions, deeper programs (depth 4
at the cpu and gpu scales, whose 4 program slots SFT fills with depths 1-4: docs/howto/experiments.md,
"Depth"; depth 3 at the tiny scale), the atomic programs. Per seed: accuracy +- binomial SE;
across seeds: mean with a 95% t interval; paired compound - atomic and RL - SFT differences on the
same examples.

Writes ``runs/finding1_rl_data/``: ``config.json``, ``results.json`` (with the published figure
beside ours), ``accuracy.png``. Usage: ``python -m hlsm.sims.finding1_rl_data --scale cpu``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

from hlsm.app.report import write_arm_outputs
from hlsm.lm.experiment import Arm, run_and_summarise
from hlsm.lm.summary import ExperimentSummary

from ._common import ArmConfig, run_from_command_line

PUBLISHED = {"sft": {"deeper_4": 0.048}, "sft+rl atomic": {"deeper_4": 0.148}, "sft+rl compound": {"deeper_4": 0.426}}
"""Kong et al. (ICML 2026), depth 4 after training at depth 3 (the paper's claim 4, docs/index.md)."""

ARMS = (
    Arm("sft"),
    Arm("sft+rl atomic", rl={"rl_kind": "atomic", "rl_inside": False}),
    Arm("sft+rl compound", rl={"rl_kind": "compound", "rl_inside": False}),
)
SPLITS = {name: (name, None) for name in ("seen", "unseen", "deeper_3", "deeper_4", "atomic")}


PAIRS = {"H-lib": "no effect", "H-tab": "no effect", "per-pair tables": "held"}
"""What each class predicts for RL that practises pairs SFT did not show (module docstring)."""
NOTHING = {"H-lib": "no effect", "H-tab": "no effect", "per-pair tables": "no effect"}
"""... and for RL on atoms alone."""

TITLE = (__doc__ or "").split("\n")[0] + f" (`sims/{Path(__file__).name}`)"
CLAIM = (__doc__ or "\n\n").split("\n\n")[1]
CHECKS = (
    ("sft+rl compound - sft+rl atomic", "unseen", "compound RL > atomic RL on unseen depth-3 compositions", PAIRS),
    ("sft+rl compound - sft+rl atomic", "deeper_4", "compound RL > atomic RL at depth 4", PAIRS),
    ("sft+rl atomic - sft", "deeper_4", "atomic RL > SFT at depth 4 (published 14.8% vs 4.8%)", NOTHING),
    ("sft+rl compound - sft", "deeper_4", "compound RL > SFT at depth 4 (published 42.6% vs 4.8%)", PAIRS),
)
"""(contrast, split, prediction, expected outcome per class) reported with a verdict in report.md."""


@dataclass(frozen=True)
class Config(ArmConfig):
    out: str = "runs/finding1_rl_data"


def main(cfg: Config) -> ExperimentSummary:
    scale, out, cache = cfg.setup()
    contrasts = [("sft+rl compound", "sft+rl atomic"), ("sft+rl compound", "sft"), ("sft+rl atomic", "sft")]
    results = replace(run_and_summarise(ARMS, scale, cache, SPLITS, contrasts), published=PUBLISHED)
    return write_arm_outputs(
        out,
        asdict(cfg),
        results,
        figure_title=f"SFT vs RL atomic vs RL compound, {cfg.scale} scale "
        "(mean over seeds; dots: seeds; ticks: published)",
        title=TITLE,
        claim=CLAIM,
        checks=CHECKS,
    )


if __name__ == "__main__":
    run_from_command_line(Config, main, __doc__)
