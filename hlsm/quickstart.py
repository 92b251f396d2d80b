"""The main job on the default library: simulate a default corpus and write a short report.

``hlsm quickstart`` draws the default support design (:class:`~hlsm.design.DesignConfig`),
simulates golden SFT traces, answer-only RL traces and fully shown evaluation traces for the
held-out splits, and writes ``corpus.jsonl``, ``summary.json``, ``design.json``, ``config.json``,
a figure and ``report.md`` under the output folder.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hlsm.design import DesignConfig, coverage, make_design
from hlsm.plots import plot_corpus_summary
from hlsm.simulate import atomic_write, concat, simulate, summarize, write_jsonl
from hlsm.spec import Spec

SPLIT_EXPOSURE = {"sft": "full", "rl": "answer", "unseen": "full", "deeper": "full"}
"""Exposure per split: golden SFT traces, outcome-only RL, evaluation splits shown in full."""


@dataclass(frozen=True)
class QuickstartConfig:
    """Sizes of the quickstart run (traces per split) and its seed."""

    traces_per_split: int = 5000
    seed: int = 0


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, lambda f: json.dump(data, f, indent=2))


def run_quickstart(out: str | Path = "runs/quickstart", config: QuickstartConfig = QuickstartConfig()) -> Path:
    """Run the quickstart and return the path of ``report.md``."""
    out = Path(out)
    spec = Spec()
    design = make_design(spec, DesignConfig(seed=config.seed))
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
    report = out / "report.md"
    atomic_write(report, lambda f: f.write("\n".join(lines) + "\n"))
    return report
