"""Figures of the transformer experiments, drawn from saved results only: accuracy per arm, the
dose response, learning curves and the probe's bindings, arms and curve (the other figures are in
:mod:`hlsm.app.plots`, whose :func:`~hlsm.app.plots.save_figure` writes every one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hlsm.app.plots import plt, save_figure


def plot_arm_accuracy(
    results: dict[str, Any], path: str | Path, title: str, published: dict[str, dict[str, float]] | None = None
) -> Path:
    """Grouped bars: accuracy per evaluation label (groups) and arm (bars), from a saved experiment.

    ``results`` is a saved ``results.json`` (:class:`hlsm.lm.summary.ExperimentSummary`): bars
    are the across-seed means, dots the seeds; error bars are the 95% t interval across seeds with
    3 or more seeds, and +-2 pooled binomial SEs (``sqrt(sum SE_s^2) / k``, the examples' noise, not
    the seed-to-seed spread) with fewer, where the t interval is too wide to read. ``published``
    (``{arm: {label: accuracy}}``) draws reference values as black ticks.
    """
    from hlsm.lm.summary import ExperimentSummary
    from hlsm.stats import pooled_se

    saved = ExperimentSummary.from_dict(results)
    summary, per_seed = saved.summary, saved.per_seed
    arms = list(summary)
    labels = list(next(iter(summary.values())))
    width = 0.8 / max(len(arms), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(labels) * max(1, len(arms)) / 2), 4.2))
    for i, arm in enumerate(arms):
        xs = [j + (i - (len(arms) - 1) / 2) * width for j in range(len(labels))]
        means = [100 * (summary[arm][lab].mean or 0.0) for lab in labels]
        lows = [summary[arm][lab].low for lab in labels]
        highs = [summary[arm][lab].high for lab in labels]
        err = [  # the t interval, clipped to [0, 100]
            [m - max(0.0, 100 * lo) if lo is not None else 0.0 for m, lo in zip(means, lows, strict=True)],
            [min(100.0, 100 * hi) - m if hi is not None else 0.0 for m, hi in zip(means, highs, strict=True)],
        ]
        if len(per_seed[arm]) < 3:
            pooled = [200 * pooled_se([row[lab].se or 0.0 for row in per_seed[arm].values()]) for lab in labels]
            err = [pooled, pooled]
        ax.bar(xs, means, width, yerr=err, capsize=3, label=arm, alpha=0.8)
        for j, lab in enumerate(labels):
            seeds = [100 * (row[lab].accuracy or 0.0) for row in per_seed[arm].values() if row[lab].n]
            ax.plot([xs[j]] * len(seeds), seeds, "k.", markersize=4)
            ref = (published or {}).get(arm, {}).get(lab)
            if ref is not None:
                ax.plot([xs[j] - width / 2, xs[j] + width / 2], [100 * ref] * 2, "k-", linewidth=2)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel("greedy exact match (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_dose_response(results: dict[str, Any], path: str | Path, published: dict[str, dict[str, float]]) -> Path:
    """Two panels from a saved ``hlsm.sims.dose_response`` experiment.

    Left: the gain of atomic and compound RL over SFT on the depth split (points; the 95% t interval
    over seeds of the per-seed paired differences) against what SFT left unlearnt in the atoms (1 -
    its atomic accuracy, mean over seeds), one point per SFT level, with the equivalence margin
    shaded. Right: accuracy on the depth split after each RL arm against SFT's own, with the diagonal
    (no gain) and ``published`` (``{"sft" | "+rl atomic" | "+rl compound": {split: accuracy}}``)
    placed at its SFT accuracy.
    """
    from hlsm.lm.summary import ExperimentSummary

    saved = ExperimentSummary.from_dict(results)
    levels, split = saved.extra["levels"], saved.extra["depth_split"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4))
    margin = 100 * next(iter(next(iter(saved.contrasts.values())).values())).verdict.margin
    left.axhspan(-margin, margin, color="0.9", label=f"no effect (within ±{margin:.0f} points)")
    left.axhline(0, color="0.5", linewidth=0.8)
    for kind, colour in (("atomic", "tab:blue"), ("compound", "tab:red")):
        xs: list[float] = []
        ys: list[float] = []
        err: list[list[float]] = [[], []]
        names: list[str] = []
        for level in levels:
            sft = saved.summary[f"sft @{level}"]["atomic"].mean
            gain = saved.contrasts[f"+rl {kind} @{level} - sft @{level}"][split].interval
            if sft is None or gain.mean is None:
                continue
            xs.append(100 * (1 - sft))
            ys.append(100 * gain.mean)
            err[0].append(100 * (gain.mean - (gain.low if gain.low is not None else gain.mean)))
            err[1].append(100 * ((gain.high if gain.high is not None else gain.mean) - gain.mean))
            names.append(level)
        left.errorbar(xs, ys, yerr=err, fmt="o-", color=colour, capsize=3, label=f"{kind} RL - SFT")
        for x, y, name in zip(xs, ys, names, strict=True):
            left.annotate(f"SFT {name}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        sft_acc = [saved.summary[f"sft @{level}"][split].mean for level in levels]
        rl_acc = [saved.summary[f"+rl {kind} @{level}"][split] for level in levels]
        pts = [(100 * a, r) for a, r in zip(sft_acc, rl_acc, strict=True) if a is not None and r.mean is not None]
        right.errorbar(
            [a for a, _ in pts],
            [100 * r.mean for _, r in pts],  # type: ignore[operator]
            yerr=[
                [100 * (r.mean - (r.low if r.low is not None else r.mean)) for _, r in pts],  # type: ignore[operator]
                [100 * ((r.high if r.high is not None else r.mean) - r.mean) for _, r in pts],  # type: ignore[operator]
            ],
            fmt="o-",
            color=colour,
            capsize=3,
            label=f"SFT + {kind} RL (ours)",
        )
        ref, base = published.get(f"+rl {kind}", {}).get(split), published.get("sft", {}).get(split)
        if ref is not None and base is not None:
            right.plot([100 * base], [100 * ref], "*", color=colour, markersize=13, markeredgecolor="k",
                       label=f"SFT + {kind} RL (published)")  # fmt: skip
    shown = [100 * (1 - (saved.summary[f"sft @{level}"]["atomic"].mean or 1.0)) for level in levels]
    left.set_xlim(-0.5, max(shown + [1.0]) * 1.2 + 1.0)  # room for the level labels
    left.set_xlabel("what SFT left unlearnt: 1 - SFT atomic accuracy (%)")
    left.set_ylabel(f"gain over SFT on {split} (points)")
    left.set_title(f"RL's gain on {split} against SFT's atom error", fontsize=10)
    left.legend(fontsize=8, loc="upper left")
    left.grid(alpha=0.3)
    top = max([100.0 * (s.high or 0) for arm in saved.summary.values() for s in [arm[split]]] + [50.0])
    right.plot([0, top], [0, top], color="0.6", linestyle="--", linewidth=1, label="no gain (RL = SFT)")
    right.set_xlabel(f"SFT accuracy on {split} (%)")
    right.set_ylabel(f"accuracy after RL on {split} (%)")
    right.set_title(f"{split} accuracy after RL; the published table at its SFT accuracy", fontsize=10)
    right.legend(fontsize=8, loc="lower right")
    right.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_learning_curves(
    curves: dict[str, dict[str, list[dict[str, Any]]]],
    budget: dict[str, Any] | None,
    path: str | Path,
    splits: tuple[str, ...] = ("unseen", "deeper_4"),
) -> Path:
    """Accuracy against sampled RL traces per arm, beside the theory's G against RL budget.

    ``curves`` is ``{arm: {seed: [CurvePoint dict]}}`` (:class:`hlsm.lm.records.CurvePoint`): one
    panel per split of ``splits``, a line per arm through the across-seed means at each point (x:
    the mean traces sampled by then), faint lines per seed. ``budget`` (``sims/verify_claims.py``'s
    saved ``budget`` part) adds a panel: mean |G| / candidates against the RL budget in programs, for
    the H-lib class with SFT covering every atom; None leaves it out.
    """
    # the first key found in an arm's name sets its style ("inside" before "compound")
    styles = {"inside": ("tab:orange", "--"), "outside": ("tab:red", "-"), "atomic": ("tab:blue", "-")}
    styles |= {"compound": ("tab:red", "-")}
    panels = len(splits) + (budget is not None)
    fig, axes = plt.subplots(1, panels, figsize=(4.6 * panels, 4.0))
    axes = list(axes) if panels > 1 else [axes]
    for ax, split in zip(axes, splits, strict=False):
        for arm, by_seed in curves.items():
            colour, line = next((v for k, v in styles.items() if k in arm), ("tab:grey", "-"))
            fractions = sorted({p["fraction"] for pts in by_seed.values() for p in pts})
            xs, ys = [], []
            for f in fractions:
                at = [p for pts in by_seed.values() for p in pts if p["fraction"] == f and split in p["splits"]]
                if at:
                    xs.append(sum(p["traces"] for p in at) / len(at) / 1000)
                    ys.append(100 * sum(p["splits"][split]["accuracy"] for p in at) / len(at))
            ax.plot(xs, ys, line, color=colour, marker="o", label=f"{arm} (mean of {len(by_seed)} seeds)")
            for pts in by_seed.values():
                seed = [(p["traces"] / 1000, 100 * p["splits"][split]["accuracy"]) for p in pts if split in p["splits"]]
                ax.plot([x for x, _ in seed], [y for _, y in seed], line, color=colour, alpha=0.25, linewidth=0.8)
        ax.set_xlabel("RL traces sampled (thousands)")
        ax.set_ylabel(f"greedy exact match on {split} (%)")
        ax.set_title(f"Transformer: {split}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if budget is not None:
        ax = axes[-1]
        budgets = budget["budgets"]
        for (kind, where), (colour, line) in {
            ("atomic", "outside"): ("tab:blue", "-"),
            ("compound", "inside"): ("tab:orange", "--"),
            ("compound", "outside"): ("tab:red", "-"),
        }.items():
            series = budget["mean_fraction"][f"all atoms|lib|{kind}|{where}"]
            ax.plot(
                budgets, [series[str(b)] for b in budgets], line, color=colour, marker="o", label=f"RL {kind}, {where}"
            )
        ax.set_xlabel("RL budget (programs, answer-only, population limit)")
        ax.set_ylabel("mean |G| / candidates")
        ax.set_title("Theory (H-lib, tiny designs): generalisation set", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_probe_bindings(spec: Any, result: dict[str, Any], path: str | Path) -> Path:
    """Per symbol (rows) and context (columns): binding mass on the symbol's own skill, and the unexplained share.

    ``result`` is ``hlsm probe``'s ``probe.json``. Each observed cell is marked with its context group
    (``f`` first step, ``s`` SFT pair, ``r`` pair practised by RL only, ``n`` never trained); blank
    cells were never observed, or (left) fewer than 3 of their steps are explained by any module.
    """
    import numpy as np

    symbols = list(spec.skill_symbols)
    contexts = ["start", *symbols]
    own = np.full((len(symbols), len(contexts)), np.nan)
    unexplained = np.full_like(own, np.nan)
    marks: dict[tuple[int, int], str] = {}
    for b in result["bindings"]:
        i, j = symbols.index(b["symbol"]), contexts.index(b["context"])
        own[i, j] = np.nan if b["own"] is None else b["own"]
        unexplained[i, j] = b["unexplained"]
        marks[(i, j)] = b["group"][0]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.6))
    labels = [f"{s} ({n})" for s, n in zip(symbols, spec.skills, strict=True)]
    for ax, mat, title, cmap in (
        (axes[0], own, "binding mass on the symbol's own skill\n(blank: < 3 explained steps)", "RdYlGn"),
        (axes[1], unexplained, "outputs no library module explains", "Greys"),
    ):
        image = ax.imshow(mat, vmin=0, vmax=1, cmap=cmap)
        ax.set_yticks(range(len(symbols)), labels, fontsize=7)
        ax.set_xticks(range(len(contexts)), contexts, rotation=90, fontsize=7)
        ax.set_xlabel("context: the previous step's skill symbol")
        ax.set_title(title, fontsize=10)
        for (i, j), m in marks.items():
            tone = "white" if (cmap == "Greys" and mat[i, j] > 0.5) else "black"
            ax.text(j, i, m, ha="center", va="center", fontsize=6, color=tone)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    groups = result["groups"]
    summary = ", ".join(
        f"{g} {v['entanglement']:.2f}" if v["entanglement"] == v["entanglement"] else f"{g} -"
        for g, v in groups.items()
    )
    fig.suptitle(
        f"Probe of a {result.get('checkpoint', {}).get('kind', '')} checkpoint: entanglement by context ({summary}); "
        "cells: f first, s SFT pair, r RL pair, n never trained\n"
        f"rows: the {len(symbols)} skills of the checkpoint's own library (its [spec]: A = {spec.alphabet}, "
        f"n = {spec.length}), each symbol with the skill it denotes; columns: the step before",
        fontsize=9,
    )
    fig.tight_layout()
    return save_figure(fig, path)


def plot_probe_arms(results: dict[str, Any], path: str | Path) -> Path:
    """Entanglement and unexplained share by context group for each arm, mean over seeds with 95% t intervals.

    ``results`` is ``sims/probe_transformer.py``'s ``results.json`` (key ``summary``).
    """
    import numpy as np

    groups = ("first", "seen", "rl", "never", "depth 4")
    arms = list(results["summary"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    width = 0.8 / max(1, len(arms))
    for ax, measure in zip(axes, ("entanglement", "unexplained"), strict=True):
        for i, arm in enumerate(arms):
            rows = [results["summary"][arm][measure][g] for g in groups]
            means = np.array([np.nan if r["mean"] is None else r["mean"] for r in rows])
            low = np.array([np.nan if r["low"] is None else r["mean"] - r["low"] for r in rows])
            high = np.array([np.nan if r["high"] is None else r["high"] - r["mean"] for r in rows])
            xs = np.arange(len(groups)) + (i - (len(arms) - 1) / 2) * width
            ax.bar(xs, means, width, label=arm, yerr=np.nan_to_num(np.vstack([low, high])), capsize=3)
        ax.set_xticks(range(len(groups)), groups)
        ax.set_xlabel("context of the step")
        ax.set_title(
            "binding mass off the symbol's own skill"
            if measure == "entanglement"
            else "steps no library module explains",
            fontsize=10,
        )
        ax.set_ylim(0, 1)
    axes[0].set_ylabel("share (mean over seeds, 95% t interval)")
    axes[0].legend(fontsize=8)
    fig.suptitle("Probe of the transformer: first step, SFT pairs, RL-practised pairs, never-trained pairs, depth 4")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_probe_curve(results: dict[str, Any], path: str | Path) -> Path:
    """The probe along the RL budget: entanglement and unexplained share on RL-practised and never-trained
    pairs against sampled traces, per RL arm, mean over seeds with 95% t intervals.

    ``results`` is ``sims/probe_transformer.py``'s ``results.json`` (key ``curve``).
    """
    from hlsm.stats import t_interval

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    styles = {"rl": "-", "never": "--"}
    for ax, measure in zip(axes, ("entanglement", "unexplained"), strict=True):
        for i, (arm, by_seed) in enumerate(results["curve"].items()):
            colour = f"C{i + 1}"
            # seeds reach a budget fraction after slightly different trace counts: align on the fraction
            fractions = sorted({p["fraction"] for pts in by_seed.values() for p in pts if p["fraction"] is not None})
            for group, style in styles.items():
                traces, means, lows, highs = [], [], [], []
                for f in fractions:
                    at = [p for pts in by_seed.values() for p in pts if p["fraction"] == f]
                    iv = t_interval([p["groups"][group][measure] for p in at if group in p["groups"]])
                    traces.append(sum(p["traces"] for p in at) / len(at))
                    means.append(float("nan") if iv.mean is None else iv.mean)
                    lows.append(float("nan") if iv.low is None else iv.low)
                    highs.append(float("nan") if iv.high is None else iv.high)
                xs = [t / 1000 for t in traces]
                ax.plot(xs, means, style, color=colour, marker="o", markersize=3, label=f"{arm}, {group} pairs")
                ax.fill_between(xs, lows, highs, color=colour, alpha=0.12)
        ax.set_xlabel("RL traces sampled (thousands)")
        ax.set_title(
            "binding mass off the own skill" if measure == "entanglement" else "unexplained steps", fontsize=10
        )
        ax.set_ylim(0, 1)
    axes[0].set_ylabel("share (mean over seeds)")
    axes[0].legend(fontsize=7)
    fig.suptitle("Probe along the RL budget: unseen depth-3 programs, pairs practised by RL vs never trained")
    fig.tight_layout()
    return save_figure(fig, path)
