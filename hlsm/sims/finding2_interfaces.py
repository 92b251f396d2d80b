"""Can RL introduce a skill that SFT never showed, and does it matter whether RL shows it alone or composed?

Claim tested (DESIGN section 1, claims 1 and 4; theory C1 coverage and C2 interfaces): a skill
held out of SFT (in no SFT program, not even atomically: ``[design] held_out_skills``) is an
absent symbol, which SFT data cannot identify. RL then reintroduces it (``[design] rl_skills``),
either as its atomic program only or inside composed depth-L programs outside the SFT support, at
the same budget of sampled traces. Prediction: compositions that use the skill stay near chance
after SFT; RL on composed programs transfers to unseen compositions using it (the skill meets its
interfaces, i.e. the states other skills hand it), RL on the atom alone transfers less, even where
the atom itself is learnt.

Arms per seed: SFT without the skill, + RL atom-only, + RL composed; and full SFT as a reference
(finding 1's shared run, evaluated on its own design, so not paired with the others). Splits: the
unseen and deeper compositions that use the held-out skill, those that do not, the skill's atomic
program. Per seed: accuracy +- binomial SE; across seeds: mean with a 95% t interval; paired
composed - atom differences on the same examples.

Writes ``runs/finding2_interfaces/``: ``config.json``, ``results.json``, ``accuracy.png``.
Usage: ``python -m hlsm.sims.finding2_interfaces --scale cpu [--held-out swap_pairs]``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

from hlsm.app.report import write_arm_outputs
from hlsm.lm.experiment import Arm, run_and_summarise
from hlsm.lm.presets import held_out_design
from hlsm.lm.summary import ExperimentSummary, uses_skills
from hlsm.sims._common import ArmConfig, run_from_command_line

DEFAULT_HELD_OUT = {"tiny": ("rotate_right",), "cpu": ("swap_pairs",), "gpu": ("swap_pairs",)}


TITLE = (__doc__ or "").split("\n")[0] + f" (`hlsm/sims/{Path(__file__).name}`)"
CLAIM = (__doc__ or "\n\n").split("\n\n")[1]
CHECKS = (
    (
        "+rl composed - +rl atom-only",
        "unseen, uses skill",
        "composed RL > atom-only RL on unseen compositions using the skill",
    ),
    (
        "+rl composed - sft (skill held out)",
        "unseen, uses skill",
        "composed RL > SFT on unseen compositions using the skill",
    ),
)
"""(contrast, split, prediction) reported with a verdict in report.md."""


@dataclass(frozen=True)
class Config(ArmConfig):
    out: str = "runs/finding2_interfaces"
    held_out: tuple[str, ...] | None = None  # None: DEFAULT_HELD_OUT[scale]


def main(cfg: Config) -> ExperimentSummary:
    scale, out, cache = cfg.setup()
    held = list(cfg.held_out or DEFAULT_HELD_OUT[cfg.scale])
    design = held_out_design(scale, held, rl_skills=held)
    arms = (
        Arm("sft (full)"),
        Arm("sft (skill held out)", design=design),
        Arm("+rl atom-only", design=design, rl={"rl_kind": "atomic"}),
        Arm("+rl composed", design=design, rl={"rl_kind": "compound"}),
    )
    uses, other = uses_skills(held), uses_skills(held, negate=True)
    splits = {
        "unseen, uses skill": ("unseen", uses),
        "unseen, other": ("unseen", other),
        "deeper_4, uses skill": ("deeper_4", uses),
        "deeper_3, uses skill": ("deeper_3", uses),
        "atom of skill": ("atomic", uses),
        "seen": ("seen", None),
    }
    contrasts = [
        ("+rl composed", "+rl atom-only"),
        ("+rl composed", "sft (skill held out)"),
        ("+rl atom-only", "sft (skill held out)"),
    ]
    results = replace(run_and_summarise(arms, scale, cache, splits, contrasts), extra={"held_out": held})
    return write_arm_outputs(
        out,
        asdict(cfg),
        results,
        figure_title=f"skill {', '.join(held)} held out of SFT, reintroduced by RL ({cfg.scale} scale)",
        title=TITLE,
        claim=CLAIM,
        checks=CHECKS,
    )


if __name__ == "__main__":
    run_from_command_line(Config, main, __doc__, ("held_out", "skill names held out of SFT"))
