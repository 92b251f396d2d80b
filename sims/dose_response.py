"""How much does atomic RL add at depth 4, as a function of what SFT left unlearnt?

Claim tested (theory C4, what RL adds; the published depth-4 table of finding 1: SFT 4.8%, + RL
atomic 14.8%, + RL compound 42.6%): RL can add only what the SFT policy does not already do. Atomic
RL practises the atoms; its gain is what SFT left unlearnt in them, so it should lift depth-4
programs when SFT stopped early and add nothing once the atoms are solved (our calibrated SFT
leaves them at about 99.6%, where finding 1 measures no effect). Compound RL practises unseen
skill pairs, which no amount of atom training shows, so it should gain at every level. Predictions,
stated before running: atomic RL - SFT at depth 4 is above 0 at the lowest SFT level and within the
equivalence margin at the calibrated one, and the gain at the lowest level exceeds the gain at the
calibrated one; compound RL - SFT at depth 4 is above 0 at every level. By hypothesis class: H-lib
and H-tab say what the data determine, not what a learner stopped part way does, so they name no
outcome here (the SFT data are the same at every level); a learner with one table per (symbol,
predecessor) pair makes the predictions above (its first-step tables are the atoms).

The same seeds' SFT runs stopped at several calibration levels (the gate's seen and atomic
thresholds both set to the level, checked every 100 steps; the calibrated level is the scale's own
gate, whose runs are finding 1's), then atomic and compound RL at the same budget from each. The
seen threshold binds first there (atoms are learnt before compositions), so the *atom levels* set
the atomic threshold alone (``atoms 60%``: seen threshold 0), stopping SFT with the atoms less
learnt; the same predictions are checked at the lowest atom level. The
figure puts each level's gains against what SFT left unlearnt (1 - atomic accuracy) and the depth-4
accuracies against SFT's depth-4 accuracy, with the published table placed on the second panel by
its SFT accuracy (4.8%).

Writes ``runs/dose_response/``: ``config.json``, ``results.json``, ``report.md``, ``accuracy.png``,
``dose.png``. Usage: ``python -m hlsm.sims.dose_response --scale cpu [--levels 0.6 0.8 0.9] [--atom-levels 0.6]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from hlsm.app.report import write_arm_outputs
from hlsm.lm.experiment import Arm, run_and_summarise
from hlsm.lm.summary import ExperimentSummary

from ._common import ArmConfig, run_from_command_line
from .finding1_rl_data import PUBLISHED

DEFAULT_LEVELS = {"tiny": (0.0,), "cpu": (), "gpu": (0.6, 0.8, 0.9)}
"""The SFT levels below the scale's gate (seen and atomic thresholds) per scale; tiny's gate passes anyway.
The cpu scale runs the atom level alone (the one that places the published table), to keep
``hlsm reproduce --scale cpu`` within its hour; ``--levels 0.6 0.8 0.9`` adds the others
(docs/howto/experiments.md section 9 has that run)."""

DEFAULT_ATOM_LEVELS = {"tiny": (), "cpu": (0.6,), "gpu": (0.6,)}
"""The atom levels (the atomic threshold alone) per scale."""

Level = tuple[str, float] | str
"""``("both", x)``: seen and atomic thresholds at ``x``; ``("atoms", x)``: the atomic one alone; or
:data:`CALIBRATED`."""

CALIBRATED = "gate"
"""The label of the scale's own gate, the top level."""

TITLE = (__doc__ or "").split("\n")[0] + f" (`sims/{Path(__file__).name}`)"
CLAIM = (__doc__ or "\n\n").split("\n\n")[1]


def level_label(level: Level) -> str:
    if isinstance(level, str):
        return level
    kind, value = level
    return f"{'atoms ' if kind == 'atoms' else ''}{round(100 * value)}%"


def arms_at(level: Level) -> tuple[Arm, Arm, Arm]:
    """SFT stopped at ``level``, + RL atomic, + RL compound (outside the SFT support)."""
    label = level_label(level)
    sft: dict[str, Any] = {}
    if not isinstance(level, str):
        kind, value = level
        sft = {"gate": {"seen": value if kind == "both" else 0.0, "atomic": value, "every": 100}}
    return (
        Arm(f"sft @{label}", sft=sft),
        Arm(f"+rl atomic @{label}", sft=sft, rl={"rl_kind": "atomic", "rl_inside": False}),
        Arm(f"+rl compound @{label}", sft=sft, rl={"rl_kind": "compound", "rl_inside": False}),
    )


