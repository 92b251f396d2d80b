"""RL learning curves: when does compound RL overtake atomic RL, and how does that read beside the theory?

Claim shown (docs/howto/experiments.md, "the curve, not a point"; theory C4/C5): along the RL budget,
accuracy on unseen compositions and deeper programs rises with compound RL outside the SFT support
and stays flat with atomic RL (and gains less with compound RL inside the support), as the theory's
generalisation set grows with compound programs outside the support and not with atomic ones.

Arms per seed: RL atomic, RL compound outside and RL compound inside, from one shared SFT run — the
runs of `finding1_rl_data` and `finding3_rl_support`, reused from the shared cache (after them, this
experiment trains nothing). Every RL arm is scored at fixed fractions of its budget (``[rl] curve``)
on the same examples; at each point the per-seed differences compound - atomic are combined by a
95% t interval over seeds, and "overtakes" is the first point whose interval lies above 0. The
theory panel is the G-against-budget curve saved by `verify_claims` in the same runs folder.

Writes ``runs/learning_curves/``: ``config.json``, ``results.json``, ``learning_curves.png``,
``report.md``. Usage: ``python -m hlsm.sims.learning_curves --scale cpu``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hlsm.app.lmplots import plot_learning_curves
from hlsm.app.report import markdown_table
from hlsm.io import write_json, write_text
from hlsm.lm.experiment import Arm, run_and_summarise
from hlsm.stats import t_interval

from ._common import ArmConfig, run_from_command_line

ARMS = (
    Arm("RL atomic", rl={"rl_kind": "atomic", "rl_inside": False}),
    Arm("RL compound outside", rl={"rl_kind": "compound", "rl_inside": False}),
    Arm("RL compound inside", rl={"rl_kind": "compound", "rl_inside": True}),
)
SPLITS = ("unseen", "deeper_4")


@dataclass(frozen=True)
class Config(ArmConfig):
    out: str = "runs/learning_curves"
    theory: str | None = None  # verify_claims' results.json; None: <out>/../verify_claims/results.json


CAPTION = (
    "Left panels: the transformer's greedy accuracy against the RL traces sampled so far (thousands; "
    "every arm starts from the same calibrated SFT checkpoint per seed, so the points at 0 coincide). "
    "Right panel: the theory's mean fraction of candidate programs whose answers the data determine "
    "(the generalisation set G, exact H-lib checker, tiny designs) against the number of answer-only RL "
    "programs, each shown on every input (the population limit). The x-axes differ in kind: the theory "
    "counts distinct RL programs with infinite samples each; the transformer counts finite samples drawn "
    "from its own policy on a fixed set of RL programs. Where the analogy holds: in both, RL data on "
    "compound programs outside the SFT support is what adds information about unseen compositions, and "
    "atomic RL adds none (the theory's atomic curve stays flat; atomic RL finds almost every group "
    "solved, so few updates happen). Where it does not: G says which answers are determined, not "
    "whether a learner finds them — the transformer must also optimise, so its curve can rise slowly or "
    "stop below the determined set, and programs outside G can still be answered right by chance or "
    "by a bias that happens to match."
)


def _contrast(
    a: dict[str, list[dict[str, Any]]], b: dict[str, list[dict[str, Any]]], split: str
) -> list[dict[str, Any]]:
    """Per budget fraction: the per-seed differences a - b and their t interval over seeds."""
    rows = []
    fractions = sorted({p["fraction"] for pts in a.values() for p in pts})
    for f in fractions:
        diffs = []
        traces = []
        for seed, points in a.items():
            pa = next((p for p in points if p["fraction"] == f), None)
            pb = next((p for p in b.get(seed, []) if p["fraction"] == f), None)
            if pa is not None and pb is not None:
                diffs.append(pa["splits"][split]["accuracy"] - pb["splits"][split]["accuracy"])
                traces.append(pa["traces"])
        interval = t_interval(diffs)
        rows.append(
            {"fraction": f, "traces": round(sum(traces) / max(1, len(traces))), "per_seed": diffs} | interval.to_dict()
        )
    return rows


def main(cfg: Config) -> dict[str, Any]:
    scale, out, cache = cfg.setup()
    summary = run_and_summarise(ARMS, scale, cache, {s: (s, None) for s in SPLITS})
    curves = {arm: {s: [p.to_dict() for p in pts] for s, pts in by.items()} for arm, by in summary.curves.items()}
    theory = Path(cfg.theory) if cfg.theory else out.parent / "verify_claims" / "results.json"
    budget = json.loads(theory.read_text())["budget"] if theory.exists() else None
    splits = tuple(
        s for s in SPLITS if all(s in p["splits"] for by in curves.values() for pts in by.values() for p in pts)
    )
    contrasts = {split: _contrast(curves["RL compound outside"], curves["RL atomic"], split) for split in splits}
    overtakes = {
        split: next((r["traces"] for r in rows if r["low"] is not None and r["low"] > 0), None)
        for split, rows in contrasts.items()
    }
    results = {"curves": curves, "compound_minus_atomic": contrasts, "overtakes_after_traces": overtakes}
    results["calibration"] = summary.to_dict()["calibration"]
    write_json(out / "config.json", asdict(cfg))
    write_json(out / "results.json", results)
    figure = plot_learning_curves(curves, budget, out / "learning_curves.png", splits)
    lines = [
        f"## {(__doc__ or '').splitlines()[0]} (`sims/{Path(__file__).name}`)\n",
        (__doc__ or "\n\n").split("\n\n")[1],
        "",
        f"![learning curves]({figure.name})",
        "",
        CAPTION,
        "",
    ]
    for split, rows in contrasts.items():
        at = overtakes[split]
        verdict = (
            f"compound RL overtakes atomic RL on `{split}` after {at:,} sampled traces (first budget point whose "
            "95% t interval over seeds lies above 0)"
            if at is not None
            else f"compound RL does not overtake atomic RL on `{split}` at any budget point (no interval above 0)"
        )
        table = [
            (
                f"{r['fraction']:g}",
                f"{r['traces']:,}",
                " / ".join(f"{100 * d:+.1f}" for d in r["per_seed"]),
                "-" if r["mean"] is None else f"{100 * r['mean']:+.1f}",
                "-" if r["low"] is None else f"[{100 * r['low']:+.1f}, {100 * r['high']:+.1f}]",
            )
            for r in rows
        ]
        lines += [
            f"Compound - atomic on `{split}` along the budget (points): {verdict}.\n",
            markdown_table(("budget fraction", "traces", "per seed", "mean", "95% CI over seeds"), table),
        ]
    if budget is None:
        lines.append(
            f"The theory panel is missing: no `{theory}` "
            "(run `hlsm reproduce --only verify_claims` with the same `--runs`)."
        )
    write_text(out / "report.md", "\n".join(lines))
    return results


if __name__ == "__main__":
    run_from_command_line(Config, main, __doc__)
