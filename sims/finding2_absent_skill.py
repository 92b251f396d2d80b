"""Can RL discover a skill that SFT never showed, and does a reward it can learn from change that?

Claim tested (theory C1 coverage and C4 what RL adds; the variant of finding 2 with the skill absent,
not the paper's finding 2, which is ``finding2_interfaces``): a skill held out of SFT entirely (in
no SFT program, not even atomically: ``[design] held_out_skills``) is an absent symbol. RL then
reintroduces it (``[design] rl_skills``) as its atomic program or inside composed depth-L programs
outside the SFT support, at the same budget of sampled traces. With the exact-match reward a policy
that never writes the skill's output gets no reward for it, so RL cannot learn it: predicted, the
skill's atom and the compositions using it stay near 0 after RL. With partial credit per correct
letter (``[rl] reward = "letters"``) a sample that gets some letters right is rewarded: predicted,
RL then learns the atom (C4: RL adds what is new when its reward can see it), and composed RL
transfers to unseen compositions using the skill more than atom-only RL (C2: interfaces). By
hypothesis class, which reads RL data as the answers of its programs: those answers identify the
absent skill (C4b) in H-lib, in H-tab and for a per-pair learner alike, whatever the reward; only
the per-pair learner predicts composed above atom-only RL once the atom is learnt. So a skill that
stays unlearnt under the exact reward is the learner's failure to earn a reward, not the data's.

Arms per seed: SFT without the skill, + RL atom-only and + RL composed with the exact reward, and
the same two with the letters reward. Splits: the unseen and deeper compositions that use the
held-out skill, those that do not, the skill's atomic program. Per seed: accuracy +- binomial SE;
across seeds: mean with a 95% t interval; paired differences on the same examples.

Writes ``runs/finding2_absent_skill/``: ``config.json``, ``results.json``, ``accuracy.png``,
``report.md``. Usage: ``python -m hlsm.sims.finding2_absent_skill --scale cpu [--held-out swap_pairs]``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

from hlsm.app.report import write_arm_outputs
from hlsm.lm.experiment import Arm, run_and_summarise
from hlsm.lm.presets import held_out_design
from hlsm.lm.summary import ExperimentSummary, Keep, uses_skills

from ._common import ArmConfig, run_from_command_line

DEFAULT_HELD_OUT = {"tiny": ("rotate_right",), "cpu": ("swap_pairs",), "gpu": ("swap_pairs",)}


TITLE = (__doc__ or "").split("\n")[0] + f" (`sims/{Path(__file__).name}`)"
CLAIM = (__doc__ or "\n\n").split("\n\n")[1]
LEARNT = {"H-lib": "held", "H-tab": "held", "per-pair tables": "held"}
"""Every class: the answers of RL programs using the skill identify it (module docstring)."""
PAIRS_ONLY = {"H-lib": "no effect", "H-tab": "no effect", "per-pair tables": "held"}

CHECKS = (
    ("+rl composed - sft (skill held out)", "atom of skill", "exact reward: RL does not learn the absent atom", LEARNT),
    (
        "+rl composed, letters - sft (skill held out)",
        "atom of skill",
        "letters reward: composed RL learns the atom",
        LEARNT,
    ),
    (
        "+rl atom-only, letters - sft (skill held out)",
        "atom of skill",
        "letters reward: atom-only RL learns the atom",
        LEARNT,
    ),
    (
        "+rl composed, letters - +rl atom-only, letters",
        "unseen, uses skill",
        "letters reward: composed RL > atom-only RL on unseen compositions using the skill",
        PAIRS_ONLY,
    ),
)
"""(contrast, split, prediction, expected outcome per class) reported with a verdict in report.md."""


def skill_splits(held: list[str]) -> dict[str, tuple[str, Keep | None]]:
    """The splits both finding-2 experiments report: unseen and depth-4 compositions that use a
    ``held`` skill, unseen ones that do not, the skill's atom, and the seen compositions."""
    uses, other = uses_skills(held), uses_skills(held, negate=True)
    return {
        "unseen, uses skill": ("unseen", uses),
        "unseen, other": ("unseen", other),
        "deeper_4, uses skill": ("deeper_4", uses),
        "atom of skill": ("atomic", uses),
        "seen": ("seen", None),
    }


@dataclass(frozen=True)
class Config(ArmConfig):
    out: str = "runs/finding2_absent_skill"
    held_out: tuple[str, ...] | None = None  # None: DEFAULT_HELD_OUT[scale]


def main(cfg: Config) -> ExperimentSummary:
    scale, out, cache = cfg.setup()
    held = list(cfg.held_out or DEFAULT_HELD_OUT[cfg.scale])
    design = held_out_design(scale, held, rl_skills=held)
    arms = (
        Arm("sft (skill held out)", design=design),
        Arm("+rl atom-only", design=design, rl={"rl_kind": "atomic"}),
        Arm("+rl composed", design=design, rl={"rl_kind": "compound"}),
        Arm("+rl atom-only, letters", design=design, rl={"rl_kind": "atomic", "reward": "letters"}),
        Arm("+rl composed, letters", design=design, rl={"rl_kind": "compound", "reward": "letters"}),
    )
    splits = skill_splits(held)
    contrasts = [
        ("+rl composed", "sft (skill held out)"),
        ("+rl composed, letters", "sft (skill held out)"),
        ("+rl atom-only, letters", "sft (skill held out)"),
        ("+rl composed, letters", "+rl atom-only, letters"),
        ("+rl composed", "+rl atom-only"),
    ]
    results = replace(run_and_summarise(arms, scale, cache, splits, contrasts), extra={"held_out": held})
    return write_arm_outputs(
        out,
        asdict(cfg),
        results,
        figure_title=f"skill {', '.join(held)} absent from SFT, reintroduced by RL ({cfg.scale} scale)",
        title=TITLE,
        claim=CLAIM,
        checks=CHECKS,
    )


if __name__ == "__main__":
    run_from_command_line(Config, main, __doc__, ("held_out", "skill names held out of SFT"))
