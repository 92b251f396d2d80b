"""Figures, drawn from saved results only (dicts read back from JSON)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
