"""Figures, drawn from saved results only (dicts read back from JSON)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _save(fig: Any, path: str | Path) -> Path:
    """Write a figure as PNG (creating its folder) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
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
    return _save(fig, path)


def plot_support_graph(spec: Any, programs: Any, identification: dict[str, Any], path: str | Path) -> Path:
    """The support graph (routing -> skill contexts, skill -> skill successions), nodes coloured by
    whether the checker identified the symbol (``identification`` is ``Identification.to_dict()``)."""
    import networkx as nx

    from hlsm.design import support_graph

    graph = support_graph(spec, programs)
    status = {**identification["skills"], **identification["routings"]}
    routing_nodes = [n for n, d in graph.nodes(data=True) if d["kind"] == "routing"]
    skill_nodes = [n for n, d in graph.nodes(data=True) if d["kind"] == "skill"]
    pos = {}
    for i, n in enumerate(routing_nodes):
        pos[n] = (0.0, -i / max(1, len(routing_nodes) - 1))
    import math

    for i, n in enumerate(skill_nodes):
        angle = 2 * math.pi * i / max(1, len(skill_nodes))
        pos[n] = (1.6 + 0.9 * math.cos(angle), -0.5 + 0.9 * math.sin(angle))
    fig, ax = plt.subplots(figsize=(10, 7))
    colours = ["tab:green" if status[n]["identified"] else "tab:red" for n in graph.nodes]
    shapes = {n: ("s" if graph.nodes[n]["kind"] == "routing" else "o") for n in graph.nodes}
    for shape in ("s", "o"):
        nodes = [n for n in graph.nodes if shapes[n] == shape]
        nx.draw_networkx_nodes(
            graph,
            pos,
            nodelist=nodes,
            node_shape=shape,
            ax=ax,
            node_size=650,
            node_color=[colours[list(graph.nodes).index(n)] for n in nodes],
        )
    labels = {n: f"{n}\n{graph.nodes[n]['name']}" for n in graph.nodes}
    nx.draw_networkx_labels(graph, pos, labels, font_size=6, ax=ax)
    contexts = [(u, v) for u, v, d in graph.edges(data=True) if d["kind"] == "context"]
    successions = [(u, v) for u, v, d in graph.edges(data=True) if d["kind"] == "successor"]
    nx.draw_networkx_edges(graph, pos, edgelist=contexts, ax=ax, edge_color="tab:blue", alpha=0.35, arrows=False)
    nx.draw_networkx_edges(
        graph,
        pos,
        edgelist=successions,
        ax=ax,
        edge_color="tab:gray",
        alpha=0.5,
        connectionstyle="arc3,rad=0.2",
        arrowsize=8,
    )
    g, total = identification["generalisation_set_size"], identification["unseen_total"]
    ax.set_title(
        f"Support graph (H-{identification['hypothesis_class']}): green = identified, red = not; "
        f"squares routings, circles skills; blue = context, grey = succession. G = {g}/{total}",
        fontsize=9,
    )
    ax.axis("off")
    fig.tight_layout()
    return _save(fig, path)


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
    fig.suptitle("Generalisation set against RL budget (tiny designs, population limit)", fontsize=12)
    fig.tight_layout()
    return _save(fig, path)
