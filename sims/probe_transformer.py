"""Which skill does each symbol of the transformer execute, and does compound RL untangle it?

Question: probe the SFT, RL-atomic and RL-compound checkpoints of ``finding1_rl_data`` (same cache,
every seed) with ``hlsm probe``: sample each checkpoint's own traces (greedy and at temperature 1)
on the seen, unseen, depth-4 and atomic splits, fit context-dependent bindings (context = the
previous skill symbol) and read, per context group, the *entanglement index* (the share of the
steps some library module explains that the symbol's own skill does not reproduce; a tie with
another skill counts as the own skill's) and the *unexplained* share (steps no library module gives
from the model's own previous state).

Claim tested, with the prediction of each hypothesis class (theory/identifiability.md): SFT shows
the seen pairs; compound RL's answer-only rewards add the pairs of its programs (``rl`` group);
nothing shows the never-trained pairs. In both classes of the theory a symbol's binding does not
depend on its predecessor: in H-lib an identified symbol executes one library skill on all of
``X``, in H-tab a symbol is one table, pinned on every input the data show it, whichever step fed
that input. So where compound RL repairs a symbol on the pairs it practised, both predict the
repair on never-trained pairs too (H-tab where their inputs are drawn like the practised ones:
about three quarters of them in these designs, through bijective predecessors). Only a learner with
one table per (symbol, predecessor) pair, which is neither class, predicts a gain on practised
pairs alone. Atomic RL practises the atoms SFT already solves: every class predicts no effect on
the pairs. The designed test: a fourth arm runs compound RL on the design's RL programs less those
that use any of a few skills after step 1 (``LATE_EXCLUDED`` here, ``[rl] late_excluded``), so RL
practises those skills only as a first step. On the never-trained pairs of that arm, H-lib and
H-tab predict a repair where the step's symbol was practised at later steps and none where it was
not; a per-pair learner predicts neither. Every verdict is over seeds (per-seed differences, t
interval); each prediction row names what each class expects and which the transformer behaves
like. The never-trained effect is then cut by how the traces were drawn (greedy or at temperature
1), by the step (2, or later) and by the predecessor (a bijection of ``X`` or a many-to-one skill).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from hlsm.app.lmplots import plot_probe_arms, plot_probe_bindings, plot_probe_curve
from hlsm.app.probe import ProbeError, analyse
from hlsm.app.report import CLASSES, behaves_like, markdown_table, verdict_cell
from hlsm.infer.context import StepRecords
from hlsm.io import json_safe, write_json, write_text
from hlsm.lm.experiment import Arm, run_experiment
from hlsm.lm.policy import load_policy
from hlsm.lm.presets import scale_preset
from hlsm.lm.probe import ProbeTraces, sample_traces
from hlsm.lm.records import curve_checkpoints, read_curve
from hlsm.stats import PairedDifference, SeedVerdict, seed_verdict, t_interval

from ._common import preset_from_command_line

ARMS = (
    Arm("sft"),
    Arm("sft+rl atomic", rl={"rl_kind": "atomic", "rl_inside": False}),
    Arm("sft+rl compound", rl={"rl_kind": "compound", "rl_inside": False}),
)
"""The arms of ``finding1_rl_data`` (their runs are shared through the cache)."""

LATE_EXCLUDED = {"tiny": ("shift_down",), "cpu": ("rotate_right", "complement", "swap_halves")}
"""Skills the designed arm's RL practises only as a first step, per scale (gpu: cpu's)."""

DESIGNED = "sft+rl compound, late-excluded"
"""The designed arm (module docstring)."""


def designed_arm(scale: str) -> Arm:
    excluded = list(LATE_EXCLUDED.get(scale, LATE_EXCLUDED["cpu"]))
    return Arm(DESIGNED, rl={"rl_kind": "compound", "rl_inside": False, "late_excluded": excluded})


REPAIR = {"H-lib": "held", "H-tab": "held", "per-pair tables": "held"}
TRANSFER = {"H-lib": "held", "H-tab": "held", "per-pair tables": "no effect"}
NOTHING_NEW = {"H-lib": "no effect", "H-tab": "no effect", "per-pair tables": "no effect"}

CHECKS = (
    (
        "sft - sft+rl compound",
        "entanglement",
        "rl",
        "compound RL lowers entanglement on the pairs it practised",
        REPAIR,
    ),
    ("sft - sft+rl compound", "unexplained", "rl", "compound RL explains more of the steps on those pairs", REPAIR),
    ("sft+rl atomic - sft+rl compound", "entanglement", "rl", "compound RL below atomic RL on practised pairs", REPAIR),
    (
        "sft - sft+rl compound",
        "entanglement",
        "never",
        "compound RL lowers entanglement on never-trained pairs",
        TRANSFER,
    ),
    ("sft - sft+rl compound", "unexplained", "never", "compound RL explains more on never-trained pairs", TRANSFER),
    ("sft - sft+rl atomic", "unexplained", "rl", "atomic RL explains more on the practised pairs", NOTHING_NEW),
    ("sft - sft+rl compound", "entanglement", "depth 4", "compound RL lowers entanglement at depth 4", REPAIR),
)
"""(a - b, measure, context group, prediction, expected outcome per class): ``a - b > 0`` is the
direction stated; ``held`` / ``no effect`` is what each class of :data:`CLASSES` expects (a repair
where RL practised, a transfer to pairs it did not, nothing new from atoms SFT already solves; the
depth-4 steps mix practised and never-trained pairs, so every class expects some repair there)."""

STRATA = ("mode", "step", "predecessor")
"""How the never-trained effect is cut (module docstring)."""

DESIGNED_CHECKS = (
    (
        f"sft - {DESIGNED}",
        "unexplained",
        "never, practised late",
        "RL explains more on never-trained steps whose symbol it practised at later steps",
        TRANSFER,
    ),
    (
        f"sft - {DESIGNED}",
        "unexplained",
        "never, first step only",
        "... and on those whose symbol it practised only as a first step",
        NOTHING_NEW,
    ),
)
"""The designed test's predictions on the strata of :func:`designed_labels`."""


