"""The handlers of the ``hlsm`` subcommands (:mod:`hlsm.app.cli` parses the command line and calls
them): each reads its options, runs its job and prints what it did. Each imports its job on first
use, so ``hlsm --help`` imports no torch; ``print_json`` sends ``--json`` output to the real stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TextIO

from hlsm.config import ConfigError, apply_overrides, build_dataclass, check_sections, load_toml, parse_overrides
from hlsm.errors import HLSMError
from hlsm.io import check_target, write_json
from hlsm.lock import writing
from hlsm.tracking import tensorboard

JSON_OUT: list[TextIO] = []
"""Where :func:`print_json` writes: the real stdout while a ``--json`` command runs with everything
else it prints (a plugin's prints, progress) sent to stderr."""


def print_json(value: Any, indent: int | None = None) -> None:
    print(json.dumps(value, indent=indent), file=JSON_OUT[-1] if JSON_OUT else sys.stdout)


@dataclass(frozen=True)
class SimulateConfig:
    """The ``[simulate]`` section of a simulate config.

    ``n`` traces are drawn uniformly over the programs of ``splits`` (each trace labelled with its
    split), with one exposure and corruption rate, and written as JSONL to ``out``.
    """

    n: int = 10_000
    seed: int = 0
    splits: tuple[str, ...] = ("sft",)
    exposure: str = "full"
    epsilon: float = 0.0
    out: str = "runs/simulate/corpus.jsonl"

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {self.epsilon}")


def cmd_modules(args: argparse.Namespace) -> None:
    from hlsm.modules import routings, skills
    from hlsm.spec import Spec

    spec = Spec(alphabet=args.alphabet, length=args.length)
    rows: list[dict[str, Any]] = []
    for s in skills():
        rows.append(
            {
                "name": s.name,
                "symbol": s.symbol,
                "kind": "skill",
                "bijective": s.bijective,
                "supported": s.supports(spec.alphabet, spec.length),
                "description": s.description,
            }
        )
    for r in routings():
        rows.append(
            {
                "name": r.name,
                "symbol": r.symbol,
                "kind": "routing",
                "bijective": None,
                "supported": r.supports(spec.alphabet, spec.length),
                "description": r.description,
            }
        )
    if args.json:
        print_json({"alphabet": spec.alphabet, "length": spec.length, "modules": rows}, indent=2)
        return
    sym_w = max(7, *(len(r["symbol"]) + 1 for r in rows))
    name_w = max(14, *(len(r["name"]) + 1 for r in rows))
    print(f"{'symbol':<{sym_w}}{'kind':<9}{'name':<{name_w}}{'bij.':<6}description")
    for row in rows:
        bij = "" if row["bijective"] is None else ("yes" if row["bijective"] else "no")
        print(f"{row['symbol']:<{sym_w}}{row['kind']:<9}{row['name']:<{name_w}}{bij:<6}{row['description']}")


def cmd_simulate(args: argparse.Namespace) -> None:
    from hlsm.design import DesignConfig, make_design
    from hlsm.simulate import simulate, summarize, write_jsonl
    from hlsm.spec import Spec
    from hlsm.traces import check_exposure

    raw: dict[str, Any] = load_toml(args.config) if args.config else {}
    raw = apply_overrides(raw, parse_overrides(args.set))
    check_sections(raw, ("spec", "design", "simulate"), f"'{args.config}'" if args.config else "")
    spec_raw = dict(raw.get("spec", {}))
    for key in ("alphabet", "length", "skills", "routings"):
        value = getattr(args, key)
        if value is not None:
            spec_raw[key] = value.split(",") if key in ("skills", "routings") else value
    spec = Spec.from_dict(spec_raw)
    design_cfg = DesignConfig.from_dict(raw.get("design", {}))
    if args.depth is not None:  # deeper depths the config sets are kept (and checked against it)
        given = "deeper_depths" in raw.get("design", {})
        deeper = design_cfg.deeper_depths if given else (args.depth + 1, args.depth + 2)
        design_cfg = DesignConfig.from_dict(
            {**design_cfg.to_dict(), "train_depth": args.depth, "deeper_depths": deeper}
        )
    job = build_dataclass(SimulateConfig, raw.get("simulate", {}), "simulate")
    overrides = {
        k: getattr(args, k) for k in ("n", "seed", "exposure", "epsilon", "out") if getattr(args, k) is not None
    }
    if args.splits is not None:
        overrides["splits"] = tuple(args.splits.split(","))
    try:
        job = replace(job, **overrides)
    except ValueError as err:
        raise ConfigError(f"[simulate]: {err}") from None
    check_exposure(job.exposure)
    design = make_design(spec, design_cfg)
    programs, labels = [], []
    for split in job.splits:
        for p in design.programs(split):
            if p not in programs:
                programs.append(p)
                labels.append(split)
    corpus = simulate(spec, programs, job.n, job.seed, exposure=job.exposure, epsilon=job.epsilon, split=labels)
    out = Path(job.out)
    for target in (out, out.with_suffix(".config.json")):
        check_target(target)
    with writing(out, "corpus file"):
        write_jsonl(corpus, out)
        config = {"spec": spec.to_dict(), "design": design_cfg.to_dict(), "simulate": asdict(job)}
        write_json(out.with_suffix(".config.json"), config)
    summary = summarize(corpus)
    print(f"wrote {len(corpus):,} traces to {out}")
    print_json({"depth": summary["depth"], "split": summary["split"]})


def cmd_compare(args: argparse.Namespace) -> None:
    from hlsm.app.compare import compare_regimes, comparison_table

    cls = "lib" if args.hypothesis_class == "both" else args.hypothesis_class
    record = compare_regimes([args.design, *args.compare], cls, parse_overrides(args.set))
    if args.figure:
        from hlsm.app.plots import plot_regime_comparison

        write_json(Path(args.figure).with_suffix(".json"), record)
        plot_regime_comparison(record, args.figure)
    if args.json:
        print_json(record, indent=2)
        return
    print(f"{len(record['rows'])} candidate programs under {len(record['regimes'])} regimes (H-{cls}):\n")
    print(comparison_table(record))
    first = record["regimes"][0]["name"]
    for name, added in record["adds"].items():
        print(f"\n{name} identifies {len(added)} candidate(s) that {first} does not" + (":" if added else "."))
        for program in added[:10]:
            print(f"  {program}")
        if len(added) > 10:
            print(f"  ... and {len(added) - 10} more")


def cmd_identify(args: argparse.Namespace) -> None:
    from hlsm.app.designfile import load_design
    from hlsm.identify.checker import identify
    from hlsm.identify.graph import graph_diagnostics

    if args.compare:
        cmd_compare(args)
        return
    design = load_design(args.design, parse_overrides(args.set))
    corpus = design.corpus()
    classes = ["lib", "tab"] if args.hypothesis_class == "both" else [args.hypothesis_class]
    results = {c: identify(design.spec, corpus, design.candidates, c, horizon=design.horizon) for c in classes}
    main_result = results[classes[0]]
    support = list(design.sft) + list(design.rl)
    report: dict[str, Any] = {
        "design": str(args.design),
        "traces": len(corpus),
        "unseen_total": len(design.candidates),
        "generalisation_set_size": len(main_result.generalisation_set),
        "hypothesis_class": classes[0],
        "support_graph": graph_diagnostics(design.spec, support),
        **{c: r.to_dict() for c, r in results.items()},
    }
    if args.figure:  # saved beside the figure first (FIGURE.json), then drawn from that record
        from hlsm.app.plots import plot_support_graph
        from hlsm.identify.graph import graph_record

        figure = {
            "graph": graph_record(design.spec, support),
            "candidates": graph_record(design.spec, design.candidates),
            "identification": main_result.to_dict(),
        }
        write_json(Path(args.figure).with_suffix(".json"), figure)
        plot_support_graph(figure["graph"], figure["identification"], args.figure, figure["candidates"])
    if args.json:
        print_json(report, indent=2)
        return
    spec = design.spec
    print(f"design {args.design}: {len(corpus):,} traces, {len(design.candidates)} candidate programs")
    for c, r in results.items():
        data = r.to_dict()
        bound = " (lower bound)" if r.lower_bound else "" if r.exact else " (compared on probe states)"
        print(
            f"\n== H-{c}: generalisation set {data['generalisation_set_size']}/{data['unseen_total']}{bound}, "
            f"horizon L* = {r.horizon}"
        )
        for sym, row in data["routings"].items():
            status = "identified" if row["identified"] else "NOT identified"
            print(f"  routing {sym:<4} {status:<15} fits: {', '.join(row['fits'])}")
        for sym, row in data["skills"].items():
            status = "identified" if row["identified"] else "NOT identified"
            fits = (
                ", ".join(row["fits"])
                if row["fits"] is not None
                else f"{row['identified_inputs']}/{row['inputs_total']} inputs"
            )
            print(f"  skill   {sym:<4} {status:<15} fits: {fits}")
        for cand in data["candidates"]:
            mark = "in G " if cand["identified"] else "NOT  "
            status = "" if cand["status"] == "exact" else f"[{cand['status']}] "
            print(f"  {mark} {cand['program']:<40} {status}{cand['reason']}")
    del spec


def cmd_fit(args: argparse.Namespace) -> None:
    from hlsm.app.fitrun import run_fit

    progress = not args.quiet and not args.json
    overrides = parse_overrides(args.set)
    with tensorboard(args.tensorboard):
        metrics = run_fit(
            args.design, args.out, data=args.data, progress=progress, resume=args.resume, overrides=overrides
        )
    if args.json:
        print_json(metrics.summary() | {"out": str(args.out)}, indent=2)
        return
    rec, table = metrics.recovery, metrics.confusion
    print(f"fitted {metrics.traces:,} traces: best restart {metrics.best} of {len(metrics.restarts)}")
    print(
        f"  binding accuracy: skills {rec.skill_binding_accuracy:.0%}, "
        f"routings {rec.routing_binding_accuracy:.0%}; "
        f"matched table TV max {rec.matched_tv_max:.3f}"
    )
    free = [s for s, view in metrics.symbols.items() if not view.identified]
    print(f"  symbols not identified by the fit: {', '.join(free) or 'none'}")
    width = metrics.restarts[metrics.best].interval_width
    if width is not None:
        print(f"  scalable likelihood: the log-likelihood is certified to within {width:.3g} nats at the estimate")
    if table is not None:
        print(f"  candidates: VI and the exact checker agree on {table['agreement']:.0%} of {table['total']}")
    print(f"results: {args.out}/metrics.json")


def cmd_reproduce(args: argparse.Namespace) -> None:
    from hlsm.app.reproduce import reproduce

    path, outcomes = reproduce(
        args.scale, only=args.only, force=args.force, runs=args.runs, docs=args.docs, backend=args.backend,
        address=args.address,
    )  # fmt: skip
    failed = [o.name for o in outcomes if o.status == "failed"]
    total = sum(o.wall_s for o in outcomes) / 60
    print(f"wrote {path} ({total:.1f} min of experiments{'; FAILED: ' + ', '.join(failed) if failed else ''})")
    if failed:
        raise SystemExit(1)


def cmd_sweep(args: argparse.Namespace) -> None:
    from hlsm.app.sweep import load_grid, run_sweep

    section = load_grid(args.grid, parse_overrides(args.set))
    overrides = {"backend": args.backend, "workers": args.workers, "address": args.address}
    section = replace(section, **{k: v for k, v in overrides.items() if v is not None})
    path, rows = run_sweep(section)
    counts = {s: sum(r["status"] == s for r in rows) for s in ("done", "cached", "failed")}
    print(f"{len(rows)} cells: {counts['done']} ran, {counts['cached']} already done, {counts['failed']} failed")
    for r in rows:
        if r["status"] == "failed":
            print(f"  cell {r['cell']} failed: {r['error']}")
    print(f"results: {path}")
    if counts["failed"]:
        raise HLSMError(f"{counts['failed']} of {len(rows)} cells failed (errors above and in {path}); fix and rerun")


def cmd_quickstart(args: argparse.Namespace) -> None:
    from hlsm.app.quickstart import QuickstartConfig, run_quickstart

    config = QuickstartConfig(
        traces_per_split=args.traces_per_split, seed=args.seed, scale=args.scale, transformer=not args.no_transformer
    )
    report = run_quickstart(args.out, config)
    print(f"report: {report}")


def cmd_examples_list(args: argparse.Namespace) -> None:
    from hlsm.examples import examples

    found = examples().values()
    if args.json:
        print_json([{**asdict(e), "path": str(e.path)} for e in found], indent=2)
        return
    width = max(len(e.name) for e in found)
    for kind, title in (("design", "designs"), ("config", "training configs"), ("grid", "sweep grids")):
        print(f"{title}:")
        for e in (e for e in found if e.kind == kind):
            print(f"  {e.name:<{width}}  {textwrap.shorten(e.summary, 100 - width, placeholder=' ...')}")
    print("use one as example:NAME wherever a file is expected, e.g. `hlsm identify --design example:c2_interfaces`;")
    print("`hlsm examples show NAME` prints it, `hlsm examples copy NAME --to DIR` copies it to edit")


def cmd_examples_show(args: argparse.Namespace) -> None:
    from hlsm.examples import example_path

    sys.stdout.write(example_path(args.name).read_text(encoding="utf-8"))


def cmd_examples_copy(args: argparse.Namespace) -> None:
    from hlsm.examples import copy_examples

    for path in copy_examples(args.names, args.to, overwrite=args.overwrite):
        print(path)


def cmd_train_sft(args: argparse.Namespace) -> None:
    from hlsm.lm.sft import train_sft
    from hlsm.lm.sft_config import SFTConfig

    config = SFTConfig.from_toml(args.config, parse_overrides(args.set))
    with tensorboard(args.tensorboard):
        result = train_sft(config, args.out, resume=args.resume)
    if result.rank == 0:
        print(f"trained {result.step} steps; outputs in {result.out}")
        for name, acc in result.evaluation.items():
            print(f"  {name:<12} accuracy {acc['accuracy']:.3f} +- {acc['se']:.3f}  (n={acc['n']})")


def cmd_train_rl(args: argparse.Namespace) -> None:
    from hlsm.lm.reinforce import train_rl
    from hlsm.lm.rl_config import RLConfig

    config = RLConfig.from_toml(args.config, parse_overrides(args.set))
    with tensorboard(args.tensorboard):
        result = train_rl(config, args.init, args.out, resume=args.resume)
    if result.rank == 0:
        print(f"{result.updates} updates on {result.traces:,} sampled traces; outputs in {result.out}")
        if result.updates == 0:
            print(
                "  no update: in every sampled group all traces scored alike (all wrong, or all right), so the "
                "leave-one-out advantages were 0. The policy gives RL nothing to learn from: train SFT longer "
                "(the tiny configs are smoke tests of the path, not of learning), or raise the budget."
            )
        for name, acc in result.evaluation.items():
            print(f"  {name:<12} accuracy {acc['accuracy']:.3f} +- {acc['se']:.3f}  (n={acc['n']})")


def _evaluation_design(path: str, policy: Any) -> Any:
    """The support design of a ``[spec]`` / ``[design]`` TOML for a checkpoint's own library."""
    from hlsm.design import DesignConfig, make_design
    from hlsm.spec import Spec

    raw = load_toml(path)
    check_sections(raw, ("spec", "design"), f"'{path}'")
    if "spec" in raw and Spec.from_dict(dict(raw["spec"])) != policy.spec:
        raise ConfigError(
            f"the [spec] of '{path}' differs from the checkpoint's {policy.spec.to_dict()}; the model only "
            "reads its own library: drop [spec] or make it equal"
        )
    return make_design(policy.spec, DesignConfig.from_dict(raw.get("design", {})))


def cmd_evaluate(args: argparse.Namespace) -> None:
    from hlsm.design import SupportDesign
    from hlsm.lm.policy import evaluate_checkpoint, load_policy
    from hlsm.lm.records import format_evaluation

    policy = load_policy(args.ckpt, what="--ckpt checkpoint")
    design: SupportDesign | None = _evaluation_design(args.design, policy) if args.design else None
    results = evaluate_checkpoint(policy, design, examples=args.examples, seed=args.seed, checker=not args.no_checker)
    if args.out:
        check_target(args.out)
        with writing(args.out, "results file"):
            results.save(args.out)
    print(f"{policy.kind} checkpoint {args.ckpt} (step {policy.step}); {args.examples} examples per split, greedy")
    print(format_evaluation(results.to_dict()))
    if args.out:
        print(f"results: {args.out}")


def cmd_probe(args: argparse.Namespace) -> None:
    from hlsm.app.probe import run_probe
    from hlsm.lm.policy import load_policy

    policy = load_policy(args.ckpt, what="--ckpt checkpoint")
    design = _evaluation_design(args.design, policy) if args.design else None
    out = args.out or str(Path(args.ckpt).parent / "probe" if Path(args.ckpt).is_file() else Path(args.ckpt) / "probe")
    result = run_probe(
        policy,
        out,
        design=design,
        examples=args.examples,
        seed=args.seed,
        replicates=args.replicates,
        reference=args.reference,
    )
    if args.json:
        print_json({k: result[k] for k in ("checkpoint", "traces", "records", "groups")} | {"out": out})
        return
    counts = f"{result['records']:,} steps of {result['traces']:,} traces"
    print(f"{policy.kind} checkpoint {args.ckpt} (step {policy.step}): {counts}, own skill: {args.reference}")
    for group, v in result["groups"].items():
        print(
            f"  {group:<6} {v['records']:>6} steps  entanglement {v['entanglement']:.3f} ± {v['entanglement_se']:.3f}"
            f"  unexplained {v['unexplained']:.3f} ± {v['unexplained_se']:.3f}"
        )
    subs = [b for b in result["bindings"] if b["substitution"]]
    print(f"  substitutions: {len(subs)} (symbol, context) pairs bound to another skill")
    print(f"results: {out}/probe.json, probe.md, bindings.png")


def cmd_bench(args: argparse.Namespace) -> None:
    from hlsm.app.bench import run_benchmark

    kwargs: dict[str, Any] = {"progress": not args.json}
    for key in ("n", "device", "peak_tflops", "scale", "models", "size"):
        if getattr(args, key) is not None:
            kwargs[key] = getattr(args, key)
    result = run_benchmark(args.name, **kwargs)
    if args.json:
        print_json(result)
    else:
        width = max(len(k) for k in result)
        for key, value in result.items():
            print(f"{key:<{width}}  {value}")


def cmd_export(args: argparse.Namespace) -> None:
    from hlsm.app.export import export_design, load_export_design

    spec, design, fmt = load_export_design(args.design, parse_overrides(args.set))
    summary = export_design(spec, design, args.out, args.format, fmt=fmt, inputs=args.inputs, seed=args.seed)
    print(f"wrote {args.out}/train.parquet ({sum(summary['train'].values()):,} RL prompts) and test.parquet")
    print_json({"train": summary["train"], "test": summary["test"]})
