"""The main job: a small version of the whole pipeline, written up in ``report.md``.

``hlsm quickstart`` runs, in order:

1. **simulate**: the default support design (:class:`~hlsm.design.DesignConfig`) on the default
   library; golden SFT traces, answer-only RL traces and fully shown evaluation traces
   (``corpus.jsonl``, ``summary.json``, ``design.json``, ``corpus_counts.png``);
2. **identify**: the exact H-lib checker on that SFT + RL data: which unseen and deeper programs
   it determines (``identify.json``);
3. **fit**: ``hlsm fit`` on a tiny identifiable design (|X| = 9): bindings recovered, the Bayesian
   view against the checker (``fit/``: metrics and figures);
4. **SFT, RL, evaluate**: the transformer of :mod:`hlsm.lm.experiment` trained by SFT, then
   REINFORCE on atomic or on compound programs at equal budget, evaluated on unseen and deeper
   programs (``transformer/``: ``results.json``, ``report.md``, ``accuracy.png``; runs cached in ``cache/``).

At ``scale="cpu"`` (the default) it takes about 4 minutes on 2 CPU cores; ``"tiny"`` (tests)
seconds. Rerunning reuses finished training runs.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hlsm.app.plots import plot_corpus_summary
from hlsm.design import DesignConfig, coverage, make_design
from hlsm.io import write_json, write_text
from hlsm.lock import writing
from hlsm.simulate import concat, simulate, summarize, write_jsonl
from hlsm.spec import Spec

SPLIT_EXPOSURE = {"sft": "full", "rl": "answer", "unseen": "full", "deeper": "full"}
"""Exposure per split: golden SFT traces, outcome-only RL, evaluation splits shown in full."""


FIT_DESIGN = """
[spec]
alphabet = 3
length = 2
skills = ["reverse", "shift_up", "shift_down"]
routings = ["chain", "restart"]

[sft]
atomic = true
programs = ["chain:reverse > chain:shift_up", "chain:shift_up > restart:shift_down"]

[rl]
programs = ["restart:reverse > chain:shift_up", "chain:shift_down > chain:shift_down"]

[candidates]
depth = 2

[fit]
traces = {traces}
epsilon = 0.05
tables = "library"
steps = {steps}
restarts = 4
lr = 0.05
concentration = 1.5
confident = 0.8
"""
"""The tiny identifiable design of the fit step (every symbol shown at step 2 or in RL answers)."""


@dataclass(frozen=True)
class QuickstartConfig:
    """Sizes of the quickstart run: traces per split, the seed, the transformer's scale."""

    traces_per_split: int = 5000
    seed: int = 0
    scale: str = "cpu"
    transformer: bool = True


def run_quickstart(out: str | Path = "runs/quickstart", config: QuickstartConfig = QuickstartConfig()) -> Path:
    """Run the quickstart and return the path of ``report.md``."""
    out = Path(out)
    with writing(out, "quickstart folder"):
        return _quickstart(out, config)


GLOSSARY = """Terms: **G**, the generalisation set: the candidate programs whose answer on every input is
the same under every assignment of modules to symbols that fits the data (they are *determined*).
**L\\***, the horizon: the depth up to which comparing histories decides G. **Calibration gate**: SFT
trains until held-out seen programs and atoms reach set accuracies, so that RL arms start from a
comparable policy. **Paired SE**: the standard error of a difference between two models measured on
the same examples. The README and `docs/` explain each in full."""
"""The terms of the report, glossed once at its top."""


def _say(text: str) -> None:
    """One line of progress on stderr (the report is the result; this says the run is alive)."""
    print(f"[quickstart] {text}", file=sys.stderr, flush=True)