@dataclass(frozen=True)
class Config:
    scale: str = "cpu"
    seeds: tuple[int, ...] | None = None  # None: the scale's seeds
    examples: int = 128  # traces per split and mode
    replicates: int = 20  # bootstrap replicates per checkpoint
    curve_examples: int = 256  # traces per mode on the unseen split at each learning-curve checkpoint
    out: str = "runs/probe_transformer"
    cache: str | None = None  # None: <out>/../cache, shared with the finding sims

    @classmethod
    def preset(cls, scale: str) -> Config:
        if scale == "tiny":
            return cls(scale="tiny", examples=8, replicates=3, curve_examples=8)
        return cls(scale=scale)


def _unseen(result: dict[str, Any], measure: str) -> float | None:
    """The records-weighted mean of a measure over the ``rl`` and ``never`` groups (unseen pairs)."""
    groups = [result["groups"][g] for g in ("rl", "never") if g in result["groups"]]
    pairs = [(g["records"], g[measure]) for g in groups if g[measure] is not None and g[measure] == g[measure]]
    total = sum(n for n, _ in pairs)
    return sum(n * v for n, v in pairs) / total if total else None


def _subset(traces: ProbeTraces, split: str) -> ProbeTraces:
    keep = [i for i, s in enumerate(traces.split) if s == split]
    return replace(
        traces,
        programs=tuple(traces.programs[i] for i in keep),
        states=tuple(traces.states[i] for i in keep),
        complete=tuple(traces.complete[i] for i in keep),
        split=tuple(traces.split[i] for i in keep),
        mode=tuple(traces.mode[i] for i in keep),
    )


