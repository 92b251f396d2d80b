"""Does RL outside the SFT support need SFT to cover every atomic module first?

Claim tested (the paper's claim 5, the protocol, docs/index.md; theory C5): "SFT covers every atomic module
through compositional traces, then RL targets novel compositions outside the SFT support" is the
recipe. Crossing SFT coverage (every skill, or some skills missing from SFT entirely: their atomic
programs and every pair using them, ``[design] held_out_skills``) with RL (none, or compound RL
outside the support at the scale's budget), the prediction is that RL's gain on unseen compositions
is largest with full coverage, and that compositions using a missing skill stay low whatever RL
does (RL here is not aimed at the missing skills; finding 2 aims it). By hypothesis class: with
full coverage H-lib and H-tab identify every symbol from the atoms, so they predict no gain from RL,
while a learner with one table per (symbol, predecessor) pair predicts one where RL practises new
pairs; for a missing skill every class predicts that the answers of RL programs using it identify
it, which an exact-match reward the policy never earns does not deliver.

Arms per seed: full SFT, full SFT + RL outside (finding 1's compound arm, shared), SFT missing
skills, the same + RL outside. Full and missing designs are different draws (the missing skills
change the seen pairs), so their comparison is unpaired: mean with a 95% t interval across seeds;
RL - SFT differences are paired within each design.

Writes ``runs/finding4_sft_coverage/``: ``config.json``, ``results.json``, ``accuracy.png``.
Usage: ``python -m hlsm.sims.finding4_sft_coverage --scale cpu [--missing swap_pairs complement]``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

from hlsm.app.report import write_arm_outputs
from hlsm.lm.experiment import Arm, run_and_summarise
from hlsm.lm.presets import held_out_design
from hlsm.lm.summary import ExperimentSummary, uses_skills

from ._common import ArmConfig, run_from_command_line
from .finding1_rl_data import PAIRS

DEFAULT_MISSING = {"tiny": ("rotate_right",), "cpu": ("swap_pairs", "complement"), "gpu": ("swap_pairs", "complement")}
OUTSIDE = {"rl_kind": "compound", "rl_inside": False}


TITLE = (__doc__ or "").split("\n")[0] + f" (`sims/{Path(__file__).name}`)"
CLAIM = (__doc__ or "\n\n").split("\n\n")[1]
ABSENT = {"H-lib": "held", "H-tab": "held", "per-pair tables": "held"}
"""What each class predicts where answer-only data of programs using an absent skill are observed
(the answers identify its binding, theory C4b): the learner sees those answers only through a
reward, which a skill it never writes correctly never earns."""

CHECKS = (
    ("full sft + rl outside - full sft", "unseen", "RL outside helps after full-coverage SFT", PAIRS),
    (
        "missing sft + rl outside - missing sft",
        "unseen, uses missing",
        "RL outside helps compositions using a skill SFT missed (predicted: no)",
        ABSENT,
    ),
)
"""(contrast, split, prediction, expected outcome per class) reported with a verdict in report.md."""


@dataclass(frozen=True)
class Config(ArmConfig):
    out: str = "runs/finding4_sft_coverage"
    missing: tuple[str, ...] | None = None  # None: DEFAULT_MISSING[scale]


def main(cfg: Config) -> ExperimentSummary:
    scale, out, cache = cfg.setup()
    missing = list(cfg.missing or DEFAULT_MISSING[cfg.scale])
    partial = held_out_design(scale, missing)
    arms = (
        Arm("full sft"),
        Arm("full sft + rl outside", rl=OUTSIDE),
        Arm("missing sft", design=partial),
        Arm("missing sft + rl outside", design=partial, rl=OUTSIDE),
    )
    uses, other = uses_skills(missing), uses_skills(missing, negate=True)
    splits = {
        "unseen": ("unseen", None),
        "unseen, uses missing": ("unseen", uses),
        "unseen, other": ("unseen", other),
        "deeper_4": ("deeper_4", None),
        "deeper_3": ("deeper_3", None),
        "seen": ("seen", None),
    }
    contrasts = [("full sft + rl outside", "full sft"), ("missing sft + rl outside", "missing sft")]
    results = replace(run_and_summarise(arms, scale, cache, splits, contrasts), extra={"missing": missing})
    return write_arm_outputs(
        out,
        asdict(cfg),
        results,
        figure_title=f"SFT coverage x RL outside; missing: {', '.join(missing)} ({cfg.scale} scale)",
        title=TITLE,
        claim=CLAIM,
        checks=CHECKS,
    )


if __name__ == "__main__":
    run_from_command_line(Config, main, __doc__, ("missing", "skill names missing from SFT"))
