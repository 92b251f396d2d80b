"""Variational recovery at the default library's scale (|X| = 262,144): does the Bayesian view still match?

Question: on the default library (A = 8, n = 6, 24 skills, 10 routings), with the drawn design of
``example:default_library`` (golden SFT traces of every atom and 200 depth-3 programs,
answer-only RL traces of 100 programs outside SFT, corruption 0.05), does a MAP fit with restarts,
scored by the scalable likelihood (``hlsm.infer.scalable``: no |X|-sized table, certified bounds
where it cannot be exact), recover every binding and call the same candidates identified as the
exact H-lib checker?

Claim tested (issue "variational recovery at scale"): every binding recovered (100%) and agreement
with the checker on at least 95% of the design's 200 candidates, in at most 10 minutes on 2 cores;
the report gives the certified interval width at the estimate and the peak memory.

Control (the other direction): the same design with every program that uses two skill symbols
removed from SFT and RL, on half the data. Those symbols are then free, the checker leaves every
candidate using them out of G, and the fit must not call them identified either.
"""

from __future__ import annotations

import json
import resource
import shutil
import time
import tomllib
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from hlsm.app.designfile import parse_design
from hlsm.app.fitrun import run_fit
from hlsm.app.report import markdown_table, percent
from hlsm.examples import example_path
from hlsm.io import write_json, write_text

from ._common import preset_from_command_line

DESIGN = example_path("default_library")


@dataclass(frozen=True)
class Config:
    """Overrides of the design file's ``[fit]`` and candidate counts (None: the file's value)."""

    traces: int | None = None
    rl_traces: int | None = None
    restarts: int | None = None
    steps: int | None = None
    candidates: int | None = None  # per kind (unseen depth 3, deeper depth 4)
    held_out: tuple[str, ...] = ("S5", "S13")  # the control's free skill symbols (complement, sort)
    out: str = "runs/vi_at_scale"

    @classmethod
    def preset(cls, scale: str) -> Config:
        if scale == "tiny":
            return cls(traces=256, rl_traces=8, restarts=2, steps=40, candidates=5)
        if scale in ("cpu", "gpu"):
            return cls()
        raise ValueError(f"unknown scale {scale!r}; use tiny, cpu or gpu")


def main(cfg: Config) -> dict[str, Any]:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", asdict(cfg))
    raw = tomllib.loads(DESIGN.read_text())
    if cfg.candidates is not None:
        raw["design"] |= {"n_unseen": cfg.candidates, "n_deeper": cfg.candidates}
    overrides = {k: getattr(cfg, k) for k in ("traces", "rl_traces", "restarts", "steps")}
    raw["fit"] |= {k: v for k, v in overrides.items() if v is not None}
    start = time.perf_counter()
    metrics = run_fit(raw, out / "fit", progress=False)
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    control = _control(raw, cfg, out / "control")
    results = {
        "config": asdict(cfg),
        "summary": metrics.summary(),
        "fit": metrics.fit,
        "restarts": [asdict(r) for r in metrics.restarts],
        "by_depth": _by_depth(metrics.candidates),
        "disagreements": [r for r in metrics.candidates if r["identified"] != r["checker"]],
        "wall_s": wall,
        "peak_rss_mb": peak,
        "control": control,
    }
    write_json(out / "results.json", results)
    for name in ("tables.png", "predictive.png"):
        shutil.copy2(out / "fit" / name, out / name)
    write_text(out / "report.md", report(results))
    return results