def main(cfg: Config) -> dict[str, Any]:
    scale = scale_preset(cfg.scale)
    scale = replace(scale, seeds=cfg.seeds or scale.seeds)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", asdict(cfg))
    cache = cfg.cache or str(out.parent / "cache")
    arms = (*ARMS, designed_arm(cfg.scale))
    runs = run_experiment(arms, scale, cache)  # finding1_rl_data's arms are cached; the designed arm's RL runs here
    excluded = designed_arm(cfg.scale).rl["late_excluded"]  # type: ignore[index]
    measures: dict[str, dict[int, dict[str, Any]]] = {a.name: {} for a in arms}
    for arm in arms:
        for seed, evaluation in runs[arm.name].items():
            policy = load_policy(evaluation["run"])
            traces = sample_traces(policy, examples=cfg.examples, seed=seed)
            designed = excluded if arm.name in ("sft", DESIGNED) else None
            strata = partial(_labels, policy, traces, designed)
            result = analyse(policy.spec, traces, replicates=cfg.replicates, seed=seed, strata=strata)
            deeper = [s for s in set(traces.split) if s.startswith("deeper_")]
            depth4 = (
                analyse(policy.spec, _subset(traces, sorted(deeper)[0]), replicates=2, seed=seed) if deeper else None
            )
            measures[arm.name][seed] = {
                "run": evaluation["run"],
                "groups": result["groups"],
                "substitutions": [b for b in result["bindings"] if b["substitution"]],
                "depth 4": None if depth4 is None else {m: _unseen(depth4, m) for m in ("entanglement", "unexplained")},
                "records": result["records"],
                "ambiguous": result["ambiguous_records"],
                "strata": result.get("strata", {}),
                "letters": {
                    "hamming": result["letters"]["hamming"],
                    "near_misses": len(result["letters"]["near_misses"]),
                    "examples": sorted(result["letters"]["near_misses"], key=lambda m: -m["steps"])[:5],
                },
            }
            if seed == min(runs[arm.name]):
                name = arm.name.replace("+", "_").replace(",", "").replace(" ", "_")
                shown = {"checkpoint": {"kind": f"{arm.name} (seed {seed})", "step": policy.step}, **result}
                plot_probe_bindings(policy.spec, shown, out / f"bindings_{name}.png")
    summary = _summary(measures)
    checks = [_check(measures, *c) for c in CHECKS]
    checks += [_check(measures, *c, stratum="designed") for c in DESIGNED_CHECKS]
    stratified = _stratified(measures)
    calibration = {str(seed): runs["sft"][seed].get("calibration") for seed in sorted(runs["sft"])}
    curve = _curve(runs, cfg)
    results = json_safe(
        {
            "config": asdict(cfg),
            "calibration": calibration,
            "measures": measures,
            "summary": summary,
            "checks": checks,
            "predictions": [
                {"contrast": f"{c['contrast']}, {c['measure']} on {c['group']}"}
                | {
                    k: c[k]
                    for k in ("prediction", "seeds", "difference", "low", "high", "margin", "detectable", "outcome")
                }
                | {"classes": c["classes"], "behaves_like": c["behaves_like"]}
                for c in checks
            ],
            "stratified": stratified,
            "curve": curve,
        }
    )
    write_json(out / "results.json", results)
    plot_probe_arms(results, out / "entanglement.png")
    if curve:
        plot_probe_curve(results, out / "entanglement_curve.png")
    write_text(out / "report.md", report(results))
    return results


def _curve(runs: dict[str, dict[int, dict[str, Any]]], cfg: Config) -> dict[str, Any]:
    """Per RL arm, seed and learning-curve checkpoint: the probe on the unseen split (empty when the
    runs kept no curve checkpoints, i.e. they predate them)."""
    out: dict[str, Any] = {}
    for arm in ARMS:
        if arm.rl is None:
            continue
        for seed, evaluation in runs[arm.name].items():
            fraction = {p.traces: p.fraction for p in read_curve(evaluation["run"])}
            for traces, path in curve_checkpoints(evaluation["run"]):
                policy = load_policy(path)
                traces_drawn = sample_traces(policy, splits=["unseen"], examples=cfg.curve_examples, seed=seed)
                try:
                    result = analyse(policy.spec, traces_drawn, replicates=2, seed=seed)
                except ProbeError:  # nothing readable at this point of the run (tiny models early on)
                    result = {"groups": {}}
                point = {
                    g: {m: v[m] for m in ("entanglement", "unexplained", "records")}
                    for g, v in result["groups"].items()
                }
                entry = {"traces": traces, "fraction": fraction.get(traces), "groups": point}
                out.setdefault(arm.name, {}).setdefault(str(seed), []).append(entry)
    return out


