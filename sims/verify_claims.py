"""Do propositions C1–C5 hold on random tiny designs, and does the fast checker agree with brute force?

Claims tested (``theory/identifiability.md``): C1 coverage, C2 interfaces, C3 routing needs compound
data, C4 RL adds only what is new, C5 RL outside >= RL inside. For each random design (``A = 3,
n = 2``, 5 skills and 4 routings drawn from the default library, population limit) the
proposition's prediction is compared with the exhaustive oracle (:mod:`hlsm.identify.oracle`), and the fast
checker (:mod:`hlsm.identify.checker`) is compared with the oracle. A second part measures the size of the
generalisation set against the RL budget for atomic / compound RL programs inside / outside the SFT
support, with SFT covering every atom or missing some (the C4/C5 figure), and a finite-sample
comparison of compound against atomic RL in H-tab.

Writes ``runs/verify_claims/``: ``config.json``, ``results.json``, ``agreement.md``,
``budget.png`` and ``report.md``.

Usage: ``python -m hlsm.sims.verify_claims [--scale tiny|cpu|gpu] [--designs 200] [--budget-designs 30]
[--out runs/verify_claims]``. The scales size the run for ``hlsm reproduce`` (tiny: seconds; cpu: a
few minutes on 2 cores; gpu: the full 200 random + 60 per stress family); explicit counts override.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from hlsm.identify.checker import identify
from hlsm.identify.claims import (
    STRESS_FAMILIES,
    Check,
    TinyDesign,
    check_c1,
    check_c2,
    check_c3,
    check_c3c,
    check_c4,
    check_c4b,
    check_c5,
    check_checker,
    random_design,
    random_program,
    random_spec,
    stress_design,
)
from hlsm.identify.oracle import OracleError
from hlsm.io import write_json, write_text
from hlsm.programs import Program, all_programs
from hlsm.runtime import progress_bar


@dataclass(frozen=True)
class Config:
    designs: int = 200
    stress_designs: int = 60
    budget_designs: int = 30
    budgets: tuple[int, ...] = (0, 1, 2, 4, 6)
    finite_designs: int = 100
    finite_inputs: int = 3
    seed: int = 0
    out: str = "runs/verify_claims"

    @classmethod
    def preset(cls, scale: str) -> Config:
        """The design counts of ``scale`` (:data:`SCALES`)."""
        return cls(**SCALES[scale])


def _design_checks(design: TinyDesign) -> list[Check]:
    """Every proposition's prediction and the checker's verdicts against the oracle, on one design."""
    sft_only = replace(design, rl=())
    lib, tab = design.oracle("lib"), design.oracle("tab")
    lib_sft, tab_sft = sft_only.oracle("lib"), sft_only.oracle("tab")
    rows = check_c1(design, lib, tab) + check_c2(sft_only, lib_sft, tab_sft) + check_c3(design)
    rows += check_c3c(sft_only, lib_sft) + check_c4(sft_only, lib_sft, tab_sft) + check_c4b(sft_only)
    rows += check_c5(design) + check_checker(design, lib, tab)
    return rows


def _table(checks: list[Check]) -> dict[str, dict[str, Any]]:
    table: dict[str, dict[str, Any]] = {}
    grouped: dict[str, list[Check]] = defaultdict(list)
    for c in checks:
        grouped[c.claim].append(c)
    for claim, rows in sorted(grouped.items()):
        if claim.startswith("rate:"):
            table[claim] = {"n": len(rows), "count": sum(r.predicted for r in rows)}
            table[claim]["rate"] = table[claim]["count"] / len(rows)
        else:
            agree = sum(r.agrees for r in rows)
            table[claim] = {"n": len(rows), "agree": agree, "rate": agree / len(rows)}
            table[claim]["violations"] = [r.detail for r in rows if not r.agrees][:5]
    return table


def verify(cfg: Config) -> dict[str, Any]:
    """Part 1: per-claim agreement between propositions (and the checker) and the oracle, on random
    designs and on each stress family (:data:`hlsm.identify.claims.STRESS_FAMILIES`)."""
    families: dict[str, list[Check]] = {"random": []}
    skipped: dict[str, int] = defaultdict(int)
    for i in progress_bar(iterable=range(cfg.designs), desc="claims"):
        rng = random.Random(cfg.seed * 100_003 + i)
        design = random_design(
            cfg.seed * 100_003 + i, atomic_fraction=rng.choice([0.5, 0.8, 1.0]), n_rl=rng.choice([1, 2])
        )
        try:
            families["random"] += _design_checks(design)
        except OracleError:
            skipped["random"] += 1
    for family in STRESS_FAMILIES:
        families[family] = []
        for i in progress_bar(iterable=range(cfg.stress_designs), desc=family):
            try:
                families[family] += _design_checks(stress_design(50_000 + i, family))
            except OracleError:
                skipped[family] += 1
    return {
        "designs": cfg.designs,
        "stress_designs": cfg.stress_designs,
        "skipped_over_budget": dict(skipped),
        "claims": _table([c for rows in families.values() for c in rows]),
        "by_family": {name: _table(rows) for name, rows in families.items()},
    }


def _protocol_pool(
    rng: random.Random, design: TinyDesign, kind: str, where: str, held_out: set[Program]
) -> list[Program]:
    """RL programs of one protocol in a random order, never a candidate (``held_out``); a budget ``b``
    takes the first ``b`` (nested sets)."""
    spec = design.spec
    sft = set(design.sft)
    if kind == "atomic":
        pool = [Program.atomic(k) for k in range(spec.num_skills)]
    else:
        pool = all_programs(spec, 2)
    pool = [p for p in pool if (p in sft) == (where == "inside") and p not in held_out]
    rng.shuffle(pool)
    return pool


def budget_curves(cfg: Config) -> dict[str, Any]:
    """Part 2: mean |G| / |candidates| against RL budget for every protocol (fast checker)."""
    curves: dict[str, dict[str, list[float]]] = {}
    for sft_kind in ("all atoms", "missing atoms"):
        for hc in ("lib", "tab"):
            for kind in ("atomic", "compound"):
                for where in ("inside", "outside"):
                    curves[f"{sft_kind}|{hc}|{kind}|{where}"] = {str(b): [] for b in cfg.budgets}
    for i in progress_bar(iterable=range(cfg.budget_designs), desc="budget"):
        rng = random.Random(10_000 + i)
        spec = random_spec(rng)
        compound: set[Program] = set()
        while len(compound) < 4:
            compound.add(random_program(rng, spec, 2))
        for sft_kind in ("all atoms", "missing atoms"):
            atoms = [Program.atomic(k) for k in range(spec.num_skills)]
            if sft_kind == "missing atoms":
                atoms = atoms[2:]
            base = TinyDesign(spec, tuple(atoms) + tuple(sorted(compound)), (), ())
            # one fixed candidate set C for every protocol and budget: half of the depth-2 programs
            # outside SFT, drawn once; RL programs come from the other half (never from C)
            outside = [p for p in all_programs(spec, 2) if p not in set(compound)]
            random.Random(20_000 + i).shuffle(outside)
            candidates = tuple(sorted(outside[: len(outside) // 2]))
            for kind in ("atomic", "compound"):
                for where in ("inside", "outside"):
                    pool = _protocol_pool(random.Random(i), base, kind, where, set(candidates))
                    for b in cfg.budgets:
                        design = replace(base, rl=tuple(pool[:b]), candidates=candidates)
                        corpus = design.corpus()
                        for hc in ("lib", "tab"):
                            g = len(identify(spec, corpus, candidates, hc).generalisation_set)
                            curves[f"{sft_kind}|{hc}|{kind}|{where}"][str(b)].append(g / len(candidates))
    means = {key: {b: sum(v) / len(v) for b, v in series.items()} for key, series in curves.items()}
    return {"budgets": list(cfg.budgets), "mean_fraction": means}


def finite_sample(cfg: Config) -> dict[str, Any]:
    """Part 3: H-tab, finite samples — does compound RL beat atomic RL at equal budget? (oracle)."""
    outcome: dict[str, Any] = {"compound > atomic": 0, "equal": 0, "compound < atomic": 0, "skipped": 0}
    totals = {"sft": 0, "atomic": 0, "compound": 0, "candidates": 0}
    for i in progress_bar(iterable=range(cfg.finite_designs), desc="finite"):
        rng = random.Random(20_000 + i)
        design = random_design(20_000 + i, atomic_fraction=0.6, n_rl=0)
        spec = design.spec
        missing = [Program.atomic(k) for k in range(spec.num_skills) if Program.atomic(k) not in design.sft]
        outside = [p for p in all_programs(spec, 2) if p not in design.sft and p not in design.candidates]
        rng.shuffle(outside)
        if len(missing) < 2:
            missing = [Program.atomic(k) for k in range(spec.num_skills)][:2]
        sizes = {}
        try:
            for name, rl in (("sft", []), ("atomic", missing[:2]), ("compound", outside[:2])):
                d = replace(design, rl=tuple(rl))
                corpus = _finite_corpus(d, cfg.finite_inputs, i)
                from hlsm.identify.oracle import tab_identify

                sizes[name] = len(tab_identify(spec, corpus, list(d.candidates)).generalisation_set)
        except OracleError:
            outcome["skipped"] += 1
            continue
        for key in ("sft", "atomic", "compound"):
            totals[key] += sizes[key]
        totals["candidates"] += len(design.candidates)
        if sizes["compound"] > sizes["atomic"]:
            outcome["compound > atomic"] += 1
        elif sizes["compound"] == sizes["atomic"]:
            outcome["equal"] += 1
        else:
            outcome["compound < atomic"] += 1
    outcome["total_G"] = totals
    return outcome


def _finite_corpus(design: TinyDesign, inputs: int, seed: int) -> Any:
    import torch

    from hlsm.simulate import concat, population_corpus

    gen = torch.Generator().manual_seed(seed)
    parts = []
    for programs, exposure in ((design.sft, "full"), (design.rl, "answer")):
        for p in programs:
            x0 = torch.randint(design.spec.alphabet, (inputs, design.spec.length), generator=gen)
            parts.append(population_corpus(design.spec, [p], exposure, inputs=x0))
    return concat(parts)


def main(cfg: Config) -> dict[str, Any]:
    out = Path(cfg.out)
    start = time.perf_counter()
    results: dict[str, Any] = {
        "verify": verify(cfg),
        "budget": budget_curves(cfg),
        "finite_sample_tab": finite_sample(cfg),
    }
    results["wall_s"] = round(time.perf_counter() - start, 1)
    write_json(out / "config.json", asdict(cfg))
    write_json(out / "results.json", results)
    from hlsm.app.plots import plot_budget_curves

    plot_budget_curves(results["budget"], out / "budget.png")
    lines = ["| check | n | agreement |", "|---|---|---|"]
    for claim, row in results["verify"]["claims"].items():
        lines.append(f"| {claim} | {row['n']} | {row['rate']:.3f} |")
    write_text(out / "agreement.md", "\n".join(lines) + "\n")
    write_report(results, cfg, out)
    return results


SCALES: dict[str, dict[str, Any]] = {
    "tiny": {"designs": 4, "stress_designs": 2, "budget_designs": 2, "finite_designs": 4},
    "cpu": {"designs": 24, "stress_designs": 6, "budget_designs": 10, "finite_designs": 20},
    "gpu": {"designs": 200, "stress_designs": 60, "budget_designs": 30, "finite_designs": 100},
}
"""Design counts per scale (the checks run on CPU at every scale)."""


def write_report(results: dict[str, Any], cfg: Config, out: Path) -> Path:
    """``report.md``: agreement with the oracle per claim and stress family, the budget figure."""
    from hlsm.app.report import markdown_table

    verify = results["verify"]
    claims = {c: row for c, row in verify["claims"].items() if not c.startswith("rate:")}
    rates = {c.removeprefix("rate:"): row for c, row in verify["claims"].items() if c.startswith("rate:")}
    rows = [(claim, row["n"], f"{row['rate']:.3f}") for claim, row in claims.items()]
    worst = min((row["rate"] for row in claims.values()), default=None)
    lowest = "-" if worst is None else f"{worst:.3f}"
    skipped = verify["skipped_over_budget"] or "none"
    finite = results["finite_sample_tab"]
    total = finite["total_G"]
    lines = [
        f"## {__doc__.splitlines()[0]} (`sims/{Path(__file__).name}`)\n",
        __doc__.split("\n\n")[1],
        f"\n{cfg.designs} random designs and {cfg.stress_designs} per stress family ({', '.join(STRESS_FAMILIES)}); "
        f"designs over the oracle's budget skipped: {skipped}. Lowest agreement over all checks: {lowest}.\n",
        markdown_table(("check", "n", "agreement with the oracle"), rows),
        "\nDescriptive rates (how often a case occurs; not agreement checks):\n",
        markdown_table(("rate", "n", "value"), [(c, row["n"], f"{row['rate']:.3f}") for c, row in rates.items()]),
        f"\n![budget](budget.png)\n\nGeneralisation set against the RL budget ({cfg.budget_designs} designs per "
        "protocol; one fixed candidate set per design, disjoint from every RL program).\n",
        f"Finite samples (H-tab, {cfg.finite_designs} designs, {cfg.finite_inputs} inputs per program): compound RL "
        f"determines more candidates than atomic RL in {finite['compound > atomic']} designs, as many in "
        f"{finite['equal']}, fewer in {finite['compound < atomic']} (skipped: {finite['skipped']}); total |G| "
        f"SFT {total['sft']}, + atomic {total['atomic']}, + compound {total['compound']} of "
        f"{total['candidates']} candidates.",
    ]
    path = out / "report.md"
    write_text(path, "\n".join(lines) + "\n")
    return path


def _parse() -> Config:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=list(SCALES), default="gpu", help="design counts (default: the full run)")
    for name in ("designs", "stress_designs", "budget_designs", "finite_designs"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=None)
    parser.add_argument("--out", default=Config.out)
    args = parser.parse_args()
    counts = {k: v if getattr(args, k) is None else getattr(args, k) for k, v in SCALES[args.scale].items()}
    return Config(**counts, out=args.out)


if __name__ == "__main__":
    res = main(_parse())
    print(json.dumps(res["verify"]["claims"], indent=1))
    print(json.dumps(res["finite_sample_tab"]))
