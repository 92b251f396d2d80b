"""Figures, drawn from saved results only (records read back from JSON or ``params.pt``).

Each function draws one figure from a saved record; what it computes is presentation only (an
error bar from saved standard errors, a permutation already saved): the analyses live with the code
that saves the results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from hlsm.io import atomic_path  # noqa: E402


def save_figure(fig: Any, path: str | Path) -> Path:
    """Write a figure as PNG (creating its folder) and close it."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:  # a full disk leaves no partial figure
            fig.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(fig)
    return path


def plot_corpus_summary(summary: dict[str, Any], path: str | Path, title: str = "Corpus") -> Path:
    """Four panels: skill uses, routing uses, traces per depth, traces per split.

    ``summary`` is the output of :func:`hlsm.simulate.summarize` (as saved in ``summary.json``).
    """
    fig, axes = plt.subplots(2, 2, figsize=(12, 7), gridspec_kw={"height_ratios": [1.4, 1], "width_ratios": [2.2, 1]})
    panels = [
        (axes[0, 0], summary["skills"], "skill uses (all steps)", "tab:blue"),
        (axes[0, 1], summary["routings"], "routing uses (compound steps)", "tab:orange"),
        (axes[1, 0], summary["split"], "traces per split", "tab:green"),
        (axes[1, 1], {f"L={k}": v for k, v in summary["depth"].items()}, "traces per depth", "tab:purple"),
    ]
    for ax, counts, label, color in panels:
        names = list(counts)
        ax.bar(range(len(names)), [counts[n] for n in names], color=color)
        ax.set_xticks(
            range(len(names)),
            names,
            rotation=60 if len(names) > 6 else 0,
            ha="right" if len(names) > 6 else "center",
            fontsize=8,
        )
        ax.set_title(label, fontsize=10)
        ax.set_ylabel("count")
    fig.suptitle(f"{title}: {summary['traces']:,} traces", fontsize=12)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_regime_comparison(record: dict[str, Any], path: str | Path, limit: int = 60) -> Path:
    """Candidates x regimes (:func:`hlsm.app.compare.compare_regimes`): green where the regime's
    support identifies the candidate, grey where it does not, white where it is not a candidate of that
    regime; the candidates some regime identifies and another does not come first (at most ``limit`` rows)."""
    import numpy as np
    from matplotlib.colors import ListedColormap

    from hlsm.app.compare import differing

    names = [r["name"] for r in record["regimes"]]
    rows = record["rows"]
    differs = differing(record)
    ids = {id(r) for r in differs}
    same = [r for r in rows if id(r) not in ids]
    shown = (differs + same)[:limit]
    code = {None: 0, False: 1, True: 2}
    grid = np.array([[code[r["verdicts"][n]] for n in names] for r in shown]).reshape(len(shown), len(names))
    height = 1.6 + 0.22 * len(shown)
    fig, ax = plt.subplots(figsize=(max(5.0, 2.6 + 1.3 * len(names)), height))
    ax.imshow(grid, cmap=ListedColormap(["white", "#cccccc", "#2ca02c"]), vmin=0, vmax=2, aspect="auto")
    ax.set_xticks(
        range(len(names)), [f"{r['name']}\n{r['identified']}/{r['candidates']} in G" for r in record["regimes"]]
    )
    ax.set_yticks(range(len(shown)), [r["program"] for r in shown], fontsize=7)
    ax.xaxis.tick_top()
    more = f", the first {len(shown)} of {len(rows)} shown" if len(rows) > len(shown) else ""
    fig.suptitle(
        f"Which candidates each regime identifies (H-{record['class']})\n"
        "green: identified; grey: not; white: not a candidate there\n"
        f"{len(differs)} rows differ between regimes (first){more}",
        fontsize=8,
    )
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.75 / height))
    return save_figure(fig, path)