def _labels(
    policy: Any, traces: ProbeTraces, excluded: list[str] | None, records: StepRecords, groups: list[str]
) -> dict[str, list[str]]:
    """Every cut of ``records`` the experiment reports: :func:`strata_labels`, and with ``excluded``
    the designed test's :func:`designed_labels`."""
    out = strata_labels(policy.spec, traces, records, groups)
    if excluded is not None:
        out["designed"] = designed_labels(policy, traces, excluded, records)
    return out


def designed_labels(policy: Any, traces: ProbeTraces, excluded: list[str], records: StepRecords) -> list[str]:
    """Per step record of ``traces`` (``records``): its context group when RL practises the design's RL
    programs less those with an ``excluded`` skill after step 1, and whether a kept RL program uses the
    step's symbol after step 1 (``"never, practised late"``), the symbol is excluded (``"never, first
    step only"``) or neither
    (``"never, not in RL after step 1"``)."""
    from hlsm.design import coverage, make_design

    spec = policy.spec
    late = {spec.skills.index(name) for name in excluded}
    kept = [p for p in make_design(spec, policy.design).programs("rl") if not late & set(p.skills[1:])]
    used = {k for p in kept for k in p.skills[1:]}
    designed = replace(traces, rl_pairs=frozenset(coverage(spec, kept).pairs) - traces.seen_pairs)
    steps = zip(records.trace.tolist(), records.step.tolist(), strict=True)
    groups = [designed.pair_group(traces.programs[t], step) for t, step in steps]

    def kind(symbol: int) -> str:
        return "practised late" if symbol in used else "first step only" if symbol in late else "not in RL after step 1"

    return [
        group if step == 1 else f"{group}, {kind(symbol)}"
        for symbol, step, group in zip(records.symbol.tolist(), records.step.tolist(), groups, strict=True)
    ]


def _value(m: dict[str, Any], measure: str, group: str, stratum: str | None = None) -> float | None:
    if stratum is not None:
        cell = m.get("strata", {}).get(stratum, {}).get(group)
        return None if cell is None or cell[measure] != cell[measure] else cell[measure]
    if group == "depth 4":
        return None if m["depth 4"] is None else m["depth 4"][measure]
    g = m["groups"].get(group)
    return None if g is None else g[measure]


