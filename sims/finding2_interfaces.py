"""Does composability need composed exposure during RL: a skill known alone, reintroduced atom-only or composed?

Claim tested (the paper's finding 2, its claim 4 in docs/index.md; theory C2 interfaces and C4 what RL
adds): "skill composability requires combinational exposure during RL: when held-out skills are
reintroduced, composed examples repair generalisation better than atom-only examples". SFT shows
the held-out skill atomically (its atomic program is in SFT and the calibration gate scores it) but
never inside a composition (``[design] held_out_skills`` with ``held_out_atomic``): the skill is
known, its interfaces (the states other skills hand it, the states it hands on) are not. RL then
reintroduces it (``[design] rl_skills``) as its atomic program only, or inside composed depth-L
programs outside the SFT support, at the same budget of sampled traces. Predictions, stated before
running: RL on composed programs lifts the unseen compositions that use the skill above SFT and
above atom-only RL; atom-only RL changes them by no more than the equivalence margin (C4: its groups
are the atom SFT already solves, so it has almost nothing new to add). By hypothesis class: SFT
shows the skill's atom on every input, so H-lib and H-tab identify it there and every composition
using it is determined after SFT: both predict that neither RL arm changes these compositions. The
prediction of the paper, composed RL above atom-only RL, is that of a learner with one table per
(symbol, predecessor) pair, which neither class is.

Arms per seed: SFT with the skill's atom only, + RL atom-only, + RL composed; and full SFT as a
reference (finding 1's shared run, evaluated on its own design, so not paired with the others).
Splits: the unseen and deeper compositions that use the held-out skill, those that do not, the
skill's atomic program. Per seed: accuracy +- binomial SE; across seeds: mean with a 95% t
interval; paired differences on the same examples. The variant in which SFT never shows the skill
at all is ``finding2_absent_skill``.

Writes ``runs/finding2_interfaces/``: ``config.json``, ``results.json``, ``accuracy.png``,
``report.md``. Usage: ``python -m hlsm.sims.finding2_interfaces --scale cpu [--held-out swap_pairs]``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

from hlsm.app.report import write_arm_outputs
from hlsm.lm.experiment import Arm, run_and_summarise
from hlsm.lm.presets import held_out_design
from hlsm.lm.summary import ExperimentSummary

from ._common import ArmConfig, run_from_command_line
from .finding1_rl_data import NOTHING, PAIRS
from .finding2_absent_skill import DEFAULT_HELD_OUT, skill_splits

TITLE = (__doc__ or "").split("\n")[0] + f" (`sims/{Path(__file__).name}`)"
CLAIM = (__doc__ or "\n\n").split("\n\n")[1]
CHECKS = (
    (
        "+rl composed - +rl atom-only",
        "unseen, uses skill",
        "composed RL > atom-only RL on unseen compositions using the skill",
        PAIRS,
    ),
    (
        "+rl composed - sft (atom only)",
        "unseen, uses skill",
        "composed RL > SFT on unseen compositions using it",
        PAIRS,
    ),
    ("+rl atom-only - sft (atom only)", "unseen, uses skill", "atom-only RL = SFT (no effect) on them", NOTHING),
)
"""(contrast, split, prediction, expected outcome per class) reported with a verdict in report.md."""


@dataclass(frozen=True)
class Config(ArmConfig):
    out: str = "runs/finding2_interfaces"
    held_out: tuple[str, ...] | None = None  # None: DEFAULT_HELD_OUT[scale]


def main(cfg: Config) -> ExperimentSummary:
    scale, out, cache = cfg.setup()
    held = list(cfg.held_out or DEFAULT_HELD_OUT[cfg.scale])
    design = held_out_design(scale, held, rl_skills=held, held_out_atomic=True)
    arms = (
        Arm("sft (full)"),
        Arm("sft (atom only)", design=design),
        Arm("+rl atom-only", design=design, rl={"rl_kind": "atomic"}),
        Arm("+rl composed", design=design, rl={"rl_kind": "compound"}),
    )
    splits = skill_splits(held)
    contrasts = [
        ("+rl composed", "+rl atom-only"),
        ("+rl composed", "sft (atom only)"),
        ("+rl atom-only", "sft (atom only)"),
    ]
    results = replace(run_and_summarise(arms, scale, cache, splits, contrasts), extra={"held_out": held})
    return write_arm_outputs(
        out,
        asdict(cfg),
        results,
        figure_title=f"skill {', '.join(held)} shown alone in SFT, composed only by RL ({cfg.scale} scale)",
        title=TITLE,
        claim=CLAIM,
        checks=CHECKS,
    )


if __name__ == "__main__":
    run_from_command_line(Config, main, __doc__, ("held_out", "skill names held out of SFT compositions"))