def plot_support_graph(
    record: dict[str, Any], identification: dict[str, Any], path: str | Path, candidates: dict[str, Any] | None = None
) -> Path:
    """The support as two grids, readable at any library size: which (routing, skill) contexts and which
    skill successions the traces show (grey, darker = more program steps), and where a candidate needs
    one that no trace shows (orange x: a held-out pair or context). Tick labels are green where the
    checker identified the symbol, red where not. ``record`` and ``candidates`` are
    :func:`hlsm.identify.graph.graph_record` of the support and of the candidates; ``identification``
    is ``Identification.to_dict()``."""
    import numpy as np

    nodes = {n["id"]: n for n in record["nodes"]}
    routings = [n for n, d in nodes.items() if d["kind"] == "routing"]
    skills = [n for n, d in nodes.items() if d["kind"] == "skill"]
    status = {**identification["skills"], **identification["routings"]}

    def grid(edges: list[dict[str, Any]], kind: str, rows: list[str]) -> Any:
        out = np.zeros((len(rows), len(skills)))
        for e in edges:
            if e["kind"] == kind and e["source"] in rows:
                out[rows.index(e["source"]), skills.index(e["target"])] += e["count"]
        return out

    panels = (("context", routings, "routing of the step"), ("successor", skills, "previous step's skill"))
    size = max(4.0, 0.32 * len(skills) + 2.5)
    fig, axes = plt.subplots(1, 2, figsize=(2 * size + 1, size))
    for ax, (kind, rows, ylabel) in zip(axes, panels, strict=True):
        shown = grid(record["edges"], kind, rows)
        needed = grid(candidates["edges"], kind, rows) if candidates is not None else np.zeros_like(shown)
        ax.imshow(np.log1p(shown), cmap="Greys", vmin=0, vmax=max(1.0, float(np.log1p(shown).max())), aspect="auto")
        for r, c in zip(*np.nonzero((needed > 0) & (shown == 0)), strict=True):
            ax.text(c, r, "x", ha="center", va="center", color="tab:orange", fontsize=9, fontweight="bold")
        ax.set_xticks(range(len(skills)), [f"{s} {nodes[s]['name']}" for s in skills], rotation=90, fontsize=7)
        ax.set_yticks(range(len(rows)), [f"{r} {nodes[r]['name']}" for r in rows], fontsize=7)
        ticks = [*zip(ax.get_xticklabels(), skills, strict=True), *zip(ax.get_yticklabels(), rows, strict=True)]
        for label, symbol in ticks:
            label.set_color("tab:green" if status[symbol]["identified"] else "tab:red")
        ax.set_xlabel("skill of the step")
        ax.set_ylabel(ylabel)
        ax.set_title(
            "contexts (routing, skill)" if kind == "context" else "successions (skill, next skill)", fontsize=9
        )
    g, total = identification["generalisation_set_size"], identification["unseen_total"]
    fig.suptitle(
        f"Support (H-{identification['hypothesis_class']}): grey = shown by the traces (darker: more steps); "
        "orange x = a candidate needs it and no trace shows it\n"
        f"labels: green = symbol identified, red = not; G = {g} of {total} candidates",
        fontsize=9,
    )
    fig.tight_layout()
    return save_figure(fig, path)


def plot_budget_curves(budget: dict[str, Any], path: str | Path) -> Path:
    """Mean fraction of candidates in G against RL budget (``sims/verify_claims.py``, part 2).

    Panels: hypothesis class (rows) x SFT covering all atoms or missing some (columns); one line per
    RL protocol (atomic / compound programs, inside / outside the SFT support).
    """
    means = budget["mean_fraction"]
    budgets = budget["budgets"]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True)
    styles = {
        ("atomic", "inside"): ("tab:blue", "--"),
        ("atomic", "outside"): ("tab:blue", "-"),
        ("compound", "inside"): ("tab:red", "--"),
        ("compound", "outside"): ("tab:red", "-"),
    }
    for r, hc in enumerate(("lib", "tab")):
        for c, sft in enumerate(("all atoms", "missing atoms")):
            ax = axes[r, c]
            for (kind, where), (colour, line) in styles.items():
                series = means[f"{sft}|{hc}|{kind}|{where}"]
                ax.plot(
                    budgets,
                    [series[str(b)] for b in budgets],
                    line,
                    color=colour,
                    marker="o",
                    label=f"RL {kind}, {where} SFT",
                )
            bound = " (lower bound)" if hc == "tab" else ""
            ax.set_title(f"H-{hc}{bound}; SFT {sft}", fontsize=10)
            ax.set_ylabel("mean |G| / candidates")
            ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("RL budget (programs, answer-only, every x_0)")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(
        "Generalisation set against RL budget (tiny designs, population limit; one fixed candidate set,\n"
        "disjoint from every RL program)",
        fontsize=11,
    )
    fig.tight_layout()
    return save_figure(fig, path)


