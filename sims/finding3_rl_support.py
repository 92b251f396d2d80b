"""Does RL help more when its prompts lie outside the SFT support than inside it?

Claim tested (the paper's claims 2 and 5, docs/index.md; theory C4/C5): answer-only RL data whose answers
the SFT data already determine adds nothing at the population limit, so RL on programs inside the
SFT support (compositions SFT showed with golden traces) should gain less on unseen compositions
and deeper programs than RL, at the same budget of sampled traces, on compound programs outside it
(programs using skill pairs SFT never showed). With finite samples "inside" still shows new x_0, so
a small gain inside is allowed; the prediction is outside > inside on held-out splits. By
hypothesis class (at the design's population limit, where SFT shows every atom on every input):
H-lib and H-tab both identify every symbol from the atoms alone, so every composition is determined
after SFT and neither predicts any difference between the RL arms; a learner with one table per
(symbol, predecessor) pair, which neither class is, predicts a gain where RL practises pairs SFT
did not show.

Three arms per seed from one shared SFT run: SFT alone, SFT + RL inside, SFT + RL outside (the same
cached run as finding 1's compound arm). Per seed: accuracy +- binomial SE; across seeds: mean with
a 95% t interval; paired outside - inside differences on the same examples.

Writes ``runs/finding3_rl_support/``: ``config.json``, ``results.json``, ``accuracy.png``.
Usage: ``python -m hlsm.sims.finding3_rl_support --scale cpu``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from hlsm.app.report import write_arm_outputs
from hlsm.lm.experiment import Arm, run_and_summarise
from hlsm.lm.summary import ExperimentSummary

from ._common import ArmConfig, run_from_command_line
from .finding1_rl_data import PAIRS

ARMS = (
    Arm("sft"),
    Arm("sft+rl inside", rl={"rl_kind": "compound", "rl_inside": True}),
    Arm("sft+rl outside", rl={"rl_kind": "compound", "rl_inside": False}),
)
SPLITS = {name: (name, None) for name in ("seen", "unseen", "deeper_3", "deeper_4", "atomic")}


TITLE = (__doc__ or "").split("\n")[0] + f" (`sims/{Path(__file__).name}`)"
CLAIM = (__doc__ or "\n\n").split("\n\n")[1]
CHECKS = (
    ("sft+rl outside - sft+rl inside", "unseen", "RL outside > RL inside on unseen compositions", PAIRS),
    ("sft+rl outside - sft+rl inside", "deeper_4", "RL outside > RL inside at depth 4", PAIRS),
)
"""(contrast, split, prediction, expected outcome per class) reported with a verdict in report.md."""


@dataclass(frozen=True)
class Config(ArmConfig):
    out: str = "runs/finding3_rl_support"


def main(cfg: Config) -> ExperimentSummary:
    scale, out, cache = cfg.setup()
    contrasts = [("sft+rl outside", "sft+rl inside"), ("sft+rl outside", "sft"), ("sft+rl inside", "sft")]
    results = run_and_summarise(ARMS, scale, cache, SPLITS, contrasts)
    return write_arm_outputs(
        out,
        asdict(cfg),
        results,
        figure_title=f"RL inside vs outside the SFT support, {cfg.scale} scale (mean over seeds; dots: seeds)",
        title=TITLE,
        claim=CLAIM,
        checks=CHECKS,
    )


if __name__ == "__main__":
    run_from_command_line(Config, main, __doc__)