HELD, NONE = {"per-pair tables": "held"}, {"per-pair tables": "no effect"}
"""What the per-pair learner predicts (module docstring); H-lib and H-tab name no outcome."""


def checks(lowest: Sequence[Level], split: str) -> tuple[tuple[Any, ...], ...]:
    """The predictions stated in the claim: at each of the ``lowest`` levels, and at the calibrated one."""
    top = CALIBRATED
    out = []
    for level in lowest:
        low = level_label(level)
        out += [
            (f"+rl atomic @{low} - sft @{low}", split, f"C4: atomic RL lifts depth 4 when SFT stopped at {low}", HELD),
            (
                f"(+rl atomic @{low} - sft @{low}) - (+rl atomic @{top} - sft @{top})",
                split,
                f"C4: atomic RL's gain is larger after SFT at {low} than after calibrated SFT",
                HELD,
            ),
            (f"+rl compound @{low} - sft @{low}", split, f"C4: compound RL lifts depth 4 at {low}", HELD),
        ]
    out += [
        (f"+rl atomic @{top} - sft @{top}", split, "C4: atomic RL = SFT (no effect) once SFT is calibrated", NONE),
        (f"+rl compound @{top} - sft @{top}", split, "C4: compound RL lifts depth 4 after calibrated SFT", HELD),
    ]
    return tuple(out)


@dataclass(frozen=True)
class Config(ArmConfig):
    out: str = "runs/dose_response"
    levels: tuple[float, ...] | None = None  # None: DEFAULT_LEVELS[scale]
    atom_levels: tuple[float, ...] | None = None  # None: DEFAULT_ATOM_LEVELS[scale]


def main(cfg: Config) -> ExperimentSummary:
    from hlsm.app.lmplots import plot_dose_response

    scale, out, cache = cfg.setup()
    levels = [("both", x) for x in sorted(DEFAULT_LEVELS[cfg.scale] if cfg.levels is None else cfg.levels)]
    atoms = [
        ("atoms", x) for x in sorted(DEFAULT_ATOM_LEVELS[cfg.scale] if cfg.atom_levels is None else cfg.atom_levels)
    ]
    steps: list[Level] = [*atoms, *levels, CALIBRATED]
    arms = tuple(arm for level in steps for arm in arms_at(level))
    deep = "deeper_4" if 4 in scale.sft.design.deeper_depths else f"deeper_{min(scale.sft.design.deeper_depths)}"
    splits = {name: (name, None) for name in ("seen", "unseen", deep, "atomic")}
    contrasts: list[tuple[Any, Any]] = []
    for level in steps:
        sft, atomic, compound = (a.name for a in arms_at(level))
        contrasts += [(atomic, sft), (compound, sft)]
    lowest = [*levels[:1], *atoms[:1]]
    top = tuple(a.name for a in arms_at(CALIBRATED))
    for level in lowest:
        low = tuple(a.name for a in arms_at(level))
        contrasts.append(((low[1], low[0]), (top[1], top[0])))
    results = run_and_summarise(arms, scale, cache, splits, contrasts)
    results = replace(results, extra={"levels": [level_label(s) for s in steps], "depth_split": deep})
    saved = write_arm_outputs(
        out,
        asdict(cfg),
        results,
        figure_title=f"SFT stopped at {', '.join(level_label(s) for s in steps)}, then RL ({cfg.scale} scale)",
        title=TITLE,
        claim=CLAIM,
        checks=checks(lowest, deep),
    )
    published = {arm.replace("sft+rl ", "+rl "): v for arm, v in PUBLISHED.items()}
    plot_dose_response(saved.to_dict(), out / "dose.png", published)
    return saved


if __name__ == "__main__":
    run_from_command_line(
        Config,
        main,
        __doc__,
        ("levels", "SFT levels below the gate (seen and atomic thresholds)", float),
        ("atom_levels", "SFT levels of the atomic threshold alone", float),
    )