def _by_depth(rows: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {
        depth: {
            "candidates": sum(r["depth"] == depth for r in rows),
            "agree": sum(r["depth"] == depth and r["identified"] == r["checker"] for r in rows),
            "in_checker_set": sum(r["depth"] == depth and bool(r["checker"]) for r in rows),
            "min_confidence": min((r["confidence"] for r in rows if r["depth"] == depth), default=None),
        }
        for depth in sorted({r["depth"] for r in rows})
    }


def _control(raw: dict[str, Any], cfg: Config, out: Path) -> dict[str, Any]:
    """The design without any program that uses the held-out symbols, fitted on half the data."""
    design = parse_design(raw, "the default-library design")
    held = {design.spec.skill_symbols.index(s) for s in cfg.held_out}

    def keep(programs: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(p for p in programs if not held & {k for _, k in p.steps})

    fit = dict(design.sections["fit"])
    fit |= {"traces": fit["traces"] // 2, "rl_traces": fit["rl_traces"] // 2}
    control = replace(design, sft=keep(design.sft), rl=keep(design.rl), sections={**design.sections, "fit": fit})
    start = time.perf_counter()
    metrics = run_fit(control, out, progress=False)
    rows = metrics.candidates
    return {
        "held_out": list(cfg.held_out),
        "sft_programs": len(control.sft),
        "rl_programs": len(control.rl),
        "summary": metrics.summary(),
        "by_depth": _by_depth(rows),
        "free_symbols_identified_by_fit": [s for s in cfg.held_out if metrics.symbols[s].identified],
        "disagreements": [r for r in rows if r["identified"] != r["checker"]],
        "wall_s": time.perf_counter() - start,
    }


def _disagreements(rows: list[dict[str, Any]]) -> str:
    from hlsm.app.report import markdown_table

    return markdown_table(
        ("program", "checker", "VI confidence", "accuracy", "restarts agree", "VI verdict"),
        [
            (
                f"`{d['program']}`",
                "in G" if d["checker"] else "not in G",
                f"{d['confidence']:.3f}",
                percent(d["accuracy"]),
                percent(d["agreement"]),
                "identified" if d["identified"] else "not",
            )
            for d in rows
        ],
    )


def report(results: dict[str, Any]) -> str:
    """The markdown section of ``docs/results.md`` (from the saved results only)."""
    s = results["summary"]
    agreement = s["checker_agreement"]
    held = (
        "held"
        if s["binding_accuracy"] == 1.0 and agreement is not None and agreement >= 0.95 and results["wall_s"] <= 600
        else "did NOT hold"
    )
    fit = results["fit"]
    lines = [
        "## Variational recovery at the default library's scale (`sims/vi_at_scale.py`)\n",
        "Claim: on the default library (|X| = 262,144) the fit recovers every binding and agrees with the",
        "exact H-lib checker on at least 95% of the candidates, within 10 minutes on 2 cores: "
        f"**{held}** (bindings {percent(s['binding_accuracy'])}, agreement {percent(agreement or 0.0)} of "
        f"{s['candidates']} candidates, {results['wall_s'] / 60:.1f} min, peak memory "
        f"{results['peak_rss_mb']:,.0f} MB).\n",
        f"Data: {fit['traces']:,} golden SFT traces (every atom and 200 depth-3 programs) and "
        f"{fit['rl_traces']:,} answer-only RL traces (100 programs outside SFT), corruption "
        f"{fit['epsilon']}; {fit['restarts']} restarts of at most {fit['steps']} Adam steps, maximum",
        "likelihood, scored by the scalable likelihood (`theory/scalable_likelihood.md`). Its interval",
        f"width at the estimate is {s['interval_width']:.1f} nats on a log-likelihood of "
        f"{s['best_log_likelihood']:,.0f}: the fit maximises a certified lower bound that is at most that far",
        "below the truth there; the bounded terms are answers read by `sub_skip` / `min_skip` after a",
        "corrupted first state, so the width sits on the few traces whose answer was itself corrupted.",
        f"Fitted corruption rate {s['epsilon']:.4f} (simulated {fit['epsilon']}).\n",
        markdown_table(
            ("restart", "log-likelihood (lower bound)", "interval width", "epsilon", "steps"),
            [
                (i, f"{r['log_likelihood']:,.1f}", f"{r['interval_width']:.1f}", f"{r['epsilon']:.4f}", r["steps"])
                for i, r in enumerate(results["restarts"])
            ],
        ),
        "",
        markdown_table(
            ("candidates", "count", "VI = checker", "lowest certified confidence"),
            [
                (f"depth {d}", v["candidates"], v["agree"], f"{v['min_confidence']:.3f}")
                for d, v in results["by_depth"].items()
            ],
        ),
        f"\nThe view reads {fit['view_inputs']} random inputs per candidate; a candidate is identified when the",
        f"certified lower bound on its modal answer's probability is at least {fit['confident']} on every input,",
        "the answer is right and the restarts agree (`hlsm.infer.predictive.answer_bounds`).",
    ]
    c = results["control"]
    cs = c["summary"]
    lines += [
        f"\n**Control.** Without any program that uses {', '.join(c['held_out'])} ({c['sft_programs']} SFT and",
        f"{c['rl_programs']} RL programs left, half the traces) those symbols are free: the checker puts",
        f"{sum(v['in_checker_set'] for v in c['by_depth'].values())} of {cs['candidates']} candidates in G, and the"
        f" fit agrees with it on {percent(cs['checker_agreement'] or 0.0)} of them"
        f" ({cs['confusion']['both']} in G for both, {cs['confusion']['neither']} for neither,"
        f" {cs['confusion']['checker_only']} checker only, {cs['confusion']['vi_only']} fit only);"
        f" held-out symbols the fit calls identified: {', '.join(c['free_symbols_identified_by_fit']) or 'none'}"
        f" ({c['wall_s'] / 60:.1f} min).",
    ]
    if c["disagreements"]:
        lines += ["\nThe control's disagreements:\n", _disagreements(c["disagreements"])]
    if results["disagreements"]:
        lines += [
            "\nDisagreements:\n",
            markdown_table(
                ("program", "checker", "VI confidence", "accuracy", "VI verdict"),
                [
                    (
                        f"`{d['program']}`",
                        "in G" if d["checker"] else "not in G",
                        f"{d['confidence']:.3f}",
                        percent(d["accuracy"]),
                        "identified" if d["identified"] else "not",
                    )
                    for d in results["disagreements"]
                ],
            ),
        ]
    lines.append("\n![recovered bindings](tables.png)\n")
    return "\n".join(lines)


if __name__ == "__main__":
    res = main(preset_from_command_line(Config, __doc__))
    print(json.dumps({"summary": res["summary"], "wall_s": res["wall_s"], "peak_rss_mb": res["peak_rss_mb"]}, indent=2))