def _summary(measures: dict[str, dict[int, dict[str, Any]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for arm, by_seed in measures.items():
        for measure in ("entanglement", "unexplained"):
            for group in ("first", "seen", "rl", "never", "depth 4"):
                values = [_value(m, measure, group) for m in by_seed.values()]
                out.setdefault(arm, {}).setdefault(measure, {})[group] = t_interval(values).to_dict()
    return out


def strata_labels(spec: Any, traces: ProbeTraces, records: StepRecords, groups: list[str]) -> dict[str, list[str]]:
    """Per step record of ``traces`` (:func:`hlsm.app.probe.probe_records`, with its context group):
    the group cut by :data:`STRATA` (``"never, temperature 1"``, ``"never, step 3+"``, ``"never, after
    many-to-one"``, ...)."""
    bijective = [m.bijective for m in spec.skill_modules]
    out: dict[str, list[str]] = {name: [] for name in STRATA}
    for t, step, group in zip(records.trace.tolist(), records.step.tolist(), groups, strict=True):
        program = traces.programs[t]
        out["mode"].append(f"{group}, {'greedy' if traces.mode[t] == 'greedy' else 'temperature 1'}")
        out["step"].append(group if step == 1 else f"{group}, {'step 2' if step == 2 else 'step 3+'}")
        before = "start" if step == 1 else "bijective" if bijective[program.skills[step - 2]] else "many-to-one"
        out["predecessor"].append(f"{group}, after {before}")
    return out


def _stratified(measures: dict[str, dict[int, dict[str, Any]]]) -> list[dict[str, Any]]:
    """SFT - compound RL on every stratum of the ``rl`` and ``never`` groups, both measures, over seeds."""
    a, b = "sft", "sft+rl compound"
    rows = []
    for name in STRATA:
        labels = sorted({label for m in measures[a].values() for label in m["strata"].get(name, {})})
        for label in [x for x in labels if x.startswith(("rl,", "never,"))]:
            for measure in ("unexplained", "entanglement"):
                diffs, records = [], []
                for seed in sorted(set(measures[a]) & set(measures[b])):
                    cells = [measures[arm][seed]["strata"].get(name, {}).get(label) for arm in (a, b)]
                    values = [None if c is None else c[measure] for c in cells]
                    ok = all(v is not None and v == v for v in values)
                    diffs.append(PairedDifference(0, values[0] - values[1] if ok else None, None))  # type: ignore[operator]
                    records.append(0 if cells[0] is None else cells[0]["records"])
                verdict = seed_verdict(diffs)
                rows.append(
                    {"stratum": name, "label": label, "measure": measure, "records": records}
                    | {"per_seed": [d.difference for d in diffs], **verdict.to_dict()}
                )
    return rows


def _check(
    measures: dict[str, dict[int, dict[str, Any]]],
    contrast: str,
    measure: str,
    group: str,
    prediction: str,
    classes: dict[str, str],
    stratum: str | None = None,
) -> dict[str, Any]:
    a, b = contrast.split(" - ")
    diffs = []
    for seed in sorted(set(measures[a]) & set(measures[b])):
        va, vb = (_value(measures[x][seed], measure, group, stratum) for x in (a, b))
        diffs.append(PairedDifference(0, va - vb if va is not None and vb is not None else None, None))
    verdict = seed_verdict(diffs)
    return {
        "contrast": contrast,
        "measure": measure,
        "group": group,
        "prediction": prediction,
        "classes": dict(classes),
        "behaves_like": behaves_like(classes, verdict.outcome),
        "per_seed": [d.difference for d in diffs],
        **verdict.to_dict(),
    }


def _letter_rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    rows = []
    for arm, by_seed in results["measures"].items():
        cells = []
        for key in ("within_1", "within_2"):
            values = []
            for m in by_seed.values():
                h = m["letters"]["hamming"]
                steps = sum(h[g]["steps"] for g in ("rl", "never") if g in h)
                if steps:
                    values.append(sum(h[g][key] * h[g]["steps"] for g in ("rl", "never") if g in h) / steps)
            cells.append(f"{100 * sum(values) / len(values):.0f}%" if values else "-")
        named = [m["letters"]["near_misses"] for m in by_seed.values()]
        rows.append((arm, *cells, " / ".join(str(n) for n in named)))
    return rows


def _stratified_lines(results: dict[str, Any]) -> list[str]:
    rows = []
    for r in results.get("stratified", []):
        per = " / ".join(f"{100 * d:+.1f}" for d in r["per_seed"] if d is not None) or "-"
        mean = (
            "-" if r["low"] is None else f"{100 * r['difference']:+.1f} [{100 * r['low']:+.1f}, {100 * r['high']:+.1f}]"
        )
        steps = round(sum(r["records"]) / max(len(r["records"]), 1))
        rows.append((r["label"], r["measure"], steps, per, mean, f"**{r['outcome']}**"))
    if not rows:
        return []
    return [
        "\nThe effect of compound RL cut by how the traces were drawn, by the step and by the predecessor (SFT -"
        " compound RL, points, on the same fit per checkpoint; steps: the SFT checkpoint's records per seed):\n",
        markdown_table(("context, stratum", "measure", "steps", "per seed", "mean [95% CI]", "verdict"), rows),
    ]


def report(results: dict[str, Any]) -> str:
    """The markdown section of ``docs/results.md`` (from the saved results only)."""

    def cell(iv: dict[str, Any]) -> str:
        if iv["mean"] is None:
            return "-"
        if iv["low"] is None:
            return f"{100 * iv['mean']:.1f}"
        return f"{100 * iv['mean']:.1f} [{100 * iv['low']:.1f}, {100 * iv['high']:.1f}]"

    groups = ("first", "seen", "rl", "never", "depth 4")
    gate = results.get("calibration") or {}
    lines = [
        f"## {(__doc__ or '').splitlines()[0]} (`sims/{Path(__file__).name}`)\n",
        (__doc__ or "\n\n").split("\n\n")[2].replace("\n", " ") + "\n",
        "The checkpoints are `finding1_rl_data`'s (seeds "
        + ", ".join(gate)
        + "); every SFT checkpoint passed its calibration gate (greedy seen / atomic accuracy at the"
        " stopping step: "
        + "; ".join(
            f"seed {s}: {100 * c['seen']:.1f} / {100 * c['atomic']:.1f} @ {c['step']:,}" if c else f"seed {s}: no gate"
            for s, c in gate.items()
        )
        + ").\n",
        "Entanglement and unexplained share (points, mean over seeds [95% t interval]) by context group:",
        "`first` step, `seen` SFT pair, `rl` pair practised by compound RL only, `never`-trained pair, and the",
        "unseen-pair steps of depth-4 programs.\n",
    ]
    for measure in ("entanglement", "unexplained"):
        rows = [(arm, *(cell(results["summary"][arm][measure][g]) for g in groups)) for arm in results["summary"]]
        lines += [f"**{measure}**\n", markdown_table(("arm", *groups), rows), ""]
    check_rows = []
    for c in results["checks"]:
        per = " / ".join(f"{100 * d:+.1f}" for d in c["per_seed"] if d is not None) or "-"
        if c["difference"] is None or c["low"] is None:
            mean = "-"
        else:
            mean = f"{100 * c['difference']:+.1f} [{100 * c['low']:+.1f}, {100 * c['high']:+.1f}]"
        detectable = "-" if c["detectable"] is None else f"{100 * c['detectable']:.1f}"
        expected = c.get("classes", {})
        check_rows.append(
            (
                f"{c['contrast']}, {c['measure']} on {c['group']}",
                c["prediction"],
                *(expected.get(k, "-") for k in CLASSES),
                per,
                mean,
                detectable,
                verdict_cell(SeedVerdict.from_dict(c)),
                behaves_like(c.get("classes", {}), c["outcome"]),
            )
        )
    lines += [
        "Predictions (a - b > 0 in the stated direction; what each class expects, from the docstring's",
        "derivation; per-seed differences in points; verdict from the t interval over seeds, ±3-point",
        "equivalence margin; *behaves like*: the classes whose expectation the verdict matches):\n",
        markdown_table(
            ("contrast", "prediction", *CLASSES, "per seed", "mean [95% CI]", "detectable", "verdict", "behaves like"),
            check_rows,
        ),
        *_stratified_lines(results),
        "\nWhat the probe cannot see (theory C3): a step on which two library skills agree (a many-to-one",
        "skill, or an input both fix) does not say which ran; its mass is split.\n",
        "One level down (`hlsm.infer.letters`): the unexplained steps of unseen pairs (`rl` and `never`) against",
        "the symbol's own skill on the model's own input, letters that differ (share within 1 and 2 of 6,",
        "mean over seeds), and how many (symbol, context, position) near misses the per-letter fit names:\n",
        markdown_table(("arm", "within 1 letter", "within 2 letters", "near misses named"), _letter_rows(results)),
        "",
        "![entanglement by arm](entanglement.png)\n",
        *(
            [
                "Along the RL budget (the runs' learning-curve checkpoints, unseen depth-3 programs; mean over seeds,"
                " 95% t interval):\n",
                "![entanglement along the budget](entanglement_curve.png)\n",
            ]
            if results.get("curve")
            else [
                "(No learning-curve checkpoints in these runs: they predate them; rerun the RL runs for the curve.)\n"
            ]
        ),
        "![bindings, SFT](bindings_sft.png)\n",
        "![bindings, RL atomic](bindings_sft_rl_atomic.png)\n",
        "![bindings, RL compound](bindings_sft_rl_compound.png)\n",
        "![bindings, RL compound without late steps of some skills](bindings_sft_rl_compound_late-excluded.png)\n",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    res = main(preset_from_command_line(Config, __doc__))
    print(json.dumps(res["checks"], indent=2))