def plot_module_usage(series: dict[str, dict[str, Any]], path: str | Path, title: str = "Module usage") -> Path:
    """Grouped bars: the share of steps using each skill (top) and each routing (bottom), one bar per
    series (e.g. per support split).

    ``series`` maps a label to a dict with ``skills`` and ``routings``, each ``{name: share}``
    (as saved by ``sims/trace_distributions.py``); a series with no routed step draws no routing bars.
    """
    labels = list(series)
    fig, axes = plt.subplots(2, 1, figsize=(14, 8.5), gridspec_kw={"height_ratios": [1.5, 1]})
    colours = [f"C{i}" for i in range(10)]  # the default colour cycle
    for ax, key, what in ((axes[0], "skills", "skill"), (axes[1], "routings", "routing (compound steps)")):
        names = list(series[labels[0]][key])
        width = 0.8 / len(labels)
        for j, label in enumerate(labels):
            shares = series[label][key]
            xs = [i + (j - (len(labels) - 1) / 2) * width for i in range(len(names))]
            ax.bar(xs, [shares[n] for n in names], width=width, color=colours[j % 10], label=label)
        ax.axhline(1 / len(names), color="black", lw=0.8, ls=":", label="uniform")
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
        ax.set_ylabel("share of steps")
        ax.set_title(f"{what} usage", fontsize=10)
        ax.set_xlim(-0.6, len(names) - 0.4)
    axes[0].legend(fontsize=8, ncol=len(labels) + 1, loc="upper right")
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_answer_statistics(
    series: dict[str, dict[str, Any]],
    epsilons: list[float],
    entropy_cap: float,
    path: str | Path,
    title: str = "Answer statistics",
) -> Path:
    """Six panels per series: depth distribution; per-program answer entropy at the first epsilon
    (histogram, and against the number of many-to-one skills); mean answer entropy, distinct-answer
    fraction and corrupted-answer fraction against the corruption rate epsilon.

    ``series`` maps a label to a dict with ``depth`` (``{depth: share}``), ``answers``
    (``{str(epsilon): {"entropy_bits", "distinct_fraction", "changed_fraction"}}``) and
    ``per_program`` (``entropy_bits`` and ``many_to_one`` lists), as saved by
    ``sims/trace_distributions.py``. ``entropy_cap`` is ``log2`` of the inputs per program, the
    largest plug-in entropy.
    """
    labels = list(series)
    colours = [f"C{i}" for i in range(10)]  # the default colour cycle
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    ax = axes[0, 0]
    depths = sorted({int(d) for s in series.values() for d in s["depth"]})
    width = 0.8 / len(labels)
    for j, label in enumerate(labels):
        shares = series[label]["depth"]
        xs = [i + (j - (len(labels) - 1) / 2) * width for i in range(len(depths))]
        ax.bar(xs, [shares.get(str(d), 0.0) for d in depths], width=width, color=colours[j % 10], label=label)
    ax.set_xticks(range(len(depths)), [f"L={d}" for d in depths])
    ax.set_ylabel("share of traces")
    ax.set_title("depth distribution", fontsize=10)
    ax.legend(fontsize=8)

    eps0 = epsilons[0]
    ax = axes[0, 1]
    bins = [entropy_cap * i / 24 for i in range(25)]
    for j, label in enumerate(labels):
        ax.hist(
            series[label]["per_program"]["entropy_bits"],
            bins=bins,
            histtype="step",
            lw=1.6,
            color=colours[j % 10],
            label=label,
            density=True,
        )
    ax.axvline(entropy_cap, color="black", lw=0.8, ls=":")
    ax.set_xlabel("answer entropy given the program (bits)")
    ax.set_ylabel("density over programs")
    ax.set_title(f"per-program answer entropy, epsilon = {eps0:g}", fontsize=10)

    ax = axes[0, 2]
    for j, label in enumerate(labels):
        pp = series[label]["per_program"]
        groups: dict[int, list[float]] = {}
        for c, h in zip(pp["many_to_one"], pp["entropy_bits"], strict=True):
            groups.setdefault(int(c), []).append(h)
        counts = sorted(groups)
        means = [sum(groups[c]) / len(groups[c]) for c in counts]
        ax.plot(counts, means, marker="o", color=colours[j % 10], label=label)
    ax.axhline(entropy_cap, color="black", lw=0.8, ls=":", label=f"cap log2(inputs) = {entropy_cap:g}")
    ax.set_xlabel("many-to-one skills in the program")
    ax.set_ylabel("mean answer entropy (bits)")
    ax.set_title(f"entropy against many-to-one steps, epsilon = {eps0:g}", fontsize=10)
    ax.legend(fontsize=8)

    panels = (
        (axes[1, 0], "entropy_bits", "mean answer entropy (bits)", "answer entropy given the program"),
        (axes[1, 1], "distinct_fraction", "distinct answers / inputs", "distinct-answer fraction"),
        (axes[1, 2], "changed_fraction", "share of answers changed", "answers changed by corruption"),
    )
    for ax, key, ylabel, panel_title in panels:
        for j, label in enumerate(labels):
            answers = series[label]["answers"]
            ax.plot(epsilons, [answers[str(e)][key] for e in epsilons], marker="o", color=colours[j % 10], label=label)
        if key == "entropy_bits":
            ax.axhline(entropy_cap, color="black", lw=0.8, ls=":")
        ax.set_xlabel("corruption rate epsilon")
        ax.set_ylabel(ylabel)
        ax.set_title(panel_title, fontsize=10)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_view_confusion(results: dict[str, Any], path: str | Path) -> Path:
    """The exact checker against the Bayesian view: the pooled 2 x 2 table and agreement per regime.

    ``results`` is the ``results.json`` of ``sims/vi_vs_checker.py`` (keys ``total``, ``by_regime``).
    """
    total = results["total"]
    grid = [[total["both"], total["checker_only"]], [total["vi_only"], total["neither"]]]
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 4))
    ax0.imshow(grid, cmap="Blues")
    for i in range(2):
        for j in range(2):
            tone = "white" if grid[i][j] > 0.6 * max(max(row) for row in grid) else "black"
            ax0.text(j, i, str(grid[i][j]), ha="center", va="center", fontsize=14, color=tone)
    ax0.set_xticks([0, 1], ["VI: identified", "VI: not"])
    ax0.set_yticks([0, 1], ["checker: in G", "checker: not in G"])
    ax0.set_title(f"{total['total']} candidates, agreement {total['agreement']:.1%}")
    names = list(results["by_regime"])
    rates = [results["by_regime"][r]["agreement"] for r in names]
    counts = [results["by_regime"][r]["total"] for r in names]
    ax1.bar(range(len(names)), rates, color="tab:blue")
    for i, (rate, n) in enumerate(zip(rates, counts, strict=True)):
        ax1.text(i, rate + 0.01, f"{rate:.0%} of {n}", ha="center", fontsize=9)
    ax1.axhline(0.9, color="grey", linestyle="--", linewidth=1, label="90% target")
    ax1.set_xticks(range(len(names)), names, rotation=15)
    ax1.set_ylim(0, 1.1)
    ax1.set_ylabel("agreement with the exact checker")
    ax1.set_title("By regime")
    ax1.legend(loc="lower right")
    fig.suptitle("Exact (H-lib) vs Bayesian (MAP, library tables) generalisation sets")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_fit_tables(spec: Any, params: dict[str, Any], recovery: Any, path: str | Path) -> Path:
    """Recovered bindings (and, for dense tables, each true skill's matched recovered table).

    ``params`` is a fit's saved ``params.pt`` (restarts' ``alpha``, ``beta``, ``tables``, the ``best``
    index and, for dense tables, the ``truth`` they were matched to); ``recovery`` its
    :class:`hlsm.app.fitmetrics.Recovery`. The truth is the identity binding of the spec's library
    (symbol ``i`` denotes module ``i``). Dense tables' skills are put in the order of the true skills
    they match (``recovery.matched_permutation``), so the truth is the diagonal in both classes.
    """
    import numpy as np

    best = params["restarts"][params["best"]]
    alpha, beta = np.asarray(best["alpha"]), np.asarray(best["beta"])
    truth = params.get("truth")
    dense = truth is not None
    perm = list(recovery.matched_permutation)
    if dense:
        alpha = alpha[:, perm]
    side = 4.2 if spec.num_skills <= 12 else 6.5  # a large library needs room for its labels
    panels_n = 2 + (2 if dense else 0)
    fig, axes = plt.subplots(1, panels_n, figsize=(side * panels_n, side + (0.8 if side > 4.2 else 0)), squeeze=False)
    panels = [
        (alpha, spec.skill_symbols, spec.skills, "skill bindings alpha"),
        (beta, spec.routing_symbols, spec.routings, "routing bindings beta"),
    ]
    for ax, (mat, symbols, names, title) in zip(axes[0], panels, strict=False):
        ax.imshow(mat, vmin=0, vmax=1, cmap="Greens")
        small = 8 if len(names) <= 12 else 6
        ax.set_yticks(range(len(symbols)), [f"{s} ({n})" for s, n in zip(symbols, names, strict=True)], fontsize=small)
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=small)
        annotated = mat.shape[1] <= 12  # cells of a larger matrix are too small for numbers
        ax.set_title(f"{title}\n(truth: the diagonal{'' if annotated else '; colour = probability'})", fontsize=10)
        for i in range(mat.shape[0]):
            for j in range(mat.shape[1]):
                if annotated and mat[i, j] >= 0.05:
                    tone = "white" if mat[i, j] > 0.5 else "black"
                    ax.text(j, i, f"{mat[i, j]:.2f}", ha="center", va="center", fontsize=7, color=tone)
    if dense:
        stacked_true = np.concatenate(list(np.asarray(truth)), axis=1)
        stacked_fit = np.concatenate([np.asarray(best["tables"][i]) for i in perm], axis=1)
        for ax, mat, title in (
            (axes[0][2], stacked_true, "true tables"),
            (axes[0][3], stacked_fit, "recovered (matched)"),
        ):
            ax.imshow(mat, vmin=0, vmax=1, cmap="Greys", aspect="auto")
            ax.set_title(f"{title}: {', '.join(spec.skills)}", fontsize=9)
            ax.set_xlabel("output state, one block per skill")
            ax.set_ylabel("input state")
        tv = recovery.matched_tv
        axes[0][3].set_xlabel(f"matched mean TV {sum(tv) / len(tv):.3f}, max {recovery.matched_tv_max:.3f}")
    fig.suptitle(f"Best restart ({params['best']}) of {len(params['restarts'])}")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_fit_losses(params: dict[str, Any], objectives: list[float | None], path: str | Path) -> Path:
    """The loss of every restart above the lowest loss reached, on a log scale; the best highlighted.

    ``params`` is a fit's saved ``params.pt`` (each restart's loss ``history``, the ``best`` index);
    ``objectives`` the restarts' final objectives (``metrics.json``).
    """
    histories = [r["history"] for r in params["restarts"]]
    floor = min(min(h) for h in histories)
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (history, objective) in enumerate(zip(histories, objectives, strict=True)):
        best = i == params["best"]
        ax.plot(
            [h - floor + 1.0 for h in history],
            lw=2 if best else 1,
            alpha=1 if best else 0.6,
            label=f"restart {i}{' (best)' if best else ''}: objective "
            + ("not finite" if objective is None else f"{objective:.1f}"),
        )
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(f"loss - lowest loss + 1  (lowest = {floor:.1f})")
    ax.set_title("Loss per restart (loss = -(log-likelihood + log-prior))")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_fit_predictive(candidates: list[dict[str, Any]], path: str | Path, confident: float) -> Path:
    """Predictive confidence per candidate program, coloured by the exact checker's verdict.

    ``candidates`` are the ``metrics.json`` rows of ``hlsm fit`` (keys ``program``, ``confidence``,
    ``accuracy``, ``identified``, ``checker``).
    """
    colour = {True: "tab:green", False: "tab:red", None: "tab:grey"}
    if len(candidates) > 40:
        return _plot_many_predictive(candidates, path, confident, colour)
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(candidates) + 1.6))
    ys = range(len(candidates))
    ax.barh(ys, [c["confidence"] for c in candidates], color=[colour[c["checker"]] for c in candidates])
    for y, c in zip(ys, candidates, strict=True):
        mark = "" if c["accuracy"] == 1.0 else f"; right on {c['accuracy']:.0%} of inputs"
        ax.text(
            c["confidence"] + 0.01,
            y,
            ("fit: identified" if c["identified"] else "fit: not identified") + mark,
            va="center",
            fontsize=7,
        )
    line = ax.axvline(confident, color="black", linestyle="--", linewidth=1)
    ax.set_yticks(list(ys), [c["program"] for c in candidates], fontsize=7)
    ax.set_xlim(0, 1.9)
    ax.set_xlabel("the fit's confidence (the modal answer's least predictive probability over inputs)", fontsize=8)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colour[v]) for v in (True, False, None)] + [line]
    labels = [
        "exact checker: in G",
        "exact checker: not in G",
        "no checker verdict",
        f"threshold {confident}:\nfit says identified\nat or above it",
    ]
    ax.legend(handles, labels, fontsize=7, loc="center right")  # right of every bar and its label
    ax.set_title("The fit's view of each candidate (bars) and the exact checker's (colours)", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def _plot_many_predictive(
    candidates: list[dict[str, Any]], path: str | Path, confident: float, colour: dict[Any, str]
) -> Path:
    """Too many candidates to name: their confidences sorted, coloured by the checker, marked by the fit."""
    order = sorted(range(len(candidates)), key=lambda i: candidates[i]["confidence"])
    fig, ax = plt.subplots(figsize=(8, 4.2))
    for rank, i in enumerate(order):
        c = candidates[i]
        face = colour[c["checker"]] if c["identified"] else "none"
        ax.scatter(rank, c["confidence"], s=14, edgecolors=colour[c["checker"]], facecolors=face, linewidths=0.8)
    ax.axhline(confident, color="black", linestyle="--", linewidth=1)
    ax.text(0, confident + 0.01, f"confident = {confident}", fontsize=8)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(f"{len(candidates)} candidate programs, sorted by confidence")
    ax.set_ylabel("min over inputs of the modal answer's\npredictive probability (lower bound at scale)")
    wrong = sum(c["accuracy"] < 1.0 for c in candidates)
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=colour[v]) for v in (True, False)]
    handles.append(plt.Line2D([], [], marker="o", linestyle="", markerfacecolor="none", color="black"))
    labels = ["checker: in G", "checker: not in G", "hollow: the fit says not identified"]
    ax.legend(handles, labels, fontsize=8, loc="lower right")
    ax.set_title(f"Posterior predictive on candidates ({wrong} with a wrong modal answer on some input)")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_three_views(results: dict[str, Any], path: str | Path) -> Path:
    """One panel per support: the transformer's accuracy against the fit's confidence, per program,
    coloured by the exact checker's verdict (filled: the fit also calls it identified).

    ``results`` is the ``results.json`` of ``sims/three_views.py`` (key ``rows``).
    """
    rows = results["rows"]
    names = list(dict.fromkeys(r["arm"] for r in rows))
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 4.2), squeeze=False, sharey=True)
    for ax, name in zip(axes[0], names, strict=True):
        mine = [r for r in rows if r["arm"] == name and r["transformer"] is not None]
        for in_g, colour, label in ((True, "tab:green", "checker: in G"), (False, "tab:red", "checker: not in G")):
            pts = [r for r in mine if r["checker"] == in_g]
            for vi, marker in ((True, "o"), (False, "x")):
                sel = [r for r in pts if r["vi_identified"] == vi]
                if sel:
                    ax.scatter(
                        [r["vi_confidence"] for r in sel],
                        [r["transformer"] for r in sel],
                        c=colour,
                        marker=marker,
                        alpha=0.75,
                        label=f"{label}, VI {'identified' if vi else 'not'}",
                    )
        ax.set_title(name)
        ax.set_xlabel("fit: min predictive probability of the modal answer")
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("transformer: greedy accuracy on the program")
    handles: dict[str, Any] = {}
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    fig.legend(list(handles.values()), list(handles), fontsize=8, loc="lower center", ncol=len(handles))
    fig.suptitle("Exact checker, Bayesian fit and transformer, per unseen or deeper program")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return save_figure(fig, path)