def _quickstart(out: Path, config: QuickstartConfig) -> Path:
    spec = Spec()
    design = make_design(spec, DesignConfig(seed=config.seed))
    _say(f"1/4 simulating {config.traces_per_split:,} traces per split of the default design ...")
    corpora = [
        simulate(
            spec,
            design.programs(split),
            config.traces_per_split,
            seed=config.seed + i,
            exposure=SPLIT_EXPOSURE[split],
            split=split,
        )
        for i, split in enumerate(design.splits)
    ]
    corpus = concat(corpora)
    summary = summarize(corpus)
    sft_cov = coverage(spec, design.programs("sft")).summary(spec)
    write_jsonl(corpus, out / "corpus.jsonl")
    write_json(out / "config.json", {"spec": spec.to_dict(), "quickstart": asdict(config)})
    write_json(out / "design.json", design.to_dict())
    write_json(out / "summary.json", {"corpus": summary, "sft_coverage": sft_cov})
    figure = plot_corpus_summary(summary, out / "corpus_counts.png", title="Quickstart corpus")
    lines = [
        "# hlsm quickstart",
        "",
        f"Library: {spec.num_skills} skills, {spec.num_routings} routings; states of length n={spec.length} "
        f"over A={spec.alphabet} letters (|X| = {spec.num_states:,}).",
        f"Design: training depth {design.config.train_depth if design.config else '?'}; "
        + ", ".join(f"{k} {len(v)} programs" for k, v in design.splits.items())
        + ".",
        f"SFT coverage: {sft_cov['skills_covered_in_compounds']}/{sft_cov['skills_total']} skills inside "
        f"compound traces, {sft_cov['pairs_covered']}/{sft_cov['pairs_total']} skill pairs, "
        f"{sft_cov['contexts_covered']}/{sft_cov['contexts_total']} (routing, skill) contexts.",
        "",
        "| split | exposure | traces |",
        "|---|---|---|",
        *(f"| {s} | {SPLIT_EXPOSURE[s]} | {c:,} |" for s, c in summary["split"].items()),
        "",
        "| depth | traces |",
        "|---|---|",
        *(f"| {d} | {c:,} |" for d, c in summary["depth"].items()),
        "",
        "| skill | uses |  | routing | uses |",
        "|---|---|---|---|---|",
    ]
    skill_rows = list(summary["skills"].items())
    routing_rows = list(summary["routings"].items())
    for i, (name, count) in enumerate(skill_rows):
        r = f"{routing_rows[i][0]} | {routing_rows[i][1]:,}" if i < len(routing_rows) else " | "
        lines.append(f"| {name} | {count:,} |  | {r} |")
    lines += [
        "",
        f"![corpus counts]({figure.name})",
        "",
        "Files: `corpus.jsonl` (one trace a line with its ground truth), `summary.json`, `design.json`, `config.json`.",
        "",
        "First traces:",
        "",
        "```",
        *(corpus.text(i) for i in range(0, len(corpus), max(1, len(corpus) // 6))),
        "```",
    ]
    lines = ["## 1. Simulate", "", *lines[2:]]
    _say("2/4 identify: which unseen and deeper programs the supports determine ...")
    identify_lines, decided = _identify_section(spec, design, corpora, out)
    lines += identify_lines
    _say("3/4 fit: bindings and tables of a tiny design by MAP with restarts ...")
    lines += _fit_section(config, out)
    headline = "the transformer: skipped (--no-transformer)."
    if config.transformer:
        minutes = "under a minute" if config.scale == "tiny" else "a few minutes"
        _say(f"4/4 transformer: SFT until the calibration gate, then atomic and compound RL ({minutes}) ...")
        transformer_lines, headline = _transformer_section(config, out)
        lines += transformer_lines
    smoke = (
        " At `--scale tiny` the transformer is a smoke test: its numbers check the path, not the claim."
        if config.scale == "tiny"
        else ""
    )
    top = [
        "# hlsm quickstart",
        "",
        "What this run shows: a support of module compositions (what SFT shows, what RL explores) decides "
        "which unseen compositions are determined, exactly (section 2) and for a fitted Bayesian model "
        "(section 3); a transformer trained on such supports is then measured against that (section 4)." + smoke,
        "",
        f"- {decided}",
        f"- {headline}",
        "",
        GLOSSARY,
        "",
    ]
    lines = top + lines
    report = out / "report.md"
    _say(f"done: {report}")
    write_text(report, "\n".join(lines) + "\n")
    return report


def _identify_section(spec: Spec, design: Any, corpora: list[Any], out: Path) -> tuple[list[str], str]:
    """The H-lib checker on the simulated SFT (golden) and RL (answer-only) traces."""
    from hlsm.identify.checker import identify

    data = concat([c for c, split in zip(corpora, design.splits, strict=True) if split in ("sft", "rl")])
    candidates = list(design.programs("unseen")) + list(design.programs("deeper"))
    ident = identify(spec, data, candidates, "lib")
    write_json(out / "identify.json", ident.to_dict())
    rows = []
    for depth in sorted({p.depth for p in candidates}):
        verdicts = [v for v in ident.verdicts if v.program.depth == depth]
        rows.append(f"| {depth} | {len(verdicts)} | {sum(v.identified for v in verdicts)} |")
    free = [s for s, ok in zip(spec.skill_symbols, ident.skill_identified, strict=True) if not ok]
    free += [s for s, ok in zip(spec.routing_symbols, ident.routing_identified, strict=True) if not ok]
    how = (
        "exact"
        if ident.exact
        else f"|X| = {spec.num_states:,} is too large to compare modules on every state and history, so they "
        "are compared on a probe set: every verdict has status `probes`, neither exact nor a bound "
        "(`theory/identifiability.md`, section 4, in the source distribution)"
    )
    from hlsm.app.compare import compare_regimes, comparison_table

    regimes = compare_regimes(["example:c4_rl_inside", "example:c5_rl_outside"], "lib")
    write_json(out / "regimes.json", regimes)
    inside, outside = regimes["regimes"]
    added = len(regimes["adds"][outside["name"]])
    decided = (
        f"the support decides: with the same SFT, RL on programs outside the SFT support determines {added} "
        f"unseen programs that RL inside it does not ({outside['identified']} against {inside['identified']}; "
        "section 2)."
    )
    lines = [
        "",
        "## 2. Identify",
        "",
        f"The H-lib checker on the {len(data):,} SFT and RL traces: {len(ident.generalisation_set)} of "
        f"{len(candidates)} unseen and deeper programs are determined (in G, horizon L* = {ident.horizon}); "
        f"symbols left free: {', '.join(free) or 'none'}. Comparisons: {how}. Details and a reason and status "
        "per program: `identify.json`.",
        "",
        "| depth | candidates | in G |",
        "|---|---|---|",
        *rows,
        "",
        "The default design's supports are rich enough to determine every candidate. What a support leaves "
        "undetermined shows on smaller libraries: two regimes with the same SFT, one whose RL programs lie "
        "inside the SFT support (`example:c4_rl_inside`) and one whose RL programs lie outside it "
        "(`example:c5_rl_outside`), judged by `hlsm identify --design example:c4_rl_inside --compare "
        "example:c5_rl_outside`:",
        "",
        comparison_table(regimes, limit=8),
        "",
        f"RL outside the support adds {added} determined programs: its answer-only traces use the `restart` "
        "routing, which no SFT trace shows, and so pin what it does; RL inside the support repeats what SFT "
        "already showed and adds nothing (theory C4). `regimes.json` has every row.",
    ]
    return lines, decided


def _fit_section(config: QuickstartConfig, out: Path) -> list[str]:
    """``hlsm fit`` on the tiny identifiable design :data:`FIT_DESIGN`."""
    from hlsm.app.fitrun import run_fit

    tiny = config.scale == "tiny"
    folder = out / "fit"
    folder.mkdir(parents=True, exist_ok=True)
    design = folder / "design.toml"
    design.write_text(FIT_DESIGN.format(traces=200 if tiny else 2000, steps=40 if tiny else 400))
    metrics = run_fit(design, folder, progress=False)
    rec, table = metrics.recovery, metrics.confusion
    free = [s for s, view in metrics.symbols.items() if not view.identified]
    if table is None:  # the design's data are noiseless, so the checker always gives verdicts
        raise RuntimeError("the quickstart fit has no exact verdicts to compare with")
    return [
        "",
        "## 3. Fit",
        "",
        f"`hlsm fit` on a tiny design (A = 3, n = 2, 3 skills, 2 routings; `fit/design.toml`): {metrics.traces:,} "
        f"traces, 4 restarts. Binding accuracy {rec.skill_binding_accuracy:.0%} (skills), "
        f"{rec.routing_binding_accuracy:.0%} (routings); learned corruption rate {rec.epsilon:.3f} (true 0.05); "
        f"symbols the fit leaves free: {', '.join(free) or 'none'}. On the {table['total']} depth-2 candidates the "
        f"Bayesian view and the exact checker agree on {table['agreement']:.0%}.",
        "",
        "![bindings](fit/tables.png)",
        "",
        "![predictive](fit/predictive.png)",
    ]


def _transformer_section(config: QuickstartConfig, out: Path) -> tuple[list[str], str]:
    """SFT, then RL on atomic or compound programs at equal budget, evaluated (one seed)."""
    from dataclasses import replace

    from hlsm.app.report import write_arm_outputs
    from hlsm.lm.experiment import Arm, run_and_summarise
    from hlsm.lm.presets import SCALE_SETTINGS, scale_preset

    preset = scale_preset(config.scale)
    scale = replace(preset, seeds=(config.seed,), workers=min(preset.workers, 2))
    arms = (
        Arm("sft"),
        Arm("sft+rl atomic", rl={"rl_kind": "atomic", "rl_inside": False}),
        Arm("sft+rl compound", rl={"rl_kind": "compound", "rl_inside": False}),
    )
    splits = {name: (name, None) for name in ("seen", "unseen", "deeper_3", "deeper_4", "atomic")}
    contrasts = [("sft+rl compound", "sft+rl atomic"), ("sft+rl compound", "sft")]
    results = run_and_summarise(arms, scale, out / "cache", splits, contrasts)
    folder = out / "transformer"
    checks = [
        ("sft+rl compound - sft+rl atomic", "unseen", "compound RL > atomic RL on unseen compositions"),
        ("sft+rl compound - sft", "unseen", "compound RL > SFT on unseen compositions"),
    ]
    write_arm_outputs(
        folder,
        {"scale": config.scale, "seed": config.seed},
        results,
        figure_title=f"SFT vs RL atomic vs RL compound ({config.scale} scale, 1 seed)",
        title="4. SFT, RL, evaluate",
        claim=f"A {scale.sft.model.n_layer}-layer transformer (d = {scale.sft.model.d_model}) trained from scratch "
        "by SFT on golden traces until it passes the calibration gate, then REINFORCE at equal budget on atomic "
        "programs or on compound programs outside the SFT support; greedy exact match of the final answer. One "
        "seed cannot measure seed-to-seed variance, so no prediction gets a verdict here: read the paired "
        "difference and how many paired SEs it lies from 0, and run `hlsm reproduce --scale cpu` "
        f"({len(SCALE_SETTINGS['cpu']['seeds'])} seeds) for verdicts.",
        checks=checks,
    )
    section = (folder / "report.md").read_text()
    main = results.contrasts["sft+rl compound - sft+rl atomic"]["unseen"].pooled
    headline = "the transformer: see section 4."
    if main.difference is not None and main.se:
        z = main.difference / main.se
        word = "more" if z > 3 else "not more"
        effect = (
            f"compound RL - atomic RL on unseen compositions is {100 * main.difference:+.1f} points, "
            f"{z:.1f} paired SEs from 0 ({word} than 3)"
        )
        section += f"\nThe main effect: {effect}.\n"
        headline = f"the transformer, one seed: {effect}; see section 4."
    return ["", *section.splitlines(), "", "![accuracy](transformer/accuracy.png)"], headline
